"""Hypothesis against the processors' validator (processors.engine.decode + Engine.ingest).

The documented boundary: whatever arrives, decode/ingest either accept the record or raise
exactly one ``Rejection`` whose code is one of ``validation.REASONS``, leaving the host's
state as it was. Nothing else may escape (an escaping exception would crash-loop a worker
on a poison record). Inputs: arbitrary bytes, JSON that nearly matches the schema (one
field deleted, retyped or replaced, then correctly signed), and signed records with one
byte flipped after signing, which must never be accepted.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.config import ProcessorConfig
from processors.engine import Engine, decode, new_state
from processors.simulator import SimHost
from processors.validation import REASONS, Rejection
from schemas.dsse import sign_record

S = 1_000_000
T0 = 1_800_000_000 * S
CFG = ProcessorConfig(proof_window_s=10, proof_grace_s=5, agg_windows_s={"10s": 2, "1m": 10}, agg_grace_s=1)
ENGINE = Engine(CFG)
HOST = SimHost(7, seed="fuzz")
RAW_TOPICS = ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1")


def _pinned_state() -> dict[str, Any]:
    state = new_state(HOST.host_id)
    topic, _k, value, headers = HOST.message("hm.inventory.v1", HOST.inventory(T0))
    record, schema = decode(topic, value)
    ENGINE.ingest(state, record, schema, value, headers, T0)
    return state


STATE = _pinned_state()
USAGE = HOST.usage(T0 + 2 * S)
EBPF = HOST.ebpf_sched(T0 + 2 * S, procfs_busy_s=1.0, elapsed_s=1.0)
INVENTORY = HOST.inventory(T0 + 3 * S)
VALID = {"hm.usage.v1": USAGE, "hm.ebpf.v1": EBPF, "hm.inventory.v1": INVENTORY}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=3)
                          | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=8)


def outcome(topic: str, value: Any, headers: Any, now_us: int) -> str:
    """"accepted" or the one rejection code; asserts the state is untouched by a rejection."""
    state = copy.deepcopy(STATE)
    before = copy.deepcopy(state)
    try:
        record, schema = decode(topic, value)
        ENGINE.ingest(state, record, schema, value, headers, now_us)
    except Rejection as rejection:
        assert rejection.code in REASONS
        assert state == before, f"{rejection.code} changed the host state"
        return rejection.code
    return "accepted"


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


def mutate(record: dict, path: tuple, op: str, new: Any) -> dict:
    rec = copy.deepcopy(record)
    parent = rec
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = new
    elif op == "retype":
        old = parent[last]
        parent[last] = str(old) if not isinstance(old, str) else (len(old) or None)
    return rec


def signed(topic: str, record: dict) -> tuple[bytes, list]:
    # stdlib json, not orjson: it writes integers beyond 64 bits, which a hostile host can send too.
    value = json.dumps(record, separators=(",", ":")).encode()
    return value, sign_record(HOST.key, record.get("schema") if isinstance(record.get("schema"), str)
                              else topic, value)


def test_the_valid_records_are_accepted():
    for topic, record in VALID.items():
        value, headers = signed(topic, record)
        assert outcome(topic, value, headers, record["ts"]) == "accepted", topic


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(RAW_TOPICS + ("hm.proofs.v1",)), value=st.one_of(st.none(), st.binary(max_size=300)),
       headers=st.lists(st.tuples(st.sampled_from(["hm-sig", "hm-keyid", "x"]), st.binary(max_size=90)),
                        max_size=3))
def test_arbitrary_bytes_are_malformed_or_schema(topic, value, headers):
    code = outcome(topic, value, headers, T0)
    assert code in ("malformed", "schema"), code


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), topic=st.sampled_from(RAW_TOPICS), op=st.sampled_from(["delete", "replace", "retype"]),
       new=json_value)
def test_near_schema_json_maps_to_one_code(data, topic, op, new):
    record = VALID[topic]
    path = data.draw(st.sampled_from(paths(record)))
    bad = mutate(record, path, op, new)
    value, headers = signed(topic, bad)
    first = outcome(topic, value, headers, record["ts"])
    assert first == outcome(topic, value, headers, record["ts"]), "not deterministic"
    if path[0] in ("schema", "host_id", "boot_id", "seq", "ts") and op == "delete":
        assert first == "schema"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), topic=st.sampled_from(RAW_TOPICS), bit=st.integers(0, 7))
def test_a_flipped_byte_after_signing_is_never_accepted(data, topic, bit):
    record = VALID[topic]
    value, headers = signed(topic, record)
    i = data.draw(st.integers(0, len(value) - 1))
    flipped = value[:i] + bytes([value[i] ^ (1 << bit)]) + value[i + 1:]
    code = outcome(topic, flipped, headers, record["ts"])
    assert code != "accepted"
    assert code in REASONS


@settings(max_examples=200, deadline=None)
@given(topic=st.sampled_from(RAW_TOPICS), skew_s=st.integers(-3 * 86_400, 3 * 86_400))
def test_time_only_mutations_give_time_codes(topic, skew_s):
    """A correctly signed record whose ts moved is accepted or gets a time code, never a bad proof input."""
    record = dict(VALID[topic], ts=VALID[topic]["ts"] + skew_s * S)
    value, headers = signed(topic, record)
    code = outcome(topic, value, headers, VALID[topic]["ts"])
    if abs(skew_s) > CFG.clock_skew_s + 1:
        assert code in ("clock_skew", "stale", "late"), (skew_s, code)
