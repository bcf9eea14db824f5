"""The agent's supervision and record building, with fake polling sources (no broker needed:
the publisher points at a port where nothing listens, so every record stays in the spool)."""
from __future__ import annotations

import asyncio
import base64
import socket

import orjson
from nacl.signing import VerifyKey

from collector.agent import Agent
from collector.spool import Spool
from hmconfig.settings import load_settings


class GoodSource:
    name, interval_s, origin = "memory", 0.1, "procfs"

    def __init__(self) -> None:
        self.missing: list[str] = []
        self.calls = 0

    async def collect(self) -> dict:
        self.calls += 1
        return {"total_bytes": 1000, "used_bytes": self.calls}

    def close(self) -> None:
        pass


class FailingSource(GoodSource):
    name = "cpu"

    async def collect(self) -> dict:
        self.calls += 1
        raise OSError("cannot read /proc/stat (fake)")


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate, timeout_s: float = 20.0) -> None:
    """Wait for ``predicate``; a failure here means it never became true (not that it was slow)."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout_s)


def _settings(tmp_path):
    return load_settings(state_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{_unused_port()}", usage_interval_s=0.1,
                         metrics_listen="", kafka_connect_timeout_s=1)


async def test_failing_source_is_restarted_with_backoff_and_others_keep_going(tmp_path):
    good, bad = GoodSource(), FailingSource()
    agent = Agent(_settings(tmp_path), polling_sources=[bad, good], stream_sources=[], inventory=False)
    async with agent:
        await _until(lambda: agent.samples >= 20)
        restarts = agent.supervisor.restarts.get("source:cpu", 0)
        errors = agent.metrics.source_errors.labels("source:cpu")._value.get()
    # Backoff 0.5, 1, 2 s...: a few restarts in 20 ticks of 0.1 s, not one per tick.
    assert 2 <= restarts <= agent.samples // 4
    assert errors == restarts
    assert bad.calls == restarts

    spool = Spool(tmp_path / "spool", max_bytes=1 << 30)
    spool.open()
    records = [orjson.loads(e.value) for e in spool.read(max_records=1000)]
    spool.close()
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert all("cpu" not in r and "cpu" in r["missing"] for r in records)
    assert all(r["memory"]["total_bytes"] == 1000 for r in records[1:])


async def test_records_carry_common_fields_and_a_signature_over_the_exact_bytes(tmp_path):
    agent = Agent(_settings(tmp_path), polling_sources=[GoodSource()], stream_sources=[], inventory=False)
    async with agent:
        await asyncio.sleep(0.5)
        await agent.emit("hm.ebpf.v1", {"program": "sched"})
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30)
    spool.open()
    entries = spool.read(max_records=1000)
    spool.close()
    for e in entries:
        rec = orjson.loads(e.value)
        assert e.key == agent.host_id.encode() == rec["host_id"].encode()
        assert rec["boot_id"] == agent.boot_id and isinstance(rec["ts"], int)
        headers = dict(e.headers)
        t = rec["schema"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(e.value), e.value)
        VerifyKey(agent.key.public_key_raw).verify(pae, base64.b64decode(headers["hm-sig"]))
    ebpf = [e for e in entries if e.topic == "hm.ebpf.v1"]
    assert len(ebpf) == 1 and orjson.loads(ebpf[0].value)["seq"] == 0  # its own sequence


async def test_start_and_stop_are_idempotent_and_seq_resumes(tmp_path):
    agent = Agent(_settings(tmp_path), polling_sources=[GoodSource()], stream_sources=[], inventory=False)
    await agent.start()
    await agent.start()
    await asyncio.sleep(0.35)
    await agent.stop()
    await agent.stop()
    taken = agent.samples
    again = Agent(_settings(tmp_path), polling_sources=[GoodSource()], stream_sources=[], inventory=False)
    async with again:
        assert again.seqs.peek(again.host_id, "hm.usage.v1") == taken


async def test_oversized_record_is_refused_without_using_a_seq(tmp_path):
    import pytest

    from collector.agent import AgentError

    agent = Agent(_settings(tmp_path), polling_sources=[], stream_sources=[], inventory=False)
    async with agent:
        with pytest.raises(AgentError, match="over the"):
            await agent.emit("hm.ebpf.v1", {"blob": "x" * (1 << 20)})
        await agent.emit("hm.ebpf.v1", {"program": "net"})
        assert agent.seqs.peek(agent.host_id, "hm.ebpf.v1") == 1


async def test_inventory_published_at_start_on_hash_change_and_when_due(tmp_path):
    hashes = iter(["a", "a", "b", "b", "b", "b", "b", "b", "b", "b", "b", "b", "b", "b", "b", "b"])
    built = []

    def build(host_root):
        built.append(host_root)
        return {"source": "linux", "inventory_hash": next(hashes, "b")}

    settings = _settings(tmp_path).model_copy(update={"inventory_check_s": 0.1, "inventory_interval_s": 3600})
    agent = Agent(settings, polling_sources=[], stream_sources=[], build_inventory=build)
    async with agent:
        await _until(lambda: len(built) >= 4)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30)
    spool.open()
    inv = [orjson.loads(e.value) for e in spool.read(max_records=1000) if e.topic == "hm.inventory.v1"]
    spool.close()
    assert [r["inventory_hash"] for r in inv] == ["a", "b"], "at start, then only on change"
    assert [r["seq"] for r in inv] == [0, 1]
    assert all(r["public_key"] == agent.key.public_key_b64 for r in inv)

    due = _settings(tmp_path / "due").model_copy(update={"inventory_check_s": 0.1, "inventory_interval_s": 0.2})
    agent = Agent(due, polling_sources=[], stream_sources=[], build_inventory=lambda root: {"inventory_hash": "same"})
    async with agent:
        await _until(lambda: agent.seqs.peek(agent.host_id, "hm.inventory.v1") >= 3)


class FakeStream:
    """A stream source that reports itself running (``active``) or degraded."""

    def __init__(self, name: str, active: bool) -> None:
        self.name, self.active = name, active

    async def run(self, emit) -> None:
        await asyncio.Event().wait()


async def test_usage_sources_name_a_running_stream_source_but_not_a_degraded_one(tmp_path):
    streams = [FakeStream("ebpf", active=True), FakeStream("other", active=False)]
    agent = Agent(_settings(tmp_path), polling_sources=[GoodSource()], stream_sources=streams, inventory=False)
    async with agent:
        await _until(lambda: agent.samples >= 2)
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30)
    spool.open()
    usage = [orjson.loads(e.value) for e in spool.read(max_records=1000) if e.topic == "hm.usage.v1"]
    spool.close()
    assert usage and all(rec["sources"] == ["procfs", "ebpf"] for rec in usage)
