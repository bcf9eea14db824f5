"""native/hm_ingest (``HostStore``, through processors.native) against the pure Python engine, message by message.

The same stream goes to two copies of each host's state:

* A: held in an ``hm_ingest.HostStore``; a usage record (of an enrolled host, in strict mode) goes
  to ``store.ingest``, which checks its identity rules too; when it declines (None), or for any other record, the state is taken out of the
  store, ``decode`` + ``Engine.ingest`` run on it, and it is loaded back (what the app does);
* B: a Python dict, always ``decode`` + ``Engine.ingest``.

After every message the outcome (accepted, or the Rejection code) and the state bytes
(``orjson.dumps`` of the state, which tells 5 from 5.0 and sees key order) must be the same; a decline
must leave the stored state byte for byte as it was, and an accept must return the record's ts. Streams:

* a clean 1 Hz stream of 150 usage records (10 s, 1 min and proof windows crossed, windows
  closed as the app's timer would), which must mostly take the fast path;
* each single-record perturbation in MUTATORS (rule trips at and around their limits, int vs
  float, ints past 2**53 / 2**63 / 2**64, nulls, missing sections, GPUs, sources, raw JSON
  oddities: duplicate keys, escapes, exponents, -0...) and each signature/header variant in
  SIGS, both for an ordinary host and one with counters and memory past 2**53;
* random mixes of the above with duplicates, gaps and late fills, seq jumps, new boots and late
  records of the old boot, processor-clock jumps, eBPF and inventory records, window closes,
  JSON round trips of the states (the changelog), and rewinds to an older state with replay;
* two hosts on one store, batches of several hosts with a decline mid-batch, and a strict-mode
  config that no longer enrols a pinned host;
* the store's own API: dirty flags (dump_dirty, take), and ingest running with the GIL released.

Without hm_ingest these tests fail (never skip): ``make setup`` builds native/hm_ingest.
"""
from __future__ import annotations

import base64
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings, strategies as st

try:  # processors.native imports hm_ingest: a missing build fails each test by name, not the collection
    from processors import native
    _IMPORT_ERROR: ImportError | None = None
except ImportError as _err:
    _IMPORT_ERROR = _err
from processors import proofs
from processors.config import ProcessorConfig
from processors.engine import Engine, Signer, decode, new_state
from processors.simulator import SimHost
from processors.validation import COUNTERS, Rejection, header, verify_many
from schemas.dsse import HEADER_KEYID, HEADER_SIG, key_id, pae

S = 1_000_000
T0 = 1_800_000_000 * S + 37_500_000  # mid-window: the first proof window is partial
USAGE, INVENTORY, EBPF = "hm.usage.v1", "hm.inventory.v1", "hm.ebpf.v1"
SEED = "native-ingest"
DEFAULT = ProcessorConfig()
SHORT = ProcessorConfig(proof_window_s=7, proof_grace_s=2, agg_windows_s={"10s": 3, "1m": 7}, agg_grace_s=1,
                        clock_skew_s=30, stale_after_s=120, over_capacity_factor=1.0)
_PROC_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)  # the processor's (proof) key: deterministic
_PROC_KID = key_id(_PROC_KEY.public_key().public_bytes_raw())
TOMBSTONE = object()  # a mutator's answer: send value None


def boot(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def make_host(index: int = 1, kind: str = "std") -> SimHost:
    if kind == "big":  # memory and counters past 2**53, where a float64 no longer holds every int
        h = SimHost(index, seed=SEED, boot_id=boot(index * 100), memory_total=2 ** 60)
        h.counters.update({"read": 2 ** 53 + 1, "write": 2 ** 53 + 3, "rx": 2 ** 63 - 5 * 10 ** 9,
                           "tx": 2 ** 53 - 1, "busy_s": 2.0 ** 52 + 0.5})
        return h
    return SimHost(index, seed=SEED, boot_id=boot(index * 100))


def _fresh_counters() -> dict[str, float]:
    return {"busy_s": 10.0, "idle_s": 50.0, "read": 1e6, "write": 2e6, "rx": 3e6, "tx": 4e6}


def sanitize(obj: Any) -> Any:
    """orjson cannot write ints past 64 bits; a collector would have sent them as floats."""
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [sanitize(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and obj >= 2 ** 64:
        return float(obj)
    return obj


# --- the two sides -----------------------------------------------------------------------------------------

def make_store(cfg: ProcessorConfig) -> Any:
    if _IMPORT_ERROR is not None:
        pytest.fail(f"hm_ingest not built: run `make setup` (it builds native/hm_ingest) ({_IMPORT_ERROR})",
                    pytrace=False)
    return native.make_store(cfg)


@dataclass
class Msg:
    topic: str
    value: bytes | None
    headers: Any
    now_us: int
    verified: dict | None
    note: str
    route: str  # host_id of the state it is fed to


def dump(obj: Any, limit: int = 400) -> str:
    try:
        text = orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def diff_paths(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where the fast state ``a`` differs from the Python state ``b`` (types, -0.0 and key order count)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in list(b) + [k for k in a if k not in b]:
            if k not in a:
                out.append(f"{path}.{k}: missing on the fast side; python={dump(b[k])}")
            elif k not in b:
                out.append(f"{path}.{k}: only on the fast side: {dump(a[k])}")
            else:
                out += diff_paths(a[k], b[k], f"{path}.{k}")
        if not out and list(a) != list(b):
            out.append(f"{path}: key order differs: fast={list(a)} python={list(b)}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_paths(x, y, f"{path}[{i}]")]
    try:
        same = orjson.dumps(a) == orjson.dumps(b)
    except (TypeError, orjson.JSONEncodeError):
        same = False
    return [] if same else [f"{path}: fast={dump(a)} ({type(a).__name__}) python={dump(b)} ({type(b).__name__})"]


def _non_finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_non_finite(v) for v in obj)
    return False


def record_text(value: bytes | None) -> str:
    if value is None:
        return "None (tombstone)"
    try:
        return dump(orjson.loads(value), 6000)
    except orjson.JSONDecodeError:
        return repr(value[:600])


class Duo:
    """Side A in a HostStore (declines through the Python engine), side B in Python dicts, per host."""

    def __init__(self, cfg: ProcessorConfig, hosts: list[SimHost]):
        self.cfg = cfg
        self.store = make_store(cfg)
        self.engine = Engine(cfg)  # A's fallback
        self.ref = Engine(cfg)     # B
        for h in hosts:
            self.store.load(h.host_id, orjson.dumps(new_state(h.host_id)), False)
        self.b = {h.host_id: new_state(h.host_id) for h in hosts}
        self.stats: Counter[str] = Counter()
        self.history: list[Msg] = []
        self.log: list[str] = []
        self.snap: tuple[int, dict[str, bytes], bytes] | None = None
        self.sent: dict[str, list[list[Any]]] = {}  # host -> outbox entries delivered (close)
        self.signer = Signer(_PROC_KID, lambda data: proofs.sign(data, _PROC_KEY, _PROC_KID))

    # side A's states: the store's JSON, read without disturbing its dirty flag
    def a_raw(self, host_id: str) -> bytes:
        taken = self.store.take(host_id)
        assert taken is not None, f"harness: {host_id} is not in the store"
        raw, dirty = taken
        self.store.load(host_id, raw, dirty)
        return raw

    def a(self, host_id: str) -> dict[str, Any]:
        return orjson.loads(self.a_raw(host_id))

    def set_a(self, host_id: str, state: dict[str, Any]) -> None:
        self.store.load(host_id, orjson.dumps(state), True)

    def _python(self, engine: Engine, state: dict[str, Any], msg: Msg) -> str:
        try:
            record, schema = decode(msg.topic, msg.value)
            engine.ingest(state, record, schema, msg.value, msg.headers, msg.now_us, msg.verified)
        except Rejection as rej:
            return rej.code
        except Exception as err:  # noqa: BLE001 - a crash of the Python path: both sides must crash alike
            return f"raised {type(err).__name__}"
        return "accepted"

    def _python_a(self, msg: Msg) -> str:
        """A's fallback, as the app does it: the state out of the store, Engine.ingest, back in."""
        raw, dirty = self.store.take(msg.route)
        state = orjson.loads(raw)
        out = self._python(self.engine, state, msg)
        after = orjson.dumps(state)
        self.store.load(msg.route, after, dirty or after != orjson.dumps(orjson.loads(raw)))
        return out

    def _fail(self, what: str, msg: Msg, before: bytes, sa: Any, sb: Any, out_a: str, out_b: str) -> None:
        diffs = diff_paths(sa, sb)
        lines = [
            f"DIVERGENCE: {what}",
            f"message: {msg.note} (topic {msg.topic}, now_us {msg.now_us}, "
            f"verified {'None' if msg.verified is None else [v for v in msg.verified.values()]}, "
            f"headers {msg.headers!r})",
            f"python outcome: {out_b}; fast-side outcome: {out_a}",
            "differing state fields (fast vs python):", *("  " + d for d in diffs[:40]),
            f"record: {record_text(msg.value)}",
            f"state before: {dump(orjson.loads(before), 8000)}",
            "stream so far (oldest first):", *("  " + n for n in self.log[-60:]),
        ]
        pytest.fail("\n".join(lines), pytrace=False)

    def _offered(self, msg: Msg) -> bool:
        """Does the app offer this record to the store (processors.app: Processor._route, _native)?"""
        return (msg.topic == USAGE and msg.value is not None
                and (self.cfg.enrolled is None or msg.route in self.cfg.enrolled))

    def _native(self, items: list[tuple[str, bytes, Any]], now_us: int) -> list[int | None]:
        try:
            return self.store.ingest(items, now_us)
        except Exception as err:  # noqa: BLE001 - it must decline, not raise
            pytest.fail(f"HostStore.ingest raised {err!r}\nstream:\n" + "\n".join(self.log[-60:]), pytrace=False)

    def feed(self, msg: Msg) -> tuple[str, bool]:
        sb = self.b[msg.route]
        before = orjson.dumps(sb)
        raw_before = self.a_raw(msg.route)
        assert orjson.dumps(orjson.loads(raw_before)) == before, "harness: the states differ before the message"
        fast_ts = None
        if msg.topic == USAGE:
            self.stats["offered"] += 1
            if self._offered(msg):
                fast_ts = self._native([(msg.route, msg.value, msg.headers)], msg.now_us)[0]
                if fast_ts is None and self.a_raw(msg.route) != raw_before:
                    self._fail("ingest declined (None) but changed the state", msg, before,
                               self.a(msg.route), orjson.loads(before), "declined", "n/a")
        out_a = "accepted" if fast_ts is not None else self._python_a(msg)
        if msg.topic == USAGE and fast_ts is None and self._offered(msg):
            self.store.unblock([msg.route])  # replayed, as processors.app does after a decline
        out_b = self._python(self.ref, sb, msg)
        path = "fast" if fast_ts is not None else "python"
        self.log.append(f"{msg.note} -> {out_b} ({path})")
        self._compare(msg, before, out_a, out_b, path)
        if fast_ts is not None:
            ts = orjson.loads(msg.value)["ts"]
            if type(fast_ts) is not int or fast_ts != ts:
                self._fail(f"ingest returned {fast_ts!r}, the record's ts is {ts!r}", msg, before,
                           self.a(msg.route), sb, out_a, out_b)
            taken = self.store.take(msg.route)
            assert taken is not None and taken[1] is True, "an accepted record must leave its state dirty"
            self.store.load(msg.route, *taken)
            self.stats["fast"] += 1
        if msg.topic == USAGE and out_b == "accepted":
            self.stats["accepted_usage"] += 1
        self.history.append(msg)
        return out_b, fast_ts is not None

    def _as_json(self, host_id: str) -> None:
        """The store holds JSON, where orjson writes inf and nan as null: a B state holding one (a float
        sum that overflowed) takes the same round trip, as the changelog would give it on a restore."""
        if _non_finite(self.b[host_id]):
            self.b[host_id] = orjson.loads(orjson.dumps(self.b[host_id]))
            self.log.append("B held inf/nan: JSON round trip")

    def _compare(self, msg: Msg, before: bytes, out_a: str, out_b: str, path: str) -> None:
        self._as_json(msg.route)
        sa, sb = self.a(msg.route), self.b[msg.route]
        if out_a != out_b or orjson.dumps(sa) != orjson.dumps(sb):
            self._fail(f"outcome or state differs after a {path}-path {out_a}", msg, before, sa, sb, out_a, out_b)

    def feed_batch(self, msgs: list[Msg]) -> list[tuple[str, bool]]:
        """A chunk as processors.app sends it: each host's usage records that the app offers go to one
        store.ingest (up to the host's first that does not), then what is left runs through Python in
        the chunk's order. Compared with B after the chunk."""
        items, fast, stopped = [], [], set()
        for i, msg in enumerate(msgs):
            if msg.route not in stopped and self._offered(msg):
                items.append((msg.route, msg.value, msg.headers))
                fast.append(i)
            else:
                stopped.add(msg.route)
        befores = {m.route: orjson.dumps(self.b[m.route]) for m in msgs}
        now_us = max(m.now_us for m in msgs)
        taken = dict(zip(fast, self._native(items, now_us))) if items else {}
        declined: set[str] = set()
        outs = []
        for i, msg in enumerate(msgs):
            msg = replace(msg, now_us=now_us)
            ts = taken.get(i)
            if ts is not None and msg.route in declined:
                pytest.fail(f"{msg.note}: accepted after an earlier record of its host declined in the batch",
                            pytrace=False)
            if ts is None:
                declined.add(msg.route)
            out_a = "accepted" if ts is not None else self._python_a(msg)
            out_b = self._python(self.ref, self.b[msg.route], msg)
            self._as_json(msg.route)
            if out_a != out_b:
                self._fail("outcome differs in a batch", msg, befores[msg.route], self.a(msg.route),
                           self.b[msg.route], out_a, out_b)
            self.log.append(f"batch: {msg.note} -> {out_b} ({'fast' if ts is not None else 'python'})")
            outs.append((out_b, ts is not None))
            self.history.append(msg)
        self.store.unblock(sorted(declined))
        for host_id in befores:
            if orjson.dumps(self.a(host_id)) != orjson.dumps(self.b[host_id]):
                self._fail("state differs after a batch", msgs[-1], befores[host_id], self.a(host_id),
                           self.b[host_id], "?", "?")
        return outs

    def close(self, now_us: int, deliver: float = 1.0, rng: random.Random | None = None) -> None:
        """The timer on both sides: A closes in the store where it can (HostStore.close_aggs, and a
        due proof window by native.finish_close, as processors.app does), else in Python on the
        state taken out; B in Python. The outputs, the states and the next looks must be equal.
        Then, as processors.app delivers (``deliver``: the share of the outboxes sent), the outbox
        is marked and the sent entries trimmed: A in the store (mark, trim), B in Python."""
        outs: list[list[Any]] = [[], []]
        natively: dict[str, tuple[list, Any]] = {}
        for host_id in self.b:
            proof_wins = len(self.a(host_id)["windows"]["proof"])
            try:
                closed = self.store.close_aggs([host_id], now_us)[0]
                finished = None if closed is None else native.finish_close(
                    self.store, self.engine, self.signer, host_id, closed, now_us)
            except Exception as err:  # noqa: BLE001 - it must decline, not raise
                pytest.fail(f"the native close raised {err!r}\nstream:\n" + "\n".join(self.log[-60:]),
                            pytrace=False)
            if closed is not None:
                # nothing applies between close_aggs and close_proofs here: the store cannot decline
                assert finished is not None, "the store declined a proof close with no record in between"
                entries, looks = finished
                natively[host_id] = (entries, looks)
                # windows closed: an entry per dashboard window, and the proof windows gone
                outs[0].append(len(closed[0]) + proof_wins - len(self.a(host_id)["windows"]["proof"]))
                self.stats["closed_natively" if entries else "looked_natively"] += 1
                if closed[2]:
                    self.stats["proofs_closed_natively"] += 1
            for side, state in enumerate((None if closed is not None else self.a(host_id), self.b[host_id])):
                if state is None:
                    continue
                try:
                    engine = self.engine if side == 0 else self.ref
                    outs[side].append(engine.close_due(state, now_us, self.signer))
                except Exception as err:  # noqa: BLE001 - the same on both sides
                    outs[side].append(f"raised {type(err).__name__}")
                if side == 0:
                    self.set_a(host_id, state)
        self.log.append(f"close_due(now={now_us}) -> {outs[1]}, natively {sorted(natively)}")
        for host_id in self.b:
            if outs[0] != outs[1] or orjson.dumps(self.a(host_id)) != orjson.dumps(self.b[host_id]):
                pytest.fail("DIVERGENCE after close_due (the states went in equal):\n" + "\n".join(
                    diff_paths(self.a(host_id), self.b[host_id])[:40]) + "\nstream:\n" + "\n".join(self.log[-60:]),
                    pytrace=False)
        for host_id, (entries, looks) in natively.items():
            state = self.b[host_id]
            assert entries == [tuple(e[:3]) for e in state["outbox"]], "the native close's entries are its outbox's"
            assert all(e[3] == host_id for e in state["outbox"])
            assert looks == self.ref.next_look_us(state, now_us), f"next look of {host_id}\n" + "\n".join(self.log)
        rng = rng or random.Random(now_us)
        for host_id, state in self.b.items():
            if not state["outbox"] or rng.random() >= deliver:
                continue
            marks = {f"{e[0]}:{rng.randrange(6)}": rng.randrange(10**6) for e in state["outbox"]}
            state["outbox_mark"] = marks
            raw = self.store.mark(host_id, orjson.dumps(marks).decode())
            if raw is None:  # a state the store keeps as its JSON (not typed): the app marks it in Python
                self.stats["marked_in_python"] += 1
                raw = orjson.dumps({**self.a(host_id), "outbox_mark": marks})
                self.store.load(host_id, raw, False)
            assert raw == orjson.dumps(state), "mark: the state written to the table"
            taken = self.store.take(host_id)
            assert taken == (raw, False), "a marked state is written: clean"
            self.store.load(host_id, *taken)
            n = rng.choice([len(state["outbox"]), len(state["outbox"]), rng.randrange(len(state["outbox"]) + 1)])
            self.sent.setdefault(host_id, []).extend(state["outbox"][:n])
            del state["outbox"][:n]
            if not state["outbox"]:
                state.pop("outbox_mark")
            if not self.store.trim(host_id, n):  # as above
                self.stats["trimmed_in_python"] += 1
                self.store.load(host_id, orjson.dumps(state), True)
            taken = self.store.take(host_id)
            assert taken == (orjson.dumps(state), True), "trim: the sent entries dropped, the state dirty"
            self.store.load(host_id, *taken)
            self.log.append(f"delivered {n} of {host_id}'s outbox")
        for host_id in self.b:
            assert self.a_raw(host_id) == orjson.dumps(self.b[host_id])

    def restore(self) -> None:
        """The changelog round trip: every state comes back from its JSON bytes."""
        for host_id in self.b:
            self.set_a(host_id, self.a(host_id))
        self.b = {k: orjson.loads(orjson.dumps(v)) for k, v in self.b.items()}
        self.log.append("restore states from JSON")

    def snapshot(self) -> None:
        self.snap = (len(self.history), {h: self.a_raw(h) for h in self.b}, orjson.dumps(self.b))
        self.log.append("snapshot")

    def rewind(self) -> None:
        """Crash recovery: the states go back to the snapshot and the inputs since are replayed."""
        if self.snap is None:
            return
        i, a, b = self.snap
        for host_id, raw in a.items():
            self.store.load(host_id, raw, False)
        self.b = orjson.loads(b)
        self.log.append(f"rewind to snapshot, replay {len(self.history) - i} messages")
        for msg in list(self.history[i:]):
            self.feed(replace(msg, note="replay " + msg.note))


# --- records and signatures ---------------------------------------------------------------------------------

SIG_NAMES = (
    "good_batch", "good_none", "good_empty", "good_other", "bad_flip_batch",
    "bad_flip_none", "sig_not_b64", "sig_short", "sig_newline", "sig_no_padding", "sig_urlsafe", "no_sig",
    "no_kid", "kid_other", "kid_upper", "impostor", "headers_dict", "headers_tuple", "headers_none",
    "headers_empty", "dup_sig_first_bad", "dup_sig_first_good", "dup_kid_first_other", "headers_upper",
    "headers_str", "extra_headers",
)


def _corrupt(sig_b64: bytes) -> bytes:
    raw = bytearray(base64.b64decode(sig_b64))
    raw[5] ^= 1
    return base64.b64encode(bytes(raw))


class Gen:
    """One simulated host's messages, signed as the collector does, with their verify-ahead answers."""

    def __init__(self, cfg: ProcessorConfig, h: SimHost, h2: SimHost):
        self.cfg, self.h, self.h2 = cfg, h, h2
        self.t = T0                 # ts of the host's next usage sample
        self.lag = 200_000          # processor time - sample ts
        self.now = T0
        self.withheld: list[Msg] = []
        self.boots = 1

    @property
    def skew_us(self) -> int:
        return int(self.cfg.clock_skew_s * 1e6)

    @property
    def stale_us(self) -> int:
        return int(self.cfg.stale_after_s * 1e6)

    def sign(self, host: SimHost, schema: str, value: bytes | None, sigvar: str = "good_batch",
             pinned: SimHost | None = None) -> tuple[Any, dict | None]:
        pinned = pinned or host
        signer = self.h2 if sigvar == "impostor" else host
        kid = key_id(signer.public_raw).encode()
        sig = base64.b64encode(signer.key.sign(pae(schema, value or b"")))
        headers: Any = [(HEADER_KEYID, kid), (HEADER_SIG, sig)]
        mode: str | None = "batch"
        other_kid = key_id(self.h2.public_raw if host is not self.h2 else self.h.public_raw).encode()
        if sigvar == "good_none":
            mode = None
        elif sigvar == "good_empty":
            mode = "empty"
        elif sigvar == "good_other":
            mode = "other"
        elif sigvar == "bad_flip_batch":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, _corrupt(sig))]
        elif sigvar == "bad_flip_none":
            headers, mode = [(HEADER_KEYID, kid), (HEADER_SIG, _corrupt(sig))], None
        elif sigvar == "sig_not_b64":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, b"!!not base64!!")]
        elif sigvar == "sig_short":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, base64.b64encode(b"\x01" * 10))]
        elif sigvar == "sig_newline":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, sig + b"\n")]
        elif sigvar == "sig_no_padding":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, sig.rstrip(b"="))]
        elif sigvar == "sig_urlsafe":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, base64.urlsafe_b64encode(base64.b64decode(sig)))]
        elif sigvar == "no_sig":
            headers = [(HEADER_KEYID, kid)]
        elif sigvar == "no_kid":
            headers = [(HEADER_SIG, sig)]
        elif sigvar == "kid_other":
            headers = [(HEADER_KEYID, other_kid), (HEADER_SIG, sig)]
        elif sigvar == "kid_upper":
            headers = [(HEADER_KEYID, kid.upper()), (HEADER_SIG, sig)]
        elif sigvar == "headers_dict":
            headers = dict(headers)
        elif sigvar == "headers_tuple":
            headers = tuple(headers)
        elif sigvar == "headers_none":
            headers = None
        elif sigvar == "headers_empty":
            headers = []
        elif sigvar == "dup_sig_first_bad":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, _corrupt(sig)), (HEADER_SIG, sig)]
        elif sigvar == "dup_sig_first_good":
            headers = [(HEADER_KEYID, kid), (HEADER_SIG, sig), (HEADER_SIG, _corrupt(sig))]
        elif sigvar == "dup_kid_first_other":
            headers = [(HEADER_KEYID, other_kid), (HEADER_KEYID, kid), (HEADER_SIG, sig)]
        elif sigvar == "headers_upper":
            headers = [("HM-KEYID", kid), ("HM-SIG", sig)]
        elif sigvar == "headers_str":
            headers = [(HEADER_KEYID, kid.decode()), (HEADER_SIG, sig.decode())]
        elif sigvar == "extra_headers":
            headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                       (HEADER_KEYID, kid), ("hm-note", b""), (HEADER_SIG, sig)]
        else:
            assert sigvar in ("good_batch", "impostor"), sigvar
        jsig = header(headers, HEADER_SIG)
        job = (pinned.public_raw, schema, value, jsig) if jsig and value is not None else None
        if mode is None:
            verified = None
        elif mode == "batch":
            verified = verify_many([job]) if job else {}
        elif mode == "empty" or job is None:
            verified = {}
        else:
            assert mode == "other", mode
            verified = verify_many([(pinned.public_raw, schema, value + b" ", jsig)])
        return headers, verified

    def inventory(self, host: SimHost | None = None) -> Msg:
        host = host or self.h
        ts = self.t - S
        self.now = max(self.now, ts + self.lag)
        value = orjson.dumps(host.inventory(ts))
        headers, verified = self.sign(host, INVENTORY, value)
        return Msg("hm.inventory.v1", value, headers, self.now, verified,
                   f"{host.host_id[:8]} inventory seq={host.seqs[INVENTORY] - 1}", host.host_id)

    def ebpf(self) -> Msg:
        h = self.h
        ts = self.t - S
        rec = h.ebpf_sched(ts, h.rng.uniform(1, 10), 5.0)
        value = orjson.dumps(rec)
        headers, verified = self.sign(h, EBPF, value)
        return Msg(EBPF, value, headers, self.now, verified, f"ebpf seq={rec['seq']} ts={ts}", h.host_id)

    def usage(self, mutator: str = "clean", sigvar: str = "good_batch", host: SimHost | None = None,
              route: SimHost | None = None, state: dict[str, Any] | None = None, seed: int = 0,
              advance: bool = True) -> Msg:
        host = host or self.h
        ts = self.t
        rec = host.usage(ts)
        if advance:
            self.t += S
        now = ts + self.lag
        self.now = max(self.now, now)
        ctx = Ctx(self, host, random.Random(seed), state or {}, now)
        raw = MUTATORS[mutator](rec, ctx)
        # a mutator answers raw value bytes, TOMBSTONE, or anything else for "serialise the record"
        value = None if raw is TOMBSTONE else raw if isinstance(raw, bytes) else orjson.dumps(sanitize(rec))
        headers, verified = self.sign(host, USAGE, value, sigvar, pinned=route or host)
        note = (f"{host.host_id[:8]} usage boot=..{host.boot_id[-3:]} seq={rec.get('seq')} ts={rec.get('ts')}"
                f" mut={mutator} sig={sigvar}")
        return Msg(USAGE, value, headers, now, verified, note, (route or host).host_id)

    def reboot(self) -> None:
        h = self.h
        h.boot_id = boot(h.index * 100 + self.boots)
        self.boots += 1
        h.seqs = {}
        h.counters = _fresh_counters()


@dataclass
class Ctx:
    gen: Gen
    host: SimHost
    rng: random.Random
    state: dict[str, Any]   # the Python-side state before the message (read only)
    now: int

    @property
    def cfg(self) -> ProcessorConfig:
        return self.gen.cfg

    @property
    def inv(self) -> dict[str, Any]:
        return self.state.get("inventory") or {}

    @property
    def base(self) -> dict[str, Any]:
        last = self.state.get("last")
        return last["counters"] if last and last["boot_id"] == self.host.boot_id else {}


# --- single-record perturbations ---------------------------------------------------------------------------

def get(rec: dict, path: str) -> Any:
    node: Any = rec
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def put(rec: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = rec
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node[leaf] = value


def numeric_paths(obj: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in obj.items() if isinstance(obj, dict) else ():
        p = f"{prefix}{k}"
        if isinstance(v, dict):
            out += numeric_paths(v, p + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seq", "ts"):
            out.append(p)
    return out


def flip(v: Any) -> Any:
    """int <-> float without changing the value (where the value allows)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v) if abs(v) <= 2 ** 53 else v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return v


def _limit(rec: dict, c: Ctx) -> float:
    cores = c.inv.get("cores") or get(rec, "cpu.cores")
    return cores * rec["elapsed_s"] * c.cfg.over_capacity_factor


def _counter(c: Ctx, rec: dict) -> str | None:
    paths = [p for p in COUNTERS if p in c.base and isinstance(get(rec, p), (int, float))]
    return c.rng.choice(paths) if paths else None


def _regress(rec: dict, c: Ctx, how: Callable[[Any], Any]) -> None:
    p = _counter(c, rec)
    if p is not None:
        put(rec, p, how(c.base[p]))


def _big_counters(values: dict[str, int | float]) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        paths = {"read": "disk.read_bytes", "write": "disk.write_bytes", "rx": "network.rx_bytes",
                 "tx": "network.tx_bytes", "busy_s": "cpu.busy_s"}
        for k, v in values.items():
            if v > c.host.counters[k]:  # only ever up: the host's later samples carry on from there
                c.host.counters[k] = v
                put(rec, paths[k], v)
    return mutate


def _raw(fn: Callable[[bytes, dict, Ctx], bytes]) -> Callable[[dict, Ctx], bytes]:
    return lambda rec, c: fn(orjson.dumps(sanitize(rec)), rec, c)


def _sub(value: bytes, old: bytes, new: bytes) -> bytes:
    assert old in value, (old, value[:200])
    return value.replace(old, new, 1)


def _escape_first(value: bytes, text: str) -> bytes:
    return _sub(value, b'"' + text.encode(), b'"\\u%04x' % ord(text[0]) + text[1:].encode())


def _gpus(utils: list[Any]) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        rec["gpu"] = [{"index": i, "uuid": None if i % 2 else f"GPU-{i}", "utilisation": u,
                       "memory_used_bytes": 1 << 30, "memory_total_bytes": 1 << 34} for i, u in enumerate(utils)]
    return mutate


def _set(**paths: Any) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        for p, v in paths.items():
            put(rec, p.replace("__", "."), v)
    return mutate


def _delete(*sections: str) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        for s in sections:
            rec.pop(s, None)
    return mutate


def _extras(rec: dict, c: Ctx) -> None:
    rec["x_vendor"] = {"note": "é", "n": 1}
    rec["cpu"]["per_core"] = [{"cpu": i, "utilisation": 0.5, "busy_s": 10.0} for i in range(4)]
    rec["cpu"]["x_unknown"] = 7
    rec["memory"].update({"free_bytes": 1 << 30, "cached_bytes": 2 << 30, "buffers_bytes": 1 << 20,
                          "swap_total_bytes": 0, "swap_used_bytes": None})
    rec["disk"]["devices"] = {"nvme0n1": {"read_bytes": 5, "write_bytes": 6, "reads": 1, "writes": 2,
                                          "io_time_ms": 3, "read_bytes_per_s": 0.5, "write_bytes_per_s": None,
                                          "physical": True}}
    rec["network"]["interfaces"] = {"eth0.100": {k: 1 for k in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
                                                                "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")}
                                    | {"rx_bytes_per_s": 1.5, "tx_bytes_per_s": 0}}
    rec["filesystem"] = [{"mount": "/", "device": "/dev/sda1", "fstype": "ext4", "total_bytes": 10,
                          "used_bytes": 5, "available_bytes": 5}]
    rec["missing"] = ["load.psi", "gpu"]


def _types_random(rec: dict, c: Ctx) -> None:
    for p in numeric_paths(rec):
        if c.rng.random() < 0.4:
            put(rec, p, flip(get(rec, p)))


def _types_all(to: type) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        for p in numeric_paths(rec):
            v = get(rec, p)
            if type(v) is not to:
                put(rec, p, flip(v))
    return mutate


def _ts(offset: Callable[[Ctx], int]) -> Callable[[dict, Ctx], None]:
    def mutate(rec: dict, c: Ctx) -> None:
        rec["ts"] = c.now + offset(c)
    return mutate


def _literals(**paths: bytes) -> Callable[[dict, Ctx], bytes]:
    """The record with these fields written as exactly these JSON number literals (``a__b`` for ``a.b``)."""
    def mutate(rec: dict, c: Ctx) -> bytes:
        marks = {}
        for i, (p, literal) in enumerate(paths.items()):
            mark = 7_777_000_000_000_001 + i  # a placeholder int, swapped for the literal in the bytes
            put(rec, p.replace("__", "."), mark)
            marks[b"%d" % mark] = literal
        value = orjson.dumps(sanitize(rec))
        for mark, literal in marks.items():
            value = _sub(value, mark, literal)
        return value
    return mutate


# Number literals that are easy to parse wrong (or to parse as another type than orjson does)
TRICKY = (b"-0", b"-0.0", b"1e23", b"9007199254740993.0", b"7.2057594037927933e16", b"2.2250738585072011e-308",
          b"4.9406564584124654e-324", b"2.4703282292062327e-324", b"1e-400", b"-1e-400",
          b"0.1000000000000000055511151231257827021181583404541015625", b"1152921504606846976.5",
          b"123456789012345678901234567890", b"36893488147419103231", b"1.7976931348623157e308", b"3.0000000000000004",
          b"100000000000000000000000000000000000000000000000001e-50", b"5E+0", b"0.0e0", b"1.00000000000000011102230246251565404236316680908203125")


def _counters_int(rec: dict, c: Ctx) -> None:
    for p in COUNTERS:
        v = get(rec, p)
        if isinstance(v, float):
            put(rec, p, int(v))


MUTATORS: dict[str, Callable[[dict, Ctx], Any]] = {
    "clean": lambda rec, c: None,
    # counters (baseline = the previous accepted sample of the boot)
    "counter_regress_1": lambda rec, c: _regress(rec, c, lambda b: b - 1),
    "counter_regress_ulp": lambda rec, c: _regress(rec, c, lambda b: math.nextafter(float(b), -math.inf)),
    "counter_equal": lambda rec, c: _regress(rec, c, lambda b: b),
    "counter_equal_flipped": lambda rec, c: _regress(rec, c, lambda b: float(b) if isinstance(b, int) else flip(b)),
    "counter_plus_1": lambda rec, c: _regress(rec, c, lambda b: b + 1),
    "counters_int": _counters_int,
    "counter_null": lambda rec, c: put(rec, c.rng.choice(COUNTERS), None),
    "counters_2p53": _big_counters({"read": 2 ** 53 + 1, "write": 2 ** 53 + 7, "rx": 2 ** 53 - 3, "tx": 2 ** 53}),
    "counters_2p63": _big_counters({"read": 2 ** 63 - 1, "write": 2 ** 63 + 1, "rx": 2 ** 63 + 12_345}),
    "counters_2p64": _big_counters({"read": 2 ** 64 - 2, "tx": 2 ** 64 - 10 ** 7 - 1}),
    "busy_s_2p53": _big_counters({"busy_s": 2.0 ** 53}),
    # capacity: busy core-seconds against cores x elapsed x factor
    "overcap_exact": lambda rec, c: put(rec, "cpu.busy_core_s", _limit(rec, c)),
    "overcap_ulp": lambda rec, c: put(rec, "cpu.busy_core_s", math.nextafter(_limit(rec, c), math.inf)),
    "overcap_double": lambda rec, c: put(rec, "cpu.busy_core_s", 2 * _limit(rec, c)),
    "overcap_int_ceil": lambda rec, c: put(rec, "cpu.busy_core_s", math.ceil(_limit(rec, c))),
    "overcap_int_floor": lambda rec, c: put(rec, "cpu.busy_core_s", math.floor(_limit(rec, c))),
    "overcap_elapsed_int": _set(elapsed_s=1, cpu__busy_core_s=4),
    "busy_null": _set(cpu__busy_core_s=None),
    # memory used against the record's and the inventory's totals
    "mem_equal": lambda rec, c: put(rec, "memory.used_bytes", c.inv.get("memory_total_bytes")),
    "mem_over_1": lambda rec, c: put(rec, "memory.used_bytes", (c.inv.get("memory_total_bytes") or 0) + 1),
    "mem_total_float": lambda rec, c: (put(rec, "memory.total_bytes", float(c.inv.get("memory_total_bytes") or 0)),
                                       put(rec, "memory.used_bytes", (c.inv.get("memory_total_bytes") or 0) + 1)),
    "mem_used_float_equal": lambda rec, c: put(rec, "memory.used_bytes", float(c.inv.get("memory_total_bytes") or 0)),
    "mem_record_total_small": lambda rec, c: put(rec, "memory.total_bytes", get(rec, "memory.used_bytes") - 1),
    "mem_total_null": _set(memory__total_bytes=None),
    "mem_used_null": _set(memory__used_bytes=None),
    "mem_used_float": lambda rec, c: put(rec, "memory.used_bytes", float(get(rec, "memory.used_bytes"))),
    # int vs float, cores, elapsed, interval, utilisation
    "types_random": _types_random,
    "types_all_float": _types_all(float),
    "types_all_int": _types_all(int),
    "cores_float": _set(cpu__cores=4.0),
    "cores_zero": _set(cpu__cores=0),
    "cores_null": _set(cpu__cores=None),
    "elapsed_0": _set(elapsed_s=0),
    "elapsed_0_float": _set(elapsed_s=0.0),
    "elapsed_neg_zero": _set(elapsed_s=-0.0),
    "elapsed_int_1": _set(elapsed_s=1),
    "elapsed_2": _set(elapsed_s=2.0),
    "elapsed_tiny": _set(elapsed_s=5e-324),
    "prime_sample": _set(elapsed_s=0, cpu__busy_core_s=None, cpu__utilisation=None, disk__read_bytes_per_s=None,
                         disk__write_bytes_per_s=None, network__rx_bytes_per_s=None, network__tx_bytes_per_s=None),
    "interval_int": _set(interval_s=1),
    "interval_half": _set(interval_s=0.5),
    "interval_3": _set(interval_s=3.0),
    "util_int_1": _set(cpu__utilisation=1),
    "util_int_0": _set(cpu__utilisation=0),
    "util_null": _set(cpu__utilisation=None),
    "rates_int": _set(disk__read_bytes_per_s=1000, disk__write_bytes_per_s=0, network__rx_bytes_per_s=7,
                      network__tx_bytes_per_s=2 ** 53 + 1),
    "rates_huge": _set(network__rx_bytes_per_s=1.7e308, network__tx_bytes_per_s=1e308, elapsed_s=2.0),
    "rates_null": _set(disk__read_bytes_per_s=None, network__tx_bytes_per_s=None),
    "used_huge_float": _set(memory__used_bytes=1.5e300, memory__total_bytes=None),
    # GPUs
    "gpu_one": _gpus([0.5]),
    "gpu_many": _gpus([0.1, 1, None, 0.7, 0.3333333333333333, 0]),
    "gpu_int_elapsed_int": lambda rec, c: (_gpus([1, 0])(rec, c), put(rec, "elapsed_s", 1)),
    "gpu_empty": _gpus([]),
    "gpu_null_util": _gpus([None]),
    # sources, sections, nulls, extras
    "sources_extra": _set(sources=["procfs", "nvml", "ebpf", "psutil", "statvfs", "netlink"]),
    "sources_empty": _set(sources=[]),
    "sources_reordered": _set(sources=["statvfs", "procfs"]),
    "no_cpu": _delete("cpu"),
    "no_memory": _delete("memory"),
    "no_load": _delete("load"),
    "no_disk": _delete("disk"),
    "no_network": _delete("network"),
    "no_processes": _delete("processes"),
    "no_sections": _delete("cpu", "memory", "load", "disk", "network", "processes"),
    "psi_null": _set(load__psi=None),
    "psi_cpu_null": _set(load__psi__cpu=None),
    "psi_avg_null": _set(load__psi__io__some_avg10=None),
    "psi_int": _set(load__psi__cpu__some_avg10=3, load__psi__memory__some_avg10=0, load__psi__io__some_avg10=100),
    "psi_neg_zero": _set(load__psi__cpu__some_avg10=-0.0, memory__used_bytes=-0.0),
    "extras": _extras,
    "host_id_other": lambda rec, c: rec.update(host_id=c.gen.h2.host_id if c.host is not c.gen.h2 else c.gen.h.host_id),
    # identity fields
    "seq_float": lambda rec, c: rec.update(seq=float(rec["seq"])),
    "seq_huge": lambda rec, c: rec.update(seq=2 ** 64 - 1),
    "seq_2p63": lambda rec, c: rec.update(seq=2 ** 63),
    "ts_float": lambda rec, c: rec.update(ts=float(rec["ts"])),
    # time rules (ts against processor time)
    "ts_ahead_ok": _ts(lambda c: c.gen.skew_us - 1),
    "ts_ahead_exact": _ts(lambda c: c.gen.skew_us),
    "ts_ahead_skew": _ts(lambda c: c.gen.skew_us + 1),
    "ts_behind_exact": _ts(lambda c: -c.gen.skew_us),
    "ts_behind_skew": _ts(lambda c: -c.gen.skew_us - 1),
    "ts_stale": _ts(lambda c: -c.gen.stale_us - 1),
    "ts_behind_3s": _ts(lambda c: -3 * S),
    "ts_behind_70s": _ts(lambda c: -70 * S),
    "ts_zero": lambda rec, c: rec.update(ts=0),
    # schema violations
    "schema_seq_str": lambda rec, c: rec.update(seq="seven"),
    "schema_seq_neg": lambda rec, c: rec.update(seq=-1),
    "schema_ts_neg": lambda rec, c: rec.update(ts=-1),
    "schema_seq_bool": lambda rec, c: rec.update(seq=True),
    "schema_util_over_1": _set(cpu__utilisation=1.5),
    "schema_used_neg": _set(memory__used_bytes=-1),
    "schema_missing_required": lambda rec, c: rec.pop("missing"),
    "schema_no_schema": lambda rec, c: rec.pop("schema"),
    "schema_boot_bad": lambda rec, c: rec.update(boot_id="not-a-uuid"),
    "schema_host_bad": lambda rec, c: rec.update(host_id="h-XYZ"),
    "schema_name_ebpf": lambda rec, c: rec.update(schema="hm.ebpf.v1"),
    "schema_interval_zero": _set(interval_s=0),
    "schema_source_bogus": _set(sources=["procfs", "bogus"]),
    "schema_sources_dup": _set(sources=["procfs", "procfs"]),
    "schema_cpu_incomplete": lambda rec, c: rec["cpu"].pop("per_core"),
    "schema_cores_fraction": _set(cpu__cores=4.5),
    "schema_elapsed_str": _set(elapsed_s="1"),
    "schema_number_bool": _set(memory__used_bytes=True),
    "schema_gpu_incomplete": lambda rec, c: rec.update(gpu=[{"utilisation": 0.5}]),
    "schema_not_object_section": _set(cpu=[1, 2]),
    # raw JSON text
    "raw_indent": lambda rec, c: orjson.dumps(sanitize(rec), option=orjson.OPT_INDENT_2),
    "raw_sorted": lambda rec, c: orjson.dumps(sanitize(rec), option=orjson.OPT_SORT_KEYS),
    "raw_trailing_ws": _raw(lambda v, rec, c: v + b"\n \t"),
    "raw_leading_ws": _raw(lambda v, rec, c: b" \n" + v),
    "raw_dup_seq": _raw(lambda v, rec, c: v[:-1] + b',"seq":%d}' % (rec["seq"] + 3)),
    "raw_dup_ts": _raw(lambda v, rec, c: v[:-1] + b',"ts":%d}' % (rec["ts"] + 7)),
    "raw_dup_elapsed": _raw(lambda v, rec, c: v[:-1] + b',"elapsed_s":2.0}'),
    "raw_dup_boot": _raw(lambda v, rec, c: v[:-1] + b',"boot_id":"%s"}' % boot(999).encode()),
    "raw_dup_host": _raw(lambda v, rec, c: v[:-1] + b',"host_id":"%s"}' % c.gen.h2.host_id.encode()),
    "raw_dup_memory": _raw(lambda v, rec, c: v[:-1] + b',"memory":{"total_bytes":1,"used_bytes":2,'
                                                      b'"available_bytes":0}}'),
    "raw_dup_section_key": _raw(lambda v, rec, c: _sub(v, b'"used_bytes":', b'"used_bytes":1,"used_bytes":')),
    "raw_escape_boot": _raw(lambda v, rec, c: _escape_first(v, rec["boot_id"])),
    "raw_escape_host": _raw(lambda v, rec, c: _escape_first(v, rec["host_id"])),
    "raw_escape_schema": _raw(lambda v, rec, c: _sub(v, b'"hm.usage.v1"', b'"hm.usage.v\\u0031"')),
    "raw_escape_key": _raw(lambda v, rec, c: _sub(v, b'"elapsed_s"', b'"elapsed\\u005fs"')),
    "raw_exponents": _raw(lambda v, rec, c: _sub(_sub(v, b'"elapsed_s":1.0', b'"elapsed_s":1E0'),
                                                 b'"interval_s":1.0', b'"interval_s":1.000e+00')),
    "raw_int_exponent": _raw(lambda v, rec, c: _sub(v, b'"processes":200', b'"processes":2e2')),
    "raw_neg_zero_int": _raw(lambda v, rec, c: _sub(_sub(v, b'"blocked":0', b'"blocked":-0'),
                                                    b'"elapsed_s":1.0', b'"elapsed_s":-0')),
    "raw_neg_zero_used": _raw(lambda v, rec, c: _sub(v, b'"used_bytes":%d' % get(rec, "memory.used_bytes"),
                                                     b'"used_bytes":-0')),
    "raw_big_literal": _raw(lambda v, rec, c: _sub(v, b'"busy_core_s":', b'"x_big":18446744073709551616,'
                                                   b'"busy_core_s":')),
    "raw_u64_counter": _raw(lambda v, rec, c: v[:-1] + b',"x":{"y":18446744073709551615}}'),
    "raw_huge_exp": _raw(lambda v, rec, c: _sub(v, b'"load5":1.0', b'"load5":1e308')),
    "raw_inf": _raw(lambda v, rec, c: _sub(v, b'"load5":1.0', b'"load5":1e400')),
    "raw_long_fraction": _raw(lambda v, rec, c: _sub(v, b'"elapsed_s":1.0', b'"elapsed_s":1.00000000000000000000001')),
    "raw_surrogates": _raw(lambda v, rec, c: v[:-1] + b',"x_note":"\\ud83d\\ude00 \xc3\xa9"}'),
    "raw_lone_surrogate": _raw(lambda v, rec, c: v[:-1] + b',"x_note":"\\ud800"}'),
    "raw_bad_utf8": _raw(lambda v, rec, c: v[:-1] + b',"x_note":"\xff"}'),
    "raw_nul_in_string": _raw(lambda v, rec, c: v[:-1] + b',"x_note":"a\\u0000b"}'),
    "raw_bom": _raw(lambda v, rec, c: b"\xef\xbb\xbf" + v),
    "raw_leading_zero": _raw(lambda v, rec, c: _sub(v, b'"blocked":0', b'"blocked":00')),
    "raw_truncated": _raw(lambda v, rec, c: v[:-1]),
    "raw_trailing_garbage": _raw(lambda v, rec, c: v + b"x"),
    "raw_two_documents": _raw(lambda v, rec, c: v + v),
    "raw_array": lambda rec, c: b"[" + orjson.dumps(sanitize(rec)) + b"]",
    "raw_null": lambda rec, c: b"null",
    "raw_empty": lambda rec, c: b"",
    "raw_not_json": lambda rec, c: b"{not json",
    "tombstone": lambda rec, c: TOMBSTONE,
    # -0 (an int 0 for orjson) in the gauges and counters the state keeps
    "raw_neg_zero_gauges": _literals(cpu__cores=b"-0", cpu__utilisation=b"-0", memory__used_bytes=b"-0",
                                     load__psi__cpu__some_avg10=b"-0", load__psi__memory__some_avg10=b"-0",
                                     load__psi__io__some_avg10=b"-0", disk__read_bytes_per_s=b"-0",
                                     cpu__busy_core_s=b"-0"),
    "raw_neg_zero_cores": _literals(cpu__cores=b"-0"),
    "raw_neg_zero_counter": _literals(disk__read_bytes=b"-0"),
    "raw_neg_zero_elapsed_busy": _literals(elapsed_s=b"-0", cpu__busy_core_s=b"-0"),
    "counter_read_null": _set(disk__read_bytes=None),
    "counter_read_zero": _set(disk__read_bytes=0),
    **{f"raw_number_{i}": _literals(load__psi__cpu__some_avg10=lit, network__rx_bytes_per_s=lit)
       for i, lit in enumerate(TRICKY)},
    "raw_number_counters": _literals(disk__write_bytes=b"123456789012345678901234567890",
                                     network__tx_bytes=b"36893488147419103231", disk__read_bytes=b"1e23"),
}
MUT_NAMES = tuple(MUTATORS)


def start(cfg: ProcessorConfig = DEFAULT, kind: str = "std", clean: int = 4) -> tuple[Duo, Gen]:
    h, h2 = make_host(1, kind), make_host(2)
    duo = Duo(cfg, [h, h2])
    gen = Gen(cfg, h, h2)
    assert duo.feed(gen.inventory(h))[0] == "accepted"
    assert duo.feed(gen.inventory(h2))[0] == "accepted"
    for _ in range(clean):
        assert duo.feed(gen.usage(state=duo.b[h.host_id]))[0] == "accepted"
    return duo, gen


def clean(duo: Duo, gen: Gen, n: int, **kw: Any) -> list[tuple[str, bool]]:
    return [duo.feed(gen.usage(state=duo.b[gen.h.host_id], **kw)) for _ in range(n)]


def fast_share(duo: Duo) -> str:
    return f"{duo.stats['fast']} of {duo.stats['offered']} usage messages took the fast path"


# --- the tests --------------------------------------------------------------------------------------------------

def test_clean_stream_takes_the_fast_path() -> None:
    duo, gen = start(clean=0)
    outs = []
    for i in range(150):
        outs.append(duo.feed(gen.usage(state=duo.b[gen.h.host_id])))
        if i % 5 == 4:
            duo.close(gen.now)
    assert all(out == "accepted" for out, _ in outs)
    fast = sum(was_fast for _, was_fast in outs[1:])
    assert fast >= 0.9 * 149, f"only {fast} of 149 clean records after the first took the fast path"
    outbox = duo.sent.get(gen.h.host_id, []) + duo.b[gen.h.host_id]["outbox"]
    assert duo.stats["closed_natively"] >= 10, duo.stats
    assert duo.stats["proofs_closed_natively"] >= 2, duo.stats
    assert any(t == "hm.proofs.v1" for t, *_ in outbox) and any(t == "hm.usage.agg.1m.v1" for t, *_ in outbox)


def test_native_proof_close_declines_when_a_record_came_between() -> None:
    """HostStore.close_proofs writes the Python engine's proof close back only onto the state it was
    worked out from: a record applied after proof_part (the ingest thread runs meanwhile) leaves the
    state untouched, and closing again gives what the Python engine gives on the whole state."""
    duo, gen = start(clean=0)
    host = gen.h.host_id
    for _ in range(30):
        duo.feed(gen.usage(state=duo.b[host]))
    later = gen.now + 65 * S  # the proof windows open so far have ended, and their topic gone silent
    closed = duo.store.close_aggs([host], later)[0]
    assert closed is not None and closed[2] is True, "a proof window is due"
    duo.ref._close_aggs(duo.b[host], later)  # B as the store is now: its dashboard windows closed
    part = duo.store.proof_part(host)
    assert part is not None and orjson.loads(part)["outbox"] == []
    worked = orjson.loads(part)
    assert duo.engine.close_proofs(worked, later, duo.signer) >= 1
    stale = (host, part, [int(s) for s in worked["windows"]["proof"]], worked["closed"]["proof"],
             orjson.dumps(worked["chain"]).decode(), [tuple(e[:3]) for e in worked["outbox"]], later)
    assert duo.feed(gen.usage(state=duo.b[host])) == ("accepted", True), "a record meanwhile, in the store"
    before = duo.a_raw(host)
    assert duo.store.close_proofs(*stale) == (False, None), "the part changed: declined"
    assert duo.a_raw(host) == before, "declined: untouched"
    again = native.close_proofs(duo.store, duo.engine, duo.signer, host, later)
    assert again is not None
    duo.ref.close_proofs(duo.b[host], later, duo.signer)
    assert duo.a_raw(host) == orjson.dumps(duo.b[host]), "closed again: as the Python engine closes it"
    assert again == ([tuple(e[:3]) for e in duo.b[host]["outbox"][len(closed[0]):]],
                     duo.ref.next_look_us(duo.b[host], later))
    assert duo.store.close_proofs(host + "-other", part, [], 0, "{}", [], later) == (False, None)
    with pytest.raises(ValueError):
        duo.store.close_proofs(host, part, [], 0, "{not json", [], later)


def test_native_close_declines_what_python_must_close() -> None:
    """HostStore.close_aggs leaves the state untouched (None) when the outbox holds entries (a
    retry), or when a window holds an eBPF snapshot; it closes otherwise, and says when a proof
    window is due."""
    duo, gen = start(clean=0)
    host = gen.h.host_id
    for _ in range(12):  # from T0 (37.5 s into a minute): the 10 s window [30, 40) ended, the proof window open
        duo.feed(gen.usage(state=duo.b[host]))
    before = duo.a_raw(host)
    closed = duo.store.close_aggs([host], gen.now)[0]
    assert closed is not None and len(closed[0]) >= 1, "a 10 s window had ended: closed in the store"
    assert duo.store.close_aggs([host], gen.now)[0] is None, "its outbox is not sent yet"
    assert duo.store.mark(host, '{"hm.usage.agg.10s.v1:0":7}') is not None and duo.store.trim(host, len(closed[0]))
    assert duo.store.close_aggs([host], gen.now)[0] == ([], closed[1], False), "sent; nothing due: a look, no entry"
    duo.store.load(host, before, False)  # back to the state before the close
    state = orjson.loads(before)
    state["outbox"] = [["hm.usage.agg.10s.v1", "k", "{}", host]]
    duo.store.load(host, orjson.dumps(state), False)
    assert duo.store.close_aggs([host], gen.now)[0] is None, "an outbox not sent yet"
    assert duo.a_raw(host) == orjson.dumps(state), "declined: untouched"
    duo.store.load(host, before, False)
    later = duo.store.close_aggs([host], gen.now + 120 * S)[0]
    assert later is not None and later[2] is True, "the dashboard windows closed; the proof window is due"
    duo.store.load(host, before, False)
    duo.feed(gen.ebpf())
    duo.feed(gen.usage(state=duo.b[host]))
    with_ebpf = duo.a_raw(host)
    assert duo.store.close_aggs([host], gen.now + 11 * S)[0] is None, "the open 10 s window holds an eBPF snapshot"
    assert duo.a_raw(host) == with_ebpf
    assert duo.store.close_aggs(["not-stored"], gen.now) == [None]


@pytest.mark.parametrize("sigvar", ["good_none", "good_empty"])
def test_clean_stream_without_verify_ahead(sigvar: str) -> None:
    """verified None / {}: the Python path verifies inline; the store always verifies itself."""
    duo, gen = start(clean=0)
    for i in range(40):
        assert duo.feed(gen.usage(sigvar=sigvar, state=duo.b[gen.h.host_id]))[0] == "accepted"
        if i % 10 == 9:
            duo.close(gen.now)
    print(fast_share(duo))


def test_clean_stream_short_fractional_windows() -> None:
    cfg = ProcessorConfig(proof_window_s=10.5, proof_grace_s=1.5, agg_windows_s={"10s": 2.5, "1m": 10.5},
                          agg_grace_s=0.5, clock_skew_s=2.5, stale_after_s=3600.5, over_capacity_factor=1.0)
    duo, gen = start(cfg, clean=0)
    outs = []
    for i in range(60):
        outs.append(duo.feed(gen.usage(state=duo.b[gen.h.host_id])))
        if i % 3 == 2:
            duo.close(gen.now)
    assert sum(f for _, f in outs[1:]) >= 0.9 * 59, fast_share(duo)


def test_restored_state_midway() -> None:
    """States rebuilt from their JSON (the changelog) mid-stream, with ints and floats in every field."""
    duo, gen = start(clean=0)
    outs = []
    muts = ["clean", "types_all_int", "clean", "types_all_float", "elapsed_int_1", "gpu_many", "psi_int",
            "clean", "rates_int", "interval_int", "mem_used_float", "counters_int", "psi_neg_zero"]
    for i in range(150):
        outs.append(duo.feed(gen.usage(muts[i % len(muts)], state=duo.b[gen.h.host_id], seed=i)))
        if i % 10 == 9:
            duo.restore()
        if i == 75:
            duo.restore()
            duo.restore()
        if i % 6 == 5:
            duo.close(gen.now)
    assert all(out == "accepted" for out, _ in outs), [o for o, _ in outs]
    fast = sum(f for _, f in outs[1:])
    assert fast >= 0.5 * 149, f"only {fast} of 149 records took the fast path with restored states"
    print(fast_share(duo))


def test_two_hosts_on_one_store() -> None:
    duo, gen = start(clean=0)
    g2 = Gen(gen.cfg, gen.h2, gen.h)
    g2.t = gen.t = T0 + 3 * S
    outs = []
    for i in range(60):
        outs.append(duo.feed(gen.usage(state=duo.b[gen.h.host_id])))
        outs.append(duo.feed(g2.usage(state=duo.b[gen.h2.host_id])))
        if i % 7 == 6:
            duo.close(gen.now)
        if i == 30:
            duo.restore()
    assert all(out == "accepted" for out, _ in outs)
    assert sum(f for _, f in outs[2:]) >= 0.9 * 118, fast_share(duo)


def test_rewind_and_replay() -> None:
    """Crash recovery: the states go back to an older changelog point and the inputs are replayed."""
    duo, gen = start(clean=3)
    clean(duo, gen, 10)
    duo.snapshot()
    clean(duo, gen, 8)
    duo.feed(gen.usage("counter_regress_1", state=duo.b[gen.h.host_id]))
    gen.withheld.append(gen.usage())  # a gap, filled after the rewind
    clean(duo, gen, 4)
    duo.close(gen.now + 20 * S)
    duo.rewind()
    duo.feed(replace(gen.withheld.pop(), now_us=gen.now))
    clean(duo, gen, 10)
    duo.rewind()
    outs = clean(duo, gen, 5)
    assert all(out == "accepted" for out, _ in outs)


def test_host_no_longer_enrolled() -> None:
    """Strict mode that does not list a host whose key is pinned: every record is key_mismatch."""
    duo, gen = start(clean=5)
    for enrolled in ({}, {gen.h2.host_id: None}):
        cfg = replace(DEFAULT, enrolled=enrolled)
        strict = Duo(cfg, [gen.h])
        strict.set_a(gen.h.host_id, duo.a(gen.h.host_id))
        strict.b = {gen.h.host_id: orjson.loads(orjson.dumps(duo.b[gen.h.host_id]))}
        for _ in range(5):
            assert strict.feed(gen.usage(state=strict.b[gen.h.host_id]))[0] == "key_mismatch"
    cfg = replace(DEFAULT, enrolled={gen.h.host_id: None, gen.h2.host_id: None})
    strict = Duo(cfg, [gen.h])
    strict.set_a(gen.h.host_id, duo.a(gen.h.host_id))
    strict.b = {gen.h.host_id: orjson.loads(orjson.dumps(duo.b[gen.h.host_id]))}
    for _ in range(5):
        assert strict.feed(gen.usage(state=strict.b[gen.h.host_id]))[0] == "accepted"


@pytest.mark.parametrize("kind", ["std", "big"])
@pytest.mark.parametrize("mutator", MUT_NAMES)
def test_one_perturbed_record(mutator: str, kind: str) -> None:
    """A clean stream, one perturbed record, the clean stream again (its next records see the aftermath)."""
    duo, gen = start(kind=kind)  # 4 clean records: ts 37.5 s .. 40.5 s
    # the perturbed record mid-window (41.5 s), first in a 10 s window (50.5 s, after a close), and first in a
    # proof and 1 min window (60.5 s, after a close), where the window accumulators are fresh
    plan = {0: "good_batch", 9: "good_none", 19: "good_batch"}
    for i in range(24):
        if i in plan:
            duo.feed(gen.usage(mutator, sigvar=plan[i], state=duo.b[gen.h.host_id], seed=i))
        else:
            clean(duo, gen, 1)
        if i in (7, 17):
            duo.close(gen.now)
    duo.close(gen.now + 61 * S)
    clean(duo, gen, 2)


@pytest.mark.parametrize("kind", ["std", "big"])
@pytest.mark.parametrize("sigvar", SIG_NAMES)
def test_signature_variants(sigvar: str, kind: str) -> None:
    duo, gen = start(kind=kind)
    duo.feed(gen.usage(sigvar=sigvar, state=duo.b[gen.h.host_id]))
    clean(duo, gen, 2)
    duo.feed(gen.usage("counter_plus_1", sigvar=sigvar, state=duo.b[gen.h.host_id]))
    clean(duo, gen, 2)


def test_record_claiming_another_host() -> None:
    """Records for host 2 (its own key) and records claiming host 2 signed by host 1, fed to host 1's state."""
    duo, gen = start(clean=3)
    h1, h2 = gen.h, gen.h2
    duo.feed(gen.usage(host=h2, route=h1, state=duo.b[h1.host_id]))
    clean(duo, gen, 2)
    duo.feed(gen.usage("host_id_other", state=duo.b[h1.host_id]))
    clean(duo, gen, 2)
    duo.feed(gen.usage(host=h2, state=duo.b[h2.host_id]))
    duo.feed(gen.usage(host=h2, state=duo.b[h2.host_id]))
    clean(duo, gen, 2)


@pytest.mark.parametrize("before", [["counter_read_null"], ["counter_read_null", "counter_read_zero"]])
def test_negative_zero_counter_without_a_baseline(before: list[str]) -> None:
    """A counter sent as the literal -0 (orjson: the int 0) after a sample without it (or with 0): no
    regression, so the record is accepted and -0 becomes the baseline."""
    duo, gen = start()
    for mutator in before:
        assert duo.feed(gen.usage(mutator, state=duo.b[gen.h.host_id]))[0] == "accepted"
    duo.feed(gen.usage("raw_neg_zero_counter", state=duo.b[gen.h.host_id]))
    clean(duo, gen, 3)


def test_negative_zero_gauges_at_each_window_position() -> None:
    """-0 gauges at every position of a 10 s window (fresh accumulators at its start)."""
    duo, gen = start()
    for _ in range(12):
        duo.feed(gen.usage("raw_neg_zero_gauges", state=duo.b[gen.h.host_id]))
        clean(duo, gen, 1)


def test_batch_of_hosts_with_a_decline_mid_batch() -> None:
    """Three hosts interleaved in one batch; host 2's second record declines natively (a -0 literal, which
    Python accepts): its later records decline too and replay through Python in order, while hosts 1 and
    3 stay on the fast path."""
    hosts = [make_host(i) for i in (1, 2, 3)]
    duo = Duo(DEFAULT, hosts)
    gens = [Gen(DEFAULT, h, hosts[1] if i == 0 else hosts[0]) for i, h in enumerate(hosts)]
    for g in gens:
        assert duo.feed(g.inventory())[0] == "accepted"
    for g in gens:
        for _ in range(3):
            assert duo.feed(g.usage(state=duo.b[g.h.host_id]))[0] == "accepted"
    msgs = [g.usage("raw_neg_zero_used" if (g is gens[1] and r == 1) else "clean", state=duo.b[g.h.host_id])
            for r in range(5) for g in gens]
    outs = duo.feed_batch(msgs)
    assert [o for o, _ in outs] == ["accepted"] * 15
    assert [f for _, f in outs] == [True] * 4 + [False, True] + [True, False, True] * 3
    # what host 2 replayed through Python leaves it fit for the fast path again
    assert duo.feed(gens[1].usage(state=duo.b[hosts[1].host_id])) == ("accepted", True)
    clean(duo, gens[0], 2)


def test_store_dirty_flags_take_and_dump() -> None:
    duo, gen = start(clean=3)
    h1, h2 = gen.h.host_id, gen.h2.host_id
    s1, s2 = duo.a_raw(h1), duo.a_raw(h2)
    store = make_store(DEFAULT)
    assert len(store) == 0 and store.dump_dirty() == [] and store.take(h1) is None and store.key(h1) is None
    store.load(h1, s1, False)
    store.load(h2, s2, True)
    assert len(store) == 2 and h1 in store and "h-unknown" not in store and sorted(store.hosts()) == sorted([h1, h2])
    assert store.key(h1) == orjson.loads(s1)["key"] is not None and store.key("h-unknown") is None
    assert [(h, orjson.loads(raw)) for h, raw in store.dump_dirty()] == [(h2, orjson.loads(s2))]
    assert store.dump_dirty() == [] and h2 in store  # flags cleared, states kept
    msg = gen.usage(state=duo.b[h1])
    assert store.ingest([(h1, msg.value, msg.headers)], msg.now_us) == [orjson.loads(msg.value)["ts"]]
    assert [h for h, _ in store.dump_dirty()] == [h1]
    assert store.ingest([(h2, msg.value, msg.headers), ("h-unknown", msg.value, msg.headers)], msg.now_us) == [None, None]
    assert store.dump_dirty() == []  # a decline leaves the flag as it was
    raw, dirty = store.take(h1)
    assert dirty is False and orjson.loads(raw)["counts"]["accepted"] == orjson.loads(s1)["counts"]["accepted"] + 1
    assert store.take(h1) is None and h1 not in store and len(store) == 1
    store.load(h1, orjson.dumps(new_state(h1)), True)
    assert store.key(h1) is None  # not pinned yet
    assert store.take(h1) == (orjson.dumps(new_state(h1)), True)
    store.clear()
    assert len(store) == 0 and store.hosts() == []
    with pytest.raises(ValueError):
        store.load(h1, b"[1, 2]", False)


def test_proof_window_whose_gaps_is_not_a_list() -> None:
    """proofs.add_usage extends acc["gaps"] even with nothing to add, so Python raises on a state whose
    gaps is not a list: the fast path, which never touches gaps, must decline that state too."""
    duo, gen = start(clean=3)
    h1 = gen.h.host_id
    for acc in duo.b[h1]["windows"]["proof"].values():
        acc["gaps"] = False
    duo.set_a(h1, duo.b[h1])
    assert duo.feed(gen.usage(state=duo.b[h1])) == ("raised AttributeError", False)


def test_ingest_releases_the_gil() -> None:
    """A Python thread keeps counting while a large batch runs in another thread."""
    cfg = replace(DEFAULT, clock_skew_s=1e6, stale_after_s=1e7)  # one host, samples spanning an hour
    h = make_host(1)
    duo = Duo(cfg, [h])
    gen = Gen(cfg, h, make_host(2))
    duo.feed(gen.inventory())
    duo.feed(gen.usage(state=duo.b[h.host_id]))
    n = 8000  # long enough to tell (spent > 0.03 s) at ~20 us per record (the signature check most of it)
    items = [(h.host_id, value, headers) for _, _, value, headers in
             (h.message(USAGE, h.usage(gen.t + i * S)) for i in range(n))]
    now_us = gen.t + n * S
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        before, t0 = count, time.perf_counter()
        time.sleep(0.05)  # the spinner's pace with the GIL free
        pace = (count - before) / (time.perf_counter() - t0)
        before, t0 = count, time.perf_counter()
        taken = duo.store.ingest(items, now_us)
        spent, counted = time.perf_counter() - t0, count - before
    finally:
        stop.set()
        spinner.join()
    assert all(ts is not None for ts in taken), taken.count(None)
    # Holding the GIL, the batch would let the spinner run one switch interval (5 ms) at most.
    assert spent > 0.03, f"the batch took {spent * 1e3:.1f} ms: too short to tell"
    assert counted > 0.4 * pace * spent, (f"the other thread counted {counted} during a {spent * 1e3:.0f} ms batch, "
                                          f"{pace * spent:.0f} at its free pace: the GIL was held")


# --- random streams --------------------------------------------------------------------------------------------

STREAM_OPS = (["ok"] * 10 + ["ok2", "dup", "dup", "skip", "skip", "fill", "fill", "fill", "jump", "reboot",
                              "oldboot", "age", "lag", "ebpf", "inventory", "close", "close", "restore", "snap",
                              "rewind", "drop_seen", "batch", "batch", "batch"])


def apply_op(duo: Duo, gen: Gen, op: str, arg: str, seed: int) -> None:
    rng = random.Random(seed)
    h = gen.h
    st_b = duo.b[h.host_id]
    if op == "ok":
        duo.feed(gen.usage(state=st_b))
    elif op == "mutate":
        duo.feed(gen.usage(arg, sigvar="good_none" if seed % 4 == 0 else "good_batch", state=st_b, seed=seed))
    elif op == "sig":
        duo.feed(gen.usage(sigvar=arg, state=st_b))
    elif op == "ok2":
        t, gen.t = gen.t, gen.t - S
        duo.feed(gen.usage(host=gen.h2, state=duo.b[gen.h2.host_id], advance=False))
        gen.t = t
    elif op == "dup" and duo.history:
        duo.feed(replace(rng.choice(duo.history[-20:]), now_us=gen.now))
    elif op == "skip":
        for _ in range(rng.choice([1, 1, 2, 3])):
            gen.withheld.append(gen.usage())
    elif op == "fill" and gen.withheld:
        msg = gen.withheld.pop(rng.randrange(len(gen.withheld)))
        duo.feed(replace(msg, now_us=gen.now, note="late " + msg.note))
    elif op == "jump":
        h.seqs[USAGE] = h.seqs.get(USAGE, 0) + rng.choice([1, 5, 1023, 1024, 1025, 3000])
    elif op in ("reboot", "oldboot"):
        if op == "oldboot" or rng.random() < 0.3:
            gen.withheld.append(gen.usage())  # a record of the old boot, delivered late
        gen.reboot()
        if rng.random() < 0.5:
            duo.feed(gen.usage("prime_sample", state=st_b))
    elif op == "age":
        offset = rng.choice([gen.skew_us, gen.skew_us + 1, -gen.skew_us, -gen.skew_us - 1, gen.stale_us,
                             gen.stale_us + 1, 3 * S, -3 * S, 0])
        msg = gen.usage(state=st_b)
        duo.feed(replace(msg, now_us=msg.now_us + offset, note=f"{msg.note} now+={offset}"))
    elif op == "lag":
        gen.lag = rng.choice([0, 200_000, S, 9 * S, max(0, gen.skew_us - S)])
    elif op == "ebpf":
        duo.feed(gen.ebpf())
    elif op == "inventory":
        duo.feed(gen.inventory())
    elif op == "close":
        duo.close(gen.now + rng.choice([0, S, 5 * S, 11 * S, 61 * S, 300 * S]), deliver=0.7, rng=rng)
    elif op == "restore":
        duo.restore()
    elif op == "snap":
        duo.snapshot()
    elif op == "rewind":
        duo.rewind()
    elif op == "batch":  # the host's records (some perturbed) and host 2's, in one store.ingest
        msgs = []
        for _ in range(rng.randint(2, 8)):
            if rng.random() < 0.3:
                t, gen.t = gen.t, gen.t - S
                msgs.append(gen.usage(host=gen.h2, state=duo.b[gen.h2.host_id], advance=False))
                gen.t = t
            else:
                mutator = rng.choice(MUT_NAMES) if rng.random() < 0.25 else "clean"
                msgs.append(gen.usage(mutator, state=st_b, seed=rng.randrange(2 ** 16)))
        duo.feed_batch(msgs)
    elif op == "drop_seen":  # a state written before "seen" existed
        for host_id, state in duo.b.items():
            state.pop("seen", None)
            a = duo.a(host_id)
            a.pop("seen", None)
            duo.set_a(host_id, a)
        duo.log.append("drop state['seen']")


_seeds = st.integers(0, 2 ** 16)
OP = st.one_of(
    st.tuples(st.sampled_from(STREAM_OPS), st.just(""), _seeds),
    st.tuples(st.sampled_from(STREAM_OPS), st.just(""), _seeds),
    st.tuples(st.just("mutate"), st.sampled_from(MUT_NAMES), _seeds),
    st.tuples(st.just("mutate"), st.sampled_from(MUT_NAMES), _seeds),
    st.tuples(st.just("sig"), st.sampled_from(SIG_NAMES), _seeds),
)


def test_random_streams() -> None:
    totals: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cfg=st.sampled_from([DEFAULT, SHORT]), kind=st.sampled_from(["std", "big"]),
           prefix=st.integers(1, 4), ops=st.lists(OP, min_size=5, max_size=60))
    def run(cfg: ProcessorConfig, kind: str, prefix: int, ops: list[tuple[str, str, int]]) -> None:
        duo, gen = start(cfg, kind, clean=prefix)
        for op, arg, seed in ops:
            apply_op(duo, gen, op, arg, seed)
        clean(duo, gen, 3)
        totals.update(duo.stats)

    run()
    print(f"random streams: {totals['fast']} of {totals['offered']} usage messages took the fast path, "
          f"{totals['accepted_usage']} were accepted; {totals['closed_natively']} native closes, "
          f"{totals['looked_natively']} native looks with nothing due")
    assert totals["fast"] >= 0.3 * totals["accepted_usage"], dict(totals)
    # hypothesis draws the streams afresh each run: 11 to 34 native closes seen in 10 runs
    assert totals["closed_natively"] >= 5, dict(totals)


def test_a_decline_blocks_the_host_until_unblocked() -> None:
    """processors.app queues a chunk before the one ahead of it is settled: a host declined in one
    ingest must decline in the next ones too (its declined record is not replayed yet), whether it is
    stored or not, and even if its state is loaded again, until unblock."""
    duo, gen = start(clean=3)
    h1, h2 = gen.h.host_id, gen.h2.host_id
    assert duo.feed(gen.usage(host=gen.h2, state=duo.b[h2]))[0] == "accepted"  # its boot's first
    store = make_store(DEFAULT)
    store.load(h1, duo.a_raw(h1), False)
    store.load(h2, duo.a_raw(h2), False)
    good = [gen.usage(state=duo.b[h1]) for _ in range(3)]  # seqs n, n+1, n+2
    bad = gen.usage(sigvar="bad_flip_batch", state=duo.b[h1])
    other = gen.usage(host=gen.h2, state=duo.b[h2])
    item = lambda m, route=None: (route or m.route, m.value, m.headers)  # noqa: E731
    assert store.ingest([item(bad), item(other)], bad.now_us) == [None, orjson.loads(other.value)["ts"]]
    assert store.blocked() == [h1]  # the other host is not held up
    # the host's next records decline while blocked, in a later call, and a reload does not unblock it
    assert store.ingest([item(good[0])], good[0].now_us) == [None]
    store.load(h1, store.take(h1)[0], False)
    assert store.ingest([item(good[0])], good[0].now_us) == [None]
    # a host not stored is blocked too by its decline
    assert store.ingest([item(good[0], "h-unknown")], good[0].now_us) == [None]
    assert sorted(store.blocked()) == sorted([h1, "h-unknown"])
    store.unblock([h1])
    assert store.blocked() == ["h-unknown"]
    assert store.ingest([item(good[0])], good[0].now_us) == [orjson.loads(good[0].value)["ts"]]
    store.clear()
    assert store.blocked() == [] and len(store) == 0


def test_the_store_tracks_as_many_boots_as_the_engine() -> None:
    """A boot's first record in the store drops the oldest boot's seqs past hm_ingest.BOOTS_KEPT, as
    validation.mark_seen does past its BOOTS_KEPT."""
    import hm_ingest

    from processors import validation

    assert hm_ingest.BOOTS_KEPT == validation.BOOTS_KEPT


def test_first_records_of_new_boots_take_the_fast_path() -> None:
    """A host's first usage record, and the first of each later boot, are the store's (a new
    baseline, nothing to check the counters against), as the Python engine makes them: boots past
    BOOTS_KEPT dropped from seqs, a late record of a dropped boot and one of the baseline's own
    boot, once dropped, left to Python."""
    duo, gen = start(clean=0)
    host = gen.h.host_id
    assert duo.a(host)["last"] is None
    assert duo.feed(gen.usage(state=duo.b[host])) == ("accepted", True), "the host's first usage record"
    for _ in range(3):
        clean(duo, gen, 3)
        old = gen.usage(state=duo.b[host])  # withheld: the old boot's, delivered after the reboot
        gen.reboot()
        assert duo.feed(gen.usage(state=duo.b[host])) == ("accepted", True), "a new boot's first record"
        assert duo.a(host)["last"]["boot_id"] == gen.h.boot_id
    assert len(duo.a(host)["seqs"]["hm.usage.v1"]) == 2
    out, fast = duo.feed(old)  # of a boot dropped from seqs: a first sight again, but not a new baseline
    assert not fast and out == "accepted", (out, fast)
