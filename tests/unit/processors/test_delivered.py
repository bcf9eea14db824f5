"""The outbox re-send filter (processors/delivered.py): pure parts, no broker."""
from __future__ import annotations

from aiokafka import TopicPartition

from processors.delivered import fingerprint, tp_name, tp_of, undelivered


def test_undelivered_keeps_only_entries_whose_exact_bytes_are_absent():
    outbox = [["hm.usage.agg.10s.v1", "h-1/10s/0/10", '{"a":1}', "h-1"],
              ["hm.proofs.v1", "h-1", '{"p":1}', "h-1"],
              ["hm.rejected.v1", "h-1", '{"r":1}', "h-1"]]
    present = {fingerprint(b"h-1", b'{"p":1}'), fingerprint(b"h-1", b'{"r":2}')}
    assert undelivered(outbox, present) == [outbox[0], outbox[2]]
    assert undelivered(outbox, set()) == outbox


def test_fingerprint_separates_key_from_value():
    # ("ab", "c") and ("a", "bc") concatenate to the same bytes; the length prefix keeps them apart
    assert fingerprint(b"ab", b"c") != fingerprint(b"a", b"bc")
    assert fingerprint(None, b"x") == fingerprint(b"", b"x")


def test_mark_names_round_trip_topics_with_dots_and_colons():
    for tp in (TopicPartition("hm.proofs.v1", 3), TopicPartition("odd:name", 0)):
        assert tp_of(tp_name(tp)) == tp
