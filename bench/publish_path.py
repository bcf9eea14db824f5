"""Publish-path throughput: the agent's own spool -> Publisher -> Kafka path, acks=all, idempotent.

    HMTEL_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/publish_path.py [--records 500000] [--size 256]

For each record size: append ``--records`` records to a fresh spool (one
write(2) per 1,000-record call, as a burst after an outage would leave them),
then time the Publisher draining the spool until the broker has acked the
last record (sustained, not a burst into the producer's buffer). A third row
appends and publishes at the same time (the live path). Records go to the
topic ``hm.bench.publish`` (created with 6 partitions), keyed by one host_id,
so all go to one partition, as one agent's would.

Records carry real hm-keyid/hm-sig headers from one signature made up front:
Ed25519 signing costs ~50 µs per record with `cryptography`, which is the
agent's cost per sample (1/s), not the publish path's; it is printed apart.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import orjson

from collector.publisher import Publisher
from collector.spool import Spool
from hmconfig.kafka_clients import make_admin, start_with_retry
from hmconfig.settings import load_settings
from schemas.keys import SigningKey

TOPIC = "hm.bench.publish"


async def ensure_topic(settings) -> None:
    from aiokafka.admin import NewTopic

    admin = await start_with_retry(lambda: make_admin(settings), settings, what="bench")
    try:
        if TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(TOPIC, 6, 1, topic_configs={"retention.ms": "600000"})])
    finally:
        await admin.close()


def make_value(size: int, host_id: str) -> bytes:
    base = {"schema": "hm.usage.v1", "host_id": host_id, "boot_id": "00000000-0000-0000-0000-000000000000",
            "seq": 0, "ts": time.time_ns() // 1000, "pad": ""}
    pad = max(0, size - len(orjson.dumps(base)))
    base["pad"] = "x" * pad
    return orjson.dumps(base)


PRODUCER_OVERRIDES: dict = {}


async def drain(settings, spool: Spool, until: int, *, appender=None) -> float:
    pub = Publisher(settings, spool, producer_overrides=PRODUCER_OVERRIDES)
    pub.start()
    t0 = time.perf_counter()
    task = asyncio.create_task(appender(pub)) if appender else None
    while spool.acked < until:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    if task:
        await task
    await pub.stop()
    return elapsed


async def run(records: int, sizes: list[int]) -> None:
    settings = load_settings()
    await ensure_topic(settings)
    tmp = Path(tempfile.mkdtemp(prefix="hm-bench-"))
    key = SigningKey.load_or_create(tmp, "bench.key")
    t = time.perf_counter()
    for _ in range(1000):
        key.sign("hm.usage.v1", b"x" * 1000)
    sign_us = (time.perf_counter() - t) / 1000 * 1e6
    hkey = key.host_id.encode()
    rows = []
    for size in sizes:
        value = make_value(size, key.host_id)
        headers = key.sign("hm.usage.v1", value)
        chunk = [(TOPIC, hkey, value, headers)] * 1000

        d = tmp / f"spool-{size}"
        spool = Spool(d, max_bytes=4 << 30)
        spool.open()
        t = time.perf_counter()
        for _ in range(records // 1000):
            spool.append_many(chunk)
        t_append = time.perf_counter() - t
        cpu0 = time.process_time()
        elapsed = await drain(settings, spool, spool.next_index - 1)
        cpu = time.process_time() - cpu0
        n = spool.next_index
        rows.append((f"drain spooled backlog", size, n, n / elapsed, n * len(value) / elapsed / 1e6, cpu / elapsed,
                     n / t_append))
        spool.close()
        shutil.rmtree(d)

        # Live: append 1,000-record chunks as fast as the loop allows while publishing.
        spool = Spool(d, max_bytes=4 << 30)
        spool.open()
        pub_target = records - 1

        async def appender(pub: Publisher) -> None:
            for _ in range(records // 1000):
                spool.append_many(chunk)
                pub.wakeup()  # as Agent.append does
                await asyncio.sleep(0)

        cpu0 = time.process_time()
        elapsed = await drain(settings, spool, pub_target, appender=appender)
        cpu = time.process_time() - cpu0
        rows.append(("append + publish live", size, records, records / elapsed,
                     records * len(value) / elapsed / 1e6, cpu / elapsed, float("nan")))
        spool.close()
        shutil.rmtree(d)

    print(f"\npublish path: spool -> Publisher (aiokafka send_batch, acks=all, idempotent, "
          f"{settings.kafka_compression}) -> {settings.bootstrap}, topic {TOPIC}, one key\n")
    print(f"{'path':<24} {'bytes/rec':>9} {'records':>9} {'records/s':>10} {'MB/s':>7} {'agent CPU':>9} "
          f"{'CPU µs/rec':>10} {'spool append rec/s':>18}")
    for path, size, n, rps, mbps, cpu, app in rows:
        app_s = "" if app != app else f"{app:,.0f}"
        print(f"{path:<24} {size:>9} {n:>9,} {rps:>10,.0f} {mbps:>7.1f} {cpu * 100:>8.0f}% "
              f"{cpu / rps * 1e6:>10.1f} {app_s:>18}")
    print("\nCPU µs/rec is this process's CPU per published record: the rate the agent side could carry "
          "if the broker kept up (1e6 / it). The rest of the wall time is waiting on broker round trips.")
    print(f"\nEd25519 signing (cryptography): {sign_us:.1f} µs per record (done once per sample by the agent)")
    print("target: >= 50,000 records/s sustained. 2-core machine shared with other jobs: rerun to compare.")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--size", type=int, action="append", help="record value size in bytes (repeatable); "
                    "default 256 and 2048 (about one usage record)")
    ap.add_argument("--linger-ms", type=int, help="producer linger.ms override (default: the factory's)")
    ap.add_argument("--max-batch-bytes", type=int, help="producer max_batch_size override")
    args = ap.parse_args()
    if args.max_batch_bytes:
        PRODUCER_OVERRIDES["max_batch_size"] = args.max_batch_bytes
    if args.linger_ms is not None:
        PRODUCER_OVERRIDES["linger_ms"] = args.linger_ms
    import logging

    logging.basicConfig(level=os.environ.get("HMTEL_LOG_LEVEL", "WARNING"))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(run(args.records, args.size or [256, 2048]))


if __name__ == "__main__":
    main()
