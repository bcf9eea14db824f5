"""A worker started on a backlog reads the inventories first (Processor._inventories_at_start).

Its usage and eBPF partitions stay paused until the inventory partitions are read to the end
offsets they had when assigned, so no usage record waits (parked) for its host's inventory.
This runs the real hook: faust's seek after the assignment, the broker's end offsets and the
consumer's positions.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_consumer
from hmconfig.topic_admin import commit_for_group, end_offsets, ensure_topics
from processors import simulator

from processors_harness import start_process_worker, stop_workers, wait_ready, worker_env

INPUTS = ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1")
HOSTS, BACKFILL_S = 200, 10


async def read_between(settings, start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> list:
    tps = [tp for tp in end if end[tp] > start.get(tp, 0)]
    if not tps:
        return []
    c = make_consumer(settings, group_id=None)
    await c.start()
    try:
        c.assign(tps)
        for tp in tps:
            c.seek(tp, start.get(tp, 0))
        out: list = []
        while [tp for tp in tps if await c.position(tp) < end[tp]]:
            for msgs in (await c.getmany(timeout_ms=1000)).values():
                out += [m for m in msgs if m.offset < end[TopicPartition(m.topic, m.partition)]]
        return out
    finally:
        await c.stop()


async def test_a_worker_started_on_a_backlog_reads_the_inventories_first(kafka_settings, tmp_path):
    await ensure_topics(kafka_settings)
    group = f"hm-start-{uuid.uuid4().hex[:8]}"
    start = await end_offsets(kafka_settings, INPUTS)
    rejected0 = await end_offsets(kafka_settings, ["hm.rejected.v1"])
    await commit_for_group(kafka_settings, group, start)  # the group starts where this test's backlog does
    seed = uuid.uuid4().hex[:8]
    # every inventory first, then the usage records: the backlog a worker meets after an outage
    await simulator.run(kafka_settings, hosts=HOSTS, rate=1, duration_s=0, backfill_s=BACKFILL_S, seed=seed,
                        progress=lambda _line: None)
    end = await end_offsets(kafka_settings, INPUTS)
    assert sum(end[tp] - start[tp] for tp in end if tp.topic == "hm.inventory.v1") == HOSTS

    log = tmp_path / "worker.log"
    worker = start_process_worker(worker_env(kafka_settings, tmp_path / "state", HMTEL_PROCESSOR_APP_ID=group,
                                             HMTEL_LOG_LEVEL="INFO"), log)
    try:
        await wait_ready(worker, log, 1)
        reader = make_consumer(kafka_settings, group_id=group)
        await reader.start()
        try:
            deadline = time.monotonic() + 120
            while [tp for tp in end if end[tp] > start[tp] and ((await reader.committed(tp)) or 0) < end[tp]]:
                assert time.monotonic() < deadline, f"backlog not committed:\n{log.read_text()[-3000:]}"
                await asyncio.sleep(1)
        finally:
            await reader.stop()
    finally:
        stop_workers([worker])
    text = log.read_text(errors="replace")
    assert f"{HOSTS} inventory records not read yet: reading them before the usage and eBPF records" in text, text
    assert "inventories read in" in text, text[-3000:]
    assert "wait for their hosts' inventories" not in text, text[-3000:]
    hosts = {simulator.SimHost(i, seed=seed).host_id for i in range(HOSTS)}
    rejected = [orjson.loads(m.value) for m in await read_between(kafka_settings, rejected0,
                                                                 await end_offsets(kafka_settings, ["hm.rejected.v1"]))]
    ours = [r for r in rejected if r.get("host_id") in hosts]
    # a host's first proof window is partial (insufficient_evidence) if it closes; nothing else is refused
    assert {r["reason"] for r in ours} <= {"insufficient_evidence"}, ours[:3]
