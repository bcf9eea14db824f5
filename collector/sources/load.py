"""Load average (/proc/loadavg) and pressure stall information (/proc/pressure/*).

PSI (Documentation/accounting/psi.rst) exists since Linux 4.20 with CONFIG_PSI=y;
it can be compiled out, or disabled with the ``psi=0`` boot option, in which case
the files are absent or reading them fails with EOPNOTSUPP. Then ``psi`` (or one
resource of it) is null and named in ``missing`` ("load.psi" / "load.psi.memory").
The "full" line of /proc/pressure/cpu exists since Linux 5.13 and always reads 0
at the system level; absent "full" lines leave full_* out.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.procfs import ProcFile

PSI_RESOURCES = ("cpu", "memory", "io")


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def parse_loadavg(text: str) -> dict[str, Any]:
    """``"0.18 0.13 0.09 1/301 8197"`` → load1/5/15, runnable (1), entities (301, all threads), last_pid.
    Fields that do not parse are None (proc.rst, "1.7 ... /proc/loadavg")."""
    parts = text.split()
    out: dict[str, Any] = {"load1": None, "load5": None, "load15": None, "runnable": None, "entities": None,
                           "last_pid": None}
    for key, value in zip(("load1", "load5", "load15"), parts[:3]):
        out[key] = _float(value)
    if len(parts) > 3:
        runnable, sep, entities = parts[3].partition("/")
        if sep and runnable.isdigit() and entities.isdigit():
            out["runnable"], out["entities"] = int(runnable), int(entities)
    if len(parts) > 4 and parts[4].isdigit():
        out["last_pid"] = int(parts[4])
    return out


def parse_psi(text: str) -> dict[str, Any] | None:
    """``"some avg10=1.83 avg60=2.62 avg300=1.51 total=19747286"`` (+ a "full" line) →
    ``{some_avg10, some_avg60, some_avg300, some_total_us, full_...}``; None without a "some" line."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        kind = parts[0]
        fields = dict(p.partition("=")[::2] for p in parts[1:])
        values: dict[str, Any] = {}
        for avg in ("avg10", "avg60", "avg300"):
            values[f"{kind}_{avg}"] = _float(fields.get(avg, ""))
        total = fields.get("total", "")
        values[f"{kind}_total_us"] = int(total) if total.isdigit() else None
        if any(v is None for v in values.values()):
            continue
        out.update(values)
    return out if "some_avg10" in out else None


@register_polling("load")
class LoadSource:
    name = "load"
    origin = "procfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        root = Path(settings.host_root)
        # getloadavg(3) (what psutil uses) costs ~1 µs against ~5 µs for reading the file; the load
        # average is system-wide, so it holds whenever the host's /proc is ours.
        self._getloadavg = root == Path("/")
        self._loadavg = ProcFile(root / "proc/loadavg")
        self._psi = {r: ProcFile(root / "proc/pressure" / r) for r in PSI_RESOURCES}

    def _read_loadavg(self) -> dict[str, Any]:
        if self._getloadavg:
            load1, load5, load15 = os.getloadavg()
            return {"load1": load1, "load5": load5, "load15": load15}
        try:
            text = self._loadavg.read()
        except OSError as err:
            raise SourceError(f"cannot read {self._loadavg.path}: {err.strerror}") from err
        avg = parse_loadavg(text)
        if avg["load1"] is None:
            raise SourceError(f"{self._loadavg.path} is not parsable: {text[:40]!r}")
        return avg

    async def collect(self) -> dict[str, Any]:
        avg = self._read_loadavg()
        missing = [f"load.{k}" for k in ("load5", "load15") if avg[k] is None]
        psi: dict[str, Any] = {}
        for resource, file in self._psi.items():
            try:
                psi[resource] = parse_psi(file.read())
            except OSError:
                psi[resource] = None
            if psi[resource] is None:
                missing.append(f"load.psi.{resource}")
        if all(v is None for v in psi.values()):
            missing = [m for m in missing if not m.startswith("load.psi.")] + ["load.psi"]
        self.missing = missing
        return {
            "load1": avg["load1"],
            "load5": avg["load5"],
            "load15": avg["load15"],
            "psi": None if "load.psi" in missing else psi,
        }

    def close(self) -> None:
        self._loadavg.close()
        for file in self._psi.values():
            file.close()
