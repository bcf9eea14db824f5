"""Drains the spool into Kafka, in order, and marks records acked only once the broker has them.

One aiokafka producer (hmconfig.kafka_clients.make_producer: idempotent,
acks=all, compressed). Records are read from the spool in index order, packed
into per-partition batches (``create_batch``/``send_batch``: the per-record
``send()`` path costs several times more CPU), and acked in the spool in the
same order as their batches complete.

Kafka down:

* at start, the producer cannot bootstrap: the publisher retries with backoff
  forever, says so once, and the agent keeps spooling;
* later, batches are retried by the idempotent producer until the broker is
  back (aiokafka never expires an idempotent batch whose leader is known), so
  order holds; at most ``window_records`` records are in flight, the rest wait
  on disk; after ``stall_s`` without an ack the publisher says so once;
* any send that fails outright tears the producer down and rewinds the spool
  reader to the first unacked record: a record the broker had but never
  confirmed is sent again, so delivery is at-least-once and consumers dedupe
  on (host_id, boot_id, seq).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from hmconfig.errors import BrokerUnavailable
from hmconfig.kafka_clients import make_producer, start_with_retry
from collector.spool import Entry, Spool

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from collector.metrics import AgentMetrics
    from hmconfig.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    last_index: int
    count: int
    nbytes: int
    future: asyncio.Future[Any]
    sent_at: float


class Publisher:
    def __init__(self, settings: Settings, spool: Spool, metrics: AgentMetrics | None = None, *,
                 window_records: int = 20_000, batch_records: int = 5_000, stall_s: float = 10.0,
                 producer_overrides: dict[str, Any] | None = None):
        self.settings = settings
        self.spool = spool
        self.metrics = metrics
        self.window_records = window_records
        self.batch_records = batch_records
        self.stall_s = stall_s
        # aiokafka fails a queued batch whose partition has no leader once it is older than
        # request_timeout_ms, which happens as a restarted broker reloads its partitions. A long
        # timeout keeps batches queued across an outage of up to 2 min, so order needs no resend.
        self.producer_overrides = {"request_timeout_ms": 120_000, **(producer_overrides or {})}
        self.connected = False
        self.stalled = False
        self.published_total = 0
        self._data = asyncio.Event()
        self._space = asyncio.Event()
        self._acked_event = asyncio.Event()
        self._sent = asyncio.Event()  # batches are in flight (wakes the acker)
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._inflight_records = 0
        self._failure: BaseException | None = None
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._partitioner = DefaultPartitioner()
        self._said_down = False
        self._said_missing: list[str] = []
        self.topics: tuple[str, ...] = ()  # topics the owner publishes to, checked at each connect
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="publisher")

    async def stop(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    def wakeup(self) -> None:
        """New records are in the spool."""
        self._data.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything spooled so far is acked, or ``timeout_s`` passes."""
        target = self.spool.next_index - 1
        deadline = time.monotonic() + timeout_s
        while self.spool.acked < target:
            left = deadline - time.monotonic()
            if left <= 0 or not self.connected or self.stalled:  # Kafka is not taking records
                return False
            self._acked_event.clear()
            try:
                await asyncio.wait_for(self._acked_event.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass
        return True

    # -- main loop -------------------------------------------------------------
    async def run(self) -> None:
        """Publish forever: connect, drain, and on failure reconnect and resend (cancel to stop)."""
        backoff = 0.5
        while True:
            producer = await self._connect()
            started = time.monotonic()
            try:
                await self._pump(producer)
            except (KafkaError, OSError, asyncio.TimeoutError) as err:
                log.warning("publisher: sending to Kafka at %s failed (%s: %s); records stay in the spool, "
                            "resending from the first unacked one", self.settings.bootstrap,
                            type(err).__name__, err)
                if self.metrics:
                    self.metrics.publish_errors.inc()
            finally:
                self.connected = False
                if self.metrics:
                    self.metrics.kafka_up.set(0)
                await _abandon(producer)
                self._reset_inflight()
            # A producer that dies at once again and again must not spin.
            backoff = 0.5 if time.monotonic() - started > 30 else min(backoff * 2, 10.0)
            await asyncio.sleep(backoff)

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            try:
                producer = await start_with_retry(
                    lambda: make_producer(self.settings, **self.producer_overrides),
                    self.settings, what="collector publisher", timeout_s=self.settings.kafka_connect_timeout_s)
            except BrokerUnavailable as err:
                if not self._said_down:
                    self._said_down = True
                    log.warning("%s; sampling continues into the spool (%s) and will be replayed in order",
                                err, self.spool.dir)
                continue
            if self._said_down:
                log.warning("publisher: Kafka at %s is reachable again; replaying %d spooled record(s)",
                            self.settings.bootstrap, self.spool.pending)
                self._said_down = False
            else:
                log.info("publisher: connected to Kafka at %s", self.settings.bootstrap)
            self.connected = True
            if self.metrics:
                self.metrics.kafka_up.set(1)
            await self._check_topics(producer)
            return producer

    async def _check_topics(self, producer: AIOKafkaProducer) -> None:
        """Say once if a topic we hold records for is missing (the agent never creates topics):
        otherwise the producer just waits for its metadata and nothing explains why."""
        if not self.topics:
            return
        try:
            cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), 10)
        except (asyncio.TimeoutError, KafkaError, OSError):
            return
        missing = sorted(set(self.topics) - set(cluster.topics()))
        if missing and missing != self._said_missing:
            log.warning("publisher: topic(s) %s do not exist on %s; records wait in the spool until they do "
                        "(create them with `hmtel topics ensure`)", ", ".join(missing), self.settings.bootstrap)
        self._said_missing = missing

    def _reset_inflight(self) -> None:
        for item in self._inflight:
            item.future.cancel()
        self._inflight.clear()
        self._inflight_records = 0
        self._failure = None
        self.spool.rewind()

    async def _pump(self, producer: AIOKafkaProducer) -> None:
        acker = asyncio.create_task(self._ack_loop(), name="publisher-acks")
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                room = self.window_records - self._inflight_records
                if room <= 0:
                    self._space.clear()
                    await self._space.wait()
                    continue
                entries = self.spool.read(max_records=min(self.batch_records, room))
                if not entries:
                    self._data.clear()
                    try:
                        await asyncio.wait_for(self._data.wait(), 1.0)
                    except asyncio.TimeoutError:
                        pass
                    continue
                await self._send(producer, entries)
        finally:
            acker.cancel()
            try:
                await acker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - its error was already recorded
                pass

    async def _send(self, producer: AIOKafkaProducer, entries: list[Entry]) -> None:
        start = 0
        while start < len(entries):
            topic, key = entries[start].topic, entries[start].key
            partition = await self._partition(producer, topic, key)
            batch = producer.create_batch()
            end, nbytes = start, 0
            while end < len(entries) and entries[end].topic == topic and entries[end].key == key:
                e = entries[end]
                if batch.append(key=e.key, value=e.value, timestamp=None, headers=e.headers) is None:
                    break  # batch full
                nbytes += len(e.value)
                end += 1
            if end == start:  # one record larger than an empty batch; let the broker refuse it loudly
                raise KafkaError(f"record {entries[start].index} does not fit in a producer batch")
            batch.close()
            future = await producer.send_batch(batch, topic, partition=partition)
            self._inflight.append(_InFlight(entries[end - 1].index, end - start, nbytes, future, time.monotonic()))
            self._inflight_records += end - start
            self._sent.set()
            start = end

    async def _partition(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int:
        cached = self._partitions.get((topic, key))
        if cached is None:
            partitions = sorted(await producer.partitions_for(topic))
            cached = self._partitions[(topic, key)] = self._partitioner(key, partitions, partitions)
        return cached

    async def _ack_loop(self) -> None:
        try:
            while True:
                if not self._inflight:
                    self._sent.clear()
                    await self._sent.wait()
                    continue
                item = self._inflight[0]
                try:
                    await asyncio.wait_for(asyncio.shield(item.future), self.stall_s)
                except asyncio.TimeoutError:
                    if not self.stalled:
                        self.stalled = True
                        log.warning("publisher: no ack from Kafka at %s for %.0f s; records wait in the spool "
                                    "(%d pending) and are sent in order when it is back",
                                    self.settings.bootstrap, self.stall_s, self.spool.pending)
                        if self.metrics:
                            self.metrics.kafka_up.set(0)
                    continue
                self._inflight.popleft()
                self._inflight_records -= item.count
                self.spool.ack(item.last_index)
                self.published_total += item.count
                if self.stalled:
                    self.stalled = False
                    log.warning("publisher: Kafka acks again; draining the spool (%d pending)", self.spool.pending)
                if self.metrics:
                    self.metrics.kafka_up.set(1)
                    self.metrics.published.inc(item.count)
                    self.metrics.publish_latency.observe(time.monotonic() - item.sent_at)
                self._space.set()
                self._acked_event.set()
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # noqa: BLE001 - handed to the pump, which reconnects
            self._failure = err
            self._space.set()
            self._data.set()


async def _abandon(producer: AIOKafkaProducer, timeout_s: float = 2.0) -> None:
    """Close a producer WITHOUT flushing: its batches are resent from the spool by the next one.

    ``stop()`` alone would first flush the batches queued behind a failed one, so they could
    land before the failed one's resend: out of order. Cancelling the sender first prevents that.
    """
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    if task is not None:
        task.cancel()
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except (asyncio.TimeoutError, asyncio.CancelledError, KafkaError, OSError):
        try:
            await asyncio.wait_for(producer.client.close(), 1.0)
        except Exception:  # noqa: BLE001 - best effort; the process may be exiting
            pass
