"""Time `hmtel broker start` to ready (answers a metadata request) with cached jars.

    .venv/bin/python bench/broker_start.py [--runs 5]

Uses the settings in force (HMTEL_STATE_DIR, HMTEL_BROKER_PORT, ...), so point it
at a private broker when others share the machine:

    HMTEL_STATE_DIR=/tmp/hm-bench HMTEL_BROKER_PORT=19192 HMTEL_BROKER_CONTROLLER_PORT=19193 \\
        .venv/bin/python bench/broker_start.py

Each run stops the broker (`hmtel broker stop`, not timed), then times the whole
`hmtel broker start` command: JVM start, KRaft recovery of the existing data
directory, and the readiness probe. An untimed first start fetches the jars
and formats storage if needed. The broker is left as it was found. Wall clock
on a shared 2-core machine: rerun and compare.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HMTEL = Path(sys.executable).with_name("hmtel")


def hmtel(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(HMTEL), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.exit(f"hmtel {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed starts (default 5)")
    args = parser.parse_args()

    was_up = hmtel("broker", "status", check=False).returncode == 0
    if not was_up:
        hmtel("broker", "start")  # untimed: jars and storage format, if needed

    times = []
    for _ in range(args.runs):
        hmtel("broker", "stop")
        t0 = time.perf_counter()
        out = hmtel("broker", "start")
        times.append(time.perf_counter() - t0)
        bootstrap = out.stdout.strip()

    if not was_up:
        hmtel("broker", "stop")

    print(f"`hmtel broker start` to ready, cached jars, {bootstrap}")
    print(f"{'runs':>5} {'median s':>9} {'min s':>7} {'max s':>7}")
    print(f"{len(times):>5} {statistics.median(times):>9.2f} {min(times):>7.2f} {max(times):>7.2f}")
    print("each run, s: " + " ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
