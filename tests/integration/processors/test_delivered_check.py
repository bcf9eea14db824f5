"""DeliveredCheck on a real broker: the marks are end offsets, and the read-back returns exactly
what was written past them (processors/delivered.py)."""
from __future__ import annotations

from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_producer
from processors.delivered import DeliveredCheck, fingerprint

from processors_harness import new_topic


async def test_read_back_returns_what_landed_past_the_marks(kafka_settings):
    topic = await new_topic(kafka_settings, "hm.test.delivered")
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    producer = make_producer(kafka_settings)
    check = DeliveredCheck(kafka_settings, timeout_s=20)
    await producer.start()
    try:
        before = [(b"h-a", b"before-%d" % i) for i in range(5)]
        for key, value in before:
            await producer.send_and_wait(topic, value, key=key, partition=1)
        marks = await check.end_offsets([p0, p1, p2])
        assert marks == {p0: 0, p1: 5, p2: 0}
        after = {1: [(b"h-a", b"after-%d" % i) for i in range(3)], 2: [(b"h-b", b"other")]}
        for partition, records in after.items():
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=partition)
        present = await check.present(marks)
        assert present == {fingerprint(k, v) for records in after.values() for k, v in records}
        assert not present & {fingerprint(k, v) for k, v in before}
        assert await check.present({p0: 0}) == set()  # an empty partition reads nothing
    finally:
        await producer.stop()
        await check.stop()
