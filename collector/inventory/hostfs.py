"""The one place /proc and /sys are named: every path hangs off ``host_root``.

Like ``psutil.PROCFS_PATH``: a containerised collector sets ``host_root=/host`` and
reads the host's trees mounted there; tests point it at a captured fixture tree.
A read that fails (missing, unreadable, not text) returns None and is recorded in
``missing`` under the inventory field it was meant to fill; it never raises.
"""
from __future__ import annotations

import os
from pathlib import Path


class HostFS:
    """Text reads under one host root, with the failed ones recorded by field name."""

    def __init__(self, host_root: Path | str = "/"):
        self.root = str(host_root)
        self.missing: list[str] = []
        # Set to a set() to record every path touched (tests/fixtures/capture_host.py uses it).
        self.accessed: set[str] | None = None

    def path(self, rel: str) -> str:
        """The absolute path of ``rel`` (e.g. ``"proc/meminfo"``) under the host root."""
        if self.accessed is not None:
            self.accessed.add(rel.lstrip("/"))
        return os.path.join(self.root, rel.lstrip("/"))

    @property
    def is_live(self) -> bool:
        """True when reading the running system itself (netlink, statvfs and NVML apply)."""
        return os.path.realpath(self.root) == "/"

    def note(self, field: str) -> None:
        if field not in self.missing:
            self.missing.append(field)

    def read(self, rel: str, field: str | None = None) -> str | None:
        """The file's text, or None (and ``field`` noted as missing) when it cannot be read."""
        try:
            with open(self.path(rel), encoding="utf-8", errors="replace") as f:
                return f.read()
        except (OSError, ValueError):
            if field:
                self.note(field)
            return None

    def read_bytes(self, rel: str, field: str | None = None) -> bytes | None:
        try:
            with open(self.path(rel), "rb") as f:
                return f.read()
        except OSError:
            if field:
                self.note(field)
            return None

    def read_line(self, rel: str, field: str | None = None) -> str | None:
        """The file's text stripped; an empty file counts as missing."""
        text = self.read(rel, field)
        if text is None:
            return None
        text = text.strip().replace("\x00", "")
        if not text:
            if field:
                self.note(field)
            return None
        return text

    def read_int(self, rel: str, field: str | None = None, base: int = 10) -> int | None:
        text = self.read_line(rel, field)
        value = parse_int(text, base)
        if value is None and text is not None and field:
            self.note(field)
        return value

    def listdir(self, rel: str) -> list[str]:
        """Sorted entries of a directory; [] when it does not exist."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except OSError:
            return []

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.path(rel))

    def link_name(self, rel: str) -> str | None:
        """The last component of a symlink's target (e.g. a device's ``driver`` link), or None."""
        try:
            return os.path.basename(os.readlink(self.path(rel)))
        except OSError:
            return None

    def realpath(self, rel: str) -> str | None:
        """The resolved path relative to the host root (``sys/devices/...``), or None."""
        try:
            full = os.path.realpath(self.path(rel))
        except OSError:
            return None
        root = os.path.realpath(self.root)
        if full == root or not full.startswith(root.rstrip("/") + "/"):
            return None
        return full[len(root.rstrip("/")) + 1:]


def parse_int(text: str | None, base: int = 10) -> int | None:
    """``int(text)`` or None for anything that is not an integer."""
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None


def parse_cpu_list(text: str | None) -> list[int] | None:
    """Kernel cpu/node list format ("0-3,8,10-11") to a sorted list; None when garbled.

    See Documentation/admin-guide/cputopology.rst. An empty list text means no CPUs.
    """
    if text is None:
        return None
    text = text.strip()
    if not text:
        return []
    out: set[int] = set()
    try:
        for part in text.split(","):
            lo, sep, hi = part.partition("-")
            first = int(lo)
            last = int(hi) if sep else first
            if first < 0 or last < first or last - first > 65536:
                return None
            out.update(range(first, last + 1))
    except ValueError:
        return None
    return sorted(out)


def parse_key_values(text: str, sep: str = ":") -> dict[str, str]:
    """``key<sep> value`` lines to a dict (first occurrence wins); other lines are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found:
            out.setdefault(key.strip(), value.strip())
    return out
