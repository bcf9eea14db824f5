"""How late do the processors' aggregates get when the broker is SIGKILLed and restarted?

    HMTEL_STATE_DIR=/tmp/hm-x HMTEL_BROKER_PORT=49092 HMTEL_BROKER_CONTROLLER_PORT=49093 \\
      .venv/bin/python bench/processor_recovery.py [--hosts 100] [--kill-at 30] [--seconds 100]

Runs the local broker of those settings (started if needed; HMTEL_KAFKA_BOOTSTRAP must be
unset, since the script SIGKILLs and restarts it), one `hmtel process` worker with 10 s proof
windows and `hmtel simulate` at 1 Hz. --kill-at seconds into the load the broker is SIGKILLed
and started again at once. Prints, per 10 s window end, how long after it the aggregates were
written (Kafka timestamp - window end): the stall the outage causes, and when it is over.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.localbroker import LocalBroker  # noqa: E402
from hmconfig.kafka_clients import read_topic  # noqa: E402
from hmconfig.settings import load_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--kill-at", type=float, default=30.0, help="seconds into the load")
    ap.add_argument("--seconds", type=float, default=100.0, help="length of the simulated load")
    args = ap.parse_args()
    settings = load_settings()
    broker = LocalBroker(settings)
    broker.start()
    work = Path(tempfile.mkdtemp(prefix="hm-recovery-"))
    env = {**os.environ, "HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap,
           "HMTEL_PROCESSOR_APP_ID": f"hm-recovery-{time.time_ns()}", "HMTEL_PROOF_WINDOW_S": "10",
           "HMTEL_PROOF_GRACE_S": "5", "HMTEL_AGG_GRACE_S": "5", "HMTEL_PROCESSOR_OFFSET_RESET": "latest",
           "HMTEL_STATE_DIR": str(work / "processor")}
    log = work / "process.log"
    proc = subprocess.Popen([sys.executable, "-m", "hmtel", "process"], cwd=ROOT, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        while b"ready:" not in log.read_bytes():
            if proc.poll() is not None:
                raise SystemExit(f"processor exited:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        sim = subprocess.Popen([sys.executable, "-m", "hmtel", "simulate", "--hosts", str(args.hosts), "--rate", "1",
                                "--duration", str(args.seconds)], cwd=ROOT,
                               env={**env, "HMTEL_STATE_DIR": str(work / "simulate")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        time.sleep(args.kill_at)
        broker.kill()
        t_kill = time.time() - t0
        print(f"broker SIGKILLed at +{t_kill:.1f} s", flush=True)
        broker.start()
        t_up = time.time() - t0
        print(f"broker ready again at +{t_up:.1f} s", flush=True)
        sim.wait(args.seconds + 120)
        time.sleep(20)  # the last windows close (grace 5 s)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    delays: dict[float, list[float]] = {}
    for msg in asyncio.run(read_topic(settings, "hm.usage.agg.10s.v1", idle_s=3.0)):
        agg = orjson.loads(msg.value)
        end = (agg["window"]["start_us"] / 1e6 + agg["window"]["length_s"]) - t0
        if end >= 0:
            delays.setdefault(end, []).append(msg.timestamp / 1000 - t0 - end)
    print(f"\n{args.hosts} hosts at 1 Hz; broker down from +{t_kill:.1f} to +{t_up:.1f} s\n")
    print(f"  {'window end':>10}  {'aggregates':>10}  {'written after the end (s)':>26}")
    for end in sorted(delays):
        d = delays[end]
        mark = "  <- overlaps the outage" if end - 10 < t_up and end > t_kill else ""
        print(f"  {f'+{end:.1f} s':>10}  {len(d):>10}  {f'{min(d):.1f} .. {max(d):.1f}':>26}{mark}")


if __name__ == "__main__":
    main()
