"""The per-host state machine: validate, window, close, build proofs. Pure: no Kafka, no clock.

The app (processors.app) keeps one JSON-able state dict per host in a changelog-backed
table and calls:

* ``decode(topic, value)`` -> (record, schema), or raises validation.Rejection;
* ``ingest(state, record, schema, value, headers, now_us)`` -> accepts the record into the
  state or raises Rejection (the state is untouched then);
* ``close_due(state, now_us, signer)`` -> closes windows that are due, appending their
  outputs (aggregates, proofs, window-level rejections) to ``state["outbox"]``.

Because dedupe state, window accumulators, the proof chain and the outbox sit in ONE
value per host, a changelog write is atomic per host: after a crash the restored state
is some consistent past point, replayed inputs are caught as duplicates, and outputs
that were in the outbox are re-sent byte for byte (consumers dedupe on key / proof_id).

When a window closes: as soon as every topic the host is still sending on (usage, eBPF)
has moved past the window end (event-time watermark, normally one interval after the
end), or ``grace`` after the end for a topic gone silent (none of its records accepted
for ``grace`` by processor time). So a worker catching up on a backlog, however old,
does not close windows half-filled: the host's records keep coming, and their watermark
closes each window once its records are in.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from schemas.dsse import key_id

from . import aggregation, proofs
from .config import AGG_TOPICS, ProcessorConfig
from .validation import (
    Rejection,
    Verified,
    check_capacity,
    check_counters,
    check_identity,
    check_schema,
    check_time,
    counters_of,
    mark_seen,
    numbers,
    parse,
    seq_status,
)

PROOFS_TOPIC = "hm.proofs.v1"
REJECTED_TOPIC = "hm.rejected.v1"


@dataclass(frozen=True)
class Signer:
    """The processor's key: ``sign(payload_bytes) -> DSSE envelope dict``."""

    key_id: str
    sign: Callable[[bytes], dict[str, Any]]


def new_state(host_id: str) -> dict[str, Any]:
    return {
        "host_id": host_id,
        "key": None,            # pinned public key, standard base64
        "inventory": None,      # proofs.inventory_summary of the latest accepted inventory
        "seqs": {},             # validation.seq_status / mark_seen
        "last": None,           # {"boot_id", "seq", "counters"}: the usage baseline
        "wm": {},               # schema -> highest ts accepted (event-time watermark)
        "windows": {"proof": {}, **{n: {} for n in AGG_TOPICS}},  # name -> {str(start_us): acc}
        "closed": {"proof": 0, **{n: 0 for n in AGG_TOPICS}},     # name -> end_us of the last closed window
        "chain": {"seq": 0, "prev_hash": None},
        "agg_seq": {n: 0 for n in AGG_TOPICS},
        "counts": {"accepted": 0, "duplicates": 0, "late": 0},
        "seen": {},             # schema -> processor time its last record was accepted
        "outbox": [],           # [topic, kafka key, value (str), host_id]
    }


def decode(topic: str, value: bytes | None) -> tuple[dict[str, Any], str]:
    record = parse(value)
    return record, check_schema(record, topic)


class Engine:
    def __init__(self, cfg: ProcessorConfig):
        self.cfg = cfg
        self.proof_len_us = int(cfg.proof_window_s * 1e6)
        self.agg_len_us = {n: int(s * 1e6) for n, s in cfg.agg_windows_s.items()}
        self.min_grace_us = int(min(cfg.agg_grace_s, cfg.proof_grace_s) * 1e6)
        self._window_lens_us = [*self.agg_len_us.values(), self.proof_len_us]
        self._due_span = (0, 0)  # record_due_us: [low, end) where every ts has the same answer, end

    # --- input ----------------------------------------------------------------
    def ingest(self, state: dict[str, Any], record: dict[str, Any], schema: str, value: bytes,
               headers: Any, now_us: int, verified: Verified | None = None) -> None:
        """Accept ``record`` into ``state`` or raise Rejection, leaving ``state`` as it was.
        ``verified``: signature answers worked out ahead (validation.verify_many)."""
        cfg = self.cfg
        key_b64 = check_identity(record, schema, value, headers, state["key"], cfg, verified)
        boot, seq, ts = record["boot_id"], record["seq"], record["ts"]
        status = seq_status(state["seqs"], schema, boot, seq)
        if status == "duplicate":
            state["counts"]["duplicates"] += 1
            raise Rejection("duplicate", "seq", f"(host_id, boot_id, seq={seq}) of {schema} already seen; "
                                                f"counted, not re-aggregated")
        check_time(ts, now_us, cfg)
        if schema == "hm.inventory.v1":
            mark_seen(state["seqs"], schema, boot, seq)
            state["key"] = key_b64
            state["inventory"] = proofs.inventory_summary(record)
            state["counts"]["accepted"] += 1
            return
        pstart = aggregation.window_start(ts, self.proof_len_us)
        if pstart + self.proof_len_us <= state["closed"]["proof"]:
            state["counts"]["late"] += 1
            raise Rejection("late", "window", f"proof window starting {pstart} was already closed")
        base = None
        last = state["last"]
        counters: dict[str, float] = {}
        nums: dict[str, float] = {}
        if schema == "hm.usage.v1":
            nums = numbers(record)  # once per record: the rules, the windows and the proof share it
            counters = counters_of(record, nums)
            if last is not None and last["boot_id"] == boot and seq > last["seq"]:
                base = last["counters"]
                check_counters(base, record, counters)
            check_capacity(record, state["inventory"], cfg, nums)
        # accepted from here on
        gaps = mark_seen(state["seqs"], schema, boot, seq)
        state["counts"]["accepted"] += 1
        state.setdefault("seen", {})[schema] = now_us
        state["wm"][schema] = max(state["wm"].get(schema, 0), ts)
        wins = state["windows"]["proof"]
        pacc = wins.get(str(pstart))
        if pacc is None:  # not setdefault(..., new_acc()): that builds a fresh accumulator for every record
            pacc = wins[str(pstart)] = proofs.new_acc()
        if schema == "hm.usage.v1":
            deltas = proofs.counter_deltas(base, record, nums)
            proofs.add_usage(pacc, record, value, deltas, gaps, now_us - ts, nums)
            # A boot not seen before resets the baseline (counters restart from 0: not a regression);
            # a late record of an older boot leaves it alone.
            new_boot = last is None or (last["boot_id"] != boot and status == "first")
            if new_boot or (last["boot_id"] == boot and seq > last["seq"]):
                state["last"] = {"boot_id": boot, "seq": seq, "counters": counters}
        else:
            proofs.add_ebpf(pacc, record, value)
        figures = aggregation.usage_figures(record, nums) if schema == "hm.usage.v1" else None
        for name, length in self.agg_len_us.items():
            start = aggregation.window_start(ts, length)
            if start + length <= state["closed"][name]:
                continue  # that dashboard window was already emitted; the proof still counts the record
            wins = state["windows"][name]
            acc = wins.get(str(start))
            if acc is None:
                acc = wins[str(start)] = aggregation.new_acc()
            if schema == "hm.usage.v1":
                aggregation.add_usage(acc, record, figures)
            else:
                aggregation.add_ebpf(acc, record)

    # --- window closing -------------------------------------------------------
    def _due(self, state: dict[str, Any], end_us: int, grace_s: float, now_us: int) -> bool:
        """Every topic the host sent on during the window has a record past its end, or has gone
        silent (nothing accepted on it for ``grace`` by processor time, and the end is ``grace``
        ago). A topic still delivering a backlog is not silent, however old its records."""
        if now_us < end_us:
            return False
        grace_us = grace_s * 1e6
        overdue = now_us >= end_us + grace_us
        seen = state.get("seen", {})
        waited_for = self._waited_for(state, end_us)
        for schema, wm in waited_for:
            if wm >= end_us or (overdue and now_us - seen.get(schema, 0) >= grace_us):
                continue  # past the end, or gone silent
            return False
        return bool(waited_for) or overdue

    def _waited_for(self, state: dict[str, Any], end_us: int) -> list[tuple[str, int]]:
        """(schema, watermark) of each topic a window ending at ``end_us`` waits for: those the host
        sent on during it (a topic that stopped before the window is not waited for)."""
        return [(schema, wm) for schema, wm in state["wm"].items() if wm >= end_us - self.proof_len_us]

    def record_due_us(self, ts: int) -> int:
        """The earliest end among the windows a record with this ``ts`` falls in (cheaper per record than
        next_due_us's scan of every open window). Asked once per record taken: the answer holds for
        every ts from the latest of those windows' starts to that end (the same windows), so it is
        kept for that span, where most of the next records fall."""
        low, end = self._due_span
        if low <= ts < end:
            return end
        starts = [aggregation.window_start(ts, n) for n in self._window_lens_us]
        end = min(start + n for start, n in zip(starts, self._window_lens_us))
        self._due_span = (max(starts), end)
        return end

    def next_look_us(self, state: dict[str, Any], now_us: int) -> tuple[int, int] | None:
        """(the earliest end of an open window, when closing could next succeed without a new record),
        or None with no window open. The latter is an open window's end, or, for one that ended and
        waits for its topics' watermarks (a backlog), the earliest time silence could close it (_due's
        rule with the smaller grace: early, never late). A record moving a watermark past an end makes
        it sooner; the app looks then (processors.app.Processor._look_after)."""
        ends = self._open_ends(state)
        if not ends:
            return None
        seen = state.get("seen", {})
        looks = []
        for end in ends:
            if end > now_us:
                looks.append(end)
                continue
            behind = [seen.get(schema, 0) for schema, wm in self._waited_for(state, end) if wm < end]
            looks.append(max([end] + behind) + self.min_grace_us)
        return min(ends), min(looks)

    def _open_ends(self, state: dict[str, Any]) -> list[int]:
        ends = [int(s) + self.proof_len_us for s in state["windows"]["proof"]]
        for name, length in self.agg_len_us.items():
            ends += [int(s) + length for s in state["windows"][name]]
        return ends

    def next_due_us(self, state: dict[str, Any]) -> int | None:
        """Earliest end of an open window."""
        ends = self._open_ends(state)
        return min(ends) if ends else None

    def close_due(self, state: dict[str, Any], now_us: int, signer: Signer) -> int:
        """Close every due window into the outbox; returns how many closed."""
        return self._close_aggs(state, now_us) + self.close_proofs(state, now_us, signer)

    def _close_aggs(self, state: dict[str, Any], now_us: int) -> int:
        closed = 0
        host = state["host_id"]
        for name, length in self.agg_len_us.items():
            wins = state["windows"][name]
            for start_s in sorted(wins, key=int):
                start = int(start_s)
                if not self._due(state, start + length, self.cfg.agg_grace_s, now_us):
                    break
                out = aggregation.finish(wins.pop(start_s), host_id=host, name=name, start_us=start,
                                         length_us=length, seq=state["agg_seq"][name])
                state["agg_seq"][name] += 1
                state["closed"][name] = max(state["closed"][name], start + length)
                state["outbox"].append([AGG_TOPICS[name], out["agg_id"], orjson.dumps(out).decode(), host])
                closed += 1
        return closed

    def close_proofs(self, state: dict[str, Any], now_us: int, signer: Signer) -> int:
        """Close the due proof windows into the outbox; returns how many closed. Reads and writes
        only host_id, key, inventory, chain, closed["proof"], windows["proof"], wm, seen and
        outbox (the part HostStore.proof_part gives)."""
        closed = 0
        wins = state["windows"]["proof"]
        for start_s in sorted(wins, key=int):
            start = int(start_s)
            if not self._due(state, start + self.proof_len_us, self.cfg.proof_grace_s, now_us):
                break
            self._close_proof(state, start, wins.pop(start_s), signer, now_us)
            closed += 1
        return closed

    def _close_proof(self, state: dict[str, Any], start: int, acc: dict[str, Any], signer: Signer,
                     now_us: int) -> None:
        host, chain = state["host_id"], state["chain"]
        state["closed"]["proof"] = max(state["closed"]["proof"], start + self.proof_len_us)
        host_key_id = key_id(base64.b64decode(state["key"])) if state["key"] else ""
        payload: dict[str, Any] | None
        data: bytes | None
        try:
            payload = proofs.build_payload(
                acc, host_id=host, start_us=start, length_us=self.proof_len_us, grace_us=0,
                seq=chain["seq"], prev_proof_hash=chain["prev_hash"], inventory=state["inventory"],
                host_key_id=host_key_id, cfg=self.cfg)
            verdicts = proofs.check_window(payload, self.cfg)
            data = proofs.payload_bytes(payload)
        except (TypeError, ValueError, OverflowError) as err:
            # Figures no proof can carry (byte counts summed past 2**64, an infinite sum): one more
            # verdict, filed without a payload. Withheld, never a crash: an exception here stopped
            # the worker at every restart (faust crashes the app on a timer's error).
            payload, data = None, None
            verdicts = [("malformed", f"the window's figures cannot be written ({type(err).__name__}: {err})")]
        withheld = any(code != "source_disagreement" for code, _ in verdicts)
        for code, detail in verdicts:
            rej = rejection_record(code, "proof_window", detail + ("; proof withheld" if withheld else
                                                                    "; proof issued with the flag"),
                                   host_id=host, topic=PROOFS_TOPIC, value=data, record=payload, now_us=now_us)
            state["outbox"].append([REJECTED_TOPIC, host, orjson.dumps(rej).decode(), host])
        if withheld or data is None:
            return
        envelope = signer.sign(data)
        state["outbox"].append([PROOFS_TOPIC, host, orjson.dumps(envelope).decode(), host])
        chain["seq"] += 1
        chain["prev_hash"] = proofs.payload_hash(data)


def rejection_record(code: str, check: str, detail: str, *, host_id: str | None, topic: str,
                     value: bytes | None, record: dict[str, Any] | None = None, now_us: int,
                     partition: int | None = None, offset: int | None = None) -> dict[str, Any]:
    """An hm.rejected.v1 record: the original bytes, the reason code, a detail and the check."""
    rec = record if isinstance(record, dict) else {}
    return {
        "schema": "hm.rejected.v1",
        "host_id": host_id or "unknown",
        "ts": now_us,
        "reason": code,
        "check": check,
        "detail": detail[:1000],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "original_b64": base64.b64encode(value or b"").decode(),
        "original_schema": rec.get("schema") if isinstance(rec.get("schema"), str) else None,
        "boot_id": rec.get("boot_id") if isinstance(rec.get("boot_id"), str) else None,
        "seq": rec.get("seq") if isinstance(rec.get("seq"), int) and not isinstance(rec.get("seq"), bool) else None,
        "record_ts": rec.get("ts") if isinstance(rec.get("ts"), int) and not isinstance(rec.get("ts"), bool) else None,
    }


def host_of(record: Any, key: bytes | None) -> str:
    """The host a rejection is filed under: the record's host_id, else the Kafka key, else "unknown"."""
    import re

    for cand in ((record or {}).get("host_id") if isinstance(record, dict) else None,
                 key.decode("ascii", "replace") if key else None):
        if isinstance(cand, str) and re.fullmatch(r"h-[0-9a-f]{32}", cand):
            return cand
    return "unknown"
