"""Inventory on platforms without /proc and /sys (macOS, Windows, BSD), through psutil.

Less detail than the Linux path: CPU counts and frequency, memory, mounted disks and
their capacity, NICs with MAC/MTU/speed. Everything psutil cannot say is None and
named in ``missing``. Marked ``source: "psutil"``.
"""
from __future__ import annotations

import importlib
import platform as std_platform
import socket
from typing import Any

DISK_FSTYPES_SKIPPED = {"devfs", "autofs", "tmpfs", "nullfs", "procfs", "fdescfs", ""}


def collect(missing: list[str], psutil: Any = None) -> dict[str, Any]:
    """Every section but ``hypermesh`` and the hash; ``psutil`` may be a stand-in module."""
    if psutil is None:
        psutil = importlib.import_module("psutil")  # lazily: the Linux path does not need it
    return {
        "source": "psutil",
        "cpu": _cpu(psutil, missing),
        "memory": _memory(psutil),
        "gpus": [],
        "storage": _storage(psutil, missing),
        "network": _network(psutil, missing),
        "system": _system(),
    }


def _call(missing: list[str], field: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - psutil raises platform-specific errors; none may escape
        missing.append(field)
        return None


def _cpu(psutil: Any, missing: list[str]) -> dict[str, Any]:
    logical = _call(missing, "cpu.threads", psutil.cpu_count, logical=True)
    physical = _call(missing, "cpu.cores", psutil.cpu_count, logical=False)
    freq = _call(missing, "cpu.max_freq_mhz", psutil.cpu_freq)
    machine = std_platform.machine() or None
    model = std_platform.processor() or None
    for field, value in (("cpu.model", model), ("cpu.sockets", None), ("cpu.cache", None)):
        if value is None:
            missing.append(field)
    return {
        "vendor": None, "vendor_id": None, "model": model, "architecture": machine,
        "sockets": None, "cores": physical, "threads": logical,
        "cores_per_socket": None,
        "threads_per_core": logical // physical if logical and physical else None,
        "hybrid": None,
        "base_freq_mhz": None,
        "max_freq_mhz": float(freq.max) if freq and freq.max else None,
        "min_freq_mhz": float(freq.min) if freq and freq.min else None,
        "cache": {"l1d": None, "l1i": None, "l2": None, "l3": None},
        "flags": [],
    }


def _memory(psutil: Any) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return {
        "total_bytes": vm.total, "swap_total_bytes": swap.total,
        "available_bytes": vm.available, "free_bytes": vm.free, "swap_free_bytes": swap.free,
        "huge_pages": None, "numa_nodes": [],
    }


def _storage(psutil: Any, missing: list[str]) -> dict[str, Any]:
    filesystems = []
    for part in _call(missing, "storage.filesystems", psutil.disk_partitions, all=False) or []:
        if part.fstype in DISK_FSTYPES_SKIPPED:
            continue
        entry = {"mount_point": part.mountpoint, "device": part.device, "block_device": None, "disk": None,
                 "fstype": part.fstype, "read_only": "ro" in part.opts.split(","), "type": None,
                 "total_bytes": None, "used_bytes": None, "available_bytes": None, "usage_percent": None}
        usage = _call(missing, f"storage.filesystems.{part.mountpoint}", psutil.disk_usage, part.mountpoint)
        if usage is not None:
            entry.update(total_bytes=usage.total, used_bytes=usage.used, available_bytes=usage.free,
                         usage_percent=float(usage.percent))
        filesystems.append(entry)
    missing.append("storage.block_devices")
    return {"block_devices": [], "filesystems": filesystems}


def _network(psutil: Any, missing: list[str]) -> dict[str, Any]:
    addrs = _call(missing, "network.addresses", psutil.net_if_addrs) or {}
    stats = _call(missing, "network.interfaces", psutil.net_if_stats) or {}
    link_family = getattr(psutil, "AF_LINK", None)
    interfaces = []
    for name in sorted(set(addrs) | set(stats)):
        st = stats.get(name)
        iface: dict[str, Any] = {
            "name": name, "index": None, "mac": None, "permanent_mac": None,
            "mtu": st.mtu if st else None, "operstate": ("up" if st.isup else "down") if st else None,
            "kind": None, "master": None, "parent": None, "vlan_id": None, "addresses": [],
            "speed_mbps": st.speed if st and st.speed else None, "duplex": None, "driver": None,
            "pci_address": None, "bond": None, "bridge_ports": None,
        }
        for a in addrs.get(name, []):
            if a.family == link_family:
                iface["mac"] = a.address.lower().replace("-", ":")
            elif a.family in (socket.AF_INET, socket.AF_INET6):
                family = "inet" if a.family == socket.AF_INET else "inet6"
                iface["addresses"].append({"family": family, "address": a.address.split("%")[0],
                                           "prefixlen": _prefixlen(a.netmask), "scope": None})
        interfaces.append(iface)
    return {"source": "psutil", "interfaces": interfaces}


def _prefixlen(netmask: str | None) -> int | None:
    import ipaddress

    if not netmask:
        return None
    try:
        return ipaddress.ip_network(f"0.0.0.0/{netmask}" if "." in netmask else f"::/{netmask}").prefixlen
    except ValueError:
        return None


def _system() -> dict[str, Any]:
    uname = std_platform.uname()
    return {
        "hostname": socket.gethostname(),
        "kernel": {"name": uname.system, "release": uname.release, "version": uname.version},
        "os": {"id": uname.system.lower(), "name": uname.system, "version_id": uname.release,
               "pretty_name": f"{uname.system} {uname.release}"},
        "boot_id": None, "machine_id_sha256": None, "virtualization": None, "container": None, "dmi": None,
    }
