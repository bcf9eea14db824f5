"""The I/O edges: NVML (a stand-in `pynvml` in sys.modules: absent library, failed init
and per-call errors mean "not present" or a null field, never an exception), pyroute2
absent, the network-namespace check, and a hung network filesystem's statvfs."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from collector.inventory import gpu, network
from collector.inventory.hostfs import HostFS

MACHINES = Path(__file__).resolve().parents[2] / "fixtures" / "machines"


class NVMLError(Exception):
    pass


def fake_pynvml(init_error: bool = False, name_error: bool = False) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    calls = {"shutdown": 0}

    def init():
        if init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def name(_h):
        if name_error:
            raise NVMLError("Unknown Error")
        return "NVIDIA H100 80GB HBM3"

    def shutdown():
        calls["shutdown"] += 1

    m.nvmlInit = init
    m.nvmlShutdown = shutdown
    m.nvmlSystemGetDriverVersion = lambda: "550.90.07"
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12040
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: object()
    m.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(busId=b"00000000:01:00.0")
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=85520809984)
    m.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)
    m.nvmlDeviceGetName = name
    m.nvmlDeviceGetUUID = lambda h: "GPU-0000"
    m.calls = calls
    return m


def test_nvml_reads_devices_by_pci_address(monkeypatch):
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    found = gpu.read_nvml()
    assert found == {"0000:01:00.0": {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0000",
                                      "memory_total_bytes": 85520809984, "compute_capability": "9.0",
                                      "driver_version": "550.90.07", "cuda_version": "12.4"}}
    assert fake.calls["shutdown"] == 1


def test_nvml_without_driver_is_not_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=True))
    assert gpu.read_nvml() == {}


def test_nvml_without_the_package_is_not_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert gpu.read_nvml() == {}


def test_nvml_call_error_leaves_a_null(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(name_error=True))
    assert gpu.read_nvml()["0000:01:00.0"]["name"] is None


def test_no_gpu_is_an_empty_list(tmp_path):
    assert gpu.collect(HostFS(tmp_path), gpu.read_nvml) == []


def test_network_falls_back_to_sysfs_without_pyroute2(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyroute2", None)
    fs = HostFS(MACHINES / "bond-vlan-nics" / "root")
    out = network.collect(fs, use_netlink=True)
    assert out["source"] == "sysfs" and "network.netlink" in fs.missing
    assert {i["name"] for i in out["interfaces"]} >= {"bond0", "eno1", "lo"}


@pytest.mark.parametrize("vendor, device, expected", [(0x10DE, 0x2330, "Discrete"), (0x1AF4, 0x1050, "Virtual"),
                                                      (0x1A03, 0x2000, "Integrated")])
def test_gpu_types(vendor, device, expected):
    assert gpu.classify(vendor, device, "0000:05:00.0") == expected


def test_hung_network_statvfs_is_given_up(monkeypatch):
    """A dead NFS server must not hang the inventory: that mount's capacity goes missing."""
    import json
    import threading
    from types import SimpleNamespace

    from collector.inventory import storage

    monkeypatch.setattr(storage, "NETWORK_STATVFS_TIMEOUT_S", 0.2)
    release = threading.Event()
    edges = json.loads((MACHINES / "storage-mix" / "edges.json").read_text())["statvfs"]
    root = MACHINES / "storage-mix" / "root"

    def statvfs(path):
        mount = "/" + str(Path(path).relative_to(root)).lstrip(".")
        if mount == "/mnt/shared":
            release.wait(10)  # the hung NFS server
        return SimpleNamespace(**edges[mount.rstrip("/") or "/"])

    fs = HostFS(root)
    try:
        out = storage.collect(fs, statvfs)
    finally:
        release.set()
    shared = next(f for f in out["filesystems"] if f["mount_point"] == "/mnt/shared")
    assert shared["total_bytes"] is None and "storage.filesystems./mnt/shared" in fs.missing
    assert next(f for f in out["filesystems"] if f["mount_point"] == "/srv/ssd")["total_bytes"] == 983349346304


def test_shared_network_namespace_is_seen_under_any_host_root(tmp_path):
    """A pod with hostNetwork and hostPID reading the host at /host shares init's netns:
    netlink applies there too. The ns links are compared under the host root."""
    for pid, target in (("self", "net:[4026531833]"), ("1", "net:[4026531833]")):
        (tmp_path / "proc" / pid / "ns").mkdir(parents=True)
        (tmp_path / "proc" / pid / "ns" / "net").symlink_to(target)
    assert network.shares_host_netns(HostFS(tmp_path))
    (tmp_path / "proc/1/ns/net").unlink()
    (tmp_path / "proc/1/ns/net").symlink_to("net:[4026532999]")  # a pod in its own netns
    assert not network.shares_host_netns(HostFS(tmp_path))
    assert not network.shares_host_netns(HostFS(MACHINES / "bond-vlan-nics" / "root"))  # no ns links: sysfs
