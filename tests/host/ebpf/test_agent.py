"""The agent with and without eBPF privileges, against the session's real broker.

* as root: `hmtel collect` loads a program and publishes signed hm.ebpf.v1 records;
* unprivileged: `hmtel ebpf --check` and the stream source degrade with one line,
  and `hmtel collect` still publishes usage.

"Unprivileged" is uid 65534 (nobody) when nobody can run this interpreter; where
the interpreter lives under a root-only directory (/root/.pyenv), it is uid 0
with every capability dropped and SECBIT_NOROOT set, which is what eBPF cares about.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_consumer
from hmconfig.settings import Settings
from hmconfig.topic_admin import ensure_topics
from schemas import validate
from schemas.dsse import verify_record
from schemas.keys import SigningKey

ROOT = Path(__file__).resolve().parents[3]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NO_CAPS = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
           "--securebits=+noroot,+noroot_locked"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}", PYTHONUNBUFFERED="1",
               HOME="/tmp", HMTEL_METRICS_LISTEN="", **extra)
    return env


@pytest.fixture(scope="module")
def unprivileged() -> tuple[list[str], int]:
    """(command prefix, uid) that runs this interpreter without eBPF privileges."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to drop privileges")
    probe = [sys.executable, "-c", "import orjson, pydantic, click"]
    if subprocess.run(NOBODY + probe, env=_env(), cwd="/tmp", capture_output=True).returncode == 0:
        return NOBODY, 65534
    return NO_CAPS, 0


def test_check_as_unprivileged(unprivileged):
    prefix, uid = unprivileged
    out = subprocess.run(prefix + [sys.executable, "-m", "hmtel", "ebpf", "--check"], env=_env(), cwd="/tmp",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("eBPF disabled (privileges: uid ") and f"uid {uid} lacks CAP_BPF+CAP_PERFMON" in last
    assert "fix: run as root or grant CAP_BPF,CAP_PERFMON" in last and out.stderr == ""


SOURCE_RUN = """
import asyncio, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from hmconfig.settings import load_settings
from collector.sources.ebpf import EbpfSource
emitted = []
async def emit(schema, body):
    emitted.append(schema)
asyncio.run(EbpfSource(load_settings()).run(emit))
print("emitted", len(emitted))
"""


def test_source_degrades_as_unprivileged(unprivileged):
    prefix, _uid = unprivileged
    out = subprocess.run(prefix + [sys.executable, "-c", SOURCE_RUN], env=_env(), cwd="/tmp",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out
    assert out.stdout.strip() == "emitted 0"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING eBPF disabled ("), out.stderr


async def _records(settings: Settings, topic: str, host_id: str, want: int, timeout_s: float) -> list[tuple]:
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < want and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                found += [(m.value, dict(m.headers)) for m in msgs if m.key == host_id.encode()]
        return found
    finally:
        await consumer.stop()


def _run_agent(prefix: list[str], state_dir: Path, settings: Settings, seconds: float, **env: str) -> str:
    log = state_dir / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(prefix + [sys.executable, "-m", "hmtel", "collect"], cwd="/tmp", stdout=out,
                                stderr=subprocess.STDOUT,
                                env=_env(HMTEL_STATE_DIR=str(state_dir), HMTEL_KAFKA_BOOTSTRAP=settings.bootstrap,
                                         HMTEL_KAFKA_CONNECT_TIMEOUT_S="10", **env))
        try:
            time.sleep(seconds)
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return log.read_text(errors="replace")


@pytest.fixture(scope="module")
def broker(kafka_settings: Settings) -> Settings:
    asyncio.run(ensure_topics(kafka_settings))
    return kafka_settings


def test_collect_unprivileged_still_publishes_usage(unprivileged, broker):
    prefix, uid = unprivileged
    # pytest's tmp_path sits under a root-only directory; this one is the unprivileged user's own.
    state = Path(tempfile.mkdtemp(prefix="hm-ebpf-unpriv-"))
    os.chown(state, uid, uid)
    try:
        log = _run_agent(prefix, state, broker, 6.0, HMTEL_USAGE_INTERVAL_S="1")
        host_id = SigningKey.load(state / "host.key").host_id
    finally:
        shutil.rmtree(state, ignore_errors=True)
    degraded = [line for line in log.splitlines() if "eBPF disabled (" in line]
    assert len(degraded) == 1, log
    usage = asyncio.run(_records(broker, "hm.usage.v1", host_id, 2, 30))
    assert len(usage) >= 2, log
    record = orjson.loads(usage[0][0])
    assert record["schema"] == "hm.usage.v1" and "ebpf" not in record["sources"] and record["cpu"]


def test_collect_as_root_publishes_signed_ebpf(ebpf_host, broker, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    log = _run_agent([], state, broker, 7.0, HMTEL_EBPF_PROGRAMS='["syscalls"]', HMTEL_EBPF_INTERVAL_S="1")
    assert "eBPF disabled" not in log, log
    key = SigningKey.load(state / "host.key")
    records = asyncio.run(_records(broker, "hm.ebpf.v1", key.host_id, 2, 30))
    assert len(records) >= 2, log
    seqs = []
    for value, headers in records:
        record = orjson.loads(value)
        validate("hm.ebpf.v1", record)
        assert verify_record(key.public_key_raw, "hm.ebpf.v1", value, headers["hm-sig"])
        assert record["program"] == "syscalls" and record["maps"]["syscalls"]["values"]["total"] > 0
        seqs.append(record["seq"])
    assert seqs == list(range(len(seqs)))
