"""Usage sampling: every polling source's section in one hm.usage.v1 body.

    sampler = UsageSampler(settings)
    body = await sampler.sample()     # call once per usage_interval_s
    sampler.close()

The body has no common fields (schema, host_id, boot_id, seq, ts): the agent adds them.

Rates: each source keeps its previous counters and computes rates over the time
since its own previous reading; ``elapsed_s`` is the time since the sampler's
previous call. The **first call primes**: ``elapsed_s`` is 0 and every rate,
``cpu.utilisation`` and ``cpu.busy_core_s`` are null (unknown, not zero), while
cumulative counters are already valid. ``sample_once()`` primes, waits
``warmup_s`` and returns the second sample.

A source with a longer interval than the sampler's (filesystem, every
filesystem_interval_s) is read when due; the records in between carry its latest reading. A source that
fails leaves its section out and its name in ``missing``; ``errors`` counts failures per source.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from collector.sources import PollingSource, Section, load_polling_sources

if TYPE_CHECKING:
    from hmconfig.settings import Settings

__all__ = ["UsageSampler", "sample_once"]

log = logging.getLogger(__name__)



class UsageSampler:
    """Holds the polling sources and builds one usage body per ``sample()`` call."""

    def __init__(self, settings: Settings, sources: list[PollingSource] | None = None):
        self.settings = settings
        self.interval_s = settings.usage_interval_s
        self.sources = sources if sources is not None else load_polling_sources(settings)
        self.errors: Counter[str] = Counter()
        self.samples = 0
        self._last: dict[str, float] = {}
        self._cached: dict[str, Section] = {}
        self._cached_missing: dict[str, list[str]] = {}
        self._prev_t: float | None = None
        self._warned: set[str] = set()

    async def _read(self, source: PollingSource, now: float) -> tuple[Section | None, list[str]]:
        # Sources at the sampler's pace are read on every call (the caller sets the pace).
        # A slower one is due half a sample interval early, so jitter never delays it a whole interval.
        last = self._last.get(source.name)
        slow = source.interval_s > self.interval_s
        if slow and last is not None and now - last < source.interval_s - self.interval_s / 2 and source.name in self._cached:
            return self._cached[source.name], self._cached_missing.get(source.name, [])
        try:
            section = await source.collect()
        except Exception as err:  # noqa: BLE001 - one failing source never stops the others
            self.errors[source.name] += 1
            self._cached.pop(source.name, None)
            if source.name not in self._warned:  # say it once per source, not every second
                self._warned.add(source.name)
                log.warning("usage source %s failed: %s", source.name, err)
            return None, [source.name]
        self._last[source.name] = now
        self._cached[source.name] = section
        self._cached_missing[source.name] = list(source.missing)
        self._warned.discard(source.name)
        return section, list(source.missing)

    async def sample(self) -> dict[str, Any]:
        """One hm.usage.v1 body (without the common fields)."""
        now = time.monotonic()
        elapsed = 0.0 if self._prev_t is None else now - self._prev_t
        self._prev_t = now
        # One after another: the sources are quick synchronous reads, and gather()'s tasks cost more
        # CPU than they save (bench/usage_sampling.py); slow ones (statvfs, NVML) run in threads.
        results = [await self._read(s, now) for s in self.sources]
        body: dict[str, Any] = {"interval_s": self.interval_s, "elapsed_s": round(elapsed, 6), "sources": []}
        origins: list[str] = []
        missing: list[str] = []
        for source, (section, source_missing) in zip(self.sources, results):
            missing.extend(source_missing)
            if section is None:
                continue
            body[source.name] = section
            if source.origin not in origins:
                origins.append(source.origin)
        body["sources"] = origins
        body["missing"] = missing
        self.samples += 1
        return body

    def close(self) -> None:
        for source in self.sources:
            source.close()

    async def __aenter__(self) -> UsageSampler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def sample_once(settings: Settings, warmup_s: float = 0.5) -> dict[str, Any]:
    """One sample with valid rates: prime, wait ``warmup_s``, sample again (for `hmtel sample`)."""
    async with UsageSampler(settings) as sampler:
        await sampler.sample()
        await asyncio.sleep(warmup_s)
        return await sampler.sample()
