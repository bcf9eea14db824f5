"""Filesystem use: the mount table (/proc/self/mounts under host_root) and statvfs(3).

Default every 30 s (filesystem_interval_s); each usage record carries the latest reading.

Left out, as pseudo or volatile: the fstypes in PSEUDO_FSTYPES (node_exporter's
default --collector.filesystem.fs-types-exclude plus tmpfs/ramfs, which hold RAM,
not storage), mounts under /dev, /proc, /sys, /run/credentials and container
runtimes' layer stores, and a device already seen at another mount point
(bind mounts would count one filesystem twice). Network filesystems (nfs, cifs,
ceph) are kept; statvfs on a dead server can block, so each call runs in a
thread with a timeout and a mount that times out is skipped and named in
``missing`` as "filesystem:<mount>".

Sizes as df(1) computes them: total = f_blocks × f_frsize, available = f_bavail
× f_frsize (what an unprivileged user can still write), used = (f_blocks − f_bfree) × f_frsize.
Under a host_root other than "/", statvfs looks at host_root + mount point, so
the host's filesystems must be mounted there (e.g. ``-v /:/host:ro,rslave``).
"""
from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.procfs import ProcFile

PSEUDO_FSTYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "overlay", "proc", "procfs", "pstore",
    "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "erofs", "sysfs", "tracefs", "tmpfs", "ramfs",
    "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse", "nfsd",
})
_EXCLUDED_MOUNTS = re.compile(
    r"^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+)($|/)"
)
STATVFS_TIMEOUT_S = 5.0
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # Spaces, tabs, newlines and backslashes in mount fields are written as \040 etc. (fs/proc_namespace.c mangle).
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[dict[str, str]]:
    """``[{device, mount, fstype, options}]`` from /proc/<pid>/mounts (fstab(5) format); short lines skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        out.append({"device": _unescape(parts[0]), "mount": _unescape(parts[1]), "fstype": parts[2],
                    "options": parts[3]})
    return out


def select_mounts(mounts: list[dict[str, str]]) -> list[dict[str, str]]:
    """The storage mounts: no pseudo filesystems, no excluded mount points, each device once."""
    seen: set[str] = set()
    out = []
    for m in mounts:
        if m["fstype"] in PSEUDO_FSTYPES or _EXCLUDED_MOUNTS.match(m["mount"]):
            continue
        if m["device"] in seen:
            continue
        seen.add(m["device"])
        out.append(m)
    return out


def usage_from_statvfs(st: os.statvfs_result) -> dict[str, int]:
    frsize = st.f_frsize or st.f_bsize
    return {
        "total_bytes": st.f_blocks * frsize,
        "used_bytes": (st.f_blocks - st.f_bfree) * frsize,
        "available_bytes": st.f_bavail * frsize,
    }


def _consume(call: asyncio.Future[os.statvfs_result]) -> None:
    # Retrieve a late failure so asyncio does not log "exception was never retrieved".
    if not call.cancelled():
        call.exception()


@register_polling("filesystem")
class FilesystemSource:
    name = "filesystem"
    origin = "statvfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.filesystem_interval_s
        self.missing: list[str] = []
        self._root = Path(settings.host_root)
        self._file = ProcFile(self._root / "proc/self/mounts")
        self._pending: dict[str, asyncio.Future[os.statvfs_result]] = {}

    async def _statvfs(self, mount: str) -> os.statvfs_result:
        # A statvfs stuck on a dead NFS server cannot be cancelled: its thread stays blocked. Keep
        # waiting on that same call next time instead of starting another thread per pass.
        call = self._pending.get(mount)
        if call is None or call.done():
            path = str(self._root / mount.lstrip("/"))
            call = asyncio.ensure_future(asyncio.to_thread(os.statvfs, path))
            call.add_done_callback(_consume)
            self._pending[mount] = call
        try:
            return await asyncio.wait_for(asyncio.shield(call), STATVFS_TIMEOUT_S)
        finally:
            if call.done():
                self._pending.pop(mount, None)

    async def collect(self) -> list[dict[str, Any]]:
        try:
            text = self._file.read()
        except OSError as err:
            raise SourceError(f"cannot read {self._file.path}: {err.strerror}") from err
        mounts = select_mounts(parse_mounts(text))
        results = await asyncio.gather(*(self._statvfs(m["mount"]) for m in mounts), return_exceptions=True)
        section, missing = [], []
        for m, st in zip(mounts, results):
            if isinstance(st, BaseException):
                missing.append(f"filesystem:{m['mount']}")
                continue
            if st.f_blocks == 0:  # a filesystem reporting no size (some FUSE ones) is not storage
                continue
            section.append({"mount": m["mount"], "device": m["device"], "fstype": m["fstype"],
                            **usage_from_statvfs(st)})
        self.missing = missing
        return section

    def close(self) -> None:
        self._file.close()
