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
