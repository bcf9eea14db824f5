"""Inventory cost: wall time and peak RSS of the full inventory and of each section alone.

    .venv/bin/python bench/inventory.py [--root /] [--runs 20]

Each case runs in its own fresh interpreter, so peak RSS (ru_maxrss) is that case's
alone: the interpreter plus the imports the case needs plus its work. Wall time is
the median (and max) of --runs warm runs after one warm-up run (and the median
CPU time of the process, which other jobs on the machine disturb less), which is printed
apart as "first" because it pays for lazy imports (pyroute2 for netlink). NVML is
excluded (nvml=None), as the target says. Target: full inventory <= 50 ms median.
The machine has 2 cores shared with other jobs: rerun when the figures look noisy.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from collector.inventory import build_inventory, cpu, memory, gpu, storage, network, system
from collector.inventory.hostfs import HostFS
import os
import_s = time.perf_counter() - t0
host, case, runs = {host!r}, {case!r}, {runs}
def once():
    if case == "full":
        return build_inventory(host, nvml=None)
    fs = HostFS(host)
    return {{"cpu": lambda: cpu.collect(fs), "memory": lambda: memory.collect(fs),
             "gpus": lambda: gpu.collect(fs, None), "storage": lambda: storage.collect(fs, os.statvfs),
             "network": lambda: network.collect(fs), "system": lambda: system.collect(fs)}}[case]()
t = time.perf_counter(); once(); first = time.perf_counter() - t
times, cpu_times = [], []
for _ in range(runs):
    t, c = time.perf_counter(), time.process_time(); once()
    times.append(time.perf_counter() - t); cpu_times.append(time.process_time() - c)
print(json.dumps({{"import_s": import_s, "first_s": first, "median_s": statistics.median(times),
                  "cpu_s": statistics.median(cpu_times),
                  "max_s": max(times), "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""

BASELINE = "import resource, json; print(json.dumps({'peak_rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))"


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/", help="host root (default /, the live system)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    bare = run(BASELINE)["peak_rss_kb"] / 1024
    print(f"host root {args.root}; {args.runs} warm runs per case; bare interpreter peak RSS {bare:.1f} MB")
    print(f"{'case':<9} {'median ms':>9} {'max ms':>8} {'cpu ms':>7} {'first ms':>9} {'import ms':>10} {'peak RSS MB':>12}")
    for case in ("full", "cpu", "memory", "gpus", "storage", "network", "system"):
        r = run(CASE.format(root=str(ROOT), host=args.root, case=case, runs=args.runs))
        print(f"{case:<9} {r['median_s'] * 1e3:>9.2f} {r['max_s'] * 1e3:>8.2f} {r['cpu_s'] * 1e3:>7.2f} {r['first_s'] * 1e3:>9.2f} "
              f"{r['import_s'] * 1e3:>10.1f} {r['peak_rss_kb'] / 1024:>12.1f}")


if __name__ == "__main__":
    main()
