"""The per-host agent behind `hmtel collect`: sample, sign, spool, publish.

    async with Agent(settings) as agent:   # start(): spool, identity, tasks, metrics
        await stop_requested.wait()        # stop(): stop sampling, flush (bounded), fsync, close

Tasks, each under a supervisor that restarts it with exponential backoff and
counts its errors, so a failing source never stops the others:

* one task per polling source (collector.sources). Sources at the usage pace
  are triggered by the usage tick, so every section of a record is read at
  the same moment; slower ones (filesystem) run on their own interval and the
  records in between carry their latest reading;
* the usage tick: every ``usage_interval_s`` it triggers the sources, waits
  for them briefly, and builds one hm.usage.v1 record from the fresh sections
  (a section that is missing or stale is left out and named in ``missing``);
* inventory: built at start and every ``inventory_check_s``; published at
  start, when ``inventory_hash`` changes, and every ``inventory_interval_s``;
* one task per stream source (eBPF), ``run(emit)``;
* the publisher (spool -> Kafka) and the spool's periodic fsync.

Every record gets schema/host_id/boot_id/seq/ts, is encoded once with orjson,
signed over those exact bytes (headers hm-keyid, hm-sig) and appended to the
spool; Kafka sees only what the spool holds.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from collector.identity import load_host_identity, read_boot_id
from collector.metrics import AgentMetrics
from collector.publisher import Publisher
from collector.seqstore import SeqStore
from collector.spool import Spool
from hmconfig.errors import HmtelError
from schemas.topics import TOPICS

if TYPE_CHECKING:
    from collector.sources import PollingSource, Section, StreamSource
    from hmconfig.settings import Settings

log = logging.getLogger(__name__)

USAGE_SCHEMA = "hm.usage.v1"
INVENTORY_SCHEMA = "hm.inventory.v1"
TOPIC_FOR_SCHEMA = {t.value: t.name for t in TOPICS if t.value}
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0  # a task that ran this long before failing restarts from the first backoff step
# Kafka's default message.max.bytes is ~1 MiB per batch; one bigger record would be refused
# forever and block every record behind it in the spool, so it is refused here instead.
MAX_RECORD_BYTES = 900 * 1024


class AgentError(HmtelError):
    retriable = False


class Supervisor:
    """Runs named tasks; a task that raises is counted, logged and restarted with backoff."""

    def __init__(self, metrics: AgentMetrics):
        self.metrics = metrics
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        if name in self.tasks:
            raise AgentError(f"task {name!r} started twice")
        self.tasks[name] = asyncio.create_task(self._supervise(name, factory), name=name)

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            started = time.monotonic()
            try:
                await factory()
                return  # finished on its own (a stream source with nothing to do)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - the point of a supervisor
                if time.monotonic() - started > HEALTHY_AFTER_S:
                    backoff = BACKOFF_FIRST_S
                self.metrics.source_errors.labels(name).inc()
                self.metrics.source_restarts.labels(name).inc()
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.warning("%s failed (%s: %s); restarting in %.1f s (restart %d)", name, type(err).__name__,
                            err, backoff, self.restarts[name], exc_info=log.isEnabledFor(logging.DEBUG))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def stop(self, names: list[str] | None = None) -> None:
        victims = [(n, t) for n, t in self.tasks.items() if names is None or n in names]
        for _n, task in victims:
            task.cancel()
        for name, task in victims:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as err:  # noqa: BLE001 - already stopping; say what happened
                log.warning("%s ended with %s while stopping", name, err)
            self.tasks.pop(name, None)


class _PollingTask:
    """One polling source: collects when the usage tick asks (or on its own slower interval)."""

    def __init__(self, source: PollingSource, usage_interval_s: float):
        self.source = source
        self.name = source.name
        self.paced = source.interval_s <= usage_interval_s  # read on every usage tick
        self.latest: Section | None = None
        self.latest_at = 0.0
        self.latest_missing: list[str] = []
        self.running = False
        self._wake = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None

    def request(self) -> asyncio.Future[None]:
        """Ask for a fresh reading; the future resolves when it is in (or at once if the task is down)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.running:
            fut.set_result(None)
            return fut
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # a reading still in progress from the last tick
        self._waiter = fut
        self._wake.set()
        return fut

    def _done(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                if self.paced:
                    await self._wake.wait()
                    self._wake.clear()
                try:
                    section = await self.source.collect()
                except BaseException:
                    self.latest = None
                    raise
                finally:
                    self._done()
                self.latest, self.latest_at = section, time.monotonic()
                self.latest_missing = list(getattr(self.source, "missing", []) or [])
                if not self.paced:
                    await asyncio.sleep(self.source.interval_s)
        finally:
            self.running = False
            self._done()

    def fresh(self, now: float, usage_interval_s: float) -> bool:
        if self.latest is None:
            return False
        limit = usage_interval_s * 1.5 if self.paced else self.source.interval_s * 2 + usage_interval_s
        return now - self.latest_at <= limit


class Agent:
    """The collector agent. ``start()``/``stop()`` are idempotent; use as an async context manager."""

    def __init__(self, settings: Settings, *, polling_sources: list[PollingSource] | None = None,
                 stream_sources: list[StreamSource] | None = None,
                 build_inventory: Callable[[Path], dict[str, Any]] | None = None,
                 inventory: bool = True):
        self.settings = settings
        self._polling_override = polling_sources
        self._stream_override = stream_sources
        self._build_inventory = build_inventory
        self._inventory_enabled = inventory
        self.spool = Spool(settings.state_dir / "spool", max_bytes=settings.spool_max_bytes)
        self.metrics = AgentMetrics(self._spool_stats)
        self.supervisor = Supervisor(self.metrics)
        self.publisher = Publisher(settings, self.spool, self.metrics)
        self.polling: list[_PollingTask] = []
        self.streams: list[StreamSource] = []
        self.seqs: SeqStore | None = None
        self.samples = 0
        self._started = False
        self._stopped = False
        self._sampling_tasks: list[str] = []

    def _spool_stats(self) -> Any:
        return self.spool.stats() if self._started else None

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __del__(self) -> None:
        if self._started and not self._stopped:
            log.warning("Agent was started but never stopped; the spool was not fsynced")

    async def start(self) -> None:
        if self._started:
            return
        s = self.settings
        self.key = load_host_identity(s.state_dir)
        self.host_id = self.key.host_id
        self.host_key = self.host_id.encode()
        self.boot_id = read_boot_id(s.host_root)
        self._open_spool()
        self._started = True
        self._stopped = False
        self.metrics.serve(s.metrics_listen)

        if self._polling_override is not None:
            sources = self._polling_override
        else:
            from collector.sources import load_polling_sources

            sources = load_polling_sources(s)
        self.polling = [_PollingTask(src, s.usage_interval_s) for src in sources]
        self.streams = self._stream_override if self._stream_override is not None else _load_stream_sources(s)

        for task in self.polling:
            self._spawn_sampling(f"source:{task.name}", task.run)
        self._spawn_sampling("usage", self._usage_loop)
        if self._inventory_enabled:
            self._spawn_sampling("inventory", self._inventory_loop)
        for stream in self.streams:
            self._spawn_sampling(f"stream:{stream.name}", functools.partial(stream.run, self.emit))
        self.publisher.topics = tuple(sorted(
            {TOPIC_FOR_SCHEMA[USAGE_SCHEMA]} | ({TOPIC_FOR_SCHEMA[INVENTORY_SCHEMA]} if self._inventory_enabled else set())
            | ({TOPIC_FOR_SCHEMA["hm.ebpf.v1"]} if self.streams else set())))
        self.supervisor.spawn("publisher", self.publisher.run)
        self.supervisor.spawn("spool-sync", self._sync_loop)
        log.info("collector: host_id %s, boot_id %s, %d polling source(s) [%s], %d stream source(s); "
                 "spool %s holds %d unsent record(s); usage seq resumes at %d",
                 self.host_id, self.boot_id, len(self.polling), ", ".join(t.name for t in self.polling),
                 len(self.streams), self.spool.dir, self.spool.pending,
                 self.seqs.peek(self.host_id, USAGE_SCHEMA) if self.seqs else 0)

    def _spawn_sampling(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self._sampling_tasks.append(name)
        self.supervisor.spawn(name, factory)

    def _open_spool(self) -> None:
        try:
            self.spool.open()
        except OSError as err:
            raise AgentError(f"cannot open the spool in {self.spool.dir} ({err.strerror}); "
                             f"set HMTEL_STATE_DIR to a writable directory") from None
        self.seqs = SeqStore(self.boot_id)
        checkpoint = self.spool.last_checkpoint()
        if checkpoint is not None:
            self.seqs.restore(checkpoint[1])
        self.seqs.observe_all(e.value for e in self.spool.iter_from(checkpoint[0] if checkpoint else 0))
        self.spool.checkpoint_source = self.seqs.snapshot

    async def stop(self) -> None:
        """Stop sampling, flush what Kafka takes within the budget, fsync the spool, close."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        t0 = time.monotonic()
        budget = self.settings.shutdown_timeout_s
        await self.supervisor.stop(self._sampling_tasks)
        self._sampling_tasks.clear()
        # Leave room for the producer's close (<= 3 s) and the final fsync.
        flushed = await self.publisher.flush(max(0.0, budget - (time.monotonic() - t0) - 4.0))
        await self.supervisor.stop()
        stats = self.spool.stats()
        self.spool.close()
        for task in self.polling:
            try:
                task.source.close()
            except Exception:  # noqa: BLE001 - closing; nothing left to protect
                pass
        self.metrics.close()
        log.info("collector: stopped in %.1f s; %d record(s) sampled, %d published this run, %d left in the "
                 "spool for next start%s, %d dropped in total", time.monotonic() - t0, self.samples,
                 self.publisher.published_total, stats.depth_records, "" if flushed else " (Kafka did not take them)",
                 stats.dropped_total)
        self._started = False

    # -- records -----------------------------------------------------------------
    async def emit(self, schema: str, body: dict[str, Any]) -> None:
        """Add the common fields, sign, and spool one record (stream sources call this)."""
        self.append(schema, body)

    def append(self, schema: str, body: dict[str, Any]) -> int:
        topic = TOPIC_FOR_SCHEMA.get(schema)
        if topic is None:
            raise AgentError(f"no topic carries schema {schema!r}; see schemas/topics.py")
        assert self.seqs is not None
        seq = self.seqs.peek(self.host_id, schema)
        record = {"schema": schema, "host_id": self.host_id, "boot_id": self.boot_id, "seq": seq,
                  "ts": time.time_ns() // 1000}
        record.update(body)
        value = orjson.dumps(record)  # a body that cannot be encoded must not use up a seq
        if len(value) > MAX_RECORD_BYTES:
            raise AgentError(f"{schema} record of {len(value)} bytes is over the {MAX_RECORD_BYTES}-byte limit; "
                             f"not spooled")
        index = self.spool.append(topic, self.host_key, value, self.key.sign(schema, value))
        # only once spooled: a failed append (ENOSPC) leaves no seq hole for consumers to count as loss
        self.seqs.next(self.host_id, schema)
        if self.settings.spool_fsync_interval_ms == 0:
            self.spool.sync()
        self.metrics.samples.labels(schema).inc()
        self.publisher.wakeup()
        return index

    async def _usage_loop(self) -> None:
        interval = self.settings.usage_interval_s
        wait_s = min(interval * 0.5, 2.0)
        prev: float | None = None
        next_at = time.monotonic()
        while True:
            t0 = time.monotonic()
            pending = [t.request() for t in self.polling if t.paced]
            if pending:
                await asyncio.wait(pending, timeout=wait_s)
            now = time.monotonic()
            body: dict[str, Any] = {"interval_s": interval,
                                    "elapsed_s": 0.0 if prev is None else round(t0 - prev, 6)}
            prev = t0
            origins: list[str] = []
            missing: list[str] = []
            for task in self.polling:
                if not task.fresh(now, interval):
                    missing.append(task.name)
                    continue
                body[task.name] = task.latest
                missing.extend(task.latest_missing)
                origin = getattr(task.source, "origin", task.name)
                if origin not in origins:
                    origins.append(origin)
            # A running stream source (eBPF) is evidence too; a degraded one is not named.
            origins += [st.name for st in self.streams if getattr(st, "active", False) and st.name not in origins]
            body["sources"] = origins
            body["missing"] = missing
            self.append(USAGE_SCHEMA, body)
            self.samples += 1
            self.metrics.sample_seconds.observe(time.monotonic() - t0)
            if self.samples == 1:
                self.metrics.ready.set(1)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -interval:  # fell behind (suspend, overload): skip, do not burst
                next_at = time.monotonic() + interval
                delay = interval
            await asyncio.sleep(max(0.0, delay))

    async def _inventory_loop(self) -> None:
        build: Callable[[Path], dict[str, Any]]
        if self._build_inventory is not None:
            build = self._build_inventory
        else:
            try:
                from collector.inventory import build_inventory as build
            except ImportError as err:
                log.warning("inventory: collector.inventory is not available (%s); hm.inventory.v1 is not "
                            "published", err)
                return
        s = self.settings
        last_hash: str | None = None
        last_published = 0.0
        while True:
            inventory = await asyncio.to_thread(build, s.host_root)
            h = inventory.get("inventory_hash")
            due = time.monotonic() - last_published >= s.inventory_interval_s
            if h != last_hash or due:
                if last_hash is not None and h != last_hash:
                    log.info("inventory: changed (hash %s -> %s); publishing", last_hash[:12], str(h)[:12])
                self.append(INVENTORY_SCHEMA, {**inventory, "public_key": self.key.public_key_b64})
                last_hash, last_published = h, time.monotonic()
            until_due = s.inventory_interval_s - (time.monotonic() - last_published)
            await asyncio.sleep(max(0.1, min(s.inventory_check_s, until_due)))

    async def _sync_loop(self) -> None:
        interval = self.settings.spool_fsync_interval_ms / 1000 or 1.0
        while True:
            await asyncio.sleep(interval)
            self.spool.sync()


def _load_stream_sources(settings: Settings) -> list[StreamSource]:
    from collector.sources import STREAM, import_builtin

    import_builtin()
    out = []
    for name, factory in STREAM.items():
        try:
            source = factory(settings)
        except HmtelError as err:
            log.warning("stream source %s is off: %s", name, err)
            continue
        if source is not None:
            out.append(source)
    return out


def run_agent(settings: Settings) -> int:
    """Run an Agent until SIGTERM/SIGINT; returns the exit code (0 after a clean stop)."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        agent = Agent(settings)
        await agent.start()
        try:
            await stop.wait()
            log.info("collector: stopping (signal)")
        finally:
            try:
                await asyncio.wait_for(agent.stop(), settings.shutdown_timeout_s)
            except asyncio.TimeoutError:
                # The budget is a promise to the service manager: fsync what we have and go.
                agent.spool.close()
                log.warning("collector: stop took over %.0f s; spool fsynced, exiting", settings.shutdown_timeout_s)

    # Not asyncio.run(): it waits for the default executor's threads, and one may be busy for
    # seconds (bcc compiling an eBPF program); the shutdown budget matters more. `hmtel collect`
    # then leaves with os._exit for the same reason, once the spool is closed.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()  # shuts the executor down without waiting
    return 0
