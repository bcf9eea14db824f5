"""Which outbox entries already reached Kafka, so a retried send never writes one twice.

A host's outputs (aggregates, proof, window-level rejections) wait in its outbox in the
changelog-backed table until Kafka acknowledged them; then the outbox is cleared. A worker
killed between the acknowledgement and the clearing's changelog write (or a send that failed
half way, e.g. the broker died) would re-send them, and the same proof_id would appear twice
on hm.proofs.v1. So before an outbox is first sent, the app stores with it the end offset of
every partition it will write to (the *mark*), durable in the changelog before any send. A
retry first reads those partitions from the mark to their current end and drops the entries
whose exact (key, value) bytes are already there. Anything of ours that landed lies after the
mark; identical bytes from anyone else would be a duplicate anyway.

Kafka transactions would do the same in one step, but the design keeps faust's at-least-once
mode (the issue rules out its exactly_once), and this costs one ListOffsets request per tick
that sends, plus a short read only after a crash or a failed send.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, Iterable

from aiokafka import TopicPartition

from hmconfig.kafka_clients import make_consumer


def tp_name(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def tp_of(name: str) -> TopicPartition:
    topic, _, partition = name.rpartition(":")
    return TopicPartition(topic, int(partition))


def fingerprint(key: bytes | None, value: bytes | None) -> bytes:
    return hashlib.sha256(b"%d:" % len(key or b"") + (key or b"") + (value or b"")).digest()


def undelivered(outbox: list[list[Any]], present: set[bytes]) -> list[list[Any]]:
    """The outbox entries ([topic, key, value, host_id]) whose bytes are not among ``present``."""
    return [e for e in outbox if fingerprint(e[1].encode(), e[2].encode()) not in present]


class DeliveredCheck:
    """A group-less consumer for end offsets and for reading back what a failed attempt wrote."""

    def __init__(self, settings: Any, timeout_s: float = 30.0):
        self.settings, self.timeout_s = settings, timeout_s
        self.consumer: Any = None

    async def _client(self) -> Any:
        if self.consumer is None:
            # read_uncommitted: the processor's producer is not transactional, and the high
            # watermark is what end_offsets returns for it
            consumer = make_consumer(self.settings, group_id=None, isolation_level="read_uncommitted",
                                     client_id=f"{self.settings.kafka_client_id}-outbox-check")
            await consumer.start()
            self.consumer = consumer
        return self.consumer

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        tps = list(tps)
        if not tps:
            return {}
        consumer = await self._client()
        return await consumer.end_offsets(tps)

    async def present(self, marks: dict[TopicPartition, int]) -> set[bytes]:
        """Fingerprints of every record in [mark, current end) of each partition."""
        if not marks:
            return set()
        consumer = await self._client()
        ends = await consumer.end_offsets(list(marks))
        todo = {tp for tp, mark in marks.items() if ends[tp] > mark}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, marks[tp])
        seen: set[bytes] = set()
        deadline = time.monotonic() + self.timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"reading back {sorted(map(tp_name, todo))} took over {self.timeout_s} s")
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for tp, msgs in batches.items():
                for msg in msgs:
                    if msg.offset < ends[tp]:
                        seen.add(fingerprint(msg.key, msg.value))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        consumer.assign([])
        return seen

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
