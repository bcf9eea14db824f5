"""A second worker joins mid-run: partitions (and their hosts' state) move between workers.

Asserted: every proof verifies; no proof_id is written twice (processors/delivered.py);
every host's chain is contiguous from seq 0 and links by hash, whichever worker
issued each proof; the joining worker took partitions; no host lost a window to the handoff
(the only withheld windows are each host's first, partial one) and no record was `late`.
"""
from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections import defaultdict

import orjson
from nacl.signing import VerifyKey

from hmconfig.kafka_clients import make_producer, read_topic
from hmconfig.topic_admin import ensure_topics
from hmtel_testing.chains import check_proof_chains
from processors import simulator
from schemas.keys import SigningKey

from processors_harness import host_beside, pae, start_process_worker, stop_workers, wait_ready, worker_env


def start_worker(settings, state_dir, app_id, name, log):
    env = worker_env(settings, state_dir, HMTEL_PROCESSOR_APP_ID=app_id, HMTEL_PROOF_WINDOW_S="10",
               HMTEL_PROOF_GRACE_S="40", HMTEL_AGG_WINDOW_10S_S="2", HMTEL_AGG_WINDOW_1M_S="10",
               HMTEL_AGG_GRACE_S="40", HMTEL_PROCESSOR_TICK_S="0.5", HMTEL_PROCESSOR_OFFSET_RESET="latest")
    return start_process_worker(env, log, name)


async def test_a_joining_worker_takes_over_partitions_without_a_gap(kafka_settings, tmp_path):
    await ensure_topics(kafka_settings)
    app_id = f"hm-processors-rb-{uuid.uuid4().hex[:8]}"
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    workers = [start_worker(kafka_settings, tmp_path / "state", app_id, "0", logs[0])]
    seed = uuid.uuid4().hex[:6]
    try:
        await wait_ready(workers[0], logs[0], 1)
        sim = asyncio.ensure_future(simulator.run(kafka_settings, hosts=6, rate=1, duration_s=45, seed=seed,
                                                  progress=lambda _: None))
        await asyncio.sleep(12)
        workers.append(start_worker(kafka_settings, tmp_path / "state", app_id, "1", logs[1]))
        await wait_ready(workers[1], logs[1], 1)
        await sim
        await asyncio.sleep(5)
        proofs, rejected = [await read_topic(kafka_settings, t) for t in ("hm.proofs.v1", "hm.rejected.v1")]
    finally:
        stop_workers(workers)
    key = SigningKey.load_or_create(tmp_path / "state", "processor.key")
    hosts = {simulator.SimHost(i, seed=seed).host_id for i in range(6)}
    by_host: dict[str, dict[str, list[bytes]]] = defaultdict(lambda: defaultdict(list))
    for msg in proofs:
        env = orjson.loads(msg.value)
        data = base64.b64decode(env["payload"])
        payload = orjson.loads(data)
        if payload["host_id"] not in hosts:
            continue
        VerifyKey(key.public_key_raw).verify(pae(env["payloadType"], data), base64.b64decode(env["signatures"][0]["sig"]))
        by_host[payload["host_id"]][payload["proof_id"]].append(data)
    assert set(by_host) == hosts
    _distinct, written_twice, problems = check_proof_chains(by_host)
    assert written_twice == 0 and not problems, problems
    for host, seen in by_host.items():
        assert len(seen) >= 3, (host, len(seen))
    reasons = defaultdict(list)
    for msg in rejected:
        rej = orjson.loads(msg.value)
        if rej["host_id"] in hosts:
            reasons[rej["reason"]].append(rej)
    assert "late" not in reasons
    for rej in reasons["insufficient_evidence"]:
        start = orjson.loads(base64.b64decode(rej["original_b64"]))["window"]["start_us"]
        first = min(orjson.loads(found[0])["window"]["start_us"] for found in by_host[rej["host_id"]].values())
        assert start < first, f"{rej['host_id']}: window {start} withheld after the first proof"
    taken = re.search(r"ready: (\d+) of (\d+) partitions assigned", logs[1].read_text())
    assert taken and 0 < int(taken.group(1)) < int(taken.group(2)), logs[1].read_text()[-2000:]


async def test_records_parked_at_a_rebalance_are_taken_once_their_inventory_comes(kafka_settings, tmp_path):
    """A host's usage waits (parked, unacked) for its inventory when a second worker joins. The records
    are not rejected at the rebalance: left unacked, they are read again by the partition's next owner
    and taken, each once, when the inventory comes."""
    await ensure_topics(kafka_settings)
    app_id = f"hm-processors-rbp-{uuid.uuid4().hex[:8]}"
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    extra = {"HMTEL_UNKNOWN_HOST_GRACE_S": "600", "HMTEL_AGG_WINDOW_10S_S": "2", "HMTEL_AGG_GRACE_S": "2",
             "HMTEL_PROCESSOR_TICK_S": "0.5", "HMTEL_PROCESSOR_OFFSET_RESET": "latest",
             "HMTEL_PROCESSOR_APP_ID": app_id}
    workers = [start_process_worker(worker_env(kafka_settings, tmp_path / "state", **extra), logs[0], "0")]
    seed = uuid.uuid4().hex
    late = simulator.SimHost(0, seed=seed)  # its inventory comes after the rebalance
    # a host of the same partition with its inventory first, so the partition has a committed offset
    # before the parked records (with none, a new owner would start from "latest", past them)
    known = host_beside(late, seed)
    producer = make_producer(kafka_settings)
    await producer.start()

    async def send(host: simulator.SimHost, topic: str, record: dict) -> None:
        topic, key, value, headers = host.message(topic, record)
        await producer.send_and_wait(topic, value, key=key, headers=headers)

    try:
        await wait_ready(workers[0], logs[0], 1)
        now = int(time.time() * 1e6)
        await send(known, "hm.inventory.v1", known.inventory(now - 6_000_000))
        await send(known, "hm.usage.v1", known.usage(now - 6_000_000))
        for i in range(5):
            await send(late, "hm.usage.v1", late.usage(now - (5 - i) * 1_000_000))
        await asyncio.sleep(4)  # fetched and parked: no key pinned for the host
        workers.append(start_process_worker(worker_env(kafka_settings, tmp_path / "state", **extra), logs[1], "1"))
        await wait_ready(workers[1], logs[1], 1)
        await send(late, "hm.inventory.v1", late.inventory(now - 6_000_000))
        await asyncio.sleep(8)  # taken, and their windows closed by silence (grace 2 s)
        aggregates, rejected = [await read_topic(kafka_settings, t) for t in ("hm.usage.agg.10s.v1", "hm.rejected.v1")]
    finally:
        await producer.stop()
        stop_workers(workers)
    # Around a rebalance records can be read again after they were taken (seen in 2 of 4 runs, every
    # record of the host once more): those come back as counted duplicates. No other record of the
    # host may be rejected. (A proof window, aligned to the wall clock, may end during the test: its
    # proof is withheld for coverage, filed for hm.proofs.v1; that is not a record rejected.)
    filed = [rej for rej in map(orjson.loads, (m.value for m in rejected)) if rej["host_id"] == late.host_id]
    reasons = {rej["reason"] for rej in filed if rej["topic"] != "hm.proofs.v1"}
    assert reasons <= {"duplicate"}, filed
    by_window = {agg["agg_id"]: agg["samples"] for agg in map(orjson.loads, (m.value for m in aggregates))
                 if agg["host_id"] == late.host_id}
    assert sum(by_window.values()) == 5, (by_window, logs[0].read_text()[-2000:], logs[1].read_text()[-2000:])
    assert "records parked for their hosts' inventory are left unacked" in logs[0].read_text(), \
        logs[0].read_text()[-3000:]
