"""Shared parts of the chaos scenarios: a private broker, processes, topic reads, invariants.

Each scenario prints ONE summary line (``chaos <name>: sent=.. acked=.. delivered=..
duplicated=.. lost=..``) and appends it to ``$HMTEL_CHAOS_SUMMARY`` when set, so a run
leaves a table for docs/RELIABILITY.md.
"""
from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from deploy.localbroker import LocalBroker
from hmconfig.kafka_clients import make_consumer, start_with_retry
from hmconfig.settings import Settings
from hmtel_testing.pipeline import free_ports
from schemas import dsse

ROOT = Path(__file__).resolve().parents[2]


def private_broker_settings(base: Settings, state: Path) -> Settings:
    """A broker of our own (it gets SIGKILLed), sharing the cached jars of the session's broker."""
    jars = base.state_dir / "kafka" / "libs"
    if jars.is_dir() and not (state / "kafka" / "libs").exists():
        (state / "kafka").mkdir(parents=True, exist_ok=True)
        (state / "kafka" / "libs").symlink_to(jars)
    port, controller = free_ports(2)
    return base.model_copy(update={"kafka_bootstrap": None, "state_dir": state, "broker_port": port,
                                   "broker_controller_port": controller, "broker_heap_mb": 384,
                                   "kafka_security_protocol": "PLAINTEXT"})


class Procs:
    """Child processes of one scenario; all stopped (TERM, then KILL) at the end."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self, settings: Settings, state: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update({"HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap, "HMTEL_STATE_DIR": str(state),
                    "HMTEL_LOG_LEVEL": "INFO", "HMTEL_EBPF_ENABLED": "false", "HMTEL_KAFKA_CONNECT_TIMEOUT_S": "120",
                    **extra})
        return env

    def spawn(self, name: str, args: list[str], env: dict[str, str], prefix: list[str] | None = None) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")
        p = subprocess.Popen([*(prefix or []), sys.executable, "-m", "hmtel", *args], cwd=ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, timeout_s: float = 30) -> int | None:
        p = self.procs.get(name)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        return p.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, 20)


async def read_all(settings: Settings, topic: str, key: bytes | None = None) -> list[Any]:
    """Every record of ``topic`` from the beginning to the current end (only ``key``'s partition when given)."""
    from aiokafka.partitioner import murmur2
    from aiokafka.structs import TopicPartition

    consumer = await start_with_retry(lambda: make_consumer(settings, group_id=None, max_partition_fetch_bytes=4 << 20),
                                      settings, timeout_s=60)
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if key is not None:  # the default partitioner's choice, as every hmtel producer uses it
            parts = [parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for msgs in (await consumer.getmany(timeout_ms=2000, max_records=50_000)).values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def read_topic(settings: Settings, topic: str, key: bytes | None = None) -> list[Any]:
    return asyncio.run(read_all(settings, topic, key))


@dataclass
class Tally:
    name: str
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (f"chaos {self.name}: sent={self.sent} acked={self.acked} delivered={self.delivered} "
                f"duplicated={self.duplicated} lost={self.lost}{extra}")

    def report(self) -> None:
        line = self.line()
        print("\n" + line)
        out = os.environ.get("HMTEL_CHAOS_SUMMARY")
        if out:
            with open(out, "a") as f:
                f.write(line + "\n")


def spool_state(state_dir: Path) -> dict[str, Any]:
    return orjson.loads((state_dir / "spool" / "state.json").read_bytes())


def host_records(settings: Settings, host_id: str, topics: tuple[str, ...] = ("hm.inventory.v1", "hm.usage.v1")
                 ) -> dict[tuple[str, str], list[int]]:
    """(schema, boot_id) -> seqs (with repeats) of one host's records on the raw topics."""
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for topic in topics:
        for msg in read_topic(settings, topic, host_id.encode()):
            if msg.key != host_id.encode():
                continue
            rec = orjson.loads(msg.value)
            seqs[(rec["schema"], rec["boot_id"])].append(rec["seq"])
    return seqs


def check_collector_delivery(tally: Tally, seqs: dict[tuple[str, str], list[int]], acked_index: int,
                             spooled: int) -> None:
    """Fill the tally from what the spool acknowledged vs what is on the topics.

    The spool numbers records 0,1,2,... in append order and acks a prefix, and each
    schema's seqs are contiguous from 0 in the same order; so the acked records are all
    on the topics exactly when every schema's seqs have no hole and there are at least
    acked_index + 1 distinct ones.
    """
    distinct = sum(len(set(v)) for v in seqs.values())
    holes = sum(len(set(range(max(v) + 1)) - set(v)) for v in seqs.values() if v)
    tally.sent += spooled
    tally.acked += acked_index + 1
    tally.delivered += distinct
    tally.duplicated += sum(len(v) - len(set(v)) for v in seqs.values())
    tally.lost += max(holes, acked_index + 1 - distinct)


def proofs_by_host(settings: Settings, key_id: str, public_raw: bytes) -> dict[str, dict[str, list[bytes]]]:
    """host -> proof_id -> [payload bytes of each copy] for proofs whose signature verifies."""
    out: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for msg in read_topic(settings, "hm.proofs.v1"):
        env = orjson.loads(msg.value)
        if dsse.verify_envelope_signatures(env, {key_id: public_raw}) != [key_id]:
            continue
        data = base64.b64decode(env["payload"])
        payload = orjson.loads(data)
        out[payload["host_id"]][payload["proof_id"]].append(data)
    return out


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


def start_broker(settings: Settings) -> LocalBroker:
    broker = LocalBroker(settings)
    broker.start()
    return broker


def left_in_spool(agent_log: str) -> int:
    """Records the agent's stop report says it left in the spool (0 when it did not stop cleanly)."""
    import re

    found = re.findall(r"(\d+) left in the spool", agent_log)
    return int(found[-1]) if found else 0
