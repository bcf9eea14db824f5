"""Shared by the processors' integration tests: subprocess env, readiness, topic reads, DSSE PAE."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aiokafka.admin import NewTopic

from hmconfig.kafka_clients import make_admin


ROOT = Path(__file__).resolve().parents[3]


async def new_topic(settings, prefix: str, partitions: int = 3) -> str:
    """A topic of its own for one test, ``<prefix>.<random>``, created on the session's broker."""
    topic = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return topic


def worker_env(settings, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_")}
    env.update({"HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap, "HMTEL_STATE_DIR": str(state_dir),
                "HMTEL_LOG_LEVEL": "WARNING", **extra})
    return env


def start_process_worker(env: dict[str, str], log: Path, name: str = "0") -> subprocess.Popen:
    """`hmtel process --worker-name name` with ``env`` (worker_env), its stderr appended to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "hmtel", "process", "--worker-name", name], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


def stop_workers(workers: list[subprocess.Popen], timeout_s: float = 20) -> None:
    """SIGTERM every worker, then wait for each (SIGKILL what has not exited by the timeout)."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout_s)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


async def wait_ready(proc: subprocess.Popen, log: Path, marks: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while log.read_text(errors="replace").count("ready:") < marks:
        assert proc.poll() is None, f"processor exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"processor not ready after {timeout_s}s:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.2)


def partition_of(host, partitions: int = 6) -> int:
    """The input partition of a simulated host (the topics' default partitioner)."""
    from processors.app import partition_for

    return partition_for(host.host_id.encode(), partitions)


def host_beside(host, seed: str):
    """Another simulated host (same seed) whose records go to ``host``'s partition."""
    from processors import simulator

    return next(h for h in (simulator.SimHost(i, seed=seed) for i in range(1, 500))
                if partition_of(h) == partition_of(host))


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
