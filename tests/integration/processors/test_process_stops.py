"""SIGTERM stops a worker that is busy with traffic, with exit code 0, within its shutdown budget.

Before processors/shutdown.py the worker waited forever for faust's consumer to drain
(acks come only at checkpoints, and the timer that makes them stops first): `hmtel up`
had to SIGKILL it, and workers of earlier tests kept running into later ones.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid

from hmconfig.topic_admin import ensure_topics
from processors import simulator

from processors_harness import ROOT, wait_ready, worker_env

SHUTDOWN_BUDGET_S = 10


async def test_sigterm_under_traffic_exits_zero_within_the_shutdown_budget(kafka_settings, tmp_path):
    await ensure_topics(kafka_settings)
    log = tmp_path / "worker.log"
    env = worker_env(kafka_settings, tmp_path / "state", HMTEL_PROCESSOR_APP_ID=f"hm-stop-{uuid.uuid4().hex[:8]}",
                     HMTEL_PROCESSOR_OFFSET_RESET="latest", HMTEL_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_BUDGET_S))
    worker = subprocess.Popen([sys.executable, "-m", "hmtel", "process"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    try:
        await wait_ready(worker, log, 1)
        traffic = asyncio.ensure_future(simulator.run(kafka_settings, hosts=50, rate=1, duration_s=30,
                                                      seed=uuid.uuid4().hex[:6], progress=lambda _: None))
        await asyncio.sleep(8)  # the worker is mid-stream: events taken, not yet checkpointed
        worker.send_signal(signal.SIGTERM)
        # Budget: the bounded drain plus faust's own stop of the producer and tables.
        code = await asyncio.to_thread(worker.wait, SHUTDOWN_BUDGET_S + 20)
        assert code == 0, log.read_text()[-3000:]
        await traffic
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
