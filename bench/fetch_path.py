"""The worker's per-record cost in the fetch path, no broker: faust's own getmany against the
per-fetch loop of processors/faust_transport.py (BatchConsumer._drain_messages), and
faust's Consumer.ack one record at a time against BatchConsumer.ack_many.

    .venv/bin/python bench/fetch_path.py [--fetches 60] [--rounds 5]

The consumer is a real, unstarted BatchConsumer. Only its I/O edge is replaced: each fetch
returns a prepared batch of aiokafka ConsumerRecords (6 partitions, 8,000 records, as
``broker_max_poll_records``), and the high-water mark is a constant. What is timed is the
event-loop thread's CPU (``time.process_time``) from the fetched batch to the records handed
over and tracked, and, separately, to the records acked. The event-loop thread is the
worker's serial part (docs/PROCESSORS.md), so a microsecond here is one per record of it.
The median of ``--rounds`` rounds per variant, interleaved.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processors.faust_transport import App, BatchConsumer  # noqa: E402

TOPIC = "hm.usage.v1"
PARTITIONS = 6
PER_FETCH = 8000
VALUE = b"x" * 700
HEADERS = [("hm-keyid", b"k" * 43), ("hm-sig", b"s" * 88)]


def fetches(n: int) -> list[dict[TP, list[ConsumerRecord]]]:
    per_tp = PER_FETCH // PARTITIONS
    out = []
    for f in range(n):
        out.append({TP(TOPIC, p): [ConsumerRecord(TOPIC, p, f * per_tp + i, 1_800_000_000_000, 0, b"h-%032x" % i,
                                                  VALUE, None, 34, len(VALUE), HEADERS)
                                   for i in range(per_tp)] for p in range(PARTITIONS)})
    return out


async def faust_getmany_loop(self: BatchConsumer) -> None:
    """The loop BatchConsumer used before (up to de9ee10): faust's getmany, an async generator with
    its round-robin scheduler, a high-water mark and a message per record."""
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    track, heads, handler = self.track_message, self.read_heads, getattr(self.app, "batch_handler")
    while not self._stopped.is_set():
        batch: list[Any] = []
        async for tp, message in self.getmany(timeout=1.0):
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is not None and offset < r_offset:
                continue
            if tp not in heads:
                heads[tp] = offset
            track(message)
            batch.append(message)
            set_read_offset(tp, offset)
        if batch:
            await handler(batch)  # type: ignore[misc]


def consumer_for(name: str, batches: list[dict[TP, list[ConsumerRecord]]]) -> tuple[BatchConsumer, list]:
    app = App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.topics._acking_topics.add(TOPIC)  # type: ignore[attr-defined]  # as the processors' agent does
    app.sensors.add(app.monitor)  # as a started app has it
    c: BatchConsumer = app.consumer  # type: ignore[assignment]
    c._commit_every = None
    c.highwater = lambda tp: 1 << 40  # type: ignore[method-assign]  # the consumer thread's, at the I/O edge
    todo = list(batches)
    handed: list = []

    async def next_records(timeout: float) -> tuple[dict | None, None]:
        if not todo:
            c._stopped.set()
            return None, None
        return todo.pop(0), None
    c._wait_next_records = next_records  # type: ignore[method-assign]

    async def handle(batch: list) -> None:
        handed.append(batch)
    app.batch_topics = frozenset({TOPIC})
    app.batch_handler = handle
    return c, handed


def timed_fetch(variant: str, batches: list) -> tuple[float, float, int]:
    """(us of CPU per record to hand over, us per record to ack, records)."""
    c, handed = consumer_for(f"bench-fetch-{variant}", batches)
    fetcher = type("Fetcher", (), {"_stopped": asyncio.Event()})()
    loop = faust_getmany_loop(c) if variant == "faust getmany" else c._drain_messages(fetcher)
    t0 = time.process_time()
    asyncio.run(loop)
    fetch_s = time.process_time() - t0
    records = [m for batch in handed for m in batch]
    t0 = time.process_time()
    if variant == "faust getmany":
        for m in records:
            c.ack(m)
    else:
        c.ack_many(records)
    ack_s = time.process_time() - t0
    assert len(records) == sum(len(v) for b in batches for v in b.values()), "every record handed over"
    assert c._n_acked == len(records) and not c._unacked_messages, "every record acked"
    return fetch_s / len(records) * 1e6, ack_s / len(records) * 1e6, len(records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetches", type=int, default=60, help="fetches of 8,000 records per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per variant, interleaved; the median is shown")
    args = ap.parse_args()
    variants = ["faust getmany", "per-fetch loop"]
    results: dict[str, list[tuple[float, float, int]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            results[v].append(timed_fetch(v, fetches(args.fetches)))
    print(f"fetch path, no broker: {args.fetches} fetches x {PER_FETCH} records, {PARTITIONS} partitions, "
          f"median of {args.rounds} rounds (us of event-loop CPU per record)")
    print(f"  {'variant':<40} {'hand over':>10} {'ack':>8} {'total':>8}")
    for v in variants:
        fetch = statistics.median(r[0] for r in results[v])
        ack = statistics.median(r[1] for r in results[v])
        name = v + (" + Consumer.ack" if v == "faust getmany" else " + ack_many")
        print(f"  {name:<40} {fetch:>10.2f} {ack:>8.2f} {fetch + ack:>8.2f}")


if __name__ == "__main__":
    main()
