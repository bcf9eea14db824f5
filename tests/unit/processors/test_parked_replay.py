"""Records parked for an unknown host's inventory (processors.app.Processor.parked) are settled in
their order, even when the timer's replay and the input's replay interleave at a rejection's send."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from hmconfig.settings import load_settings
from processors.app import Processor
from processors.config import ProcessorConfig
from processors.engine import REJECTED_TOPIC, Signer
from processors.simulator import SimHost


@dataclass(eq=False)  # hashed by identity, as faust's messages are (it keeps them in a WeakSet)
class Msg:
    """What the app reads of a faust ConsumerMessage."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Any
    partition: int = 0
    offset: int = 0


class SlowRejections:
    """The rejected topic at the I/O edge: each send yields to the loop for a while, as a broker
    round trip does, and is recorded."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delays: list[float] = []  # per send, in turn; 0.05 s once they run out

    async def send(self, *, key: bytes, value: bytes) -> None:
        await asyncio.sleep(self.delays.pop(0) if self.delays else 0.05)
        self.sent.append(orjson.loads(value))


@pytest.fixture
def proc(tmp_path):
    settings = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    proc = Processor(settings, ProcessorConfig(unknown_host_grace_s=10.0), Signer("k", lambda data: {}),
                     topic_partitions={"hm.usage.v1": 6})
    proc.outputs[REJECTED_TOPIC] = SlowRejections()
    return proc


def message(host: SimHost, topic: str, record: dict[str, Any], offset: int) -> Msg:
    topic, key, value, headers = host.message(topic, record)
    return Msg(topic, key, value, headers, offset=offset)


def test_input_arriving_during_the_timers_replay_waits_behind_the_parked_records(proc):
    host = SimHost(1, seed="parked")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(4)]
    inventory = message(host, "hm.inventory.v1", host.inventory(t), 0)
    newer = message(host, "hm.usage.v1", host.usage(t + 4_000_000), 4)

    async def scenario() -> None:
        for msg in parked:
            assert await proc._handle(msg, first=True) is False  # no key pinned yet: parked
        proc.unknown_since[host.host_id] -= 60  # the grace ran out: the timer replays, rejecting
        timer = asyncio.create_task(proc._replay_parked())
        await asyncio.sleep(0.01)  # the first replayed record's rejection is being sent
        # meanwhile the inventory comes, then a newer record
        assert await proc._handle(inventory, first=True)
        await proc._handle(newer, first=True)
        await timer

    asyncio.run(scenario())
    rejected = proc.outputs[REJECTED_TOPIC].sent
    # only the record replayed before the inventory came is rejected, for the missing key; the
    # others are taken in seq order (taken after seq 4, they would have been filed as duplicates)
    assert [(r["reason"], r["seq"]) for r in rejected] == [("key_mismatch", 0)]
    state = proc.get(host.host_id)
    assert state is not None and state["counts"] == {"accepted": 5, "duplicates": 0, "late": 0}
    assert proc.parked == {} and host.host_id not in proc.unknown_since
    # every parked record is queued for the next checkpoint's acks, each once
    assert sorted(m.offset for m in proc.unacked) == [0, 1, 2, 3]


def test_a_queue_parked_anew_while_an_older_replay_finishes_is_kept(proc):
    host = SimHost(2, seed="parked")
    t = int(time.time() * 1e6) - 10_000_000
    first = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(2)]
    later = message(host, "hm.usage.v1", host.usage(t + 2_000_000), 2)
    proc.outputs[REJECTED_TOPIC].delays = [0.05, 0.3]

    async def scenario() -> None:
        for msg in first:
            await proc._handle(msg, first=True)
        proc.unknown_since[host.host_id] -= 60  # the grace ran out: both replays reject
        quick = asyncio.create_task(proc._replay(host.host_id))  # takes seq 0, sent in 0.05 s
        slow = asyncio.create_task(proc._replay(host.host_id))   # takes seq 1, sent in 0.3 s
        await quick
        # the queue is done with; the host's next record starts a fresh grace and parks anew,
        # while the slow replay still sends its rejection
        assert await proc._handle(later, first=True) is False
        await slow

    asyncio.run(scenario())
    assert sorted(r["seq"] for r in proc.outputs[REJECTED_TOPIC].sent) == [0, 1]
    # the slow replay, finishing last, left the new queue alone (dropping it would lose seq 2:
    # never handled, never acked, holding its partition's commits back)
    assert [m.offset for m in proc.parked[host.host_id]] == [2]
    assert host.host_id in proc.unknown_since


def test_at_a_rebalance_parked_records_are_left_unacked_and_their_hosts_later_records_too(proc):
    """faust revokes partitions once every record taken is acked; parked ones are left out of that wait
    (not acked, so the next owner reads them again) rather than rejected as key_mismatch."""
    host, other = SimHost(3, seed="parked"), SimHost(4, seed="parked")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(3)]
    later = message(host, "hm.usage.v1", host.usage(t + 3_000_000), 3)
    inventory = message(host, "hm.inventory.v1", host.inventory(t), 0)
    known = [message(other, "hm.inventory.v1", other.inventory(t), 1),
             message(other, "hm.usage.v1", other.usage(t), 4)]
    taken = proc.app.consumer.unacked  # faust's set of records taken and not acked yet
    for msg in parked + [later, inventory] + known:
        taken.add(msg)

    async def scenario() -> None:
        for msg in parked:
            assert await proc._handle(msg, first=True) is False
        assert proc.release_parked() == 3
        # the rest of the batch being finished: the host's later record is left as well (taken, it
        # would overtake the parked ones); its inventory and other hosts' records are handled
        assert await proc._handle(later, first=True) is False
        for msg in [inventory] + known:
            assert await proc._handle(msg, first=True) is True

    asyncio.run(scenario())
    assert proc.outputs[REJECTED_TOPIC].sent == []
    assert proc.parked == {} and proc.unknown_since == {}
    assert set(taken) == {inventory, *known}  # what the checkpoint acks; the rest is left out of faust's wait
    assert proc.get(host.host_id)["counts"]["accepted"] == 1  # the inventory only
    assert proc.get(other.host_id)["counts"]["accepted"] == 2
    asyncio.run(proc._forget())  # the partitions are assigned again: faust re-reads from the commits
    assert proc.released == set()


def test_a_seek_in_a_rebalance_drops_the_parked_records_which_come_again_and_are_taken(proc):
    """faust seeks to the committed offsets during a rebalance (and while it restores the table):
    a record parked until then at or after its partition's new position comes again, so it is dropped
    from the wait (and from faust's unacked set), and the hosts released earlier are let in again.
    Once the seek is done, parked records are no longer released: released after it, they were
    dropped when read again, and lost."""
    host = SimHost(5, seed="parked-seek")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(3)]
    inventory = message(host, "hm.inventory.v1", host.inventory(t), 0)
    inventories, _others, assigned = starting_assignment()
    consumer = StartingConsumer(assigned, ends={tp: 0 for tp in inventories}, positions={})
    proc.app.consumer = consumer

    async def scenario() -> None:
        for msg in parked:
            consumer.unacked.add(msg)
            assert await proc._handle(msg, first=True) is False
        proc.app.on_rebalance_start()
        assert proc._releasing()
        assert proc.release_parked() == 3 and proc.released == {host.host_id}
        for msg in parked:  # read again after the revocation, before the new assignment's seek: left
            consumer.unacked.add(msg)
            assert await proc._handle(msg, first=True) is False
            consumer.unacked.discard(msg)
        await proc._after_seek()  # faust fetching with its flow stopped seeks to the committed offsets
        assert proc.released == set() and not proc._releasing()
        await proc._forget()  # assigned again
        for msg in parked:  # fetched while faust restores the table
            consumer.unacked.add(msg)
            assert await proc._handle(msg, first=True) is False
        # its seek set the partition back to offset 1: the first record, handed over between the
        # seek and _after_seek, is not read again and stays parked; the others come again
        consumer.positions[TopicPartition("hm.usage.v1", 0)] = 1
        await proc._after_seek()
        assert proc.parked == {host.host_id: parked[:1]} and consumer.unacked == {parked[0]}
        assert not proc._releasing()  # the rebalance goes on, but its seek is done
        # read again from there, the inventory first: the parked record is replayed first
        assert await proc._handle(inventory, first=True) is True
        for msg in parked[1:]:
            assert await proc._handle(msg, first=True) is True

    try:
        asyncio.run(scenario())
    finally:
        proc.app.on_rebalance_end()
    assert proc.get(host.host_id)["counts"]["accepted"] == 4
    assert proc.outputs[REJECTED_TOPIC].sent == []


def test_parked_records_are_verified_as_a_batch_when_their_inventory_comes(proc):
    """The replay checks the parked records' signatures ahead, as one batch in the verify thread: a
    forged one among them is still refused, and only it."""
    host = SimHost(1, seed="parked-batch")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(5)]
    sig = dict(parked[2].headers)["hm-sig"]
    forged = bytes([sig[0] ^ 1]) + sig[1:] if sig[:1] != b"A" else b"B" + sig[1:]
    parked[2].headers = [(k, forged if k == "hm-sig" else v) for k, v in parked[2].headers]
    inventory = message(host, "hm.inventory.v1", host.inventory(t), 0)
    checked: list[int] = []
    verify_ahead = proc._verify_ahead

    def counting(messages):
        checked.append(len(messages))
        return verify_ahead(messages)
    proc._verify_ahead = counting

    async def scenario() -> None:
        for msg in parked:
            assert await proc._handle(msg, first=True) is False
        assert await proc._handle(inventory, first=True)

    asyncio.run(scenario())
    assert checked == [5]  # the five parked records, checked together
    rejected = proc.outputs[REJECTED_TOPIC].sent
    assert [(r["reason"], r["check"]) for r in rejected] == [("bad_signature", "signature")]
    assert proc.stats["accepted"] == 5  # the inventory and four of the parked records
    assert host.host_id not in proc.parked


def test_the_grace_waits_while_the_inventory_partition_is_behind(proc):
    """Under a backlog the inventory topic can be further behind than unknown_host_grace_s: the
    grace counts only from when the host's inventory partition is read to its end."""
    from types import SimpleNamespace

    host = SimHost(1, seed="parked-behind")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(3)]
    tp = proc._target(host.host_id, "hm.usage.v1")._replace(topic="hm.inventory.v1")
    read: dict[Any, int] = {}  # nothing read from it yet, and nothing committed: behind
    proc.app.consumer = SimpleNamespace(highwater=lambda asked: 100 if asked == tp else None, _read_offset=read,
                                        _committed_offset={}, read_heads={tp: 0})

    async def scenario() -> None:
        for msg in parked[:2]:
            assert await proc._handle(msg, first=True) is False
        proc.unknown_since[host.host_id] -= 60  # past the grace, but the inventory partition is behind
        await proc._replay_parked()
        assert len(proc.parked[host.host_id]) == 2 and proc.outputs[REJECTED_TOPIC].sent == []
        read[tp] = 50
        proc.unknown_since[host.host_id] -= 60
        await proc._replay_parked()
        assert len(proc.parked[host.host_id]) == 2 and proc.outputs[REJECTED_TOPIC].sent == []
        assert await proc._handle(parked[2], first=True) is False  # still parked, behind the others
        read[tp] = 99  # read to its end: the grace runs from when it was last seen behind
        await proc._replay_parked()
        assert len(proc.parked[host.host_id]) == 3
        proc.unknown_since[host.host_id] -= 60
        await proc._replay_parked()

    asyncio.run(scenario())
    assert host.host_id not in proc.parked
    assert [r["reason"] for r in proc.outputs[REJECTED_TOPIC].sent] == ["key_mismatch"] * 3


def test_an_unknown_host_waits_at_most_wait_max_graces_however_far_behind(proc):
    from types import SimpleNamespace

    from processors.app import WAIT_MAX_GRACES

    host = SimHost(1, seed="parked-cap")
    t = int(time.time() * 1e6) - 10_000_000
    msg = message(host, "hm.usage.v1", host.usage(t), 0)
    proc.app.consumer = SimpleNamespace(highwater=lambda asked: 100, _read_offset={}, _committed_offset={},
                                        read_heads={})

    async def scenario() -> None:
        assert await proc._handle(msg, first=True) is False
        proc.unknown_since[host.host_id] -= 60
        await proc._replay_parked()
        assert host.host_id in proc.parked  # behind: still waiting
        proc.unknown_first[host.host_id] -= WAIT_MAX_GRACES * proc.cfg.unknown_host_grace_s
        proc.unknown_since[host.host_id] -= 60
        await proc._replay_parked()

    asyncio.run(scenario())
    assert host.host_id not in proc.parked
    assert [r["reason"] for r in proc.outputs[REJECTED_TOPIC].sent] == ["key_mismatch"]


def test_many_parked_records_pause_all_but_the_inventories(proc, monkeypatch):
    """Backpressure (Processor._inventories_first): past PARKED_PAUSE parked records only the
    inventory partitions are read, until half of them are settled. The table's changelog
    partitions, also in the assignment, are left alone: faust keeps them paused after recovery,
    and resumed they fed the worker its own state writes back."""
    from types import SimpleNamespace

    from aiokafka import TopicPartition

    import processors.app as app_module

    monkeypatch.setattr(app_module, "PARKED_PAUSE", 2)
    inputs = {TopicPartition(t, p) for t in ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1") for p in range(2)}
    assigned = inputs | {TopicPartition("hm-processors-hosts-changelog", p) for p in range(2)}
    calls: list[tuple[str, set]] = []
    proc.app.consumer = SimpleNamespace(
        assignment=lambda: assigned, highwater=lambda tp: None, _read_offset={}, _committed_offset={}, read_heads={},
        pause_partitions=lambda tps: calls.append(("pause", set(tps))),
        resume_partitions=lambda tps: calls.append(("resume", set(tps))))
    host = SimHost(1, seed="parked-pause")
    t = int(time.time() * 1e6) - 10_000_000
    parked = [message(host, "hm.usage.v1", host.usage(t + i * 1_000_000), i) for i in range(3)]
    inventory = message(host, "hm.inventory.v1", host.inventory(t), 0)
    others = {tp for tp in inputs if tp.topic != "hm.inventory.v1"}

    async def scenario() -> None:
        for msg in parked[:2]:
            assert await proc._handle(msg, first=True) is False
        proc._inventories_first()
        assert calls == []  # 2 parked: not past the limit
        assert await proc._handle(parked[2], first=True) is False
        proc._inventories_first()
        proc._inventories_first()
        assert calls == [("pause", others)]  # once
        assert await proc._handle(inventory, first=True)  # the parked records are taken
        proc._inventories_first()
        assert calls == [("pause", others), ("resume", others)]

    asyncio.run(scenario())
    assert proc.stats["accepted"] == 4


class StartingConsumer:
    """faust's consumer at the I/O edge, as _after_seek and _inventories_first use it."""

    def __init__(self, assigned: set, ends: dict, positions: dict) -> None:
        self.assigned, self.ends, self.positions = assigned, ends, positions
        self._read_offset: dict = {}  # faust's: the last offset handed over (the committed one after a seek)
        self._committed_offset: dict = {}
        self.read_heads: dict = {}  # BatchConsumer's: tp -> the first offset handed over since the seek
        self.calls: list[tuple[str, set]] = []
        self.asked: set = set()  # the partitions whose position was asked for
        self.unacked: set = set()  # faust's records taken and not acked yet

    def assignment(self) -> set:
        return self.assigned

    def highwater(self, tp: Any) -> Any:
        return None

    async def highwaters(self, *tps: Any) -> dict:
        if self.ends is None:
            raise ConnectionError("broker gone")
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: Any) -> int:
        self.asked.add(tp)
        if isinstance(self.positions.get(tp), Exception):
            raise self.positions[tp]
        return self.positions.get(tp, 0)

    def pause_partitions(self, tps: Any) -> None:
        self.calls.append(("pause", set(tps)))

    def resume_partitions(self, tps: Any) -> None:
        self.calls.append(("resume", set(tps)))


def starting_assignment() -> tuple[set, set, set]:
    from aiokafka import TopicPartition

    inventories = {TopicPartition("hm.inventory.v1", p) for p in range(2)}
    others = {TopicPartition(t, p) for t in ("hm.usage.v1", "hm.ebpf.v1") for p in range(2)}
    changelog = {TopicPartition("hm-processors-hosts-changelog", p) for p in range(2)}
    return inventories, others, inventories | others | changelog


def test_after_an_assignment_unread_inventories_are_read_before_the_usage(proc, caplog):
    """A worker started on a backlog (Processor._after_seek): the usage and eBPF partitions
    stay paused until the inventory partitions are read to the end offsets they had when assigned;
    the changelog partitions are left alone."""
    inventories, others, assigned = starting_assignment()
    inv0, inv1 = sorted(inventories)
    consumer = StartingConsumer(assigned, ends={inv0: 500, inv1: 40}, positions={inv0: 100, inv1: 40})
    proc.app.consumer = consumer
    caplog.set_level("INFO", logger="processors")

    asyncio.run(proc._after_seek())
    assert consumer.calls == [("pause", others)]
    assert proc.inventories_due == {inv0: 500}  # partition 1 was read to its end already
    assert "400 inventory records not read yet" in caplog.text
    consumer._read_offset[inv0] = 100  # as faust's seek sets it: the next offset to read
    proc._inventories_first()
    assert consumer.calls == [("pause", others)]  # nothing read since the seek
    consumer.read_heads[inv0] = 100
    consumer._read_offset[inv0] = 450
    proc._inventories_first()
    assert consumer.calls == [("pause", others)]  # 49 left: still paused
    consumer._read_offset[inv0] = 499  # the last one handed over
    proc._inventories_first()
    assert consumer.calls == [("pause", others), ("resume", others)]
    assert proc.inventories_due == {} and proc.paused == set()
    assert "inventories read in" in caplog.text


def test_inventories_read_to_their_end_pause_nothing(proc):
    inventories, _others, assigned = starting_assignment()
    consumer = StartingConsumer(assigned, ends={tp: 40 for tp in inventories},
                                positions={tp: 40 for tp in inventories})
    proc.app.consumer = consumer
    asyncio.run(proc._after_seek())
    assert consumer.calls == [] and proc.inventories_due == {}


def test_unknown_inventory_offsets_pause_nothing_and_say_so(proc, caplog):
    _inventories, _others, assigned = starting_assignment()
    proc.app.consumer = consumer = StartingConsumer(assigned, ends=None, positions={})
    asyncio.run(proc._after_seek())
    assert consumer.calls == []
    assert "inventory partitions' offsets unknown (ConnectionError: broker gone)" in caplog.text


def test_inventories_that_never_come_are_waited_for_at_most_wait_max_graces(proc, caplog):
    from processors.app import WAIT_MAX_GRACES

    inventories, others, assigned = starting_assignment()
    consumer = StartingConsumer(assigned, ends={tp: 10 for tp in inventories}, positions={tp: 0 for tp in inventories})
    proc.app.consumer = consumer
    asyncio.run(proc._after_seek())
    proc._inventories_first()
    assert consumer.calls == [("pause", others)]
    proc.inventories_since -= WAIT_MAX_GRACES * proc.cfg.unknown_host_grace_s
    proc._inventories_first()
    assert consumer.calls == [("pause", others), ("resume", others)]
    assert "inventories still not read after" in caplog.text and "hm.inventory.v1:0 to 10" in caplog.text


def test_after_a_seek_every_input_partition_has_its_position(proc):
    """_after_seek asks for the position of every input partition (not the changelog's), so one with no
    committed offset is reset before the "ready" line, not at its first fetch: records written after
    that line are read even with the reset "latest"."""
    inventories, others, assigned = starting_assignment()
    consumer = StartingConsumer(assigned, ends={tp: 0 for tp in inventories}, positions={})
    proc.app.consumer = consumer
    asyncio.run(proc._after_seek())
    assert consumer.asked == inventories | others


def test_positions_not_found_after_a_seek_are_named(proc, caplog):
    from aiokafka.errors import IllegalStateError

    inventories, others, assigned = starting_assignment()
    usage0 = min(tp for tp in others if tp.topic == "hm.usage.v1")
    inv0 = min(inventories)
    consumer = StartingConsumer(assigned, ends={tp: 10 for tp in inventories},
                                positions={usage0: IllegalStateError("not assigned"), inv0: IllegalStateError("x")})
    proc.app.consumer = consumer
    asyncio.run(proc._after_seek())
    assert "positions of 2 input partitions unknown after the seek (hm.inventory.v1:0, hm.usage.v1:0)" in caplog.text
    assert consumer.calls == [] and proc.inventories_due == {}  # not paused on a guess
    assert "inventory partitions' offsets unknown (LookupError" in caplog.text


def test_one_inventory_left_after_the_seek_is_still_waited_for(proc):
    """faust's seek sets its read offset to the next offset to read (499 here, the last record): until a
    record is handed over, the position is where the seek put it, not one past it."""
    inventories, others, assigned = starting_assignment()
    inv0, inv1 = sorted(inventories)
    consumer = StartingConsumer(assigned, ends={inv0: 500, inv1: 0}, positions={inv0: 499, inv1: 0})
    proc.app.consumer = consumer
    asyncio.run(proc._after_seek())
    consumer._read_offset[inv0] = 499
    proc._inventories_first()
    assert consumer.calls == [("pause", others)] and proc.inventories_due == {inv0: 500}
    consumer.read_heads[inv0] = 499  # handed over
    proc._inventories_first()
    assert consumer.calls == [("pause", others), ("resume", others)]
