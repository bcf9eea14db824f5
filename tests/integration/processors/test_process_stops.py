"""SIGTERM and Ctrl-C stop a worker promptly, with exit code 0, and commit nothing it did not process.

Before processors/shutdown.py the worker waited forever for faust's consumer to drain
(acks come only at checkpoints, and the timer that makes them stops first): `hmtel up`
had to SIGKILL it, and workers of earlier tests kept running into later ones. Its first
version bounded that wait with asyncio.wait_for, which faust's wait ignores (it swallows the
cancellation): a worker with records parked for an inventory still hung on stop.
"""
from __future__ import annotations

import asyncio
import signal
import time
import uuid

from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_consumer, make_producer
from hmconfig.topic_admin import ensure_topics
from processors import simulator

from processors_harness import host_beside, partition_of, start_process_worker, wait_ready, worker_env

SHUTDOWN_BUDGET_S = 10


async def assert_committed_at_most(settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """The group's committed offset of each partition is at most the given one (or nothing is committed)."""
    reader = make_consumer(settings, group_id=group)
    await reader.start()
    try:
        for tp, offset in offsets.items():
            committed = await reader.committed(tp)
            assert committed is None or committed <= offset, (tp, committed, offset)
    finally:
        await reader.stop()


async def test_sigterm_under_traffic_exits_zero_within_the_shutdown_budget(kafka_settings, tmp_path):
    await ensure_topics(kafka_settings)
    log = tmp_path / "worker.log"
    env = worker_env(kafka_settings, tmp_path / "state", HMTEL_PROCESSOR_APP_ID=f"hm-stop-{uuid.uuid4().hex[:8]}",
                     HMTEL_PROCESSOR_OFFSET_RESET="latest")
    worker = start_process_worker(env, log)
    try:
        await wait_ready(worker, log, 1)
        traffic = asyncio.ensure_future(simulator.run(kafka_settings, hosts=50, rate=1, duration_s=30,
                                                      seed=uuid.uuid4().hex[:6], progress=lambda _: None))
        await asyncio.sleep(8)  # the worker is mid-stream: events taken, not yet checkpointed
        worker.send_signal(signal.SIGTERM)
        # Budget: the checkpoint plus faust's own stop of the producer and tables.
        code = await asyncio.to_thread(worker.wait, SHUTDOWN_BUDGET_S + 20)
        assert code == 0, log.read_text()[-3000:]
        await traffic
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_ctrl_c_with_records_parked_exits_zero_and_commits_none_of_them(kafka_settings, tmp_path):
    """Usage records of hosts whose inventory never comes wait (parked, unacked) for it; Ctrl-C must
    still stop the worker at once, and their offsets must stay uncommitted for the next owner."""
    await ensure_topics(kafka_settings)
    log = tmp_path / "worker.log"
    group = f"hm-stop-{uuid.uuid4().hex[:8]}"
    env = worker_env(kafka_settings, tmp_path / "state", HMTEL_PROCESSOR_APP_ID=group,
                     HMTEL_PROCESSOR_OFFSET_RESET="latest", HMTEL_UNKNOWN_HOST_GRACE_S="600")
    worker = start_process_worker(env, log)
    try:
        await wait_ready(worker, log, 1)
        hosts = [simulator.SimHost(i, seed=uuid.uuid4().hex) for i in range(4)]
        first: dict[TopicPartition, int] = {}
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            now = int(time.time() * 1e6)
            for i in range(5):
                for host in hosts:
                    topic, key, value, headers = host.message("hm.usage.v1", host.usage(now - (5 - i) * 1_000_000))
                    sent = await producer.send_and_wait(topic, value, key=key, headers=headers)
                    first.setdefault(TopicPartition(topic, sent.partition), sent.offset)
        finally:
            await producer.stop()
        await asyncio.sleep(5)  # fetched and parked: their hosts have no key pinned
        started = time.monotonic()
        worker.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(worker.wait, 30)
        text = log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert time.monotonic() - started < 15, text[-3000:]
        assert "not acked, so the next worker re-reads them" in text, text[-3000:]
        assert "\x1b[" not in text, "terminal codes in the worker's log"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    await assert_committed_at_most(kafka_settings, group, first)


async def test_records_acked_after_parked_ones_do_not_commit_past_them(kafka_settings, tmp_path):
    """A new group (nothing committed yet): a host's records wait for its inventory at the head of a
    partition while a known host's later records there are taken and acked. The commits must stay
    before the parked records (faust's own check let them through), so the next owner reads them."""
    await ensure_topics(kafka_settings)
    log = tmp_path / "worker.log"
    group = f"hm-stop-{uuid.uuid4().hex[:8]}"
    env = worker_env(kafka_settings, tmp_path / "state", HMTEL_PROCESSOR_APP_ID=group,
                     HMTEL_PROCESSOR_OFFSET_RESET="latest", HMTEL_UNKNOWN_HOST_GRACE_S="600",
                     HMTEL_PROCESSOR_CHECKPOINT_S="1")
    seed = uuid.uuid4().hex
    unknown = simulator.SimHost(0, seed=seed)
    partition, known = partition_of(unknown), host_beside(unknown, seed)
    worker = start_process_worker(env, log)
    try:
        await wait_ready(worker, log, 1)
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            now = int(time.time() * 1e6)

            async def send(host: simulator.SimHost, topic: str, record: dict) -> int:
                topic, key, value, headers = host.message(topic, record)
                return (await producer.send_and_wait(topic, value, key=key, headers=headers)).offset

            first_parked = await send(unknown, "hm.usage.v1", unknown.usage(now - 9_000_000))
            await send(unknown, "hm.usage.v1", unknown.usage(now - 8_000_000))
            await send(known, "hm.inventory.v1", known.inventory(now - 9_000_000))
            for i in range(5):
                await send(known, "hm.usage.v1", known.usage(now - (7 - i) * 1_000_000))
        finally:
            await producer.stop()
        await asyncio.sleep(6)  # the known host's records taken, acked at a checkpoint, commits tried
        worker.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(worker.wait, 30)
        assert code == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    await assert_committed_at_most(kafka_settings, group, {TopicPartition("hm.usage.v1", partition): first_parked})
