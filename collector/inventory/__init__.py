"""Hardware inventory: the genesis record a HyperMesh node declares.

    from collector.inventory import build_inventory
    body = build_inventory(Path("/"))      # the hm.inventory.v1 body (no common fields)

One module per section (cpu, memory, gpu, storage, network, system), each with pure
parsers (text in, plain data out) and a ``collect(fs)`` that reads through
:class:`HostFS`, the only place /proc and /sys are named. A file that cannot be read
or parsed never raises: its field is None and ``missing`` names it.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from collector.inventory import cpu, gpu, hashing, hypermesh, memory, network, psutil_fallback, storage, system
from collector.inventory.hostfs import HostFS

__all__ = ["build_inventory", "SECTIONS"]

log = logging.getLogger(__name__)

SECTIONS = ("cpu", "memory", "gpus", "storage", "network", "system")


def build_inventory(
    host_root: Path | str = Path("/"),
    *,
    platform: str | None = None,
    statvfs: Callable[[str], Any] | None | bool = True,
    nvml: Callable[[], dict[str, dict[str, Any]]] | None | bool = True,
    netlink: bool | None = None,
) -> dict[str, Any]:
    """The inventory body: source, cpu, memory, gpus, storage, network, system,
    hypermesh, missing and inventory_hash.

    The I/O edges: statvfs runs on ``host_root``/mount point; NVML and netlink only
    when ``host_root`` is "/" (they see this machine, not the tree). Tests substitute them: ``statvfs`` (callable taking a path, like
    os.statvfs), ``nvml`` (callable returning NVML GPUs by PCI address), ``netlink``
    (read links through netlink instead of sysfs). ``platform`` defaults to
    sys.platform; anything but "linux" takes the psutil fallback.
    """
    platform = platform or sys.platform
    missing: list[str] = []
    if not platform.startswith("linux"):
        body = psutil_fallback.collect(missing)
    else:
        fs = HostFS(host_root)
        live = fs.is_live
        # statvfs applies under any root: a host mounted at /host has its mounts below it too.
        statvfs_fn = os.statvfs if statvfs is True else (statvfs or None)
        nvml_fn = (gpu.read_nvml if live else None) if nvml is True else (nvml or None)
        body = {
            "source": "linux",
            "cpu": _section(fs, "cpu", cpu.collect, fs),
            "memory": _section(fs, "memory", memory.collect, fs),
            "gpus": _section(fs, "gpus", gpu.collect, fs, nvml_fn) or [],
            "storage": _section(fs, "storage", storage.collect, fs, statvfs_fn),
            "network": _section(fs, "network", network.collect, fs, live if netlink is None else netlink),
            "system": _section(fs, "system", system.collect, fs),
        }
        missing = fs.missing
    body["hypermesh"] = hypermesh.derive(body)
    body["missing"] = sorted(set(missing))
    body["inventory_hash"] = hashing.inventory_hash(body)
    return body


def _section(fs: HostFS, name: str, collect: Callable[..., Any], *args: Any) -> Any:
    """A bug in one section's code leaves that section None and named, not the whole inventory lost."""
    try:
        return collect(*args)
    except Exception:  # noqa: BLE001 - the inventory must come out; the gap is reported in `missing`
        log.exception("inventory section %s failed", name)
        fs.note(name)
        return None
