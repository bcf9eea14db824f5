"""The dashboard's web server (aiohttp): the page, its static assets, and one Server-Sent
Events stream per browser.

A browser gets the whole model as its first event (``snapshot``), then a ``batch`` of
deltas about once a second. The Kafka feed is one TopicReader over the five topics,
starting ``dashboard_history_s`` back in time (the inventory from its beginning, as it is
compacted). If the broker goes away the feed retries with backoff and, once back, rebuilds
the model from scratch and sends every browser a fresh snapshot, so a replay never counts
a record twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from hmconfig.errors import HmtelError

from .state import AGG_SERIES, INVENTORY_TOPIC, TOPICS, Board

log = logging.getLogger("consumers.dashboard")
STATIC_DIR = Path(str(resources.files("consumers.dashboard") / "static"))
FLUSH_S = 1.0
HEARTBEAT_S = 15.0
CLIENT_QUEUE = 64  # batches a slow browser may lag behind before it is dropped (it reconnects)


class Dashboard:
    def __init__(self, settings: Any, *, keys: list[bytes], thresholds: Any = None):
        self.settings = settings
        self.keys = keys
        self.thresholds = thresholds
        self.board = self._new_board()
        self.status: dict[str, Any] = {"kafka": "connecting", "bootstrap": settings.bootstrap, "since": time.time()}
        self.pending: list[dict[str, Any]] = []
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self.url: str | None = None

    def _new_board(self) -> Board:
        return Board(history_s=self.settings.dashboard_history_s, keys=self.keys, thresholds=self.thresholds)

    # --- HTTP ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/snapshot", self._snapshot_json)
        app.router.add_get("/healthz", self._health)
        app.router.add_static("/static/", STATIC_DIR, append_version=True)
        return app

    async def _index(self, _req: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    def _snapshot(self) -> dict[str, Any]:
        return {**self.board.snapshot(), "status": self.status, "now": time.time()}

    async def _snapshot_json(self, _req: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self._snapshot()), content_type="application/json")

    async def _health(self, _req: web.Request) -> web.Response:
        return web.json_response({"kafka": self.status["kafka"], "hosts": len(self.board.hosts),
                                  "records": self.board.records})

    async def _events(self, req: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(req)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(CLIENT_QUEUE)
        self.clients.add(queue)
        try:
            await resp.write(b"event: snapshot\ndata: " + orjson.dumps(self._snapshot()) + b"\n\n")
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if msg is None:  # dropped for lagging, or shutting down
                    break
                await resp.write(msg)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.clients.discard(queue)
        return resp

    def _broadcast(self, msg: bytes) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                self.clients.discard(q)
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait(None)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.pending:
                events, self.pending = self.pending, []
                self._broadcast(b"event: batch\ndata: " + orjson.dumps(events) + b"\n\n")

    def _set_status(self, kafka: str) -> None:
        if self.status["kafka"] != kafka:
            self.status = {**self.status, "kafka": kafka, "since": time.time()}
            self.pending.append({"t": "status", "status": self.status})

    # --- Kafka feed -----------------------------------------------------------------------
    async def _feed(self) -> None:
        from consumers.stream import TopicReader

        delay = 1.0
        first = True
        while True:
            start_ms = int((time.time() - self.settings.dashboard_history_s) * 1000)
            starts = {t: start_ms for t in TOPICS if t != INVENTORY_TOPIC}
            try:
                async with TopicReader(self.settings, TOPICS, follow=True, start_ms=starts,
                                       what="dashboard") as reader:
                    if not first:  # a replay from the history start: rebuild, do not double count
                        self.board = self._new_board()
                        self.pending = []
                        self._broadcast(b"event: snapshot\ndata: " + orjson.dumps(self._snapshot()) + b"\n\n")
                    first = False
                    self._set_status("live")
                    delay = 1.0
                    async for batch in reader.batches():
                        for rec in batch:
                            delta = self.board.apply(rec.topic, rec.key, rec.value)
                            if delta is not None:
                                self.pending.append(delta)
            except asyncio.CancelledError:
                raise
            except HmtelError as err:
                self._set_status(f"error: {err}")
                log.warning("dashboard feed: %s; retrying in %.0fs", err, delay)
            except Exception as err:  # noqa: BLE001 - a broker hiccup must not end the page
                self._set_status(f"error: {type(err).__name__}: {err}")
                log.warning("dashboard feed: %s: %s; retrying in %.0fs", type(err).__name__, err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    # --- lifecycle ---------------------------------------------------------------------------
    async def serve(self, host: str, port: int, stop: asyncio.Event, on_ready: Any = None) -> None:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise DashboardError(f"cannot listen on {host}:{port} ({err.strerror}); set dashboard_listen "
                                 f"(HMTEL_DASHBOARD_LISTEN or --listen) to a free host:port") from None
        bound = runner.addresses[0] if runner.addresses else (host, port)
        self.url = f"http://{bound[0]}:{bound[1]}/"
        if on_ready:
            on_ready(self.url)
        tasks = [asyncio.create_task(self._feed(), name="feed"), asyncio.create_task(self._flusher(), name="flush")]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for q in list(self.clients):
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(None)
            await runner.shutdown()
            await runner.cleanup()


class DashboardError(HmtelError):
    retriable = False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DashboardError(f"dashboard_listen must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


__all__ = ["AGG_SERIES", "Dashboard", "DashboardError", "split_listen"]
