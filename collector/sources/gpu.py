"""GPU utilisation and memory in use through NVML (nvidia-ml-py, the `gpu` extra).

Present only when the pynvml module imports and nvmlInit() succeeds (an NVIDIA
driver and at least one device); otherwise the factory returns None and the
record has no ``gpu`` section, which is not an error. NVML's utilisation is the
percentage of the last sample period (1/6 s to 1 s, per device) in which a
kernel ran (nvmlDeviceGetUtilizationRates, NVML API reference); it is reported as 0..1.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from collector.sources import SourceError, register_polling

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@register_polling("gpu")
def make_gpu_source(settings: Any) -> GpuSource | None:
    try:
        import pynvml  # noqa: PLC0415 - optional dependency, only where a GPU may be
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as err:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU here
        log.debug("NVML unavailable: %s", err)
        return None
    if count == 0:
        pynvml.nvmlShutdown()
        return None
    return GpuSource(settings, pynvml, count)


class GpuSource:
    name = "gpu"
    origin = "nvml"

    def __init__(self, settings: Any, nvml: Any, count: int):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._uuids: list[str | None] = []
        for handle in self._handles:
            try:
                self._uuids.append(_text(nvml.nvmlDeviceGetUUID(handle)))
            except Exception:  # noqa: BLE001 - the uuid is optional
                self._uuids.append(None)

    def _read(self) -> tuple[list[dict[str, Any]], list[str]]:
        nvml = self._nvml
        out, missing = [], []
        for index, handle in enumerate(self._handles):
            row: dict[str, Any] = {"index": index, "uuid": self._uuids[index], "utilisation": None,
                                   "memory_used_bytes": None, "memory_total_bytes": None}
            try:
                row["utilisation"] = nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            except Exception:  # noqa: BLE001 - e.g. NVMLError_NotSupported on some boards
                missing.append(f"gpu.{index}.utilisation")
            try:
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                row["memory_used_bytes"], row["memory_total_bytes"] = mem.used, mem.total
            except Exception:  # noqa: BLE001
                missing.append(f"gpu.{index}.memory")
            out.append(row)
        return out, missing

    async def collect(self) -> list[dict[str, Any]]:
        # NVML calls take a driver lock and can stall for ms; keep them off the event loop.
        try:
            section, self.missing = await asyncio.to_thread(self._read)
        except Exception as err:  # noqa: BLE001
            raise SourceError(f"NVML read failed: {err}") from err
        return section

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
