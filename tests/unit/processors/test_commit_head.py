"""The batch consumer's commit offset (processors.faust_transport.BatchConsumer._new_offset) never
passes an unacked record at the head of a partition: faust's own check let a one-record hole at
the committed offset through, and checked nothing while a partition had no commit yet, so a
record parked for its inventory could be committed past and never read again."""
from __future__ import annotations

import pytest
from faust.types import TP

from processors.faust_transport import App

TP0 = TP("hm.usage.v1", 0)


@pytest.fixture
def consumer():
    app = App("hm-unit-commit-head", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    return app.consumer  # built, not started: no broker is contacted


def test_a_single_unacked_record_at_the_committed_offset_holds_the_commit(consumer):
    consumer._committed_offset[TP0] = 10  # the next offset to read
    consumer._acked[TP0] = [11, 12]       # 10 is parked
    assert consumer._new_offset(TP0) is None


def test_with_nothing_committed_the_first_record_delivered_is_the_head(consumer):
    consumer.read_heads[TP0] = 100     # the first record delivered since the seek
    consumer._acked[TP0] = [103, 104]     # 100-102 are parked
    assert consumer._new_offset(TP0) is None
    consumer._acked[TP0] = [100, 101, 102, 103, 104]  # all settled
    assert consumer._new_offset(TP0) == 105


def test_acked_from_the_head_commits_up_to_the_first_hole(consumer):
    consumer._committed_offset[TP0] = 10
    consumer._acked[TP0] = [10, 11, 13]
    assert consumer._new_offset(TP0) == 12


async def test_a_seek_starts_a_new_head(consumer):
    consumer.read_heads[TP0] = 100
    consumer.read_heads[TP("hm.usage.v1", 1)] = 7

    async def seeked(*_args):
        return {}

    consumer._seek = seeked  # the broker side of a seek, at the I/O edge
    await consumer.seek(TP0, 90)
    assert consumer.read_heads == {TP("hm.usage.v1", 1): 7}


def _app_consumer(name):
    app = App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.topics._acking_topics.add("hm.usage.v1")  # as an agent subscribed to it would
    return app.consumer


def test_ack_many_keeps_the_books_as_faust_s_ack_one_by_one():
    """BatchConsumer.ack_many (one lock hold for a checkpoint's acks) against faust's Consumer.ack:
    the same acked offsets, index, count and tracked set, for records below the committed offset,
    acked twice, of a topic without acks, and of two partitions."""
    from faust.types import ConsumerMessage

    tp1, other = TP("hm.usage.v1", 1), TP("hm.rejected.v1", 0)

    def messages():
        spec = [(TP0, o) for o in (7, 9, 10, 11, 11, 14)] + [(tp1, o) for o in (0, 1, 2)] + [(other, 3)]
        return [ConsumerMessage(tp.topic, tp.partition, o, 0.0, 0, [], b"k", b"v", None, tp=tp) for tp, o in spec]

    books = []
    for name, ack in (("one-by-one", lambda c, ms: [c.ack(m) for m in ms]), ("many", lambda c, ms: c.ack_many(ms))):
        c = _app_consumer(f"hm-unit-ack-{name}")
        c._committed_offset[TP0] = 9
        c._committed_offset[tp1] = None
        msgs = messages()
        for m in msgs:
            c.track_message(m)
        ack(c, msgs[:4])
        ack(c, msgs)  # again, and the rest
        books.append((dict(c._acked), {tp: sorted(i) for tp, i in c._acked_index.items()}, c._n_acked,
                      sorted((m.tp, m.offset) for m in c._unacked_messages), [m.acked for m in msgs]))
    assert books[0] == books[1]
    acked, _index, n, unacked, flags = books[1]
    assert acked[TP0] == [9, 10, 11, 14] and acked[tp1] == [0, 1, 2] and n == 7
    assert unacked == [(other, 3), (TP0, 7), (TP0, 11)]  # below the commit, a second copy, no acks: tracked still
    assert all(flags)


async def test_a_revocation_commits_what_was_acked_before_faust_forgets_it():
    """faust drops a revoked partition's acked offsets before its own commit at the revocation, so
    offsets acked since the last periodic commit were never committed (BatchConsumer.
    on_partitions_revoked). Faked: the broker side only (the assignment, the commit request, the
    producer's flush) and the app's revocation handler, which records what faust still holds."""
    consumer = _app_consumer("hm-unit-revoke")
    tp1 = TP("hm.usage.v1", 1)
    sent: list[dict] = []
    held_at_app: list[dict] = []

    async def commit_request(offsets):
        sent.append(dict(offsets))
        return True

    async def flushed():
        return None

    async def app_revoked(revoked):
        held_at_app.append({tp: list(offsets) for tp, offsets in consumer._acked.items() if offsets})

    consumer.assignment = lambda: {TP0, tp1}
    consumer._commit = commit_request
    consumer.app.producer.flush = flushed
    consumer._on_partitions_revoked = app_revoked
    consumer.read_heads.update({TP0: 0, tp1: 5})
    consumer._acked[TP0] = [0, 1]  # acked at a checkpoint, after the last periodic commit
    consumer._acked[tp1] = [6]     # 5 is parked: nothing of tp1 may be committed
    await consumer.on_partitions_revoked({TP0, tp1})
    assert sent == [{TP0: 2}]
    assert held_at_app == [{}]  # the app's handler still ran, after faust forgot the acks
