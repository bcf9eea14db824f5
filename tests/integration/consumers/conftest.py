"""A running pipeline for the consumer tests: a real `hmtel process` (its own key, app id and
short windows) fed by `hmtel simulate` (two signed hosts with eBPF snapshots) on the
session's real broker. Other tests may share the broker and its topics (and another processor may
be running, issuing proofs for the same hosts under its own key), so the tests look only at
this run's hosts (a fresh simulator seed) and this run's processor key.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from hmconfig.kafka_clients import read_topic
from hmconfig.topic_admin import ensure_topics
from schemas.keys import SigningKey

ROOT = Path(__file__).resolve().parents[3]
HOSTS = 2
SIM_S = 24
PROOFS_PER_HOST = 3


@dataclass
class Run:
    bootstrap: str
    key: SigningKey
    hosts: list[str]
    proofs: dict[str, list[bytes]]  # host_id -> Kafka values (DSSE envelopes) by this run's key, in topic order
    base: Path
    env: dict[str, str]
    processor: subprocess.Popen


def component_env(settings, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_")}
    env.update({"HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap, "HMTEL_STATE_DIR": str(state_dir),
                "HMTEL_LOG_LEVEL": "WARNING", "HMTEL_CONFIG": str(state_dir.parent / "empty.toml"), **extra})
    return env


async def read_proofs(settings, hosts: set[str], key_id: str, idle_s: float = 2.0) -> dict[str, list[bytes]]:
    """This run's proofs: its hosts, signed (by key id; the tests verify) by its processor."""
    out: dict[str, list[bytes]] = defaultdict(list)
    for m in await read_topic(settings, "hm.proofs.v1", idle_s):
        if m.key and m.key.decode() in hosts and orjson.loads(m.value)["signatures"][0]["keyid"] == key_id:
            out[m.key.decode()].append(m.value)
    return out


@pytest.fixture(scope="package")
def consumer_run(kafka_settings, tmp_path_factory):
    from processors.simulator import SimHost

    asyncio.run(ensure_topics(kafka_settings))
    base = tmp_path_factory.mktemp("consumers-it")
    (base / "empty.toml").write_text("# isolates the run from the user's hmtel.toml\n")
    pstate = base / "processor"
    key = SigningKey.load_or_create(pstate, "processor.key")
    env = component_env(kafka_settings, pstate, HMTEL_PROCESSOR_APP_ID=f"hm-consumers-it-{uuid.uuid4().hex[:8]}",
                        HMTEL_PROOF_WINDOW_S="5", HMTEL_PROOF_GRACE_S="5", HMTEL_AGG_WINDOW_10S_S="2",
                        HMTEL_AGG_WINDOW_1M_S="6", HMTEL_AGG_GRACE_S="5", HMTEL_PROCESSOR_TICK_S="0.5",
                        HMTEL_UNKNOWN_HOST_GRACE_S="3", HMTEL_PROCESSOR_OFFSET_RESET="latest")
    log = base / "process.log"
    proc = subprocess.Popen([sys.executable, "-m", "hmtel", "process"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    try:
        deadline = time.monotonic() + 90
        while "ready:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"hmtel process exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"hmtel process not ready in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        seed = f"consumers-{uuid.uuid4().hex[:8]}"
        hosts = [SimHost(i, seed=seed).host_id for i in range(HOSTS)]
        sim = subprocess.run([sys.executable, "-m", "hmtel", "simulate", "-n", str(HOSTS), "-r", "2", "-d", str(SIM_S),
                              "--ebpf", "--ebpf-interval", "1", "--seed", seed], cwd=ROOT,
                             env=component_env(kafka_settings, base / "sim"), capture_output=True, text=True,
                             timeout=SIM_S + 60)
        assert sim.returncode == 0, sim.stderr[-2000:]
        deadline = time.monotonic() + 60
        while True:  # the last windows close a grace period after the simulator stops
            proofs = asyncio.run(read_proofs(kafka_settings, set(hosts), key.key_id))
            if all(len(proofs.get(h, [])) >= PROOFS_PER_HOST for h in hosts) or time.monotonic() > deadline:
                break
            time.sleep(2)
        counts = {h: len(proofs.get(h, [])) for h in hosts}
        assert all(n >= PROOFS_PER_HOST for n in counts.values()), \
            f"too few proofs {counts}; processor log:\n{log.read_text()[-3000:]}"
    finally:
        # Stopped before the tests, not at session end: a processor left running consumes every
        # later test's hosts from the shared topics and emits proofs and aggregates for them.
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    yield Run(kafka_settings.bootstrap, key, hosts, dict(proofs), base,
              component_env(kafka_settings, base / "consumer"), proc)

