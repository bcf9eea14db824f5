"""faust, with changes to its aiokafka transport that the processors need.

* **Batches in.** faust hands each fetched record to its conductor, a channel queue and the
  agent's stream, one at a time, each step a few awaits: about 300 µs of CPU per record here,
  three times the engine's own work (docs/PROCESSORS.md). The processors use faust for what
  is hard to get right (group membership with co-partitioned assignment, changelog-backed
  tables and their recovery, commits of acked offsets only, the timer, the producer), not
  for per-record delivery. So the consumer hands each fetched batch of the topics in
  ``app.batch_topics`` to ``app.batch_handler`` in one call, the partitions of
  ``app.batch_first`` first. The handler acks the records when it is done with them, as a
  stream would (``ack_many``: ``Consumer.ack``'s bookkeeping for many at once), so faust's
  commit and rebalance logic (it waits for every tracked record to be acked) is unchanged.
  Each partition's records of a fetch are tracked at once (``track_many``; faust's Monitor as
  ``BatchMonitor`` counts them in one call).
  Records of other topics keep faust's per-record path.
* **An idempotent producer.** faust turns on idempotence only in its exactly_once mode,
  which the processors do not use. Without it a batch the broker wrote but did not get to
  acknowledge before it died is written again by the producer's retry, and a proof appeared
  twice after a broker SIGKILL.
* **Commits that never pass an unacked head** (BatchConsumer._new_offset): records parked for
  their host's inventory stay unacked while later ones are acked, and faust's own check let
  a commit pass them in two cases.
* **Acks committed before a revocation forgets them** (BatchConsumer.on_partitions_revoked):
  faust drops a revoked partition's acked offsets before it commits.
* **Outputs as whole batches** (``send_batches``): a record sent through faust's ``Topic.send``
  cost about 29 us of the event loop (faust's FutureMessage, its channel and sensors, then
  aiokafka's per-record send); the processors send a tick's outputs appended to aiokafka's batches,
  one per partition.
* **A hook after each seek to the committed offsets** (``app.after_seek``): faust seeks once
  an assignment is recovered and its partitions resumed, before the first fetch, so the
  processors pause the usage partitions there while the inventories are read first.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable, Mapping

import faust
from faust.sensors import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerMessage
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

BatchHandler = Callable[[list[Any]], Awaitable[None]]


class BatchConsumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_heads: dict[Any, int] = {}  # tp -> first offset delivered since the last seek (_new_offset)

    def _new_offset(self, tp: Any) -> int | None:
        """faust's commit offset, never past an unacked record at the head of a partition.

        The processors leave records unacked (parked for an inventory, or left for the next owner
        at a stop or a rebalance) while later records of the partition are acked. faust stops a
        commit at the first hole after its committed offset, but checks the head only when the
        partition has a committed offset, and then lets a hole of one record through (it compares
        with committed + 1, where committed is already the next offset to read). So a partition
        with no commit yet, or one record parked right at the committed offset, was committed
        past it, and the record was never read again. The head is the committed offset or, with
        nothing committed yet, the first record delivered since the last seek."""
        acked = self._acked[tp]
        if acked:
            head = self._committed_offset[tp]
            if head is None:
                head = self.read_heads.get(tp)
            if head is not None and min(acked) > head:
                return None  # the record at the head is not acked yet
        offset: int | None = super()._new_offset(tp)
        return offset

    async def perform_seek(self) -> None:
        self.read_heads.clear()  # what is delivered next starts a new head
        await super().perform_seek()
        # faust seeks after every assignment, once it has resumed the partitions and before the
        # next fetch: the one place to pause some of them for the start (app.after_seek)
        after_seek: Callable[[], Awaitable[None]] | None = getattr(self.app, "after_seek", None)
        if after_seek is not None:
            await after_seek()

    async def seek(self, partition: Any, offset: int) -> None:
        self.read_heads.pop(partition, None)
        await super().seek(partition, offset)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Commit the revoked partitions' acked offsets before faust forgets them.

        faust (0.15.3) drops a revoked partition's acked offsets first, then waits for its streams
        and commits only what they ack after that (faust-streaming/faust#502: records processed
        twice after a rebalance). So whatever was acked since the last periodic commit (every
        broker_commit_interval) was never committed: the next owner read those records again, as
        counted duplicates, and a partition with nothing committed yet was reset past them (with
        the reset "latest", records parked behind them were lost: the rebalance integration test
        failed so in 4 of 5 runs on a fresh broker). A commit begun before those acks would not
        carry them, so it is waited for first."""
        if self.assignment():
            await self.maybe_wait_for_commit_to_finish()
            await self.commit(revoked)
        await super().on_partitions_revoked(revoked)

    def ack_many(self, messages: Iterable[Any]) -> None:
        """``Consumer.ack`` for many records: the same bookkeeping (faust 0.15.3), under one hold of
        its lock, with the lookups hoisted (the processors ack every record at each checkpoint:
        ~2 us a record one by one)."""
        with ack_lock:
            acks_enabled_for = self.app.topics.acks_enabled_for
            committed_offsets, indexes, acked_lists = self._committed_offset, self._acked_index, self._acked
            discard = self._unacked_messages.discard
            n = 0
            for message in messages:
                if message.acked:
                    continue
                message.acked = True
                if not acks_enabled_for(message.topic):
                    continue
                tp, offset = message.tp, message.offset
                committed = committed_offsets[tp]
                if committed is None or offset >= committed:
                    index = indexes[tp]
                    if offset not in index:
                        discard(message)
                        index.add(offset)
                        acked_lists[tp].append(offset)
                        n += 1
            self._n_acked += n
            notify(self._waiting_for_ack)

    def track_many(self, tp: Any, messages: list[Any]) -> None:
        """``Consumer.track_message`` for one partition's records of a fetch: each joins faust's set of
        records taken and not acked yet (a rebalance and a stop wait for it to empty), and the
        sensors hear of them, a sensor with ``on_messages_in`` (BatchMonitor) once for all: the hand-over
        went from 4.1 to 3.0 us a record of the event loop (bench/fetch_path.py)."""
        if not messages:
            return
        add = self._unacked_messages.add
        for message in messages:
            add(message)
        for sensor in self.app.sensors:
            on_messages_in = getattr(sensor, "on_messages_in", None)
            if on_messages_in is not None:
                on_messages_in(tp, messages)
            else:
                for message in messages:
                    sensor.on_message_in(tp, message.offset, message)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised on a broker
        """faust's fetch loop (``Consumer._drain_messages`` around ``Consumer.getmany``, faust
        0.15.3: the same gap, read-offset, flow and generation checks), with the records of
        ``app.batch_topics`` handed over once per fetch instead of awaited one by one. Per fetch,
        not per record: faust's async generator and its round-robin scheduler, the high-water
        mark and the generation checks (about 3 us a record at 8,000 a fetch). The partitions
        of ``app.batch_first`` go first in each fetch (the processors' inventories: a usage
        record before its host's inventory waits for it)."""
        app = self.app
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = app.topics.acks_enabled_for
        track_many = self.track_many
        heads = self.read_heads
        batch_topics: frozenset[str] = getattr(app, "batch_topics", frozenset())
        batch_first: frozenset[str] = getattr(app, "batch_first", frozenset())
        handler: BatchHandler | None = getattr(app, "batch_handler", None)
        fetching = faust_consumer.CONSUMER_FETCHING
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(fetching)
                records, active_partitions = await self._wait_next_records(1.0)
                generation_id = app.consumer_generation_id
                batch: list[Any] = []
                if records is None or self.should_stop:
                    pass
                elif not self.flow_active:  # as getmany does: back to the committed offsets
                    self.log.dev("getmany called while flow not active. Seek back to committed offsets.")
                    try:
                        await self.perform_seek()
                    except Exception as ex:  # noqa: BLE001 - faust's own handling
                        self.log.warning(f"exception performing seek when flow not active {ex}")
                else:
                    for tp in sorted(records, key=lambda tp: tp.topic not in batch_first):
                        if not self.flow_active or app.consumer_generation_id != generation_id:
                            break  # a rebalance began (faust's getmany stops there too)
                        if not (active_partitions is None or tp in active_partitions
                                or tp in self._buffered_partitions):
                            continue
                        app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                        batched = handler is not None and tp.topic in batch_topics
                        acks = acks_enabled_for(tp.topic)
                        r_offset = get_read_offset(tp)
                        untracked = len(batch)  # batch[untracked:]: this partition's, tracked below
                        for record in records[tp]:
                            offset = record.offset
                            if r_offset is not None and offset < r_offset:
                                continue  # already read (faust drops these too)
                            awaited = not batched
                            if r_offset and offset - r_offset > 1 and acks:
                                track_many(tp, batch[untracked:])  # tracked before any await, as one by one
                                untracked = len(batch)
                                await self._add_gap(tp, r_offset + 1, offset)
                                awaited = True
                            if tp not in heads:
                                heads[tp] = offset
                            timestamp = record.timestamp
                            message = ConsumerMessage(
                                record.topic, record.partition, offset,
                                None if timestamp is None else timestamp / 1000.0,  # type: ignore[arg-type]
                                record.timestamp_type,
                                record.headers, record.key, record.value, record.checksum,
                                record.serialized_key_size, record.serialized_value_size, tp,
                                generation_id=generation_id)
                            if batched:
                                batch.append(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                            r_offset = offset
                            if awaited and (not self.flow_active or app.consumer_generation_id != generation_id):
                                break  # after an await, as getmany checks before each record
                        if len(batch) > untracked:
                            track_many(tp, batch[untracked:])
                    if batch:
                        await handler(batch)  # type: ignore[misc]
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                self.diag.unset_flag(fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(fetching)


async def send_batches(producer: Any, records: Mapping[Any, list[tuple[bytes, bytes]]]) -> int:
    """Send (key, value) records to their TopicPartitions, in order, appended to aiokafka's batches
    (``create_batch``/``send_batch``) instead of one ``send`` each, and wait until the broker has
    them all; the number of records sent. ``producer``: an AIOKafkaProducer (the faust app's own, so
    its idempotence and retries apply, and its ``flush`` covers these). A partition's batches go
    one after another (aiokafka queues a batch once the one before it is drained), the partitions
    side by side. The first failure is raised, as a gather of single sends would."""

    async def one_partition(tp: Any, pairs: list[tuple[bytes, bytes]]) -> None:
        sent: list[asyncio.Future[Any]] = []
        batch = producer.create_batch()
        for key, value in pairs:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full (and closed): send it
                sent.append(await producer.send_batch(batch, tp.topic, partition=tp.partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any record
        batch.close()  # nothing of producer.send() joins it
        sent.append(await producer.send_batch(batch, tp.topic, partition=tp.partition))
        await asyncio.gather(*sent)

    await asyncio.gather(*(one_partition(tp, pairs) for tp, pairs in records.items() if pairs))
    return sum(len(pairs) for pairs in records.values())


class BatchMonitor(Monitor):
    """faust's Monitor (its default sensor), told of a fetch's records of one partition at once."""

    def on_messages_in(self, tp: Any, messages: list[Any]) -> None:
        """``Monitor.on_message_in`` for each of ``messages``, in one call (BatchConsumer.track_many)."""
        n = len(messages)
        self.messages_received_total += n
        self.messages_active += n
        self.messages_received_by_topic[tp.topic] += n
        self.tp_read_offsets[tp] = messages[-1].offset
        now = self.time()
        for message in messages:
            message.time_in = now


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    Producer = IdempotentProducer


class App(faust.App):
    """A faust.App on this transport; set ``batch_topics`` and ``batch_handler`` before it starts."""

    batch_topics: frozenset[str] = frozenset()
    batch_first: frozenset[str] = frozenset()  # topics whose records come first in each batch
    batch_handler: BatchHandler | None = None
    after_seek: Callable[[], Awaitable[None]] | None = None  # awaited after each seek to the committed offsets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", BatchMonitor)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return Transport(self.conf.broker_producer, self)
