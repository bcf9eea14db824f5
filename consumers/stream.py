"""Reading topics for the consumers: from the beginning, from a point in time, or with a
consumer group; either up to the end offsets seen at start (then stop) or forever.

Without a group the reader assigns every partition itself, so two readers never share
work and never commit offsets; with a group, Kafka spreads the partitions and the reader
commits after each batch it has handed out (at-least-once: a verdict may be printed twice
after a crash, and ChainChecker dedupes the proof).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from hmconfig.errors import HmtelError


class TopicMissing(HmtelError):
    retriable = False


class TopicReader:
    """``async with TopicReader(settings, topics, ...) as r: async for batch in r.batches(): ...``

    ``start_ms``: topic -> Unix ms to start from (offsets_for_times); topics not named start
    at the beginning. Ignored for a group with committed offsets.
    """

    def __init__(self, settings: Any, topics: list[str], *, group_id: str | None = None,
                 follow: bool = False, start_ms: Mapping[str, int] | None = None, what: str = "consumer"):
        self.settings = settings
        self.topics = list(topics)
        self.group_id = group_id
        self.follow = follow
        self.start_ms = dict(start_ms or {})
        self.what = what
        self.consumer: Any = None
        self._end: dict[Any, int] | None = None

    async def __aenter__(self) -> "TopicReader":
        from aiokafka import TopicPartition

        from hmconfig.kafka_clients import make_consumer, start_with_retry

        subscribe = self.topics if self.group_id else []
        self.consumer = await start_with_retry(
            lambda: make_consumer(self.settings, *subscribe, group_id=self.group_id, client_id=f"hmtel-{self.what}"),
            self.settings, what=f"hmtel {self.what}")
        try:
            # consumer.topics() does not fill the client's metadata cache that partitions_for_topic
            # reads, so ask for the cluster metadata directly (the same call topics() makes).
            cluster = await self.consumer._client.fetch_all_metadata()
            missing = [t for t in self.topics if t not in cluster.topics()]
            if missing:
                raise TopicMissing(f"topic {', '.join(missing)} does not exist on {self.settings.bootstrap}; "
                                   f"create the v1 topics with `hmtel topics ensure`")
            if not self.group_id:
                parts = [TopicPartition(t, p) for t in self.topics
                         for p in sorted(cluster.partitions_for_topic(t) or ())]
                self.consumer.assign(parts)
                await self._seek(parts)
                if not self.follow:
                    self._end = await self.consumer.end_offsets(parts)
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def _seek(self, parts: list[Any]) -> None:
        timed = {tp: self.start_ms[tp.topic] for tp in parts if tp.topic in self.start_ms}
        rest = [tp for tp in parts if tp not in timed]
        if rest:
            await self.consumer.seek_to_beginning(*rest)
        if timed:
            found = await self.consumer.offsets_for_times(timed)
            late = [tp for tp, off in found.items() if off is None]  # nothing that recent: start at the end
            for tp, off in found.items():
                if off is not None:
                    self.consumer.seek(tp, off.offset)
            if late:
                await self.consumer.seek_to_end(*late)

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    async def _at_end(self) -> bool:
        if self.follow:
            return False
        if self._end is None:  # a group: the end is known once partitions are assigned
            assigned = self.consumer.assignment()
            if not assigned:
                return False
            self._end = await self.consumer.end_offsets(list(assigned))
        for tp, end in self._end.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    async def batches(self, poll_ms: int = 500) -> AsyncIterator[list[Any]]:
        """Record batches in Kafka order per partition; ends at the end offsets unless following."""
        idle_rounds = 0
        while True:
            if await self._at_end():
                return
            got = await self.consumer.getmany(timeout_ms=poll_ms, max_records=500)
            records = [r for batch in got.values() for r in batch]
            if records:
                idle_rounds = 0
                yield records
                if self.group_id:
                    await self.consumer.commit()
            else:
                idle_rounds += 1
                # A group that never gets partitions (all taken by other members) has nothing to read.
                if not self.follow and self.group_id and idle_rounds > 40 and not self.consumer.assignment():
                    return
                await asyncio.sleep(0)
