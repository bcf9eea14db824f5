"""Memory use from /proc/meminfo (Documentation/filesystems/proc.rst, "meminfo").

used_bytes = MemTotal - MemAvailable, as procps-ng `free` reports it since 4.0.
MemAvailable exists since Linux 3.14 (commit 34e431b0ae39); without it,
available_bytes and used_bytes are null and "memory.available_bytes" is missing.
cached_bytes = Cached + SReclaimable, what `free` shows as cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.procfs import ProcFile


def parse_meminfo(text: str) -> dict[str, int]:
    """``{"MemTotal": bytes, ...}``: "kB" values times 1024; unitless ones (HugePages_*) as counts."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


def _diff(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def memory_section(info: dict[str, int]) -> tuple[dict[str, Any], list[str]]:
    """The ``memory`` section and the names of fields that could not be read."""
    total = info.get("MemTotal")
    if total is None:
        raise SourceError("/proc/meminfo has no MemTotal")
    available = info.get("MemAvailable")
    cached = info.get("Cached")
    if cached is not None:
        cached += info.get("SReclaimable", 0)
    section = {
        "total_bytes": total,
        "used_bytes": _diff(total, available),
        "available_bytes": available,
        "free_bytes": info.get("MemFree"),
        "cached_bytes": cached,
        "buffers_bytes": info.get("Buffers"),
        "swap_total_bytes": info.get("SwapTotal"),
        "swap_used_bytes": _diff(info.get("SwapTotal"), info.get("SwapFree")),
    }
    missing = [f"memory.{k}" for k, v in section.items() if v is None]
    return section, missing


@register_polling("memory")
class MemorySource:
    name = "memory"
    origin = "procfs"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        self._file = ProcFile(Path(settings.host_root) / "proc/meminfo")

    async def collect(self) -> dict[str, Any]:
        try:
            text = self._file.read()
        except OSError as err:
            raise SourceError(f"cannot read {self._file.path}: {err.strerror}") from err
        section, self.missing = memory_section(parse_meminfo(text))
        return section

    def close(self) -> None:
        self._file.close()
