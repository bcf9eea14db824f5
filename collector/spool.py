"""The durable local spool: every record passes through it on its way to Kafka.

Layout under ``<state_dir>/spool``:

* ``seg-<first index, 20 digits>.log``: append-only segment files of frames;
* ``state.json``: the acked index and the drop/corruption counters (replaced
  atomically by rename; fsynced on drops and at close).

A frame is ``magic "HMS1" | u32 body length | u32 crc32(body) | body`` with
``body = u8 kind | u64 index | payload``. Record payloads hold topic, key,
headers and the exact value bytes. Every record gets the next index (contiguous
from the first record ever spooled). A *checkpoint* frame (kind 2) opens every
segment; it carries an opaque blob from the caller (the agent's sequence
numbers), so the newest segment alone is enough to resume them.

Durability: ``append`` hands each frame to the kernel with one ``write(2)``,
so ``kill -9`` of the process loses nothing that was appended. ``sync()``
fsyncs the active segment and the state file; the agent calls it every
``spool_fsync_interval_ms``, and ``close()`` does too. A power loss can lose
the last interval's records; the kernel's new boot id then starts fresh
sequences, so no seq is ever reused for a different record.

Bound: when the segments exceed ``max_bytes`` the *oldest* segment is deleted
(drop-oldest) and its unacked records are counted as dropped, logged, and
persisted in ``state.json``. Reading tolerates a truncated or corrupt segment:
the reader skips to the next valid frame and the loss is counted.
"""
from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson

log = logging.getLogger(__name__)

MAGIC = b"HMS1"
FRAME_HEAD = struct.Struct("<4sII")  # magic, body length, crc32(body)
BODY_HEAD = struct.Struct("<BQ")  # kind, index
KIND_RECORD = 1
KIND_CHECKPOINT = 2
MAX_FRAME = 64 << 20  # a length beyond this is corruption, not a record
MAX_SEGMENT_BYTES = 16 << 20
MIN_SEGMENT_BYTES = 4096
READ_CHUNK = 1 << 20

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Entry:
    index: int
    topic: str
    key: bytes
    value: bytes
    headers: Headers


@dataclass
class Segment:
    first: int  # index of the first record it may hold (its file name)
    path: Path
    size: int = 0  # bytes of valid frames (the file may be longer after a torn write)
    end: int = 0  # one past the last record index in it (== first when empty)
    checkpoint: tuple[int, bytes] | None = None  # (next index at the time, blob) of its last checkpoint


@dataclass
class SpoolStats:
    depth_records: int
    depth_bytes: int
    acked: int
    next_index: int
    dropped_total: int
    corrupt_records_total: int
    corrupt_bytes_total: int


def encode_record(topic: str, key: bytes, value: bytes, headers: Headers) -> bytes:
    t = topic.encode()
    parts = [struct.pack("<B", len(t)), t, struct.pack("<H", len(key)), key, struct.pack("<B", len(headers))]
    for name, val in headers:
        n = name.encode()
        parts += [struct.pack("<B", len(n)), n, struct.pack("<H", len(val)), val]
    parts.append(value)
    return b"".join(parts)


def decode_record(index: int, data: bytes, start: int = 0, end: int | None = None) -> Entry:
    """The record whose payload is ``data[start:end]`` (plain indexing: this is the replay hot path)."""
    end = len(data) if end is None else end
    tlen = data[start]
    p = start + 1 + tlen
    topic_b = data[start + 1:p]
    topic = _TOPICS.get(topic_b)
    if topic is None:
        topic = _TOPICS[topic_b] = topic_b.decode()
    klen = data[p] | data[p + 1] << 8
    key = data[p + 2:p + 2 + klen]
    p += 2 + klen
    nh = data[p]
    p += 1
    headers: Headers = []
    for _ in range(nh):
        nlen = data[p]
        name_b = data[p + 1:p + 1 + nlen]
        name = _TOPICS.get(name_b)
        if name is None:
            name = _TOPICS[name_b] = name_b.decode()
        p += 1 + nlen
        vlen = data[p] | data[p + 1] << 8
        headers.append((name, data[p + 2:p + 2 + vlen]))
        p += 2 + vlen
    return Entry(index, topic, key, data[p:end], headers)


_TOPICS: dict[bytes, str] = {}  # interned topic and header names (a handful per agent)


def frame(kind: int, index: int, payload: bytes) -> bytes:
    body = BODY_HEAD.pack(kind, index) + payload
    return FRAME_HEAD.pack(MAGIC, len(body), zlib.crc32(body)) + body


_FULL_HEAD = struct.Struct("<4sIIBQ")  # FRAME_HEAD + BODY_HEAD in one unpack
_PAYLOAD_AT = FRAME_HEAD.size + BODY_HEAD.size


@dataclass
class ScanResult:
    # (frame offset, kind, index, payload start, payload end), positions in the scanned bytes
    frames: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    consumed: int = 0  # bytes up to the end of the last complete frame (or skipped garbage)
    skipped: int = 0  # garbage bytes skipped while resyncing


def scan(data: bytes, *, final: bool) -> ScanResult:
    """Parse frames from ``data``. Garbage between frames is skipped to the next valid
    frame. An incomplete frame at the end stops the scan (``final``: it is garbage)."""
    res = ScanResult()
    frames = res.frames
    mv = memoryview(data)
    pos, n = 0, len(data)
    head = FRAME_HEAD.size
    unpack = _FULL_HEAD.unpack_from
    crc32 = zlib.crc32
    while pos + _PAYLOAD_AT <= n:
        magic, length, crc, kind, index = unpack(data, pos)
        end = pos + head + length
        if magic == MAGIC and BODY_HEAD.size <= length <= MAX_FRAME:
            if end > n:
                if not final:
                    break  # the rest arrives with the next chunk
            elif crc32(mv[pos + head:end]) == crc:
                frames.append((pos, kind, index, pos + _PAYLOAD_AT, end))
                pos = end
                continue
        # Not a valid frame here: resync at the next magic.
        nxt = data.find(MAGIC, pos + 1)
        if nxt < 0:
            if final:
                res.skipped += n - pos
                pos = n
            else:  # keep the last bytes: they may start a magic split across chunks
                keep = max(pos, n - len(MAGIC) + 1)
                res.skipped += keep - pos
                pos = keep
            res.consumed = pos
            return res
        res.skipped += nxt - pos
        pos = nxt
    if final and pos < n:
        res.skipped += n - pos
        pos = n
    res.consumed = pos
    return res


class Spool:
    """Append, read in order, ack, and bound a directory of segment files.

    Single-threaded: meant to be driven from one asyncio loop.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int | None = None):
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(MIN_SEGMENT_BYTES, min(MAX_SEGMENT_BYTES, max_bytes // 8))
        self.segments: list[Segment] = []
        self.acked = -1  # highest index the broker acknowledged (all below it too)
        self.next_index = 0
        self.dropped_total = 0
        self.corrupt_records_total = 0
        self.corrupt_bytes_total = 0
        self._writer: int | None = None  # fd of the active (newest) segment, opened on first append
        self._dirty = False
        self._state_dirty = False
        self._read_seg = 0  # position in self.segments
        self._read_off = 0
        self._read_fds: dict[Path, int] = {}
        self._expect = 0  # next index the reader expects
        self.checkpoint_source = lambda: b""  # called when a segment is opened
        self._opened = False

    # -- open / recover ------------------------------------------------------
    def open(self) -> None:
        """Scan the segments: rebuild indices, find the last checkpoint, count corruption."""
        if self._opened:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._load_state()
        for path in sorted(self.dir.glob("seg-*.log")):
            try:
                first = int(path.stem[4:])
            except ValueError:
                continue
            self.segments.append(self._scan_segment(Segment(first, path)))
        for seg in self.segments:
            self.next_index = max(self.next_index, seg.end, seg.checkpoint[0] if seg.checkpoint else 0)
        if not self.segments:
            self.next_index = max(self.next_index, self.acked + 1)
        # The acked file may trail the truth after a crash; it can never lead it.
        self.acked = min(self.acked, self.next_index - 1)
        self._prune_acked()
        self.rewind()
        self._opened = True
        if self.corrupt_bytes_total:
            self._save_state()

    def _scan_segment(self, seg: Segment) -> Segment:
        data = seg.path.read_bytes()
        res = scan(data, final=True)
        seg.end = seg.first
        expect = seg.first
        lost = 0
        for _off, kind, index, pstart, pend in res.frames:
            if kind == KIND_CHECKPOINT:
                seg.checkpoint = (index, data[pstart:pend])
            elif kind == KIND_RECORD:
                if index > expect:
                    lost += index - expect
                expect = index + 1
                seg.end = index + 1
            seg.size = pend
        if res.skipped:
            # A damaged region whose records left no index gap (e.g. a torn tail) still lost one.
            lost = max(lost, 1)
            log.warning("spool: segment %s has %d corrupt bytes; skipped them (about %d record(s) lost)",
                        seg.path.name, res.skipped, lost)
            self.corrupt_bytes_total += res.skipped
            self.corrupt_records_total += lost
        return seg

    def last_checkpoint(self) -> tuple[int, bytes] | None:
        """(index, blob) of the newest checkpoint: records from ``index`` on came after it."""
        for seg in reversed(self.segments):
            if seg.checkpoint is not None:
                return seg.checkpoint
        return None

    def iter_from(self, index: int) -> Iterator[Entry]:
        """Every readable record with index >= ``index``, in order (recovery only)."""
        for seg in self.segments:
            if seg.end <= index:
                continue
            data = seg.path.read_bytes()
            for _off, kind, idx, pstart, pend in scan(data, final=True).frames:
                if kind == KIND_RECORD and idx >= index:
                    yield decode_record(idx, data, pstart, pend)

    # -- state file ----------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _load_state(self) -> None:
        try:
            state = orjson.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as err:
            log.warning("spool: %s unreadable (%s); replaying every spooled record", self._state_path, err)
            return
        self.acked = int(state.get("acked", -1))
        self.dropped_total = int(state.get("dropped_total", 0))
        self.corrupt_records_total = int(state.get("corrupt_records_total", 0))
        self.corrupt_bytes_total = int(state.get("corrupt_bytes_total", 0))

    def _save_state(self, durable: bool = True) -> None:
        """Replace state.json atomically (rename). ``durable=False`` skips the fsync: the periodic
        acked-position update is not worth one (a stale or empty file after a power loss only
        means records are sent again); drops and close() are fsynced."""
        tmp = self._state_path.with_suffix(".tmp")
        data = orjson.dumps({
            "acked": self.acked,
            "dropped_total": self.dropped_total,
            "corrupt_records_total": self.corrupt_records_total,
            "corrupt_bytes_total": self.corrupt_bytes_total,
        })
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._state_path)
        self._state_dirty = False

    # -- writing -------------------------------------------------------------
    def _open_segment(self) -> None:
        if self._writer is not None:
            os.close(self._writer)
        path = self.dir / f"seg-{self.next_index:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.segments and self.segments[-1].path == path:  # reopened after a restart: start clean
            os.ftruncate(fd, self.segments[-1].size)
            seg = self.segments[-1]
        else:
            seg = Segment(self.next_index, path, 0, self.next_index)
            self.segments.append(seg)
        self._writer = fd
        blob = self.checkpoint_source()
        cp = frame(KIND_CHECKPOINT, self.next_index, blob)
        os.write(fd, cp)
        seg.size += len(cp)
        seg.checkpoint = (self.next_index, blob)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def append(self, topic: str, key: bytes, value: bytes, headers: Headers) -> int:
        """Spool one record; returns its index. The frame is in the kernel on return."""
        return self.append_many([(topic, key, value, headers)])

    def append_many(self, records: list[tuple[str, bytes, bytes, Headers]]) -> int:
        """Spool records in order with one write(2); returns the last index."""
        if not self._opened:
            self.open()
        if self._writer is None or self.segments[-1].size >= self.segment_bytes:
            self._open_segment()
        seg = self.segments[-1]
        first = self.next_index
        buf = b"".join(frame(KIND_RECORD, first + i, encode_record(*r)) for i, r in enumerate(records))
        assert self._writer is not None
        written = os.write(self._writer, buf)
        if written != len(buf):
            # A full disk takes part of the buffer without an error (write(2) returns short).
            # Cut the torn frame off so the segment stays readable, and fail like ENOSPC:
            # no index is used, nothing half-written is ever replayed. (Found by tests/chaos.)
            os.ftruncate(self._writer, seg.size)
            raise OSError(errno.ENOSPC, f"spool: short write ({written} of {len(buf)} bytes) to {seg.path.name}; "
                          "disk full")
        self.next_index = first + len(records)
        seg.size += len(buf)
        seg.end = self.next_index
        self._dirty = True
        self._enforce_bound()
        return self.next_index - 1

    def _enforce_bound(self) -> None:
        while len(self.segments) > 1 and self.total_bytes > self.max_bytes:
            oldest = self.segments[0]
            lost = max(0, oldest.end - max(oldest.first, self.acked + 1))
            self._delete_oldest()
            if lost:
                self.dropped_total += lost
                log.warning("spool: over its bound of %d bytes; dropped the %d oldest unsent record(s) "
                            "(indices up to %d; %d dropped in total)",
                            self.max_bytes, lost, oldest.end - 1, self.dropped_total)
                self._save_state()

    def _delete_oldest(self) -> None:
        seg = self.segments.pop(0)
        fd = self._read_fds.pop(seg.path, None)
        if fd is not None:
            os.close(fd)
        try:
            seg.path.unlink()
        except FileNotFoundError:
            pass
        if self._read_seg > 0:
            self._read_seg -= 1
        elif self.segments:  # the reader was inside it: continue at the next segment
            self._read_off = 0
            self._expect = self.segments[0].first

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    # -- reading and acking ----------------------------------------------------
    def rewind(self) -> None:
        """Move the reader back to the first unacked record (after a failed send)."""
        self._read_seg, self._read_off = 0, 0
        self._expect = self.acked + 1
        for i, seg in enumerate(self.segments):
            if seg.end > self.acked + 1:
                self._read_seg = i
                break
        else:
            self._read_seg = max(0, len(self.segments) - 1)
            if self.segments:
                self._read_off = self.segments[-1].size

    def read(self, max_records: int = 1000, max_bytes: int = 1 << 20) -> list[Entry]:
        """The next records after the reader position, in index order."""
        out: list[Entry] = []
        size = 0
        while len(out) < max_records and size < max_bytes and self._read_seg < len(self.segments):
            seg = self.segments[self._read_seg]
            if self._read_off >= seg.size:
                if self._read_seg == len(self.segments) - 1:
                    break
                self._read_seg += 1
                self._read_off = 0
                continue
            fd = self._read_fds.get(seg.path)
            if fd is None:
                fd = self._read_fds[seg.path] = os.open(seg.path, os.O_RDONLY)
            want = min(seg.size - self._read_off, max(READ_CHUNK, max_bytes - size))
            data = os.pread(fd, want, self._read_off)
            if not data:  # the file is shorter than we wrote (truncated behind our back): move on
                log.warning("spool: %s ends at %d, expected %d bytes; skipping the rest", seg.path.name,
                            self._read_off, seg.size)
                self._read_off = seg.size
                continue
            final = self._read_off + len(data) >= seg.size
            res = scan(data, final=final)
            if not res.frames and res.consumed == 0:
                # One frame larger than the chunk: read it whole.
                (length,) = struct.unpack_from("<I", data, 4)
                data = os.pread(fd, FRAME_HEAD.size + length, self._read_off)
                res = scan(data, final=True)
            for _off, kind, index, pstart, pend in res.frames:
                if kind != KIND_RECORD or index < self._expect:
                    continue  # checkpoints, and records already acked (after a rewind)
                out.append(decode_record(index, data, pstart, pend))
                size += pend - pstart
                self._expect = index + 1
                if len(out) >= max_records or size >= max_bytes:
                    self._read_off += pend
                    break
            else:
                self._read_off += res.consumed
            if self._read_seg < len(self.segments) - 1 and self._read_off >= seg.size:
                self._close_read_fd(seg)
        return out

    def _close_read_fd(self, seg: Segment) -> None:
        fd = self._read_fds.pop(seg.path, None)
        if fd is not None:
            os.close(fd)

    def ack(self, index: int) -> None:
        """Every record up to ``index`` is on the broker."""
        if index <= self.acked:
            return
        self.acked = index
        self._state_dirty = True
        self._prune_acked()

    def _prune_acked(self) -> None:
        # The newest segment stays: it holds the checkpoint the next start resumes from.
        while len(self.segments) > 1 and self.segments[0].end <= self.acked + 1:
            self._delete_oldest()

    @property
    def pending(self) -> int:
        """Records appended but not yet acked."""
        oldest = self.segments[0].first if self.segments else self.next_index
        return max(0, self.next_index - max(oldest, self.acked + 1))

    def stats(self) -> SpoolStats:
        return SpoolStats(self.pending, self.total_bytes, self.acked, self.next_index, self.dropped_total,
                          self.corrupt_records_total, self.corrupt_bytes_total)

    # -- durability --------------------------------------------------------------
    def sync(self) -> None:
        """fsync the active segment and persist the acked position (call periodically)."""
        if self._dirty and self._writer is not None:
            os.fsync(self._writer)
            self._dirty = False
        if self._state_dirty:
            self._save_state(durable=False)

    def close(self) -> None:
        if not self._opened:
            return
        self.sync()
        self._save_state()
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        self.segments.clear()
        self._opened = False
