"""CPU cost per reading: our procfs parsers (held fd vs open per call), netlink, and psutil.

    .venv/bin/python bench/usage_sampling.py [--iterations 2000]

Prints one row per metric and path: CPU µs per call (process time, so other
load on the machine inflates it little, but a 2-core box shared with other
jobs is still noisy: rerun and compare). Then the CPU ms of one full
UsageSampler.sample() with the sources as configured.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from collector.sources.cpu import parse_stat
from collector.sources.diskio import parse_diskstats
from collector.sources.load import parse_loadavg, parse_psi
from collector.sources.memory import parse_meminfo
from collector.sources.network import RtnetlinkStats, parse_net_dev, stats_from_links
from collector.sources.processes import count_pids, parse_procs
from collector.sources.procfs import ProcFile
from collector.usage import UsageSampler
from hmconfig.settings import load_settings


def cpu_us(fn: Callable[[], Any], n: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


async def acpu_us(fn: Callable[[], Any], n: int) -> float:
    await fn()
    start = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - start) / n * 1e6


def opened(path: str, parse: Callable[[str], Any]) -> Callable[[], Any]:
    def read() -> Any:
        with open(path) as f:
            return parse(f.read())
    return read


def held(path: str, parse: Callable[[str], Any]) -> Callable[[], Any]:
    file = ProcFile(path)
    return lambda: parse(file.read())


def psi_all() -> list[Any]:
    return [parse_psi(Path(f"/proc/pressure/{r}").read_text()) for r in ("cpu", "memory", "io")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", "-n", type=int, default=2000)
    n = ap.parse_args().iterations
    rows: list[tuple[str, str, float]] = []

    def add(metric: str, path: str, fn: Callable[[], Any], iters: int = n) -> None:
        rows.append((metric, path, cpu_us(fn, iters)))

    for metric, path, parse, ps in (
        ("cpu", "/proc/stat", parse_stat, lambda: (psutil.cpu_times(), psutil.cpu_times(percpu=True))),
        ("memory", "/proc/meminfo", parse_meminfo, psutil.virtual_memory),
        ("disk", "/proc/diskstats", parse_diskstats, lambda: psutil.disk_io_counters(perdisk=True)),
        ("load", "/proc/loadavg", parse_loadavg, psutil.getloadavg),
        ("network", "/proc/net/dev", parse_net_dev, lambda: psutil.net_io_counters(pernic=True)),
    ):
        add(metric, "procfs open()+read per call", opened(path, parse))
        add(metric, "procfs held fd, lseek+read", held(path, parse))
        add(metric, "psutil", ps)
    if os.path.exists("/proc/pressure/cpu"):
        add("psi (3 files)", "procfs open()+read per call", psi_all)
        files = [ProcFile(f"/proc/pressure/{r}") for r in ("cpu", "memory", "io")]
        add("psi (3 files)", "procfs held fd, lseek+read", lambda: [parse_psi(f.read()) for f in files])
        rows.append(("psi (3 files)", "psutil", float("nan")))  # psutil has no PSI
    stat = ProcFile("/proc/stat")
    add("processes", "getdents /proc + /proc/stat procs_*", lambda: (count_pids(Path("/proc")), parse_procs(stat.read())))
    add("processes", "psutil.pids() + /proc/stat", lambda: (len(psutil.pids()), parse_procs(stat.read())))
    add("filesystem", "statvfs per mount (/)", lambda: os.statvfs("/"))
    add("filesystem", "psutil.disk_partitions + disk_usage", lambda: [psutil.disk_usage(p.mountpoint) for p in psutil.disk_partitions()], max(50, n // 20))

    rt = RtnetlinkStats()
    add("network", "netlink RTM_GETSTATS (raw socket, struct)", rt.read)
    rt.close()

    async def netlink_rows() -> None:
        from pyroute2 import AsyncIPRoute

        ipr = AsyncIPRoute()

        async def dump() -> Any:
            return stats_from_links([m async for m in await ipr.get_links()])

        rows.append(("network", "netlink (pyroute2 AsyncIPRoute)", await acpu_us(dump, max(50, n // 10))))
        ipr.close()

    asyncio.run(netlink_rows())

    print(f"{'metric':<15} {'path':<42} {'CPU µs/call':>12}")
    for metric, path, us in rows:
        print(f"{metric:<15} {path:<42} {us:>12.1f}")

    async def full_sample() -> None:
        settings = load_settings()
        iters = max(50, n // 10)
        async with UsageSampler(settings) as sampler:
            await sampler.sample()
            t0 = time.process_time()
            for _ in range(iters):
                await sampler.sample()
            per = (time.process_time() - t0) / iters * 1e3
            print(f"\n{'source (as configured)':<24} {'origin':<8} {'CPU µs/collect':>14}")
            for source in sampler.sources:
                us = await acpu_us(source.collect, iters)
                print(f"{source.name:<24} {source.origin:<8} {us:>14.1f}")
        fs_note = "filesystem is read once per filesystem_interval_s, 30 s, so not in this figure"
        print(f"\nfull UsageSampler.sample(): {per:.3f} CPU ms per sample = {per / 10:.3f} % of one core at 1 sample/s"
              f" ({len(sampler.sources)} sources; {fs_note})")

    asyncio.run(full_sample())

if __name__ == "__main__":
    main()
