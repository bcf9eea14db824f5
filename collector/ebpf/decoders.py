"""Decoders: raw BPF map keys and values -> labels and numbers.

The pure functions take values or text; the ``*_index`` helpers do the I/O
(under ``host_root``) and hand their results to a :class:`Decoders` cache.
Labels:
  cgroup   cgroup v2 path relative to the cgroup2 mount ("/" is the root),
           or "cgroup:<id>" when the cgroup is gone
  ifindex  interface name in the host's network namespace,
           "netns:<inode>:<ifindex>" in any other namespace, "if<N>" when gone
  disk     disk name from /sys/dev/block/MAJ:MIN, else "MAJ:MIN"
  syscall  syscall name for the host's architecture, else "sys_<nr>"
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from collector.ebpf.syscall_names import TABLES

MINORBITS = 20  # the kernel's internal dev_t: major << 20 | minor (include/linux/kdev_t.h)


# --- numbers ----------------------------------------------------------------

def counter_delta(prev: int | None, cur: int) -> int:
    """Growth of a cumulative counter. A counter that went backwards was reset
    (map entry deleted and re-created, or the program reloaded): its whole
    current value is new."""
    if prev is None or cur < prev:
        return cur
    return cur - prev


def log2_buckets(slots: Mapping[int, int]) -> dict[str, int]:
    """Raw log2 slots -> {"k": count} for non-zero k; bucket k is [2^k, 2^(k+1))."""
    return {str(k): n for k, n in sorted(slots.items()) if n > 0}


def bucket_bounds(k: int) -> tuple[int, int]:
    """Half-open value range [lo, hi) of log2 bucket k (bucket 0 also holds 0)."""
    return (0 if k == 0 else 1 << k), 1 << (k + 1)


def histogram_quantile(buckets: Mapping[str, int], q: float) -> int | None:
    """Upper bound of the bucket holding quantile q (e.g. 0.99), None when empty."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for k in sorted(buckets, key=int):
        seen += buckets[k]
        if seen >= rank:
            return bucket_bounds(int(k))[1]
    return bucket_bounds(max(int(k) for k in buckets))[1]


def agreement(a: float, b: float) -> float:
    """min/max of two non-negative measures of the same thing, 0..1; 1.0 when both are 0."""
    hi = max(a, b)
    return 1.0 if hi <= 0 else max(0.0, min(a, b)) / hi


_CPU_LINE = re.compile(r"^cpu (.*)$", re.M)


def proc_stat_busy_ns(text: str, clk_tck: int = 100) -> int:
    """Busy nanoseconds, all CPUs, from the ``cpu`` line of /proc/stat:
    user+nice+system+irq+softirq+steal (guest time is already inside user/nice)."""
    match = _CPU_LINE.search(text)  # the first line; do not split the whole (long) file
    if match:
        f = [int(x) for x in match.group(1).split()]
        f += [0] * (8 - len(f))
        busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
        return busy * 1_000_000_000 // clk_tck
    raise ValueError("no aggregate 'cpu ' line in /proc/stat")


# --- labels -----------------------------------------------------------------

def dev_to_majmin(dev: int) -> tuple[int, int]:
    return dev >> MINORBITS, dev & ((1 << MINORBITS) - 1)


def syscall_name(nr: int, machine: str) -> str:
    return TABLES.get(machine, {}).get(nr, f"sys_{nr}")


def cgroup2_mount(mountinfo: str) -> str | None:
    """Mount point of the cgroup v2 hierarchy from /proc/self/mountinfo text
    (``/sys/fs/cgroup`` on unified hosts, ``/sys/fs/cgroup/unified`` on hybrid ones)."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        # A truncated line (fewer than 5 fields before " - ") is skipped, not an IndexError (found by fuzzing).
        if sep and right.split(" ", 1)[0] == "cgroup2" and len(fields) > 4:
            return fields[4].replace("\\040", " ")
    return None


def netns_inode(link: str) -> int | None:
    """Inode from a /proc/<pid>/ns/net link target such as ``net:[4026531840]``."""
    if link.startswith("net:[") and link.endswith("]"):
        return int(link[5:-1])
    return None


def cgroup_index(cgroup_root: Path) -> dict[int, str]:
    """cgroup id -> path: a cgroup v2 id is its directory's inode number (kernfs, 5.5+)."""
    index: dict[int, str] = {}
    for dirpath, dirnames, _files in os.walk(cgroup_root):
        try:
            ino = os.stat(dirpath).st_ino
        except OSError:
            continue
        rel = os.path.relpath(dirpath, cgroup_root)
        index[ino] = "/" if rel == "." else "/" + rel
    return index


def ifindex_index(sys_class_net: Path) -> dict[int, str]:
    index: dict[int, str] = {}
    for entry in _listdir(sys_class_net):
        try:
            index[int((sys_class_net / entry / "ifindex").read_text())] = entry
        except (OSError, ValueError):
            continue
    return index


def _listdir(path: Path) -> Iterable[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


class Decoders:
    """Label lookups for one host, cached; an unknown key triggers one refresh
    of that index per snapshot (``new_round``) before it is labelled as gone."""

    def __init__(self, host_root: Path = Path("/"), machine: str | None = None):
        self.host_root = host_root
        self.machine = machine or os.uname().machine
        self._cgroups: dict[int, str] | None = None
        self._ifaces: dict[int, str] | None = None
        self._host_netns: int | None = None
        self._refreshed: set[str] = set()

    def new_round(self) -> None:
        self._refreshed.clear()

    def _cgroup_root(self) -> Path | None:
        # pid 1's view first: in a container with the host's /proc under host_root,
        # proc/self would describe the container's mounts, not the host's.
        for pid in ("1", "self"):
            try:
                mount = cgroup2_mount((self.host_root / f"proc/{pid}/mountinfo").read_text())
            except OSError:
                continue
            if mount is not None:
                return self.host_root / mount.lstrip("/")
        return None

    def _lookup(self, kind: str, key: int) -> str | None:
        cache = self._cgroups if kind == "cgroup" else self._ifaces
        if (cache is None or key not in cache) and kind not in self._refreshed:
            self._refreshed.add(kind)
            if kind == "cgroup":
                root = self._cgroup_root()
                self._cgroups = cgroup_index(root) if root else {}
            else:
                self._ifaces = ifindex_index(self.host_root / "sys/class/net")
            cache = self._cgroups if kind == "cgroup" else self._ifaces
        return (cache or {}).get(key)

    def host_netns(self) -> int | None:
        if self._host_netns is None:
            for pid in ("1", "self"):
                try:
                    self._host_netns = netns_inode(os.readlink(self.host_root / f"proc/{pid}/ns/net"))
                    break
                except OSError:
                    continue
        return self._host_netns

    def label(self, decode: str, key: int | tuple[int, ...]) -> str:
        if decode == "cgroup":
            assert isinstance(key, int)
            return self._lookup("cgroup", key) or f"cgroup:{key}"
        if decode == "ifindex":
            netns, ifindex = key if isinstance(key, tuple) else (None, key)
            if ifindex == 0:
                return "unknown"
            if netns is None or netns == self.host_netns():
                return self._lookup("ifindex", ifindex) or f"if{ifindex}"
            return f"netns:{netns}:{ifindex}"
        if decode == "disk":
            assert isinstance(key, int)
            major, minor = dev_to_majmin(key)
            try:
                return os.path.basename(os.readlink(self.host_root / f"sys/dev/block/{major}:{minor}"))
            except OSError:
                return f"{major}:{minor}"
        if decode == "syscall":
            assert isinstance(key, int)
            return syscall_name(key, self.machine)
        return str(key)
