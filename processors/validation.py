"""Every rule of the design's validation table, as pure functions.

Each check raises ``Rejection(code, check, detail)`` or returns normally. The
engine (processors.engine) calls them in this order, so a record gets the
first code that applies:

    malformed -> schema -> bad_signature / key_mismatch -> duplicate -> stale
    -> clock_skew -> late -> counter_regression -> over_capacity

``insufficient_evidence``, ``over_capacity`` (window) and ``source_disagreement``
are window-level and come from processors.proofs.

Unknown hosts: a usage or eBPF record whose host has no pinned key (no valid
inventory seen yet, or not enrolled in strict mode) cannot be verified, so it is
rejected with ``key_mismatch`` (check ``key_pinning``). The worker first waits
up to ``unknown_host_grace_s`` for the host's inventory, since the inventory and
usage topics are consumed independently.
"""
from __future__ import annotations

import base64
import binascii
import functools
from typing import Any, Iterable, Sequence

import hm_ed25519
import orjson

import schemas
from schemas.dsse import HEADER_KEYID, HEADER_SIG, host_id_for, key_id, pae

from .config import ProcessorConfig

# The design's codes, plus "late" (a valid record for a window already closed).
REASONS = (
    "malformed", "schema", "bad_signature", "key_mismatch", "duplicate", "clock_skew", "stale",
    "counter_regression", "over_capacity", "insufficient_evidence", "source_disagreement", "late",
)
TOPIC_SCHEMA = {"hm.inventory.v1": "hm.inventory.v1", "hm.usage.v1": "hm.usage.v1", "hm.ebpf.v1": "hm.ebpf.v1"}
# Cumulative counters that must not go backwards within one boot (dotted paths in hm.usage.v1).
COUNTERS = ("cpu.busy_s", "disk.read_bytes", "disk.write_bytes", "network.rx_bytes", "network.tx_bytes")
MAX_MISSING_TRACKED = 1024  # per (schema, boot): seqs skipped but still accepted if they arrive late
BOOTS_KEPT = 2


class Rejection(Exception):
    def __init__(self, code: str, check: str, detail: str):
        assert code in REASONS, code
        super().__init__(f"{code}: {detail}")
        self.code, self.check, self.detail = code, check, detail


def parse(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise Rejection("malformed", "json", "empty value (tombstone)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise Rejection("malformed", "json", f"not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise Rejection("malformed", "json", f"not a JSON object but {type(obj).__name__}")
    return obj


@functools.cache
def _have_schema(name: str) -> bool:
    return name in schemas.names()


def check_schema(obj: dict[str, Any], topic: str) -> str:
    """The record's schema must be the topic's and must validate. Returns the schema name."""
    want = TOPIC_SCHEMA.get(topic)
    got = obj.get("schema")
    if want is None or got != want:
        raise Rejection("schema", "schema_name", f"schema {got!r} on topic {topic} (expected {want!r})")
    if _have_schema(want):
        try:
            schemas.validate(want, obj)
        except schemas.SchemaError as err:
            raise Rejection("schema", "json_schema", f"{err.path}: {err.message}") from None
    else:  # the owner's schema file has not landed: at least hold the common fields
        _check_common(obj)
    return want


def _check_common(obj: dict[str, Any]) -> None:
    host = obj.get("host_id")
    if not (isinstance(host, str) and host.startswith("h-") and len(host) == 34):
        raise Rejection("schema", "json_schema", "$.host_id: missing or not h-<32 hex>")
    for name, kind in (("boot_id", str), ("seq", int), ("ts", int)):
        v = obj.get(name)
        if not isinstance(v, kind) or isinstance(v, bool):
            raise Rejection("schema", "json_schema", f"$.{name}: missing or not {kind.__name__}")
    if obj["seq"] < 0:
        raise Rejection("schema", "json_schema", "$.seq: negative")


def header(headers: Iterable[tuple[str, bytes]] | dict[str, bytes] | None, name: str) -> bytes | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v
    return None


def verify(pub_raw: bytes, schema: str, value: bytes, sig_b64: bytes) -> bool:
    """Is ``sig_b64`` the key's Ed25519 signature over PAE(schema, value)? ZIP-215 rules, the same
    as verify_many's (native/hm_ed25519: why, and what they accept)."""
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    return hm_ed25519.verify(pub_raw, pae(schema, value), sig)


def decode_key(b64: Any) -> bytes:
    try:
        raw = base64.b64decode(b64, validate=True) if isinstance(b64, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise Rejection("key_mismatch", "public_key", "public_key is not a base64 32-byte Ed25519 key")
    if not hm_ed25519.key_is_usable(raw):
        # anyone can sign for a small-order key, so it must never be pinned
        raise Rejection("key_mismatch", "public_key", "public_key is not an Ed25519 point of large order")
    return raw


# (public key, schema, value, hm-sig) -> verify()'s answer, worked out ahead (in a thread) for a batch
Verified = dict[tuple[bytes, str, bytes, bytes], bool]


def verify_many(jobs: Sequence[tuple[bytes, str, bytes, bytes]]) -> Verified:
    """verify() for each (public key, schema, value, hm-sig) as one batch check (about a third of
    the cost per signature; a failed batch is bisected to find the bad ones). The GIL is released
    while it runs, so a thread running this uses another core."""
    items = []
    for pub, schema, value, sig_b64 in jobs:
        try:
            sig = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError, TypeError):
            sig = b""  # not a signature: False, as verify() says
        items.append((pub, pae(schema, value), sig))
    return dict(zip(jobs, hm_ed25519.verify_batch(items)))


@functools.lru_cache(maxsize=65536)
def _key_facts(key_b64: str) -> tuple[bytes, bytes]:
    """(raw key, its hm-keyid as the header carries it): worked out once per key, not per record."""
    pub = base64.b64decode(key_b64)
    return pub, key_id(pub).encode()


def check_identity(obj: dict[str, Any], schema: str, value: bytes, headers: Any,
                   pinned_b64: str | None, cfg: ProcessorConfig, verified: Verified | None = None) -> str:
    """Signature and key rules. Returns the base64 key that signed the record (to pin on first sight).
    ``verified`` holds answers worked out ahead; a record it lacks is verified here."""
    host_id = obj["host_id"]
    sig = header(headers, HEADER_SIG)
    kid = header(headers, HEADER_KEYID)
    if not sig or not kid:
        raise Rejection("bad_signature", "signature", "hm-sig or hm-keyid header missing")
    if cfg.enrolled is not None:
        if host_id not in cfg.enrolled:
            raise Rejection("key_mismatch", "enrollment", "host not in the enrollment file (strict mode)")
        pinned_b64 = pinned_b64 or cfg.enrolled[host_id]
    if schema == "hm.inventory.v1":
        claimed_b64 = obj.get("public_key")
        claimed = decode_key(claimed_b64)
        if host_id_for(claimed) != host_id:
            raise Rejection("key_mismatch", "host_id", f"host_id {host_id} is not derived from the record's public_key "
                                                        f"(that key's host_id is {host_id_for(claimed)})")
        if pinned_b64 is not None and claimed_b64 != pinned_b64:
            raise Rejection("key_mismatch", "key_pinning", "public_key differs from the key pinned for this host")
        key_b64 = str(claimed_b64)
    else:
        if pinned_b64 is None:
            raise Rejection("key_mismatch", "key_pinning",
                            "no key pinned for this host_id: no valid hm.inventory.v1 seen from it yet")
        key_b64 = pinned_b64
    pub, pub_kid = _key_facts(key_b64)
    if kid != pub_kid:
        raise Rejection("key_mismatch", "key_id", f"hm-keyid {kid[:16]!r}... is not the pinned key's id")
    ok = verified.get((pub, schema, value, sig)) if verified else None
    if not (verify(pub, schema, value, sig) if ok is None else ok):
        raise Rejection("bad_signature", "signature", "Ed25519 signature does not verify over the value bytes")
    return key_b64


# --- duplicates --------------------------------------------------------------
# seqs state, per host: {schema: {boot_id: [max_seq, [missing seqs...]], ...}} (at most BOOTS_KEPT boots;
# insertion order is arrival order, the newest boot last).

def seq_status(seqs: dict[str, Any], schema: str, boot_id: str, seq: int) -> str:
    """"new" (beyond max), "fill" (a skipped seq arriving late), "duplicate", or "first" (unseen boot)."""
    boots = seqs.get(schema, {})
    entry = boots.get(boot_id)
    if entry is None:
        return "first"
    top, missing = entry
    if seq > top:
        return "new"
    if seq in missing:
        return "fill"
    return "duplicate"


def mark_seen(seqs: dict[str, Any], schema: str, boot_id: str, seq: int) -> list[list[int]]:
    """Record ``seq`` as seen; returns the seq ranges ``[first, last]`` it skipped over (gaps)."""
    boots = seqs.setdefault(schema, {})
    entry = boots.get(boot_id)
    gaps: list[list[int]] = []
    if entry is None:
        # First sight of this boot: earlier seqs may predate this processor (retention, a new
        # deployment), so they are neither gaps nor tracked; within a partition seqs arrive in order.
        entry = [seq, []]
        boots[boot_id] = entry
        while len(boots) > BOOTS_KEPT:
            boots.pop(next(iter(boots)))
        return gaps
    top, missing = entry
    if seq > top:
        if seq > top + 1:
            gaps.append([top + 1, seq - 1])
            missing.extend(range(max(top + 1, seq - MAX_MISSING_TRACKED), seq))
            del missing[:-MAX_MISSING_TRACKED]
        entry[0] = seq
    elif seq in missing:
        missing.remove(seq)
    return gaps


def check_time(ts_us: int, now_us: int, cfg: ProcessorConfig) -> None:
    age_s = (now_us - ts_us) / 1e6
    if age_s > cfg.stale_after_s:
        raise Rejection("stale", "ts", f"ts is {age_s / 3600:.1f} h old (limit {cfg.stale_after_s / 3600:g} h)")
    if abs(age_s) > cfg.clock_skew_s:
        where = "behind" if age_s > 0 else "ahead of"
        raise Rejection("clock_skew", "ts",
                        f"ts is {abs(age_s):.0f} s {where} processor time (limit {cfg.clock_skew_s:g} s)")


_PATH_PARTS: dict[str, tuple[str, ...]] = {}  # the dotted paths are constants: split each once (hot path)


def dig(obj: Any, path: str) -> Any:
    parts = _PATH_PARTS.get(path)
    if parts is None:
        parts = _PATH_PARTS[path] = tuple(path.split("."))
    for part in parts:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


# Every number the rules, the windows (processors.aggregation) and the proofs read from an
# hm.usage.v1 record, by dotted path: ``numbers`` picks them all in one walk per record, where a
# lookup per path per use (21 per record) was a quarter of a record's cost in ingest.
USAGE_NUMBERS = COUNTERS + (
    "cpu.cores", "cpu.busy_core_s", "cpu.utilisation", "memory.used_bytes", "memory.total_bytes",
    "load.psi.cpu.some_avg10", "load.psi.memory.some_avg10", "load.psi.io.some_avg10",
    "disk.read_bytes_per_s", "disk.write_bytes_per_s", "network.rx_bytes_per_s", "network.tx_bytes_per_s",
)


def _path_tree(paths: Iterable[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = path
    return tree


_USAGE_TREE = _path_tree(USAGE_NUMBERS)


def _pick(obj: dict[str, Any], tree: dict[str, Any], out: dict[str, float]) -> None:
    for name, sub in tree.items():
        v = obj.get(name)
        if sub.__class__ is str:
            if v.__class__ is float or v.__class__ is int:  # not bool, whose class is bool
                out[sub] = v
        elif v.__class__ is dict:
            _pick(v, sub, out)


def numbers(record: dict[str, Any]) -> dict[str, float]:
    """{dotted path: value} for each of USAGE_NUMBERS that the record holds as a number."""
    out: dict[str, float] = {}
    _pick(record, _USAGE_TREE, out)
    return out


def counters_of(record: dict[str, Any], nums: dict[str, float] | None = None) -> dict[str, float]:
    """The cumulative counters the record carries. ``nums``: ``numbers(record)``, when known."""
    nums = numbers(record) if nums is None else nums
    return {path: nums[path] for path in COUNTERS if path in nums}


def check_counters(baseline: dict[str, float] | None, record: dict[str, Any],
                   counters: dict[str, float] | None = None) -> None:
    """Cumulative counters must not go backwards against the previous sample of the same boot.
    ``counters``: ``counters_of(record)`` when the caller already has it."""
    if not baseline:
        return
    for path, value in (counters if counters is not None else counters_of(record)).items():
        before = baseline.get(path)
        if before is not None and value < before:
            raise Rejection("counter_regression", path,
                            f"{path} went from {before:g} to {value:g} within boot {record.get('boot_id')}")


def check_capacity(record: dict[str, Any], inventory: dict[str, Any] | None, cfg: ProcessorConfig,
                   nums: dict[str, float] | None = None) -> None:
    """Usage must fit the hardware: busy core-seconds <= cores x elapsed x factor, memory used <= total."""
    nums = numbers(record) if nums is None else nums
    inv = inventory or {}
    cores = inv.get("cores") or nums.get("cpu.cores")
    busy = nums.get("cpu.busy_core_s")
    elapsed = record.get("elapsed_s")
    if isinstance(busy, (int, float)) and isinstance(cores, (int, float)) and isinstance(elapsed, (int, float)):
        limit = cores * elapsed * cfg.over_capacity_factor
        if busy > limit:
            raise Rejection("over_capacity", "cpu.busy_core_s",
                            f"busy {busy:.3f} core-s > {cores} cores x {elapsed:.3f} s x {cfg.over_capacity_factor:g}"
                            f" = {limit:.3f}")
    used = nums.get("memory.used_bytes")
    if used is not None:
        totals = [t for t in (nums.get("memory.total_bytes"), inv.get("memory_total_bytes"))
                  if isinstance(t, (int, float))]
        for total in totals:
            if used > total:
                raise Rejection("over_capacity", "memory.used_bytes",
                                f"memory used {used:.0f} B > total {total:.0f} B")
