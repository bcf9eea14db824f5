"""The GPU source: absent without NVML; with a stand-in NVML module (the I/O edge), the section's values."""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

import schemas
from collector.sources.gpu import make_gpu_source
from hmconfig.settings import load_settings


class NVMLError(Exception):
    pass


def fake_nvml(count: int, fail_util_on: int | None = None, init_error: bool = False) -> types.ModuleType:
    nvml: Any = types.ModuleType("pynvml")
    state = {"shutdown": 0}

    def init() -> None:
        if init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def util(handle: int) -> Any:
        if handle == fail_util_on:
            raise NVMLError("Not Supported")
        return types.SimpleNamespace(gpu=40 + handle, memory=5)

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: state.__setitem__("shutdown", state["shutdown"] + 1)
    nvml.nvmlDeviceGetCount = lambda: count
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-{h:08d}".encode()
    nvml.nvmlDeviceGetUtilizationRates = util
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=16 * 2**30, free=0)
    nvml.state = state
    return nvml


@pytest.fixture
def settings() -> Any:
    return load_settings(host_root=Path("/"))


def test_no_pynvml_means_no_gpu_source(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml → ImportError
    assert make_gpu_source(settings) is None


@pytest.mark.parametrize("nvml", [fake_nvml(0), fake_nvml(2, init_error=True)], ids=["no-device", "no-driver"])
def test_no_device_or_driver_means_no_gpu_source(settings: Any, monkeypatch: pytest.MonkeyPatch, nvml: Any) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert make_gpu_source(settings) is None


async def test_gpu_section(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml(2, fail_util_on=1)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    source = make_gpu_source(settings)
    assert source is not None and source.origin == "nvml"
    section = await source.collect()
    assert section == [
        {"index": 0, "uuid": "GPU-00000000", "utilisation": 0.4, "memory_used_bytes": 2**30,
         "memory_total_bytes": 16 * 2**30},
        {"index": 1, "uuid": "GPU-00000001", "utilisation": None, "memory_used_bytes": 2**31,
         "memory_total_bytes": 16 * 2**30},
    ]
    assert source.missing == ["gpu.1.utilisation"]
    schemas.validate("hm.usage.v1", {"schema": "hm.usage.v1", "host_id": "h-" + "0" * 32, "seq": 0, "ts": 0,
                                     "boot_id": "6c1e4f2a-1b2c-4d3e-8f90-0a1b2c3d4e5f", "interval_s": 1.0,
                                     "elapsed_s": 0.0, "sources": ["nvml"], "missing": [], "gpu": section})
    source.close()
    assert nvml.state["shutdown"] == 1
