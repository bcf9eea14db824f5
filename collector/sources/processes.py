"""Process and thread counts, cheaply.

* threads: the "n/m" field of /proc/loadavg, m = nr_threads, every task in the
  system (proc.rst "1.7 ... /proc/loadavg": "number of kernel scheduling entities").
* running, blocked: procs_running and procs_blocked of /proc/stat (proc.rst 1.7).
* processes: the number of numeric entries of /proc (one getdents pass; no
  /proc/<pid> file is opened). The kernel exports no process count elsewhere:
  /proc/stat "processes" counts forks since boot, not live processes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.load import parse_loadavg
from collector.sources.procfs import ProcFile


def parse_procs(stat_text: str) -> dict[str, int | None]:
    """procs_running and procs_blocked from /proc/stat text (the rest is skipped without splitting)."""
    out: dict[str, int | None] = {"procs_running": None, "procs_blocked": None}
    stat_text = "\n" + stat_text
    for key in out:
        start = stat_text.find("\n" + key + " ")
        if start < 0:
            continue
        line = stat_text[start + len(key) + 2:].split("\n", 1)[0].strip()
        out[key] = int(line) if line.isdigit() else None
    return out


def count_pids(proc: Path) -> int:
    # listdir beats scandir here: no DirEntry objects (bench/usage_sampling.py).
    return sum(map(str.isdigit, os.listdir(proc)))


@register_polling("processes")
class ProcessesSource:
    name = "processes"
    origin = "procfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        self._proc = Path(settings.host_root) / "proc"
        self._stat = ProcFile(self._proc / "stat")
        self._loadavg = ProcFile(self._proc / "loadavg")

    async def collect(self) -> dict[str, Any]:
        section: dict[str, Any] = {"processes": None, "threads": None, "running": None, "blocked": None}
        try:
            section["processes"] = count_pids(self._proc)
        except OSError:
            pass
        try:
            section["threads"] = parse_loadavg(self._loadavg.read())["entities"]
        except OSError:
            pass
        try:
            procs = parse_procs(self._stat.read())
            section["running"], section["blocked"] = procs["procs_running"], procs["procs_blocked"]
        except OSError:
            pass
        if all(v is None for v in section.values()):
            raise SourceError(f"no process counts readable under {self._proc}")
        self.missing = [f"processes.{k}" for k, v in section.items() if v is None]
        return section

    def close(self) -> None:
        self._stat.close()
        self._loadavg.close()
