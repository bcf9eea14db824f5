"""The disk spool: framing, order, acks, drop-oldest bound, corruption, and seq resumption."""
from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from collector.seqstore import SeqStore
from collector.spool import Spool, decode_record, encode_record, scan, frame, KIND_RECORD

HDRS = [("hm-keyid", b"ab" * 32), ("hm-sig", b"c2ln")]


def _value(i: int, boot: str = "b1", schema: str = "hm.usage.v1") -> bytes:
    return orjson.dumps({"schema": schema, "host_id": "h-" + "0" * 32, "boot_id": boot, "seq": i, "pad": "x" * 100})


def _open(path: Path, max_bytes: int = 1 << 20, segment_bytes: int | None = None) -> Spool:
    sp = Spool(path, max_bytes=max_bytes, segment_bytes=segment_bytes)
    sp.open()
    return sp


def test_record_encoding_round_trips():
    payload = encode_record("hm.usage.v1", b"h-1", b'{"a":1}', HDRS)
    e = decode_record(7, payload)
    assert (e.index, e.topic, e.key, e.value, e.headers) == (7, "hm.usage.v1", b"h-1", b'{"a":1}', HDRS)


def test_scan_skips_garbage_between_frames():
    good1, good2 = frame(KIND_RECORD, 0, b"one"), frame(KIND_RECORD, 1, b"two")
    bad = bytearray(frame(KIND_RECORD, 9, b"bad"))
    bad[-1] ^= 0xFF  # crc mismatch
    res = scan(good1 + b"junk" + bytes(bad) + good2, final=True)
    data = good1 + b"junk" + bytes(bad) + good2
    assert [(i, data[a:b]) for _o, _k, i, a, b in res.frames] == [(0, b"one"), (1, b"two")]
    assert res.skipped == 4 + len(bad)


def test_append_read_ack_in_order_and_survives_reopen(tmp_path):
    sp = _open(tmp_path)
    for i in range(10):
        assert sp.append("t", b"k", _value(i), HDRS) == i
    got = sp.read(max_records=4)
    assert [e.index for e in got] == [0, 1, 2, 3]
    assert got[0].value == _value(0) and got[0].headers == HDRS
    sp.ack(3)
    sp.close()

    sp = _open(tmp_path)  # acked position persisted: replay starts at 4
    assert [e.index for e in sp.read()] == list(range(4, 10))
    assert sp.append("t", b"k", _value(10), HDRS) == 10
    assert [e.index for e in sp.read()] == [10]
    sp.rewind()
    assert [e.index for e in sp.read()][0] == 4


def test_reads_across_many_segments_and_deletes_acked_ones(tmp_path):
    sp = _open(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    for i in range(200):
        sp.append("t", b"k", _value(i), HDRS)
    assert len(sp.segments) > 5
    seen = []
    while batch := sp.read(max_records=7):
        seen += [e.index for e in batch]
    assert seen == list(range(200))
    sp.ack(199)
    assert len(sp.segments) == 1  # the newest segment stays (it holds the seq checkpoint)
    assert sp.pending == 0


def test_overflow_drops_oldest_counts_and_persists_the_count(tmp_path):
    sp = _open(tmp_path, max_bytes=16384, segment_bytes=4096)
    for i in range(300):
        sp.append("t", b"k", _value(i), HDRS)
    assert sp.total_bytes <= 16384 + 4096
    kept = []
    while batch := sp.read():
        kept += [e.index for e in batch]
    assert kept == list(range(kept[0], 300)), "the newest records are kept, contiguous"
    assert sp.dropped_total == kept[0] > 0, "every dropped record is counted"
    sp.close()
    assert _open(tmp_path).dropped_total == kept[0]


def test_acked_records_are_not_counted_as_drops(tmp_path):
    sp = _open(tmp_path, max_bytes=16384, segment_bytes=4096)
    for i in range(300):
        sp.append("t", b"k", _value(i), HDRS)
        while batch := sp.read():
            sp.ack(batch[-1].index)
    assert sp.dropped_total == 0


def test_truncated_tail_is_skipped_and_counted(tmp_path):
    sp = _open(tmp_path)
    for i in range(5):
        sp.append("t", b"k", _value(i), HDRS)
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    os.truncate(seg, seg.stat().st_size - 10)  # a torn last write

    sp = _open(tmp_path)
    assert [e.index for e in sp.read()] == [0, 1, 2, 3]
    assert sp.corrupt_records_total == 1 and sp.corrupt_bytes_total > 0
    assert sp.append("t", b"k", _value(99), HDRS) == 4  # the torn index was never readable
    assert [e.index for e in sp.read()] == [4]


def test_corrupt_middle_frame_is_skipped_and_the_gap_counted(tmp_path):
    sp = _open(tmp_path)
    offsets = []
    for i in range(6):
        offsets.append(sp.segments[-1].size if sp.segments else 0)
        sp.append("t", b"k", _value(i), HDRS)
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    data = bytearray(seg.read_bytes())
    data[offsets[2] + 40] ^= 0xFF  # flip a byte inside record 2
    seg.write_bytes(bytes(data))

    sp = _open(tmp_path)
    assert [e.index for e in sp.read()] == [0, 1, 3, 4, 5]
    assert sp.corrupt_records_total == 1


def test_seq_resumes_from_the_spool_after_a_crash(tmp_path):
    host = "h-" + "0" * 32
    seqs = SeqStore("b1")
    sp = _open(tmp_path, segment_bytes=4096)
    sp.checkpoint_source = seqs.snapshot
    for _ in range(50):
        n = seqs.next(host, "hm.usage.v1")
        sp.append("t", b"k", _value(n), HDRS)
        sp.ack(sp.next_index - 1)  # everything acked: older segments are deleted
    # no close(): as after kill -9
    sp2 = _open(tmp_path)
    seqs2 = SeqStore("b1")
    index, blob = sp2.last_checkpoint()
    seqs2.restore(blob)
    seqs2.observe_all(e.value for e in sp2.iter_from(index))
    assert seqs2.next(host, "hm.usage.v1") == 50
    assert seqs2.next(host, "hm.inventory.v1") == 0

    other_boot = SeqStore("b2")
    other_boot.restore(blob)
    assert other_boot.next(host, "hm.usage.v1") == 0  # a new boot starts a new sequence
