"""processors.app with the native store (processor_native_ingest) against the Python engine alone.

The same fetched batches go through Processor._on_batch twice, with the fast path on and off,
with checkpoints and timer closes in between (the timer takes hosts' states out of the native
store). Every rejection (offset, code, check), every ack, the table (the changelog) and the
timer's work list must come out the same. The streams interleave what moves a host off the
fast path mid-chunk: inventories, eBPF records, each bad record kind, gaps and late fills, a new
boot, and an unknown host parked until its inventory arrives. Only the broker is faked (no
changelog producer, no consumer: the table is a dict, acks and rejections are recorded) and
the processor's clock is fixed.
"""
from __future__ import annotations

import asyncio
import itertools
import random
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

import processors.app as app_module
from hmconfig.settings import load_settings
from processors import proofs
from processors.app import Processor
from processors.config import ProcessorConfig
from processors.engine import Signer
from processors.simulator import RECORD_BAD_KINDS, SimHost, bad_record
from schemas.keys import SigningKey

S = 1_000_000
NOW = 1_800_000_000 * S + 250_000
CFG = ProcessorConfig(proof_window_s=10, proof_grace_s=3, agg_windows_s={"10s": 2, "1m": 10}, agg_grace_s=1)


@pytest.fixture
def signer(tmp_path):
    key = SigningKey.load_or_create(tmp_path, "processor.key")
    return Signer(key.key_id, lambda data: proofs.sign(data, key.private_key, key.key_id))


def stream(seed: int, ebpf: float = 0.2, sizes: tuple[int, ...] = (1, 3, 20, 70, 150)) -> list[list[tuple]]:
    """Kafka messages (offset, topic, key, value, headers) of 6 hosts (one of them unknown until
    late) over 60 s, in fetched batches of random sizes; ``ebpf``: the chance of an eBPF snapshot
    per host and second (a window holding one is closed in Python); ``sizes``: the batch sizes to
    pick from (the timer runs every 4th batch: with small ones, a tick finds few windows due, and
    not always a proof window, which only Python closes)."""
    rng = random.Random(seed)
    hosts = [SimHost(i, seed=f"native-app-{seed}") for i in range(6)]
    late_host = hosts[-1]
    start = NOW - 65 * S
    msgs: list[tuple] = [h.message("hm.inventory.v1", h.inventory(start)) for h in hosts[:-1]]
    held: list[tuple] = []
    bad_kinds = itertools.cycle(RECORD_BAD_KINDS)
    for i in range(60):
        t = start + i * S
        for h in hosts:
            if rng.random() < 0.08:
                h.next_seq("hm.usage.v1")  # a gap: the seq after it is no longer the next one
            msg = h.message("hm.usage.v1", h.usage(t, elapsed_s=1.0))
            if rng.random() < 0.05:
                held.append(msg)  # sent later: a late fill of the gap
            else:
                msgs.append(msg)
            if rng.random() < ebpf:
                msgs.append(h.message("hm.ebpf.v1", h.ebpf_sched(t, procfs_busy_s=0.5, elapsed_s=1.0)))
            if rng.random() < 0.08:
                msgs.append(bad_record(next(bad_kinds), h, t))
            if held and rng.random() < 0.3:
                msgs.append(held.pop())
        if i % 3 == 1:  # re-inventories claiming 2 or 4 cores: whether a sample is over_capacity depends on
            h = hosts[1]  # which one came last, so an inventory applied out of order shows
            h.cores = 2 + 2 * (i % 2)
            msgs.append(h.message("hm.inventory.v1", h.inventory(t)))
            h.cores = 4
        if i == 20:
            hosts[2].boot_id, hosts[2].seqs = "new-boot", {}  # a reboot: counters go on, seqs restart
        if i == 40:
            msgs.append(late_host.message("hm.inventory.v1", late_host.inventory(t)))  # its records were parked
    msgs += held
    batches, i = [], 0
    while i < len(msgs):
        n = rng.choice(sizes)
        batches.append([(i + j, *msg) for j, msg in enumerate(msgs[i:i + n])])
        i += n
    return batches


def app(tmp_path, signer, monkeypatch, native: bool):
    """A Processor whose broker is faked: (it, its clock, acked offsets, rejections (offset, code,
    check), outputs sent (topic, partition, key, value))."""
    clock = SimpleNamespace(now=NOW)
    monkeypatch.setattr(app_module, "time", SimpleNamespace(time=lambda: clock.now / S, monotonic=lambda: 0.0))
    monkeypatch.setattr(app_module, "VERIFY_CHUNK", 16)  # many chunks per batch: the pipeline's boundaries
    settings = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", processor_checkpoint_s=3600,
                             processor_native_ingest=native, unknown_host_grace_s=3600)
    proc = Processor(settings, CFG, signer,
                     topic_partitions={"hm.usage.v1": 6, **{topic: 6 for topic in app_module.OUTPUT_TOPICS}})
    assert (proc.store is not None) == native
    proc.table = {}
    acked: list[int] = []

    def ack_many(msgs):
        for msg in msgs:
            # what waits for the checkpoint's ack is the offset only: one object a record (tune_gc)
            assert msg.value is None and msg.headers is None, f"record {msg.offset} acked with its value or headers"
            acked.append(msg.offset)
    proc.app.consumer = SimpleNamespace(ack_many=ack_many)
    rejected: list[tuple[int, str, str]] = []

    async def reject(code, check, _detail, _record, msg, _now_us):
        rejected.append((msg.offset, code, check))
    proc._reject = reject
    # the delivery's broker: end offsets as counts of what was sent, each send acknowledged at once
    sent: list[tuple[str, int, bytes, bytes]] = []

    async def end_offsets(tps):
        return {tp: sum(1 for t, p, *_ in sent if (t, p) == (tp.topic, tp.partition)) for tp in tps}

    async def flush():
        return None

    async def send_batches(records):
        await asyncio.sleep(0)  # the sends' wait: a record may apply meanwhile
        sent.extend((tp.topic, tp.partition, key, value) for tp, pairs in records.items() for key, value in pairs)
        return sum(map(len, records.values()))
    proc.delivered = SimpleNamespace(end_offsets=end_offsets)
    proc.app.producer = SimpleNamespace(flush=flush)
    proc._send_batches = send_batches
    return proc, clock, acked, rejected, sent


def messages(batch):
    """Fresh messages per run (the app drops a settled record's value)."""
    return [SimpleNamespace(topic=topic, key=key, value=value, headers=headers, partition=0, offset=offset)
            for offset, topic, key, value, headers in batch]


def run(tmp_path, signer, batches, monkeypatch, native: bool, pipelined: bool = False):
    """``pipelined``: the timer settles only the chunks the ingest thread has applied (as
    Processor._tick does); else it settles every chunk first."""
    proc, clock, acked, rejected, sent = app(tmp_path, signer, monkeypatch, native)

    async def feed():
        for n, batch in enumerate(batches):
            if n % 2 == 0:  # the processor's time moves every other batch: a chunk settled in the next
                await proc._settle()  # fetch (the pipeline) is handled at the time it would have been
                clock.now += S // 4
            await proc._on_batch(messages(batch))
            if n % 3 == 1:
                await proc._checkpoint()
            if n % 4 == 2:  # the timer (Processor._tick): settle, close what is due, deliver
                await proc._settle(keep=app_module.INFLIGHT_MAX if pipelined else 0)
                states, closed_natively = proc._close_due(clock.now, set(range(6)))
                if states or closed_natively:
                    await proc._deliver(states, closed_natively)
        await proc._settle()  # as the timer does
        for host_id in list(proc.parked):  # the grace ends for every host still parked
            await proc._replay(host_id)
        await proc._checkpoint()
    asyncio.run(feed())
    table = {key: orjson.loads(raw) for key, raw in proc.table.items()}
    return (table, rejected, sorted(acked), dict(proc.due), proc.stats["accepted"], sorted(sent),
            proc.stats["native_closes"])


@pytest.mark.parametrize("seed, ebpf", [(1, 0.2), (2, 0.2), (3, 0.2), (4, 0.0), (5, 0.0)])
def test_native_store_in_the_app_matches_the_python_engine(tmp_path, signer, monkeypatch, seed, ebpf):
    batches = stream(seed, ebpf, (1, 3, 20, 70, 150) if ebpf else (1, 3, 7))
    fast = run(tmp_path / "native", signer, batches, monkeypatch, native=True)
    slow = run(tmp_path / "python", signer, batches, monkeypatch, native=False)
    table, rejected, acked, _due, accepted, sent, native_closes = fast
    assert slow[6] == 0 and (native_closes > 20 or ebpf), "windows were closed in the store"
    assert len(table) == 6 and accepted > 300, "the stream was taken in"
    assert len(sent) > 100 and {t for t, *_ in sent} >= {"hm.usage.agg.10s.v1", "hm.usage.agg.1m.v1", "hm.proofs.v1"}
    assert {code for _offset, code, _check in rejected} >= set(RECORD_BAD_KINDS)
    assert acked == list(range(sum(map(len, batches)))), "every record acked once"
    assert rejected == slow[1]
    assert fast[2:6] == slow[2:6]
    assert sent == slow[5], "the same outputs, each once"
    for host_id, state in slow[0].items():
        assert orjson.dumps(table[host_id]) == orjson.dumps(state), host_id


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_timer_with_chunks_in_flight(tmp_path, signer, monkeypatch, seed):
    """The timer as it runs: fetches queued for the ingest thread, only the applied chunks settled.
    A host the timer closes in Python leaves the store while records of its may be queued (they
    decline and are replayed in Python). Closes may come a tick later than with every chunk
    settled, so the outputs are not compared one by one: every record is acked once, each output
    is sent once, and the rejections are the same."""
    batches = stream(seed, 0.0, (1, 3, 7, 40))
    pipelined = run(tmp_path / "pipelined", signer, batches, monkeypatch, native=True, pipelined=True)
    settled = run(tmp_path / "settled", signer, batches, monkeypatch, native=True)
    _table, rejected, acked, _due, accepted, sent, native_closes = pipelined
    assert acked == list(range(sum(map(len, batches)))), "every record acked once"
    assert native_closes > 5 and accepted > 300
    values = [value for _topic, _partition, _key, value in sent]
    assert len(values) == len(set(values)), "each output once"
    assert rejected == settled[1]


@pytest.mark.parametrize("how", ["store", "python", "store-declines"])
def test_a_host_s_queued_records_find_it_in_the_store_after_a_proof_close(tmp_path, signer, monkeypatch, how):
    """A due proof window closes in the store, with only the proof part through Python
    (native.close_proofs); with an eBPF snapshot in a due window, in Python on the state taken
    out, which goes back at once (Processor._restore). Either way the host's records already queued
    for the ingest thread are taken in the store, not declined and replayed in Python. And a host's
    first usage record is the store's too (the first of its boot: a new baseline). If the store
    declines the proof close (a record applied meanwhile), Python closes the proof windows on the
    whole state, whose outbox holds the dashboard windows the store closed: each output sent once."""
    ebpf = how == "python"
    import threading

    proc, clock, acked, rejected, sent = app(tmp_path, signer, monkeypatch, native=True)
    host = SimHost(0, seed="restore")
    start = NOW - 30 * S  # records at x0.25 s: the one at 980.25 passes the proof window [970, 980)'s end
    msgs = [host.message("hm.inventory.v1", host.inventory(start))]
    msgs += [host.message("hm.usage.v1", host.usage(start + i * S, elapsed_s=1.0)) for i in range(12)]
    if ebpf:  # snapshots in the 2 s window [978, 980), due at the close, and past its end
        msgs[12:12] = [host.message("hm.ebpf.v1", host.ebpf_sched(start + i * S, procfs_busy_s=0.5, elapsed_s=1.0))
                       for i in (9, 10)]
    batch = [(offset, *msg) for offset, msg in enumerate(msgs)]
    hid = host.host_id
    queued = threading.Event()
    python_closes = 0
    close_due = proc.engine.close_due

    def counted_close_due(*args: Any) -> int:
        nonlocal python_closes
        python_closes += 1
        return close_due(*args)

    monkeypatch.setattr(proc.engine, "close_due", counted_close_due)
    if how == "store-declines":
        monkeypatch.setattr(app_module.native, "close_proofs", lambda *args: None)

    async def scenario():
        for i in range(3):  # the inventory; the first usage record; the second
            await proc._on_batch(messages(batch[i:i + 1]))
            await proc._settle()
            assert (hid in proc.native_keys) == (i >= 1), i
        assert proc.stats["native"] == 2 and proc.stats["declined"] == 0
        await proc._on_batch(messages(batch[3:-1]))
        await proc._settle()
        assert proc.stats["native"] == 11
        # the ingest thread busy: the last record waits in the queue while the timer closes the host
        proc.ingest_pool.submit(queued.wait)
        await proc._on_batch(messages(batch[-1:]))
        assert len(proc.inflight) == 1 and not proc.inflight[0].taken.done()
        states, closed = proc._close_due(clock.now, set(range(6)))
        assert python_closes == (0 if how == "store" else 1)
        if how == "store-declines":
            assert closed == [] and [state["host_id"] for state in states] == [hid]
            topics = [entry[0] for entry in states[0]["outbox"]]
            assert "hm.proofs.v1" in topics and any(t.startswith("hm.usage.agg") for t in topics)
            assert hid not in proc.native_keys, "in Python until delivered"
        else:
            assert states == [] and [h for h, _ in closed] == [hid]
            assert "hm.proofs.v1" in {entry[0] for entry in closed[0][1]}, "the proof window closed"
            assert hid in proc.native_keys, "in the store"
        queued.set()
        await proc._settle()
        declined = 1 if how == "store-declines" else 0  # the queued record found its host gone
        assert proc.stats["native"] == 12 - declined and proc.stats["declined"] == declined
        await proc._deliver(states, closed)
        await proc._checkpoint()

    try:
        asyncio.run(scenario())
    finally:
        queued.set()  # a failed assertion must not leave the ingest thread waiting (the interpreter joins it)
    assert rejected == []
    assert acked == list(range(len(batch)))
    assert [topic for topic, *_ in sent].count("hm.proofs.v1") == 1
    values = [value for _topic, _partition, _key, value in sent]
    assert len(values) == len(set(values)), "each output once"
    state = orjson.loads(proc.table[hid.encode()])
    assert state["outbox"] == [] and "outbox_mark" not in state
    assert state["chain"]["seq"] == 1 and state["last"]["seq"] == orjson.loads(msgs[-1][2])["seq"]

