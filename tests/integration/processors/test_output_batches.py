"""faust_transport.send_batches on a real broker: every record lands once, in order, in its
partition, also when a partition's records fill several batches or one record is larger than a
batch (the processors' outputs go this way: Processor._send_outboxes)."""
from __future__ import annotations

from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_consumer, make_producer
from processors.faust_transport import send_batches

from processors_harness import new_topic


async def test_records_land_once_in_order_across_several_batches(kafka_settings):
    topic = await new_topic(kafka_settings, "hm.test.batches")
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    records = {
        # 4 KiB batches: p0's 60 records of ~300 bytes need several
        p0: [(b"h-a", b"a-%03d:" % i + b"x" * 300) for i in range(60)],
        p1: [(b"h-b", b"b-big:" + b"y" * 10_000), (b"h-b", b"b-after")],  # larger than a batch
        p2: [],
    }
    # as the processors' producer is: idempotent, acks from all replicas
    producer = make_producer(kafka_settings, max_batch_size=4096, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        assert await send_batches(producer, records) == 62
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_settings, group_id=None)
    await consumer.start()
    try:
        consumer.assign([p0, p1, p2])
        await consumer.seek_to_beginning(p0, p1, p2)
        got: dict[TopicPartition, list[tuple[bytes, bytes]]] = {p0: [], p1: [], p2: []}
        for _ in range(50):
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                got[tp].extend((m.key, m.value) for m in batch)
            if sum(map(len, got.values())) >= 62:
                break
        assert got == records
        assert await consumer.end_offsets([p0, p1, p2]) == {p0: 60, p1: 2, p2: 0}  # nothing twice
    finally:
        await consumer.stop()
