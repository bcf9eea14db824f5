"""CPU times per core and in total from /proc/stat, and utilisation from their deltas.

/proc/stat's cpu lines are cumulative USER_HZ ticks (Documentation/filesystems/proc.rst,
"1.7 Miscellaneous kernel statistics in /proc/stat"): user nice system idle iowait
irq softirq steal guest guest_nice. Older kernels print fewer columns (steal since
2.6.11, guest since 2.6.24, guest_nice since 2.6.33); absent columns are None.

busy = user + nice + system + irq + softirq. guest and guest_nice are already
counted inside user and nice (kernel/sched/cputime.c account_guest_time), so
adding them would count twice. steal is time the hypervisor gave to someone
else: not work done here, so it is not busy, but it is part of the interval's
total, so utilisation = Δbusy / Δ(user+nice+system+idle+iowait+irq+softirq+steal).

Quirk: per-CPU idle and iowait can go backwards (proc.rst: "iowait ... in certain
conditions ... can decrease"; NO_HZ idle accounting), so a negative per-field
delta counts as 0 instead of voiding the interval.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.procfs import ProcFile

FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
BUSY = ("user", "nice", "system", "irq", "softirq")
TOTAL = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
SECONDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

Times = dict[str, int | None]


def parse_stat(text: str) -> dict[str, Any]:
    """Parse /proc/stat into ``{"total": Times|None, "per_core": {cpu: Times}, "procs_running",
    "procs_blocked", "processes", "ctxt", "btime"}``; unparsable lines are skipped."""
    total: Times | None = None
    per_core: dict[int, Times] = {}
    scalars: dict[str, int | None] = {k: None for k in ("procs_running", "procs_blocked", "processes", "ctxt", "btime")}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu"):
            times = _times(parts[1:])
            if times is None:
                continue
            if key == "cpu":
                total = times
            elif key[3:].isdigit():
                per_core[int(key[3:])] = times
        elif key in scalars and len(parts) == 2 and parts[1].isdigit():
            scalars[key] = int(parts[1])
    return {"total": total, "per_core": per_core, **scalars}


def _times(values: list[str]) -> Times | None:
    # user nice system idle are present on every kernel; anything shorter is garbled.
    if len(values) < 4 or not all(v.isdigit() for v in values[: len(FIELDS)]):
        return None
    return {f: int(values[i]) if i < len(values) else None for i, f in enumerate(FIELDS)}


def _sum(times: Times, fields: tuple[str, ...]) -> int:
    return sum(times[f] or 0 for f in fields)


def _interval(prev: Times | None, cur: Times) -> tuple[float | None, float | None]:
    """(Δbusy ticks, Δtotal ticks) with negative per-field deltas clamped to 0."""
    if prev is None:
        return None, None
    d = {f: max(0, (cur[f] or 0) - (prev[f] or 0)) for f in TOTAL}
    return float(sum(d[f] for f in BUSY)), float(sum(d[f] for f in TOTAL))


def _utilisation(busy: float | None, total: float | None) -> float | None:
    if busy is None or not total:
        return None
    return min(1.0, busy / total)


def cpu_section(prev: dict[str, Any] | None, cur: dict[str, Any], hz: int) -> dict[str, Any]:
    """The hm.usage.v1 ``cpu`` section from two parse_stat() results (``prev`` None: first reading)."""
    total = cur["total"]
    if total is None:
        raise SourceError("/proc/stat has no parsable aggregate cpu line")
    prev_total = prev["total"] if prev else None
    busy_ticks, total_ticks = _interval(prev_total, total)
    section: dict[str, Any] = {"cores": len(cur["per_core"]) or None}
    for f in SECONDS:
        section[f"{f}_s"] = None if total[f] is None else total[f] / hz
    section["busy_s"] = _sum(total, BUSY) / hz
    section["busy_core_s"] = None if busy_ticks is None else busy_ticks / hz
    section["utilisation"] = _utilisation(busy_ticks, total_ticks)
    prev_cores = prev["per_core"] if prev else {}
    per_core = []
    for cpu, times in sorted(cur["per_core"].items()):
        busy, tot = _interval(prev_cores.get(cpu), times)
        per_core.append({"cpu": cpu, "utilisation": _utilisation(busy, tot), "busy_s": _sum(times, BUSY) / hz})
    section["per_core"] = per_core
    return section


@register_polling("cpu")
class CpuSource:
    """Reads ``host_root/proc/stat``; the first reading primes (utilisation and busy_core_s null)."""

    name = "cpu"
    origin = "procfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        self._file = ProcFile(Path(settings.host_root) / "proc/stat")
        # USER_HZ is an ABI constant (100 on every Linux arch in use), so the local value holds for host_root too.
        self._hz = os.sysconf("SC_CLK_TCK")
        self._prev: dict[str, Any] | None = None

    async def collect(self) -> dict[str, Any]:
        try:
            text = self._file.read()
        except OSError as err:
            raise SourceError(f"cannot read {self._file.path}: {err.strerror}") from err
        cur = parse_stat(text)
        section = cpu_section(self._prev, cur, self._hz)
        self._prev = cur
        return section

    def close(self) -> None:
        self._file.close()
