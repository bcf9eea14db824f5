"""The faust-streaming app: consumes hm.inventory.v1, hm.usage.v1 and hm.ebpf.v1; produces
hm.usage.agg.{10s,1m}.v1, hm.proofs.v1 and hm.rejected.v1. The decisions live in
processors.engine (pure); this module is the Kafka plumbing.

State: ONE changelog-backed table, ``<app_id>-hosts``, keyed by host_id, holding the
engine's state per host (pinned key, inventory, dedupe, windows, proof chain, outbox).
Its changelog is co-partitioned with the input topics (same key, same default
partitioner), so faust recovers each host's state on the worker that owns its partition.

Delivery, at least once (faust's ``exactly_once`` is not used):
* Input: each record is processed as it arrives (in the batches faust fetches:
  processors/faust_transport.py) but acked only at the next checkpoint (every
  ``processor_checkpoint_s``), after every host it touched has been written to the table. faust commits acked offsets only after flushing the producer, so the changelog is
  never behind the committed offsets; a record replayed after a crash is caught by the
  dedupe state. One changelog write per host per checkpoint, not per record.
* Output: a closing window's outputs go to the host's outbox in the table first, with the
  end offsets of the partitions they go to; the changelog is flushed, then the outputs are
  sent and awaited, then the outbox is cleared (in the table at the next checkpoint: one
  changelog write per close, not two). A retry after a crash or a failed send first
  drops what those partitions already hold past the marks (processors/delivered.py), so no
  output (no proof_id) is written twice.
* Rejections are sent as they happen, before their record is acked.

The common usage record (a known host's next sample, every rule passing) takes the native fast
path (processors/native.py, native/hm_ingest; ``processor_native_ingest``): those hosts' states
are held natively and a chunk of records is applied in the ingest thread with the GIL
released, so the worker's own thread only moves batches. Every other record goes through
Engine.ingest, on the host's state taken out of the native store; a host is in exactly one of
the two places, or only in the table.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import gc
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from hmconfig.kafka_clients import faust_credentials
from schemas.dsse import HEADER_SIG

from .config import ProcessorConfig
from .delivered import DeliveredCheck, tp_name, tp_of, undelivered
from .faust_transport import App, send_batches
from . import native
from .engine import REJECTED_TOPIC, Engine, Signer, decode, host_of, new_state, rejection_record
from .validation import TOPIC_SCHEMA, Rejection, Verified, header, verify_many

log = logging.getLogger("processors")
# Fault injection for the crash tests (comma-separated names in HMTEL_FAILPOINTS):
#   after_output_send  the worker SIGKILLs itself once a tick's outputs are acknowledged and
#                      before their outboxes are cleared: where a crash would duplicate them
REPORT_S = 30.0  # progress line period
CHECKPOINT_MAX = 200_000  # records held unacked at most (~300 B each once settled) before a checkpoint
PARKED_MAX = 100_000  # records parked for inventories (~1.5 KB each) beyond which a backlog adds no wait
POSITIONS_TIMEOUT_S = 30.0  # _fix_positions: then the partitions left are reset at their first fetch
WAIT_MAX_GRACES = 10  # an unknown host's records wait for its inventory at most this many graces
PARKED_PAUSE = 20_000  # records parked beyond which only inventories are read (Processor._inventories_first)
# Producer batches of up to 256 KiB instead of aiokafka's 16 KiB: a host state is ~4 KB, so a
# checkpoint made batches of 4 states, each compressed alone. With 20,000 hosts: 3,990 -> 5,526
# records/s, and the broker's CPU per record 33 -> 8 us (docs/PROCESSORS.md).
PRODUCER_BATCH_BYTES = 256 * 1024
# chunks queued for the ingest thread before the loop waits for it (Processor._on_batch): two
# fetches of 8,000 records
INFLIGHT_MAX = 64
VERIFY_CHUNK = 250  # records per signature batch: ~19 us per check at 250, ~17 at 2,000, 40 alone (AVX2)
FAILPOINTS = frozenset(filter(None, os.environ.get("HMTEL_FAILPOINTS", "").split(",")))
INVENTORY_TOPIC = "hm.inventory.v1"
INPUT_TOPICS = (INVENTORY_TOPIC, "hm.usage.v1", "hm.ebpf.v1")
PAUSED_FOR_INVENTORIES = frozenset(INPUT_TOPICS) - {INVENTORY_TOPIC}  # Processor._inventories_first
OUTPUT_TOPICS = ("hm.usage.agg.10s.v1", "hm.usage.agg.1m.v1", "hm.proofs.v1", REJECTED_TOPIC)


def tune_gc() -> None:
    """Fewer cyclic garbage collections in a worker. A young-generation collection walks every
    tracked object allocated since the last one and still alive, and in a drain most are: each
    record's faust message waits for the next checkpoint (up to 200,000 records), and the fetch in
    hand holds aiokafka's and faust's objects of up to 8,000 records. With the default thresholds
    (700, 10, 10) the collector ran every few records; at 50,000 it still ran about once a fetch,
    123 times in a 20,000-host drain for 3.0 s of the worker's one interpreter thread (gc.callbacks,
    timed). At 400,000, with a settled record's headers dropped as well as its value (one object a
    record waits for the checkpoint, not four), it ran 4 times for 0.7 s (docs/PROCESSORS.md).
    Cycles are still collected, less often: at most 400,000 objects of garbage wait for it. What
    exists at start (imports, faust's app) is frozen out of the scans."""
    gc.freeze()
    gc.set_threshold(400_000, 50, 1_000)


def _decode(msg: Any) -> Any:
    """(record, schema), or the Rejection (or error) decoding raised, to be raised in order."""
    try:
        return decode(msg.topic, msg.value)
    except Exception as err:  # noqa: BLE001 - raised again in _handle, where every error is filed
        return err


@dataclass
class Routed:
    """One chunk on the native pipeline (Processor._route, _submit, _settle)."""

    chunk: list[Any]
    seq: int  # chunks are settled in this order
    items: list[tuple[str, bytes, Any]] = field(default_factory=list)  # (host_id, value, headers) for the store
    fast: list[Any] = field(default_factory=list)  # their messages
    python: list[Any] = field(default_factory=list)  # the messages routed to the Python engine
    checking: asyncio.Future[Verified] | None = None  # the Python-bound records' signatures, checked ahead
    now_us: int = 0
    # the store's answers, ts or None (declined), for the fetch's chunks: this chunk's are [first:first + len(items)]
    taken: asyncio.Future[list[int | None]] | None = None
    first: int = 0


Outbox = tuple[str, list[Any]]  # (host_id, outbox entries [topic, key, value, host_id])


def partition_for(key: bytes, partitions: int) -> int:
    """aiokafka's (and Java's) default partitioner, so outputs land in the host's partition."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Processor:
    """Builds the faust app around an Engine. ``stats`` counts what happened (for logs and bench)."""

    def __init__(self, settings: Any, cfg: ProcessorConfig, signer: Signer, *, topic_partitions: dict[str, int],
                 worker_name: str = "0"):
        self.settings, self.cfg, self.signer = settings, cfg, signer
        self.engine = Engine(cfg)
        self.topic_partitions = topic_partitions
        partitions = self.partitions = topic_partitions["hm.usage.v1"]
        self.checkpoint_s = settings.processor_checkpoint_s
        self.last_checkpoint = time.monotonic()
        self.dirty: dict[str, dict[str, Any]] = {}
        # hosts whose Python states _deliver holds across its awaits: they stay out of the native store
        self.delivering: set[str] = set()
        self.inflight: collections.deque[Routed] = collections.deque()  # chunks not settled yet, oldest first
        self.routed_seq = self.settled_seq = 0  # chunks routed / settled so far
        # host -> the chunk that must be settled before its records may take the fast path again: it
        # holds records of the host bound for the Python engine, routed there or declined
        self.pending: dict[str, int] = {}
        self.settling = asyncio.Lock()
        self.unacked: list[Any] = []  # records handled since the last checkpoint (faust ConsumerMessage)
        self.stats = {"accepted": 0, "rejected": 0, "emitted": 0, "checkpoints": 0, "already_delivered": 0,
                      # usage records the native store took / declined to Python / _route sent to Python
                      "native": 0, "declined": 0, "routed": 0,
                      "native_closes": 0,  # hosts whose due windows the native store closed
                      "writes": 0}  # host states written to the table (its changelog)
        self.unknown_since: dict[str, float] = {}  # host -> when its grace started (see _may_wait)
        self.unknown_first: dict[str, float] = {}  # host -> when its first record was parked
        self.parked_count = 0  # records parked, as of the last tick
        self.paused: set[TopicPartition] = set()  # input partitions paused for the inventories
        # inventory partition -> its end offset when assigned: read first (_inventories_at_start)
        self.inventories_due: dict[TopicPartition, int] = {}
        self.inventories_since = 0.0  # when _inventories_at_start paused the other inputs
        # host -> [record] held (unacked) until the host's inventory pins its key, or the grace
        # runs out. Sleeping instead stopped delivery of every topic, the inventory's included,
        # so a worker started on a backlog stalled (docs/PROCESSORS.md).
        self.parked: dict[str, list[Any]] = {}
        # Hosts whose parked records were left for the partition's next owner at a rebalance: their
        # other records in the batch being finished are left too, or they would overtake them.
        self.released: set[str] = set()
        self.sought_at = -1  # app.rebalancing_count at the last seek to the committed offsets (_after_seek)
        self.sought_positions: dict[TopicPartition, int] = {}  # input partition -> its position after that seek
        self._partition_cache: dict[str, int] = {}
        self.ready = False
        # The timer's work list: host -> when to look at it next (close_due). A window that has ended
        # may still wait for its topics' watermarks (a backlog) or their silence: its host is looked
        # at again when a record passes that end (open_end) or when silence could close it, not at
        # every tick (with 20,000 hosts in a backlog that was 660,000 idle looks in a minute).
        self.due: dict[str, int] = {}
        self.open_end: dict[str, int] = {}  # host -> end of its earliest open window, as last seen
        self.rescan = True
        self.failed_sends = 0  # consecutive ticks whose outputs could not be sent
        self.rejected_by_code: dict[str, int] = {}
        self.reported: tuple[float, dict[str, int], dict[str, int]] = (time.monotonic(), {}, {})
        datadir = Path(settings.state_dir) / "processors" / f"{settings.processor_app_id}-{worker_name}"
        datadir.mkdir(parents=True, exist_ok=True)
        app = self.app = App(
            settings.processor_app_id,
            broker=[f"kafka://{hp}" for hp in settings.bootstrap.split(",")],
            # security (helper "security"): TLS/SASL from the settings, as every other hmtel client
            broker_credentials=faust_credentials(settings),
            datadir=str(datadir),
            store="memory://",
            topic_partitions=partitions,
            topic_replication_factor=settings.topic_replication,
            table_standby_replicas=0,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset=settings.processor_offset_reset,
            producer_acks=-1,
            producer_linger=0.02,  # batch the changelog and output records (the default 0 sends each alone)
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            producer_compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
            broker_session_timeout=10.0,
            broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0,
            # One fetch is one batch (processors/faust_transport.py). Each fetch is a round trip to
            # the consumer's thread that this thread waits for: with 2,000 records and 1 MiB per
            # partition it waited 30-45 % of a 20,000-host drain, with 8,000 and 4 MiB about 15 %.
            # The native path keeps records as bytes; without it, each is decoded to dicts at once.
            broker_max_poll_records=8000,
            consumer_max_fetch_size=4 * 1024**2,
            web_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
            logging_config=None,
        )
        # Raw bytes in the table (orjson-encoded state, encoded eagerly at write time) with a decoded
        # working copy in self.states, dropped at every rebalance so it never outlives its partition.
        self.table = app.Table(f"{settings.processor_app_id}-hosts", default=None, partitions=partitions,
                               use_partitioner=True, key_type=bytes, value_type=bytes)
        # The producer's partitioner would hash the key (murmur2, in Python) at every write: 4 % of
        # this thread at 20,000 hosts. The same partition, from the memo (None: the partitioner's).
        self.table.partition_for_key = self._changelog_partition  # type: ignore[method-assign]
        self.states: dict[str, dict[str, Any]] = {}
        app.on_partitions_revoked.connect(self._forget)
        app.on_partitions_assigned.connect(self._forget)
        app.after_seek = self._after_seek
        self.inputs = {name: app.topic(name, key_serializer="raw", value_serializer="raw") for name in INPUT_TOPICS}
        # record-level rejections, sent one at a time (_reject); a window's outputs go in batches (_send_batches)
        self.outputs = {REJECTED_TOPIC: app.topic(REJECTED_TOPIC, key_serializer="raw", value_serializer="raw")}
        # The agents make faust subscribe the group to the input topics (co-partitioned with the
        # table); the records themselves come in batches to _on_batch (processors/faust_transport.py).
        app.batch_topics = frozenset(INPUT_TOPICS)
        app.batch_first = frozenset({INVENTORY_TOPIC})  # a fetch's inventories before its usage records
        app.batch_handler = self._on_batch
        app.agent(self.inputs["hm.inventory.v1"], name="inventory")(self._consume)
        app.agent(app.topic(*INPUT_TOPICS[1:], key_serializer="raw", value_serializer="raw"),
                  name="records")(self._consume)
        app.timer(interval=settings.processor_tick_s, name="close-windows")(self._tick)
        threads = settings.processor_verify_threads
        self.verify_threads = max(0, (os.cpu_count() or 1) - 1) if threads is None else threads
        self.verify_pool = (ThreadPoolExecutor(self.verify_threads, thread_name_prefix="hm-verify")
                            if self.verify_threads else None)
        # The native store and its own thread: a chunk's ingest runs while the verify thread checks the
        # next chunk's signatures and this thread handles the records the fast path declined.
        self.store = native.make_store(cfg) if settings.processor_native_ingest else None
        # the hosts in the store and their pinned keys, mirrored here: only this thread adds or removes
        # hosts (ingest changes neither), and asking the store per record waits for its lock
        self.native_keys: dict[str, str | None] = {}
        self.ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="hm-ingest") if self.store is not None else None
        self.delivered = DeliveredCheck(settings)
        app.on_before_shutdown.connect(self._stop_delivered)

    async def _stop_delivered(self, *_args: Any, **_kwargs: Any) -> None:
        await self.delivered.stop()
        for pool in (self.verify_pool, self.ingest_pool):
            if pool is not None:
                pool.shutdown(wait=False)

    async def _forget(self, *_args: Any, **_kwargs: Any) -> None:
        if self.store is not None:  # changed states wait for the next checkpoint, as self.dirty's do
            for host_id, raw in self.store.dump_dirty():
                self.dirty[host_id] = orjson.loads(raw)
            self.store.clear()
            self.native_keys.clear()
            self.pending.clear()
        self.states.clear()
        self.released.clear()  # faust seeks to the committed offsets next: those records come again
        self.due.clear()
        self.open_end.clear()
        self.rescan = True

    def get(self, host_id: str) -> dict[str, Any] | None:
        # a state changed since the last checkpoint is newer than the table's copy, even after _forget
        state = self.states.get(host_id) or self.dirty.get(host_id)
        if state is None and host_id in self.native_keys:
            del self.native_keys[host_id]
            taken = self.store.take(host_id)  # type: ignore[union-attr]  # out of the native store: Python holds it now
            if taken is not None:
                raw, changed = taken
                state = self.states[host_id] = orjson.loads(raw)
                if changed:
                    self.dirty[host_id] = state
                return state
        if state is None:
            raw = self.table.get(host_id.encode())
            if raw is not None:
                state = self.states[host_id] = orjson.loads(raw)
        return state

    def _native(self, host_id: str) -> bool:
        """Is the host's state in the native store? Moves it there from Python (or from the table) unless
        Python must keep it: a delivery holds it across awaits, its records wait for the inventory, no
        key is pinned yet (the store would decline every record), or strict mode does not enrol it."""
        store = self.store
        if store is None:
            return False
        if host_id in self.native_keys:
            return True
        if host_id in self.delivering or host_id in self.parked or host_id in self.released:
            return False
        if self.cfg.enrolled is not None and host_id not in self.cfg.enrolled:
            return False
        state = self.dirty.get(host_id) or self.states.get(host_id)
        if state is not None:
            if state["key"] is None:
                # no key pinned: the store declines every record, and a decline costs more than the
                # Python engine alone (the state goes to the store and back as JSON; the next
                # records queued decline too)
                return False
            changed = self.dirty.pop(host_id, None) is not None
            self.states.pop(host_id, None)
            store.load(host_id, orjson.dumps(state), changed)
            self.native_keys[host_id] = state["key"]
            return True
        raw = self.table.get(host_id.encode())
        if raw is None:
            return False  # a host never seen: the Python engine starts its state
        store.load(host_id, raw, False)
        key = store.key(host_id)
        if key is None:
            store.take(host_id)  # no key pinned: Python reads it from the table when it needs it
            return False
        self.native_keys[host_id] = key
        return True

    def _pinned_key(self, host_id: str) -> Any:
        """The host's pinned key, wherever its state is; never moves the state."""
        if host_id in self.native_keys:
            return self.native_keys[host_id]
        return (self.get(host_id) or {}).get("key")

    def put(self, state: dict[str, Any]) -> None:
        """Write a host's state to the table (and so to its changelog). The records it took in so far
        are in what is written, so the next checkpoint need not write it again (it acks them)."""
        host_id = state["host_id"]
        self.states[host_id] = state
        self.dirty.pop(host_id, None)
        self.table[host_id.encode()] = orjson.dumps(state)
        self.stats["writes"] += 1

    # --- input ------------------------------------------------------------------
    async def _consume(self, stream: Any) -> None:
        """Only if a record ever came the per-record way: handled like a batch of one."""
        stream.enable_acks = False  # acked in _checkpoint, once the state they changed is in the changelog
        async for event in stream.events():
            await self._on_batch([event.message])

    async def _on_batch(self, messages: list[Any]) -> None:
        if self.store is not None:
            # The whole fetch is queued for the ingest thread at once, and only the chunks it has
            # finished are settled here: so this thread goes on to the next fetch (aiokafka's and
            # faust's per-record work, ~18 us a record) while the ingest thread applies this one.
            # Settling each chunk in turn, two deep, left the two threads mostly taking turns: the
            # loop waited for the ingest thread ~45 % of the drain, and the ingest thread idled
            # while the loop fetched (docs/PROCESSORS.md).
            self._submit([self._route(messages[i:i + VERIFY_CHUNK]) for i in range(0, len(messages), VERIFY_CHUNK)])
            await self._settle(keep=INFLIGHT_MAX)
            messages = []
        # Without the store: the verify threads check one chunk's signatures while this thread
        # decodes and applies the chunk before it, so it waits only for the first chunk's answers.
        for chunk, checking in self._verify_ahead(messages):
            decoded = [_decode(msg) for msg in chunk]
            verified = await checking
            for msg, dec in zip(chunk, decoded):
                if await self._handle(msg, first=True, decoded=dec, verified=verified):
                    self._settled(msg)
        if (self.parked or self.paused) and not self.app.rebalancing:
            self._inventories_first()
        if len(self.unacked) >= CHECKPOINT_MAX or time.monotonic() - self.last_checkpoint >= self.checkpoint_s:
            await self._checkpoint()

    def _route(self, chunk: list[Any]) -> Routed:
        """Split a chunk into the records the native store may take (usage records of hosts it holds;
        it checks their signatures itself) and those for the Python engine, whose signatures the
        verify thread checks meanwhile. Each host's records apply in order:

        * within the chunk, a host's records leave the fast path at its first one bound for Python;
        * across chunks, a host with records bound for Python in a chunk not settled yet stays off
          the fast path (``pending``), and the store blocks a host from its first declined record
          until _settle has replayed it (``HostStore.unblock``), so a chunk may go to the ingest
          thread before the one ahead of it is settled;
        * the Python engine takes a host's state out of the store (get) to apply a record; a later
          chunk's routing (_native) brings it back."""
        self.routed_seq += 1
        routed = Routed(chunk, self.routed_seq)
        stopped: set[str] = set()
        native_keys, pending, settled = self.native_keys, self.pending, self.settled_seq
        for msg in chunk:
            host_id = msg.key.decode("ascii", "replace") if msg.key else ""
            if (msg.topic == native.USAGE and msg.value is not None and host_id not in stopped
                    and pending.get(host_id, 0) <= settled and (host_id in native_keys or self._native(host_id))):
                routed.items.append((host_id, msg.value, msg.headers))
                routed.fast.append(msg)
            else:
                stopped.add(host_id)
                pending[host_id] = routed.seq
                routed.python.append(msg)
        if routed.python:
            self.stats["routed"] += sum(1 for msg in routed.python if msg.topic == native.USAGE)
        routed.checking = self._verify_ahead(routed.python)[0][1] if routed.python else None
        return routed

    def _submit(self, chunks: list[Routed]) -> None:
        """Queue a fetch's chunks for the ingest thread (one thread: chunks apply in order), their fast
        records as one call: each call takes the GIL twice (its arguments, its answers), and with
        this thread holding it, each take waited up to the switch interval (5 ms). Per chunk of 250
        that made the ingest thread wait about a third of its time (docs/PROCESSORS.md)."""
        items = [item for routed in chunks for item in routed.items]
        taken, now_us = None, int(time.time() * 1e6)
        if items:
            taken = asyncio.get_running_loop().run_in_executor(
                self.ingest_pool, self.store.ingest, items, now_us)  # type: ignore[union-attr]
        first = 0
        for routed in chunks:
            if routed.items:
                routed.taken, routed.first, routed.now_us = taken, first, now_us
                first += len(routed.items)
            self.inflight.append(routed)

    async def _settle(self, keep: int = 0) -> None:
        """Finish the oldest chunks: each one the ingest thread is done with, and more, waiting for
        them, until at most ``keep`` are left. The records the store took are done (acked at the
        next checkpoint); those it declined and those routed to Python go through _handle, in the
        chunk's order, and then the store may take the declined hosts again. The timer settles too,
        so the last chunks of a fetch never wait for the next one."""
        async with self.settling:
            while self.inflight and (len(self.inflight) > keep or self._applied(self.inflight[0])):
                await self._settle_one(self.inflight[0])
                self.inflight.popleft()
                self.settled_seq += 1
            if self.pending and not self.inflight:
                self.pending.clear()

    @staticmethod
    def _applied(routed: Routed) -> bool:
        """Is the ingest thread done with this chunk (or had it nothing to do)?"""
        return routed.taken is None or routed.taken.done()

    async def _settle_one(self, routed: Routed) -> None:
        declined, declined_hosts = [], set()
        if routed.taken is not None:
            accepted = 0
            answers = (await routed.taken)[routed.first:routed.first + len(routed.items)]
            for msg, (host_id, _value, _headers), ts in zip(routed.fast, routed.items, answers):
                if ts is None:
                    declined.append(msg)
                    declined_hosts.add(host_id)
                    # the chunks queued behind this one may hold more of the host's records, declined too
                    self.pending[host_id] = self.routed_seq
                    continue
                accepted += 1
                self._look_after(host_id, ts, routed.now_us)
                self._settled(msg)
            self.stats["accepted"] += accepted
            self.stats["native"] += accepted
            self.stats["declined"] += len(declined)
        todo = routed.python
        if declined:
            position = {id(msg): i for i, msg in enumerate(routed.chunk)}
            todo = sorted(todo + declined, key=lambda msg: position[id(msg)])
        verified = await routed.checking if routed.checking is not None else {}
        if len(declined) >= 4:  # (the first record of each host's boot, say) their signatures as a batch too
            for _chunk, checking in self._verify_ahead(declined):
                verified.update(await checking)
        for msg in todo:
            if await self._handle(msg, first=True, verified=verified):
                self._settled(msg)
        if declined:
            self.store.unblock(list(declined_hosts))  # type: ignore[union-attr]

    def _settled(self, msg: Any) -> None:
        """Queue a record done with for the next checkpoint's ack. Only its offset is needed now: its
        value and headers go, so what waits for the checkpoint is one object a record (tune_gc).
        self.unacked, not a local alias: a checkpoint run by the timer while _handle awaited (a
        rejection's send) replaces the list, and a record appended to the old one would never be
        acked, holding the partition's commits back for good."""
        msg.value = msg.headers = None
        self.unacked.append(msg)

    async def _checkpoint(self) -> None:
        """Write every host changed since the last checkpoint to the table (its changelog), then ack the
        records that changed them. faust commits an offset only once it is acked and the producer is
        flushed, so the changelog is never behind the committed offsets; one write per host per
        checkpoint instead of one per record."""
        self.last_checkpoint = time.monotonic()
        dirty, self.dirty = self.dirty, {}
        for state in dirty.values():
            self.put(state)
        if self.store is not None:
            dumped = self.store.dump_dirty()
            for host_id, raw in dumped:
                self.table[host_id.encode()] = raw
            self.stats["writes"] += len(dumped)
        done, self.unacked = self.unacked, []
        self.app.consumer.ack_many(done)  # type: ignore[attr-defined]  # Consumer.ack's, once for all
        self.stats["checkpoints"] += 1

    def _verify_ahead(self, messages: list[Any]) -> list[tuple[list[Any], asyncio.Future[Verified]]]:
        """Split a batch into chunks, each with the future answers to its signature checks, done
        as batch checks in the verify threads (Ed25519 was most of a record's cost:
        docs/PROCESSORS.md). The key comes from the Kafka key (the host_id) and the host's pinned
        key, so no record needs decoding first but inventories, whose key pins. Only a cache:
        each record still goes through every rule in order, and one whose answer is missing here
        (its Kafka key is not its host_id, say) is verified inline."""
        jobs: list[tuple[bytes, str, bytes, bytes] | None] = []
        claimed: dict[str, str] = {}  # keys of inventories earlier in this batch
        enrolled = self.cfg.enrolled or {}
        for msg in messages:
            jobs.append(None)
            schema = TOPIC_SCHEMA.get(msg.topic)
            sig = header(msg.headers, HEADER_SIG)
            if schema is None or not sig or not msg.key:
                continue
            host_id = msg.key.decode("ascii", "replace")
            if schema == "hm.inventory.v1":
                dec = _decode(msg)  # inventories are few: decoded twice rather than kept
                key_b64 = None if isinstance(dec, BaseException) else dec[0].get("public_key")
                if isinstance(key_b64, str):
                    claimed.setdefault(host_id, key_b64)
            else:
                key_b64 = self._pinned_key(host_id) or enrolled.get(host_id) or claimed.get(host_id)
            if isinstance(key_b64, str):
                try:
                    jobs[-1] = (base64.b64decode(key_b64, validate=True), schema, msg.value, sig)
                except (binascii.Error, ValueError):
                    pass
        loop = asyncio.get_running_loop()
        chunks = []
        for i in range(0, len(messages), VERIFY_CHUNK):
            part = [job for job in jobs[i:i + VERIFY_CHUNK] if job is not None]
            if self.verify_pool is None:
                checking: asyncio.Future[Verified] = loop.create_future()
                checking.set_result(verify_many(part))
            else:
                checking = loop.run_in_executor(self.verify_pool, verify_many, part)
            chunks.append((messages[i:i + VERIFY_CHUNK], checking))
        return chunks

    async def _handle(self, msg: Any, first: bool = False, decoded: Any = None,
                      verified: Verified | None = None) -> bool:
        """Apply one record; False when it was parked to wait for its host's inventory (``first``:
        the first pass; a replay always settles the record). ``decoded``: _decode(msg), done ahead."""
        value, now_us = msg.value, int(time.time() * 1e6)
        record: Any = None
        state: dict[str, Any] | None = None
        try:
            if decoded is None:
                decoded = _decode(msg)
            if isinstance(decoded, BaseException):
                raise decoded
            record, schema = decoded
            host_id = record["host_id"]
            if first and host_id in self.released and schema != "hm.inventory.v1":
                self.app.consumer.unacked.discard(msg)  # see release_parked
                return False
            if first and host_id in self.parked and schema != "hm.inventory.v1":
                self.parked[host_id].append(msg)  # behind the host's parked records, in order
                return False
            state = self.get(host_id) or new_state(host_id)
            try:
                self.engine.ingest(state, record, schema, value, msg.headers, now_us, verified)
            except Rejection as rej:
                if not first or rej.check != "key_pinning" or state["key"] is not None \
                        or not self._may_wait(host_id):
                    raise
                self.parked.setdefault(host_id, []).append(msg)
                return False
            self.states[host_id] = self.dirty[host_id] = state
            if schema != "hm.inventory.v1":
                self._look_after(host_id, record["ts"], now_us)
            self.stats["accepted"] += 1
            if schema == "hm.inventory.v1" and host_id in self.parked:
                await self._replay(host_id)
        except Rejection as rej:
            if rej.code == "duplicate" and state is not None:
                self.dirty[state["host_id"]] = state  # the duplicate counter moved
            await self._reject(rej.code, rej.check, rej.detail, record, msg, now_us)
        except Exception as err:  # noqa: BLE001 - a bad record must never crash the worker
            log.exception("processor error on %s[%s]@%s", msg.topic, msg.partition, msg.offset)
            await self._reject("malformed", "processor_error", f"{type(err).__name__}: {err}", record, msg, now_us)
        return True

    def _look_after(self, host_id: str, ts: int, now_us: int) -> None:
        """When the timer should look at a host that just took a record with this ts: at once if the
        record passed the end of its earliest open window (a watermark moved past it), else when the
        record's own windows end, or, if they ended already (a backlog), when silence could close them:
        its topic was seen just now. Windows opened before are in the host's due time already."""
        own_end = self.engine.record_due_us(ts)
        first_end = self.open_end.get(host_id)
        if first_end is not None and ts >= first_end:
            look = now_us
        else:
            look = own_end if own_end > now_us else now_us + self.engine.min_grace_us
        if first_end is None or own_end < first_end:
            self.open_end[host_id] = own_end
        if look < self.due.get(host_id, look + 1):
            self.due[host_id] = look

    def _look_again(self, host_id: str, state: dict[str, Any], now_us: int) -> None:
        """After the timer looked at a host: next when a window could close without a new record
        (Engine.next_look_us); a record passing an open window's end makes it sooner (_look_after)."""
        self._set_looks(host_id, self.engine.next_look_us(state, now_us))

    def _set_looks(self, host_id: str, looks: tuple[int, int] | None) -> None:
        if looks is None:
            self.due.pop(host_id, None)
            self.open_end.pop(host_id, None)
        else:
            self.open_end[host_id], self.due[host_id] = looks

    def _may_wait(self, host_id: str) -> bool:
        """An unknown host's records may wait for its inventory (the topics are consumed
        independently) for unknown_host_grace_s from the first one seen, counted from when the
        host's inventory partition is read to its end: under a backlog the inventory may be
        further behind in its topic than the grace (_inventory_behind). Never longer than
        WAIT_MAX_GRACES graces in all."""
        now = time.monotonic()
        first = self.unknown_first.setdefault(host_id, now)
        since = self.unknown_since.setdefault(host_id, now)
        grace = self.cfg.unknown_host_grace_s
        if now - first < WAIT_MAX_GRACES * grace and self._inventory_behind(host_id):
            self.unknown_since[host_id] = now
            return True
        return now - since < grace

    def _inventory_behind(self, host_id: str) -> bool:
        """Does the host's inventory partition hold records this worker has not read yet (while fewer
        than PARKED_MAX records are parked)? faust's consumer knows the partition's high watermark
        from its last fetch, and where reading stands (_read_position). A partition this worker
        does not read, or no answer yet, is not behind."""
        if self.parked_count >= PARKED_MAX:
            return False
        consumer = self.app.consumer
        # the input topics are co-partitioned: the host's inventories share its usage partition
        tp = TopicPartition(INVENTORY_TOPIC, self._partition(host_id))
        try:
            highwater = consumer.highwater(tp)
            position = self._read_position(tp)
        except Exception:  # noqa: BLE001 - not assigned here, or the consumer is not running
            return False
        return highwater is not None and position < highwater

    def _read_position(self, tp: TopicPartition) -> int:
        """Where reading a partition stands: after the last offset handed over since the last seek
        (faust's consumer's bookkeeping, not in its ConsumerT type), else where that seek put it
        (_after_seek), else at the committed offset, else 0. Not faust's read offset alone: a
        seek sets it to the next offset to read, not the last one read, so a partition with one
        record left looked read to its end."""
        consumer: Any = self.app.consumer
        read = consumer._read_offset.get(tp)
        if read is not None and tp in consumer.read_heads:
            return read + 1
        sought = self.sought_positions.get(tp)
        if sought is not None:
            return sought
        return read if read is not None else (consumer._committed_offset.get(tp) or 0)

    async def _replay(self, host_id: str) -> None:
        """Settle a host's parked records in order (accepted once its key is pinned, else rejected),
        and queue them for the next checkpoint's acks. The host stays parked until its queue is empty,
        so a record that arrives while a replayed rejection is being sent (the timer and the input
        may both replay) joins the queue behind the older ones instead of overtaking them; taken
        first, a newer seq would have made the older ones duplicates."""
        queue = self.parked.get(host_id)
        verified: Verified = {}
        if queue and len(queue) > 1:  # their signatures as batches in the verify thread, not one by one here
            for _chunk, checking in self._verify_ahead(list(queue)):
                verified.update(await checking)
        while queue:
            msg = queue.pop(0)
            await self._handle(msg, verified=verified)
            self._settled(msg)
        if queue is not None and self.parked.get(host_id) is queue:  # not a queue parked anew meanwhile
            del self.parked[host_id]
            self.unknown_since.pop(host_id, None)
            self.unknown_first.pop(host_id, None)

    async def _after_seek(self) -> None:
        """After faust has sought every partition to its committed offset (after an assignment,
        before it fetches and before the "ready" line; also whenever it fetches while its flow
        is stopped, as during a rebalance). The parked records at or after a partition's
        position now come again, so they leave the wait; the records of hosts released earlier
        in the rebalance come again too, and are taken then; and records parked from now on are
        not released in this rebalance. Released after the seek (faust was still restoring the
        table), records came again, were dropped as released, and were lost: seen in the
        rebalance integration test."""
        positions = await self._fix_positions()
        self.sought_positions = {tp: at for tp, at in positions.items() if at is not None}
        self.released.clear()
        self.sought_at = self.app.rebalancing_count
        dropped = self._unpark(positions)
        if dropped:
            log.info("%d parked records are read again from the committed offsets", dropped)
        await self._inventories_at_start(positions)

    async def _fix_positions(self) -> dict[TopicPartition, int | None]:
        """Ask for every assigned input partition's position, so a partition with no committed
        offset is reset (to processor_offset_reset) now rather than at its first fetch, later.
        Then "ready" means that a record written after it is read: with the reset "latest",
        the worker skipped the records written between that line and the first fetch (the
        integration tests write theirs at once). Returns the positions (None where unknown)."""
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in INPUT_TOPICS]
        try:
            found = await asyncio.wait_for(asyncio.gather(*(consumer.position(tp) for tp in tps),
                                                          return_exceptions=True), POSITIONS_TIMEOUT_S)
        except asyncio.TimeoutError:
            found = [None] * len(tps)
        positions = {tp: pos if isinstance(pos, int) else None for tp, pos in zip(tps, found)}
        unknown = sorted(tp for tp, pos in positions.items() if pos is None)
        if unknown:
            log.warning("positions of %d input partitions unknown after the seek (%s): they are reset at "
                        "their first fetch", len(unknown), ", ".join(map(tp_name, unknown)))
        return positions

    async def _inventories_at_start(self, positions: dict[TopicPartition, int | None]) -> None:
        """After an assignment (_after_seek): if the assigned inventory partitions hold records not
        read yet, the usage and eBPF partitions are paused until those are read, up to the end
        offsets they have now. Else a worker started on a backlog read usage records of hosts
        whose inventories were still ahead in their topic: at 20,000 hosts its first fetches
        parked ~24,000 records, replayed later through the Python engine (docs/PROCESSORS.md).
        _inventories_first resumes them, and after WAIT_MAX_GRACES graces whatever the
        inventories' progress."""
        consumer = self.app.consumer
        tps = [tp for tp in positions if tp.topic == INVENTORY_TOPIC]
        self.inventories_due = {}
        if not tps:
            return
        try:
            if any(positions[tp] is None for tp in tps):
                raise LookupError("no position")
            ends = await consumer.highwaters(*tps)
        except Exception as err:  # noqa: BLE001 - an optimisation only: the records park meanwhile
            log.warning("inventory partitions' offsets unknown (%s: %s): not reading them first",
                        type(err).__name__, err)
            return
        due = {tp: ends[tp] for tp in tps if ends.get(tp) is not None and (positions[tp] or 0) < ends[tp]}
        if not due:
            return
        self.inventories_due, self.inventories_since = due, time.monotonic()
        self._pause_for_inventories()
        log.info("%d inventory records not read yet: reading them before the usage and eBPF records",
                 sum(end - (positions[tp] or 0) for tp, end in due.items()))

    def _inventories_read(self) -> bool:
        """Are the inventories that _inventories_at_start found unread read now (or waited for long
        enough)?"""
        if self.inventories_due:
            self.inventories_due = {tp: end for tp, end in self.inventories_due.items()
                                    if self._read_position(tp) < end}
            waited = time.monotonic() - self.inventories_since
            if not self.inventories_due:
                log.info("inventories read in %.1f s: reading usage and eBPF records again", waited)
            elif waited >= WAIT_MAX_GRACES * self.cfg.unknown_host_grace_s:
                log.warning("inventories still not read after %.0f s (%s): reading usage and eBPF records "
                            "again", waited, ", ".join(f"{tp_name(tp)} to {end}"
                                                       for tp, end in sorted(self.inventories_due.items())))
                self.inventories_due = {}
        return not self.inventories_due

    def _inventories_first(self) -> None:
        """Backpressure: while more than PARKED_PAUSE records wait for their hosts' inventories, the
        other inputs' partitions are paused, so the fetches bring the inventories (a fetch takes
        up to 8,000 records from the partitions in turn, so under a backlog the inventory topic fell
        tens of seconds behind the usage topic, and parked records piled up and outwaited their
        grace). Resumed below half of it, once the inventories unread at the start are read."""
        count = self.parked_count = sum(map(len, self.parked.values()))
        consumer = self.app.consumer
        if not self._inventories_read():
            return
        if not self.paused and count > PARKED_PAUSE:
            # input partitions only: the assignment also holds the table's changelog partitions,
            # which faust keeps paused after recovery. Resumed with the rest, they made the worker
            # read its own state writes back, one by one through faust's per-record path: the
            # processors bench ran at ~9-12k records/s instead of ~16k whenever its backlog's first
            # fetch parked records (docs/PROCESSORS.md)
            self._pause_for_inventories()
            log.info("%d records wait for their hosts' inventories: reading only inventories until they come", count)
        elif self.paused and count <= PARKED_PAUSE // 2:
            consumer.resume_partitions(self.paused & set(consumer.assignment()))
            self.paused = set()

    def _pause_for_inventories(self) -> None:
        """Pause the assignment's usage and eBPF partitions (not the table's changelog partitions:
        _inventories_first says why)."""
        consumer = self.app.consumer
        self.paused = {tp for tp in consumer.assignment() if tp.topic in PAUSED_FOR_INVENTORIES}
        consumer.pause_partitions(self.paused)

    async def _replay_parked(self) -> None:
        """Replay (reject) the records of hosts whose grace ran out (_may_wait)."""
        self._inventories_first()
        now = time.monotonic()
        grace = self.cfg.unknown_host_grace_s
        for host_id in [h for h in self.parked if now - self.unknown_since.get(h, 0.0) >= grace]:
            if not self._may_wait(host_id):
                await self._replay(host_id)

    def _releasing(self) -> bool:
        """Are parked records to be released (release_parked)? During a rebalance, until its seek
        to the committed offsets (_after_seek): records parked after it are not read again."""
        return self.app.rebalancing and self.sought_at != self.app.rebalancing_count

    def release_parked(self) -> int:
        """At a rebalance: leave the parked records unacked for whoever owns their partition next,
        instead of rejecting them for a key their inventory may still bring. faust revokes partitions
        only once every record taken is acked, so they leave its wait set; after the rebalance it
        seeks every partition to its committed offset, which stops before the first of them (an
        unacked offset holds the commits back), so they are read again, in order, by the new owner
        (the records after them, read again too, are counted duplicates). Returns how many."""
        self.released.update(self.parked)
        released = self._unpark()
        if released:
            log.warning("rebalance: %d records parked for their hosts' inventory are left unacked; the "
                        "partition's next owner reads them again", released)
        return released

    def _unpark(self, positions: dict[TopicPartition, int | None] | None = None) -> int:
        """Drop parked records from the wait and from faust's unacked set (so a revocation does not
        wait for them; the committed offsets stay before them): all of them, or with ``positions``
        (after a seek) those at or after their partition's position, which come again. Faust may
        hand over records between its seek and _after_seek: those are not read again, and stay.
        Returns how many were dropped."""
        def comes_again(msg: Any) -> bool:
            if positions is None:
                return True
            at = positions.get(TopicPartition(msg.topic, msg.partition))
            return at is not None and msg.offset >= at

        unacked = self.app.consumer.unacked  # faust's own set (a WeakSet), not a copy
        dropped = 0
        for host_id, queue in list(self.parked.items()):
            keep: list[Any] = []
            drop: list[Any] = []
            for msg in queue:
                (drop if comes_again(msg) else keep).append(msg)
            for msg in drop:
                unacked.discard(msg)
            dropped += len(drop)
            queue[:] = keep  # a replay under way stops at its current record when none is kept
            if not keep:
                del self.parked[host_id]
                self.unknown_since.pop(host_id, None)
                self.unknown_first.pop(host_id, None)
        return dropped

    async def _reject(self, code: str, check: str, detail: str, record: Any, msg: Any, now_us: int) -> None:
        host = host_of(record, msg.key)
        rej = rejection_record(code, check, detail, host_id=host, topic=msg.topic, value=msg.value,
                               record=record, now_us=now_us, partition=msg.partition, offset=msg.offset)
        await self.outputs[REJECTED_TOPIC].send(key=host.encode(), value=orjson.dumps(rej))
        self.stats["rejected"] += 1
        self.rejected_by_code[code] = self.rejected_by_code.get(code, 0) + 1

    # --- window closing -----------------------------------------------------------
    def _partition(self, host_id: str) -> int:
        """The host's partition of the input topics and the table, memoised (murmur2 is Python code)."""
        p = self._partition_cache.get(host_id)
        if p is None:
            p = self._partition_cache[host_id] = partition_for(host_id.encode(), self.partitions)
        return p

    def _changelog_partition(self, key: bytes) -> int | None:
        if self.table.changelog_topic.partitions != self.partitions:
            return None  # never so when faust created the changelog; the producer's partitioner decides
        return self._partition(key.decode())

    def _owned(self, host_id: str, assigned: set[int]) -> bool:
        return self._partition(host_id) in assigned

    def _report(self, now: float) -> None:
        """A progress line for operators (INFO, every REPORT_S): what the worker did since the last."""
        last, self.reported = self.reported, (now, dict(self.stats), dict(self.rejected_by_code))
        elapsed = max(now - last[0], 1e-9)
        done = {k: v - last[1].get(k, 0) for k, v in self.stats.items()}
        codes = {k: v - last[2].get(k, 0) for k, v in self.rejected_by_code.items() if v > last[2].get(k, 0)}
        records = done["accepted"] + done["rejected"]
        if not records and not done["emitted"]:
            return
        log.info("last %.0f s: %d records (%.0f/s): %d accepted, %d rejected%s; %d outputs sent; %d host states "
                 "written (%d checkpoints and the closes' marks); %d hosts in memory, %d parked%s", elapsed, records,
                 records / elapsed, done["accepted"], done["rejected"],
                 f" ({', '.join(f'{k} {v}' for k, v in sorted(codes.items()))})" if codes else "",
                 done["emitted"], done["writes"], done["checkpoints"], len(self.states) + len(self.native_keys),
                 sum(len(v) for v in self.parked.values()),
                 f"; native store: {done['native']} taken, {done['routed']} routed and {done['declined']} declined "
                 f"to Python, {done['native_closes']} hosts' windows closed"
                 if self.store is not None else "")

    async def _tick(self) -> None:
        app = self.app
        # the chunks applied meanwhile (no next fetch may come to settle them); every chunk at a
        # rebalance, as faust revokes partitions only once every record taken is acked
        await self._settle(keep=0 if app.rebalancing else INFLIGHT_MAX)
        if time.monotonic() - self.reported[0] >= REPORT_S:
            self._report(time.monotonic())
        if self.parked and self._releasing():
            self.release_parked()
        elif self.parked or self.paused:
            await self._replay_parked()
        if app.rebalancing or time.monotonic() - self.last_checkpoint >= self.checkpoint_s:
            # also on a rebalance: faust revokes partitions only once every event taken is acked
            await self._checkpoint()
        if app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return  # acting on half-restored state could re-issue a proof seq
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == "hm.usage.v1"}
        if not self.ready:
            self.ready = True  # tests and operators wait for this line
            log.warning("ready: %d of %d partitions assigned, %d hosts restored", len(assigned), self.partitions,
                        len(self.table))
        if self.rescan:  # after a (re)assignment: every owned host, including outboxes left by a crash
            self.rescan = False
            for key in list(self.table.keys()):
                host_id = key.decode()
                state = self.get(host_id) if self._owned(host_id, assigned) else None
                if state is not None:
                    first_end = self.engine.next_due_us(state)
                    if first_end is not None:
                        self.open_end[host_id] = first_end
                    if state["outbox"] or first_end is not None:
                        self.due[host_id] = 0  # looked at now: a window may be due, an outbox unsent
        now_us = int(time.time() * 1e6)  # not the oldest queued record's time: docs/PROCESSORS.md
        states, closed_natively = self._close_due(now_us, assigned)
        if states or closed_natively:
            try:
                await self._deliver(states, closed_natively)
            except Exception as err:  # noqa: BLE001 - kept, marked: the next tick checks and retries
                self.failed_sends += 1
                hosts = [state["host_id"] for state in states] + [host_id for host_id, _ in closed_natively]
                if self.failed_sends == 1:  # once per outage, not once per tick
                    log.warning("sending the outputs of %d hosts failed (%s: %s); they stay in their outboxes, "
                                "are checked against the topics and retried every tick", len(hosts),
                                type(err).__name__, err)
                for host_id in hosts:
                    self.due[host_id] = 0
            else:
                if self.failed_sends:
                    log.warning("outputs sent again after %d failed attempts", self.failed_sends)
                self.failed_sends = 0

    def _close_due(self, now_us: int, assigned: set[int]) -> tuple[list[dict[str, Any]], list[Outbox]]:
        """Close what is due on the hosts due a look: in the native store where it can
        (HostStore.close_aggs, and a due proof window by native.close_proofs: the state stays
        there), else in Python on the state taken out. Returns the Python states with outputs to
        send, and the natively closed hosts' outbox entries. A close always fills the outbox, and
        _deliver writes the state (with its mark) before sending. A state taken out of the store
        for a Python close goes back at once (_restore) and is delivered as a native close is: the
        host's records queued for the ingest thread apply there instead of declining
        (docs/PROCESSORS.md)."""
        hosts = [h for h, due in self.due.items() if due <= now_us]
        closed_natively: list[Outbox] = []
        if self.store is not None and hosts:
            stored = [h for h in hosts if h in self.native_keys and self._owned(h, assigned)]
            done = set()
            for host_id, closed in zip(stored, self.store.close_aggs(stored, now_us)):
                finished = None if closed is None else native.finish_close(
                    self.store, self.engine, self.signer, host_id, closed, now_us)
                if finished is None:
                    # the store declined the close (or, a record applied meanwhile, the proof close):
                    # in Python below, on the whole state
                    continue
                entries, looks = finished
                done.add(host_id)
                if entries:
                    closed_natively.append((host_id, [[*entry, host_id] for entry in entries]))
                    self.stats["native_closes"] += 1
                self._set_looks(host_id, looks)
            hosts = [h for h in hosts if h not in done]
        states: list[dict[str, Any]] = []
        for host_id in hosts:
            was_native = host_id in self.native_keys
            state = self.get(host_id) if self._owned(host_id, assigned) else None  # not taken out only to drop
            if state is None:
                self.due.pop(host_id, None)
                continue
            fresh_outbox = not state["outbox"] and "outbox_mark" not in state
            self.engine.close_due(state, now_us, self.signer)
            self._look_again(host_id, state, now_us)
            if was_native and fresh_outbox and self._restore(state):
                # an outbox with a mark (a retry) stays in Python: _mark_outboxes checks what was delivered
                if state["outbox"]:
                    closed_natively.append((host_id, state["outbox"]))
            elif state["outbox"]:
                states.append(state)
        return states, closed_natively

    def _restore(self, state: dict[str, Any]) -> bool:
        """Put a state the timer took out of the native store back, changed (False: Python keeps it,
        as _native decides). Left in Python, the host's records already queued for the ingest
        thread declined there, each replayed in Python and each blocking the host's next ones."""
        host_id = state["host_id"]
        self.dirty[host_id] = state  # changed by the close: written at the next checkpoint, or by its mark
        return self._native(host_id)

    def _target(self, host_id: str, topic: str) -> TopicPartition:
        """Every output goes to its host's partition (aggregates are keyed by host and window)."""
        partitions = self.topic_partitions[topic]
        return TopicPartition(topic, self._partition(host_id) if partitions == self.partitions
                              else partition_for(host_id.encode(), partitions))

    async def _deliver(self, states: list[dict[str, Any]], closed_natively: list[Outbox] | None = None) -> None:
        """Send these hosts' outboxes and clear them; never one entry twice (processors/delivered.py).
        An outbox that carries a mark may have been sent before (a crash, a failed send): what the
        marked partitions already hold is dropped first. Then each outbox gets a fresh mark, durable
        in the changelog with the outbox before anything is sent. The hosts stay out of the native
        store only until their states (with the marks) are written: the sends and their acks take
        longest, and meanwhile the hosts' records keep the fast path; the sent entries are then
        cleared from each state where it is by then. ``closed_natively``: (host_id, outbox) of the
        hosts whose windows the store closed (their outboxes were empty and unmarked before)."""
        hosts = {state["host_id"] for state in states}
        self.delivering |= hosts  # these dicts are written after awaits: not into the native store meanwhile
        try:
            outboxes = await self._mark_outboxes(states, closed_natively or [])
        finally:
            self.delivering -= hosts
        await self._send_outboxes(outboxes)

    async def _mark_outboxes(self, states: list[dict[str, Any]], closed_natively: list[Outbox]) -> list[Outbox]:
        """Drop what a retried outbox already delivered, mark each outbox and write its state; the
        (host_id, outbox entries) to send."""
        retried = [state for state in states if state.get("outbox_mark")]
        if retried:
            marks: dict[TopicPartition, int] = {}
            for state in retried:
                for name, offset in state["outbox_mark"].items():
                    tp = tp_of(name)
                    marks[tp] = min(offset, marks.get(tp, offset))
            present = await self.delivered.present(marks)
            dropped = 0
            for state in retried:
                before = len(state["outbox"])
                state["outbox"] = undelivered(state["outbox"], present)
                dropped += before - len(state["outbox"])
                state.pop("outbox_mark")
                self.put(state)
            self.stats["already_delivered"] += dropped
            log.warning("outbox retry for %d hosts: %d outputs were already on their topics (not re-sent)",
                        len(retried), dropped)
        outboxes = [(state["host_id"], list(state["outbox"])) for state in states if state["outbox"]]
        targets = {host_id: {self._target(host_id, e[0]) for e in entries}
                   for host_id, entries in outboxes + closed_natively}
        ends = await self.delivered.end_offsets(set().union(*targets.values()))
        for state in states:
            if state["outbox"]:
                state["outbox_mark"] = {tp_name(tp): ends[tp] for tp in targets[state["host_id"]]}
                self.put(state)
        for host_id, _entries in closed_natively:
            self._mark_native(host_id, {tp_name(tp): ends[tp] for tp in targets[host_id]})
        return outboxes + closed_natively

    def _mark_native(self, host_id: str, marks: dict[str, int]) -> None:
        """Mark and write a natively closed host's state: in the store, or in Python if a declined
        record took it out during the awaits (or the store keeps it as JSON)."""
        store = self.store
        assert store is not None
        raw = store.mark(host_id, orjson.dumps(marks).decode()) if host_id in self.native_keys else None
        if raw is not None:
            self.table[host_id.encode()] = raw
            self.stats["writes"] += 1
            return
        state = self.get(host_id)
        assert state is not None, f"{host_id}: closed natively, and its state is gone"
        state["outbox_mark"] = marks
        self.put(state)

    async def _send_outboxes(self, outboxes: list[Outbox]) -> None:
        await self.app.producer.flush()  # the outboxes and their marks are durable before anything is sent
        records: dict[TopicPartition, list[tuple[bytes, bytes]]] = {}
        for host_id, entries in outboxes:
            for topic, key, value, _host in entries:
                records.setdefault(self._target(host_id, topic), []).append((key.encode(), value.encode()))
        sent = await self._send_batches(records)
        if "after_output_send" in FAILPOINTS:
            log.warning("failpoint after_output_send: %d outputs acknowledged, outboxes not cleared; SIGKILL", sent)
            os.kill(os.getpid(), signal.SIGKILL)
        for host_id, entries in outboxes:
            if host_id in self.native_keys and self.store.trim(host_id, len(entries)):  # type: ignore[union-attr]
                continue  # trimmed where the state is, in the store (dirty: written at the next checkpoint)
            state = self.get(host_id)
            if state is None:
                continue
            del state["outbox"][:len(entries)]
            if not state["outbox"]:
                state.pop("outbox_mark", None)
            # written at the next checkpoint, not now: a crash before that leaves the sent outbox
            # and its mark in the changelog, and the retry finds those outputs already delivered
            self.dirty[host_id] = state
        self.stats["emitted"] += sent

    async def _send_batches(self, records: dict[TopicPartition, list[tuple[bytes, bytes]]]) -> int:
        """The outputs, in whole batches on the app's producer (faust_transport.send_batches)."""
        return await send_batches(self.app.producer._ensure_producer(), records)  # type: ignore[attr-defined]
