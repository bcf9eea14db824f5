"""The broker is real and durable: exact delivery through a consumer group, and no
acknowledged record lost across `hmtel broker stop` / `hmtel broker start`.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from deploy.broker_choice import BrokerChoice, describe_choice
from hmconfig.kafka_clients import make_admin, make_consumer, make_producer, start_with_retry
from hmconfig.settings import Settings

HMTEL = Path(sys.executable).with_name("hmtel")


@pytest.fixture
async def fresh_topic(kafka_settings: Settings) -> AsyncIterator[str]:
    """A 3-partition topic unique to this test run, deleted afterwards."""
    name = f"test.broker.{uuid.uuid4().hex[:12]}"
    admin = await start_with_retry(lambda: make_admin(kafka_settings), kafka_settings, what="test admin")
    try:
        resp = await admin.create_topics([NewTopic(name, 3, 1)])
        assert all(code == 0 for _name, code, *_ in resp.topic_errors), resp.topic_errors
    finally:
        await admin.close()
    yield name
    # The restart test may have bounced the broker meanwhile: reconnect with retry.
    admin = await start_with_retry(lambda: make_admin(kafka_settings), kafka_settings, what="test admin")
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


def payload(i: int) -> bytes:
    return orjson.dumps({"id": i, "pad": "x" * 64})


async def read_all(settings: Settings, topic: str, *, group_id: str | None, timeout_s: float = 60.0) -> list[tuple[int, int, bytes]]:
    """(partition, id, key) of every record in ``topic``, read to the end offsets present at the start."""
    consumer = await start_with_retry(
        lambda: make_consumer(settings, topic, group_id=group_id, max_poll_records=5000), settings, what="test consumer")
    seen: list[tuple[int, int, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert len(partitions) == 3
        end = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                seen += [(tp.partition, orjson.loads(r.value)["id"], r.key) for r in records]
            positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
            if len(positions) == len(partitions) and all(positions[tp] >= end[tp] for tp in positions):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(seen)} records from {topic} before the {timeout_s:.0f}s deadline")
        if group_id is not None:
            await consumer.commit()
        # Nothing more arrives after the end: no duplicates trickling in late.
        extra = await consumer.getmany(timeout_ms=300)
        seen += [(tp.partition, orjson.loads(r.value)["id"], r.key) for recs in extra.values() for r in recs]
    finally:
        await consumer.stop()
    return seen


async def test_ten_thousand_keyed_records_exactly_once_through_a_group(
        kafka_settings: Settings, fresh_topic: str) -> None:
    total = 10_000
    producer = await start_with_retry(lambda: make_producer(kafka_settings), kafka_settings, what="test producer")
    try:
        futures = [await producer.send(fresh_topic, payload(i), key=f"h-{i % 97:032x}".encode())
                   for i in range(total)]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert len(metadata) == total

    seen = await read_all(kafka_settings, fresh_topic, group_id=f"test-{uuid.uuid4().hex[:8]}")
    ids = Counter(i for _p, i, _k in seen)
    missing = set(range(total)) - set(ids)
    repeated = {i: n for i, n in ids.items() if n > 1}
    assert not missing, f"{len(missing)} records missing, e.g. {sorted(missing)[:5]}"
    assert not repeated, f"{len(repeated)} records repeated, e.g. {list(repeated.items())[:5]}"
    assert len(seen) == total
    # Keyed: one key, one partition; 97 keys spread over all 3 partitions.
    partitions_of_key: dict[bytes, set[int]] = {}
    for partition, _i, key in seen:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(ps) == 1 for ps in partitions_of_key.values())
    assert {p for p, _i, _k in seen} == {0, 1, 2}


@dataclass
class ProducerLog:
    acked: set[int] = field(default_factory=set)
    failed: int = 0
    restarts: int = 0
    sent_while_down: set[int] = field(default_factory=set)


async def produce_continuously(settings: Settings, topic: str, stop: asyncio.Event, broker_down: asyncio.Event,
                               log: ProducerLog) -> None:
    """Send numbered records in small batches until ``stop``; record which ones the broker acknowledged.

    A record whose send fails is given up on (the test only claims that acked records
    survive); a producer that keeps failing is rebuilt, as a real publisher would.
    """
    def factory():  # type: ignore[no-untyped-def]
        # Short request timeout so a batch caught by the outage fails and is retried quickly.
        return make_producer(settings, request_timeout_ms=8_000, retry_backoff_ms=200, linger_ms=2)

    producer = await start_with_retry(factory, settings, what="test producer", timeout_s=60)
    n = 0
    try:
        while not stop.is_set():
            batch = range(n, n + 25)
            n += 25
            if broker_down.is_set():
                log.sent_while_down.update(batch)
            try:
                futures = [await producer.send(topic, payload(i), key=f"k{i % 7}".encode()) for i in batch]
                results = await asyncio.gather(*futures, return_exceptions=True)
            except Exception:  # noqa: BLE001 - the producer itself gave up: rebuild it
                results = [RuntimeError("send refused")] * len(batch)
            ok = [i for i, r in zip(batch, results) if not isinstance(r, BaseException)]
            log.acked.update(ok)
            log.failed += len(batch) - len(ok)
            if len(ok) < len(batch):
                await producer.stop()
                log.restarts += 1
                producer = await start_with_retry(factory, settings, what="test producer", timeout_s=60)
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()


async def hmtel(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(HMTEL) if HMTEL.exists() else sys.executable, *([] if HMTEL.exists() else ["-m", "hmtel"]), *args,
        env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"hmtel {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()}"
    return out.decode()


async def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(180)
async def test_acked_records_survive_broker_stop_and_start(
        kafka_broker: BrokerChoice, kafka_settings: Settings, fresh_topic: str) -> None:
    if kafka_broker.source != "local":
        pytest.skip(f"the session broker is {kafka_broker.detail}; `hmtel broker stop/start` manages only the local one")
    stop, down = asyncio.Event(), asyncio.Event()
    log = ProducerLog()
    producer_task = asyncio.create_task(produce_continuously(kafka_settings, fresh_topic, stop, down, log))
    try:
        await wait_for(lambda: len(log.acked) >= 500 or producer_task.done(), 30, "500 acks before the restart")
        acked_before = set(log.acked)

        down.set()
        await hmtel("broker", "stop")
        await asyncio.sleep(0.5)  # the producer keeps sending into the outage
        start_out = await hmtel("broker", "start")
        down.clear()
        assert start_out.strip() == kafka_settings.bootstrap

        acked_at_restart = len(log.acked)
        await wait_for(lambda: len(log.acked) >= acked_at_restart + 500 or producer_task.done(), 60,
                       "500 acks after the restart")
    finally:
        stop.set()
        await asyncio.wait_for(producer_task, 60)
        producer_task.result()  # re-raise anything unexpected in the producer
    acked_after = log.acked - acked_before

    seen = {i for _p, i, _k in await read_all(kafka_settings, fresh_topic, group_id=None)}
    lost = log.acked - seen
    assert acked_before and acked_after, (len(acked_before), len(acked_after))
    assert not lost, (f"{len(lost)} acknowledged records missing after the restart, e.g. {sorted(lost)[:5]} "
                      f"(acked {len(log.acked)}, failed {log.failed}, producer rebuilt {log.restarts}x)")
    # Records handed to the producer while the broker was down and acknowledged later are included above.
    print(f"acked {len(log.acked)} (before {len(acked_before)}, sent during outage and acked "
          f"{len(log.sent_while_down & log.acked)}), failed {log.failed}, producer rebuilt {log.restarts}x")


def test_session_broker_is_the_one_described(kafka_broker: BrokerChoice, base_settings: Settings,
                                             kafka_settings: Settings) -> None:
    # The pytest header states describe_choice(); the fixture must have made that same choice.
    assert kafka_broker.source == describe_choice(base_settings)[0]
    assert kafka_broker.bootstrap == kafka_settings.bootstrap


def test_start_is_a_noop_and_status_is_up_while_running(kafka_broker: BrokerChoice, kafka_settings: Settings) -> None:
    if kafka_broker.source != "local":
        pytest.skip(f"the session broker is {kafka_broker.detail}; `hmtel broker` manages only the local one")
    from deploy.localbroker import LocalBroker

    pid = LocalBroker(kafka_settings).pid()
    assert pid is not None
    assert asyncio.run(hmtel("broker", "start")).strip() == kafka_settings.bootstrap
    assert LocalBroker(kafka_settings).pid() == pid  # the same process: nothing was started
    status = asyncio.run(hmtel("broker", "status"))
    assert status.startswith(f"up: {kafka_settings.bootstrap} (pid {pid})")
