"""The collector agent end to end: a real `python -m hmtel collect` process, a real broker.

1. 60 s run: every usage sample arrives, seq contiguous, each signature verifies with PyNaCl.
2. Broker stopped for 60 s while the agent runs: every sample from the outage arrives in order.
3. Tiny spool and no broker: drops are counted and reported, the newest records are kept.
4. kill -9 and restart: seq continues and the spooled records are replayed.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from collector.spool import Spool
from schemas import validate
from schemas.topics import INVENTORY, USAGE

from agent_harness import ROOT, TopicReader, dedupe_in_order, free_port, verify_with_pynacl

SAMPLES = 'hm_agent_samples_total{schema="hm.usage.v1"}'
DROPPED = "hm_agent_spool_dropped_records_total"


def _contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(len(seqs)))


async def test_sixty_seconds_of_signed_contiguous_samples(agent_factory, agent_kafka):
    agent = agent_factory()
    agent.start()
    await asyncio.sleep(60)
    taken = int(agent.metrics()[SAMPLES])
    key = agent.key()
    async with TopicReader(agent_kafka, USAGE.name) as usage:
        got = await usage.poll_for(key.host_id, lambda rs: len(rs) >= taken, timeout_s=30)
    assert agent.terminate() == 0, agent.log_text()[-2000:]

    seqs = [r.record["seq"] for r in got]
    assert taken >= 50, f"only {taken} samples in 60 s at a 1 s interval"
    assert seqs[:taken] == list(range(taken)), "seq contiguous from 0, in order"
    for r in got:
        assert r.headers["hm-keyid"].decode() == key.key_id
        assert verify_with_pynacl(key.public_key_raw, "hm.usage.v1", r.value, r.headers), r.record["seq"]
        assert r.record["boot_id"] == got[0].record["boot_id"]
    validate("hm.usage.v1", got[-1].record)
    assert "cpu" in got[-1].record and "memory" in got[-1].record

    async with TopicReader(agent_kafka, INVENTORY.name) as inv:
        invs = await inv.poll_for(key.host_id, lambda rs: len(rs) >= 1, timeout_s=30)
    assert invs[0].record["public_key"] == key.public_key_b64
    assert verify_with_pynacl(key.public_key_raw, "hm.inventory.v1", invs[0].value, invs[0].headers)


def _broker(action: str) -> None:
    subprocess.run([sys.executable, "-m", "hmtel", "broker", action], cwd=ROOT, check=True, timeout=180,
                   stdout=subprocess.DEVNULL)


async def test_broker_outage_of_sixty_seconds_loses_nothing(agent_factory, agent_kafka, kafka_broker):
    if kafka_broker.source != "local":
        pytest.skip(f"stopping the broker needs the local broker (`hmtel broker`); this session uses "
                    f"{kafka_broker.detail}")
    agent = agent_factory()
    agent.start()
    await agent.wait_metric(SAMPLES, lambda v: v >= 5, timeout_s=60)
    await agent.wait_metric("hm_agent_published_records_total", lambda v: v >= 5, timeout_s=60)
    try:
        _broker("stop")
        before = int(agent.metrics()[SAMPLES])
        await asyncio.sleep(60)
        during = int(agent.metrics()[SAMPLES])
        assert agent.metrics()["hm_agent_spool_depth_records"] > 0, "records wait in the spool"
    finally:
        _broker("start")
    after = int(agent.metrics()[SAMPLES])
    assert during - before >= 50, "the agent kept sampling while Kafka was down"
    key = agent.key()
    async with TopicReader(agent_kafka, USAGE.name) as usage:
        got = await usage.poll_for(key.host_id, lambda rs: len({r.record["seq"] for r in rs}) >= after,
                                   timeout_s=90)
    dropped = agent.metrics()[DROPPED]
    assert agent.terminate() == 0, agent.log_text()[-2000:]

    order, _values, conflicting = dedupe_in_order(got)
    assert conflicting == [], "a seq was reused for different content"
    assert order[:after] == list(range(after)), "every sample arrives, in order, none missing"
    assert set(range(before, during)) <= set(order), "the outage's samples are all there"
    assert dropped == 0
    assert "records wait in the spool" in agent.log_text() or "no ack from Kafka" in agent.log_text()


async def test_tiny_spool_drops_oldest_counts_them_and_keeps_the_newest(agent_factory, agent_kafka):
    agent = agent_factory(HMTEL_SPOOL_MAX_BYTES="65536", HMTEL_USAGE_INTERVAL_S="0.05",
                          HMTEL_INVENTORY_CHECK_S="3600")
    agent.start(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    dropped = await agent.wait_metric(DROPPED, lambda v: v >= 20, timeout_s=60)
    assert agent.terminate() == 0, agent.log_text()[-2000:]
    assert "dropped the" in agent.log_text(), "drops are reported in the log"
    assert agent.log_text().count("no Kafka broker answered") == 1, "the unreachable broker is reported once"

    spool = Spool(agent.state_dir / "spool", max_bytes=65536)
    spool.open()
    kept = []
    while batch := spool.read():
        kept += batch
    spool.close()
    import orjson

    usage = [orjson.loads(e.value)["seq"] for e in kept if e.topic == USAGE.name]
    assert spool.dropped_total >= dropped, "the drop count is persisted"
    assert usage == list(range(usage[0], usage[-1] + 1)), "the kept records are contiguous"
    assert usage[0] > 0, "the oldest were dropped"
    last_sampled = usage[-1]

    # Pointed at the real broker (with room to spare now), it publishes exactly what it kept.
    agent.extra_env.update(HMTEL_SPOOL_MAX_BYTES=str(64 << 20), HMTEL_USAGE_INTERVAL_S="0.5")
    agent.start()
    key = agent.key()
    async with TopicReader(agent_kafka, USAGE.name) as reader:
        got = await reader.poll_for(key.host_id, lambda rs: any(r.record["seq"] > last_sampled for r in rs),
                                    timeout_s=60)
    assert agent.terminate() == 0
    order, _, conflicting = dedupe_in_order(got)
    assert conflicting == []
    assert order[0] == usage[0], "publishing starts at the oldest record kept"
    assert order == list(range(order[0], order[-1] + 1))


async def test_kill_9_then_restart_continues_seq_and_replays_the_spool(agent_factory, agent_kafka):
    agent = agent_factory(HMTEL_USAGE_INTERVAL_S="0.2", HMTEL_INVENTORY_CHECK_S="3600")
    agent.start()
    await agent.wait_metric("hm_agent_published_records_total", lambda v: v >= 5, timeout_s=60)
    agent.kill9()

    # Second life without a broker: everything it samples stays in the spool.
    agent.start(bootstrap=f"127.0.0.1:{free_port()}")
    await agent.wait_metric(SAMPLES, lambda v: v >= 10, timeout_s=60)
    agent.kill9()
    spool = Spool(agent.state_dir / "spool", max_bytes=1 << 30)
    spool.open()
    import orjson

    spooled = [orjson.loads(e.value)["seq"] for e in spool.iter_from(spool.acked + 1) if e.topic == USAGE.name]
    spool.close()
    assert len(spooled) >= 10, "the second life's records are in the spool"
    last_persisted = spooled[-1]

    agent.start()  # third life, broker back
    key = agent.key()
    async with TopicReader(agent_kafka, USAGE.name) as reader:
        got = await reader.poll_for(key.host_id, lambda rs: any(r.record["seq"] > last_persisted for r in rs),
                                    timeout_s=60)
    assert agent.terminate() == 0
    order, _, conflicting = dedupe_in_order(got)
    assert conflicting == [], "no seq was reused for a different record"
    assert set(spooled) <= set(order), "the spooled records were replayed"
    assert order == list(range(len(order))), "seq contiguous across two kill -9s"
    assert max(order) > last_persisted, "seq continues past the last persisted value"
    for r in got:
        assert verify_with_pynacl(key.public_key_raw, "hm.usage.v1", r.value, r.headers)
