"""Helpers for the agent's integration tests: a real `python -m hmtel collect` process
with its own state dir (so its own host key and host_id), a consumer that collects
its records from the real broker, and a scrape of its metrics endpoint."""
from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from nacl.signing import VerifyKey

from hmconfig.kafka_clients import make_consumer
from hmconfig.settings import Settings
from hmconfig.topic_admin import ensure_topics
from schemas.keys import SigningKey

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pae(schema: str, value: bytes) -> bytes:
    """DSSE v1 PAE, written out here so the check does not reuse the code under test."""
    t = schema.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(value), value)


def verify_with_pynacl(public_raw: bytes, schema: str, value: bytes, headers: dict[str, bytes]) -> bool:
    from nacl.exceptions import BadSignatureError

    try:
        VerifyKey(public_raw).verify(pae(schema, value), base64.b64decode(headers["hm-sig"]))
        return True
    except (BadSignatureError, KeyError, ValueError):
        return False


@dataclass
class AgentProcess:
    state_dir: Path
    bootstrap: str
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def log_path(self) -> Path:
        return self.state_dir / "agent.log"

    def start(self, bootstrap: str | None = None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HMTEL_STATE_DIR": str(self.state_dir),
               "HMTEL_KAFKA_BOOTSTRAP": bootstrap or self.bootstrap,
               "HMTEL_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
               "HMTEL_KAFKA_CONNECT_TIMEOUT_S": "3", "HMTEL_LOG_LEVEL": "INFO",
               # eBPF has its own tests; compiling it in every agent start here would cost CI minutes.
               "HMTEL_EBPF_ENABLED": "false",
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.runs += 1
        log = self.log_path.open("ab")
        log.write(f"=== run {self.runs} bootstrap={env['HMTEL_KAFKA_BOOTSTRAP']} ===\n".encode())
        self.proc = subprocess.Popen([sys.executable, "-m", "hmtel", "collect"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def key(self) -> SigningKey:
        return SigningKey.load(self.state_dir / "host.key")

    def metrics(self) -> dict[str, float]:
        """name{labels} -> value, from the agent's Prometheus endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def wait_metric(self, name: str, predicate, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"agent exited:\n{self.log_text()[-3000:]}"
            try:
                value = self.metrics().get(name)
            except OSError:
                value = None
            if value is not None and predicate(value):
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"{name} = {value} did not reach the expected value in {timeout_s} s\n"
                             f"{self.log_text()[-3000:]}")

    def terminate(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Received:
    value: bytes
    headers: dict[str, bytes]
    record: dict
    offset: int


class TopicReader:
    """Collects one host's records from a topic, from the beginning, while tests run."""

    def __init__(self, settings: Settings, topic: str):
        self.settings = settings
        self.topic = topic
        self.records: list[Received] = []
        self._consumer = None

    async def __aenter__(self) -> TopicReader:
        self._consumer = make_consumer(self.settings, group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll_for(self, host_id: str, predicate, timeout_s: float) -> list[Received]:
        """Poll until ``predicate(records of host_id)`` holds; returns them."""
        deadline = time.monotonic() + timeout_s
        key = host_id.encode()
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=10_000)
            for msgs in batches.values():
                for m in msgs:
                    if m.key == key:
                        self.records.append(Received(m.value, dict(m.headers), orjson.loads(m.value), m.offset))
            mine = [r for r in self.records if r.record.get("host_id") == host_id]
            if predicate(mine):
                return mine
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: condition not met in {timeout_s} s; "
                                     f"have {len(mine)} record(s), seqs {_span([r.record['seq'] for r in mine])}")


def _span(seqs: list[int]) -> str:
    return f"{min(seqs)}..{max(seqs)}" if seqs else "none"


def dedupe_in_order(records: list[Received]) -> tuple[list[int], dict[int, bytes], list[int]]:
    """(first-occurrence seq order, seq -> value, seqs whose duplicates differ in content)."""
    order, values, conflicting = [], {}, []
    for r in records:
        seq = r.record["seq"]
        if seq in values:
            if values[seq] != r.value:
                conflicting.append(seq)
            continue
        values[seq] = r.value
        order.append(seq)
    return order, values, conflicting


@pytest.fixture(scope="session")
async def agent_kafka(kafka_settings: Settings) -> Settings:
    """The session broker with the v1 topics in place (the agent never creates topics)."""
    await ensure_topics(kafka_settings)
    return kafka_settings


@pytest.fixture
def agent_factory(tmp_path, agent_kafka):
    made: list[AgentProcess] = []

    def make(name: str = "agent", **extra_env: str) -> AgentProcess:
        agent = AgentProcess(tmp_path / name, agent_kafka.bootstrap, extra_env)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.cleanup()
