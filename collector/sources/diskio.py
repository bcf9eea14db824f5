"""Disk I/O per device from /proc/diskstats (Documentation/admin-guide/iostats.rst).

Columns after major, minor, name: reads, reads merged, sectors read, ms reading,
writes, writes merged, sectors written, ms writing, I/Os in progress, ms doing
I/O (io_time), weighted ms; discard columns since 4.18, flush since 5.5.
Sectors are always 512-byte units, whatever the device's sector size
(include/linux/blk_types.h SECTOR_SHIFT 9), so bytes = sectors × 512.

Which devices: a device is reported when it is a block device of its own
(``/sys/block/<name>`` exists: partitions live under their disk there, so they are
left out, as are loop, ram and zram, which carry no I/O of their own worth
counting). dm-* and md* are reported but are not ``physical``: their I/O is
also counted on the disks beneath them. Totals sum the ``physical`` devices
only: those with a ``/sys/block/<name>/device`` link (real or virtio hardware).
Without /sys under host_root (fixture trees), names decide: sdX/vdX/xvdX/hdX,
nvmeXnY and mmcblkN are physical whole disks.

Counters are unsigned long in the kernel (32-bit on 32-bit kernels, where they
can wrap); a counter that goes backwards gives a null rate for that interval.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.procfs import MonotonicTotal, ProcFile, rate

COLUMNS = (
    "reads", "reads_merged", "read_sectors", "read_ms",
    "writes", "writes_merged", "write_sectors", "write_ms",
    "in_flight", "io_time_ms", "weighted_io_ms",
    "discards", "discards_merged", "discard_sectors", "discard_ms",
    "flushes", "flush_ms",
)
SECTOR_BYTES = 512
_IGNORED = re.compile(r"^(loop|ram|zram)\d+$")
_PHYSICAL_BY_NAME = re.compile(r"^((s|v|xv|h)d[a-z]+|nvme\d+n\d+|mmcblk\d+)$")
_PARTITION_BY_NAME = re.compile(r"^((s|v|xv|h)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$")


def parse_diskstats(text: str) -> dict[str, dict[str, int | None]]:
    """``{name: {major, minor, reads, ..., flush_ms}}``; columns a kernel does not print are None,
    lines with fewer than the 11 original columns or non-numeric values are skipped."""
    out: dict[str, dict[str, int | None]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14 or not all(p.isdigit() for p in parts[:2]) or not all(p.isdigit() for p in parts[3:]):
            continue
        values = [int(p) for p in parts[3:]]
        row: dict[str, int | None] = {"major": int(parts[0]), "minor": int(parts[1])}
        for i, col in enumerate(COLUMNS):
            row[col] = values[i] if i < len(values) else None
        out[parts[2]] = row
    return out


def classify(name: str, sys_block: Path | None) -> str | None:
    """"physical", "virtual" (dm, md: stacked on other disks) or None (partition, loop, ram: not reported)."""
    if _IGNORED.match(name):
        return None
    if sys_block is not None:
        entry = sys_block / name.replace("/", "!")  # cciss!c0d0: '/' in names is '!' in sysfs
        if not entry.exists():
            return None
        return "physical" if (entry / "device").exists() else "virtual"
    if _PARTITION_BY_NAME.match(name):
        return None
    return "physical" if _PHYSICAL_BY_NAME.match(name) else "virtual"


def _bytes(sectors: int | None) -> int | None:
    return None if sectors is None else sectors * SECTOR_BYTES


def sum_rates(rows: list[dict[str, Any]], key: str) -> float | None:
    """Sum of per-row rates; None when any is unknown (first reading, a reset, a new device)."""
    total = 0.0
    for row in rows:
        value = row[key]
        if value is None:
            return None
        total += value
    return total


def disk_section(
    prev: dict[str, dict[str, int | None]] | None,
    cur: dict[str, dict[str, int | None]],
    kinds: dict[str, str | None],
    elapsed_s: float | None,
    totals: dict[str, MonotonicTotal] | None = None,
) -> dict[str, Any]:
    """The ``disk`` section from two parse_diskstats() results (``prev`` None: first reading);
    ``kinds`` maps name → classify(); ``totals`` keeps the host totals monotonic when disks go away."""
    devices: dict[str, Any] = {}
    for name, row in cur.items():
        kind = kinds.get(name)
        if kind is None:
            continue
        before = (prev or {}).get(name)
        dev: dict[str, Any] = {
            "read_bytes": _bytes(row["read_sectors"]),
            "write_bytes": _bytes(row["write_sectors"]),
            "reads": row["reads"],
            "writes": row["writes"],
            "io_time_ms": row["io_time_ms"],
        }
        for key, col in (("read_bytes", "read_sectors"), ("write_bytes", "write_sectors")):
            dev[f"{key}_per_s"] = rate(_bytes(before[col]) if before else None, dev[key], elapsed_s)
        dev["physical"] = kind == "physical"
        devices[name] = dev
    physical_by_name = {k: d for k, d in devices.items() if d["physical"]}
    physical = list(physical_by_name.values())
    sums = {key: (totals[key].update({k: d[key] for k, d in physical_by_name.items()}) if totals
                  else sum(d[key] or 0 for d in physical))
            for key in ("read_bytes", "write_bytes")}
    return {
        "read_bytes": sums["read_bytes"],
        "write_bytes": sums["write_bytes"],
        "read_bytes_per_s": sum_rates(physical, "read_bytes_per_s") if prev is not None else None,
        "write_bytes_per_s": sum_rates(physical, "write_bytes_per_s") if prev is not None else None,
        "devices": devices,
    }


@register_polling("disk")
class DiskSource:
    name = "disk"
    origin = "procfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        root = Path(settings.host_root)
        self._file = ProcFile(root / "proc/diskstats")
        self._sys_block: Path | None = root / "sys/block"
        if not os.path.isdir(self._sys_block):
            self._sys_block = None
        self._kinds: dict[str, str | None] = {}
        self._prev: dict[str, dict[str, int | None]] | None = None
        self._prev_t = 0.0
        self._totals = {"read_bytes": MonotonicTotal(), "write_bytes": MonotonicTotal()}

    async def collect(self) -> dict[str, Any]:
        try:
            text = self._file.read()
        except OSError as err:
            raise SourceError(f"cannot read {self._file.path}: {err.strerror}") from err
        now = time.monotonic()
        cur = parse_diskstats(text)
        if not cur and text.strip():
            raise SourceError(f"{self._file.path} is not parsable: {text[:40]!r}")
        # Classify each name once: hot-plugged disks get classified when first seen.
        for name in cur:
            if name not in self._kinds:
                self._kinds[name] = classify(name, self._sys_block)
        elapsed = now - self._prev_t if self._prev is not None else None
        section = disk_section(self._prev, cur, self._kinds, elapsed, self._totals)
        self._prev, self._prev_t = cur, now
        return section

    def close(self) -> None:
        self._file.close()
