"""The reference validator for resource proofs (hm.proofs.v1), importable by any Python validator.

    from consumers.verify import ChainChecker, Thresholds, verify_envelope

    chain = ChainChecker()
    verdict = verify_envelope(kafka_value, [processor_public_key_raw], chain=chain)
    if not verdict.ok:
        print(verdict.reasons)            # [Reason(code="bad_signature", detail="...")]

Checks, in order (every failed check adds a Reason; ``ok`` is True only with none):

* **envelope** (``malformed``, ``payload_type``): a DSSE envelope whose payload is a JSON object.
* **signature** (``unknown_key``, ``bad_signature``): fails closed. At least one signature
  must verify with one of the given processor keys; a signature by any other key counts
  for nothing, and with no keys at all nothing verifies.
* **schema** (``schema``): the payload matches hm.proof.v1 when that schema is installed.
* **identity** (``proof_id``, ``host_mismatch``): ``proof_id`` is recomputed from
  (host_id, window start, window length) and the Kafka key, when given, is the host_id.
* **thresholds** (``min_storage``, ``min_compute``, ``over_capacity``, ``insufficient_evidence``,
  ``clock_skew``, ``stale``, ``future``): configurable in ``Thresholds``.
* **chain** (``chain_genesis``, ``chain_gap``, ``chain_prev_hash``, ``chain_fork``, ``conflict``):
  per host, ``seq`` advances by one and ``prev_proof_hash`` is the sha256 of the previous
  proof's payload bytes. Only proofs whose signature verified reach the chain, so a
  forgery cannot move a host's head. A proof seen again (same proof_id, same payload) is a
  duplicate of at-least-once delivery: ``duplicate`` is set and the chain is not moved.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from hmconfig.errors import HmtelError
from schemas import dsse

PROOF_SCHEMA = "hm.proof.v1"
GIB = 1 << 30


class KeyArgError(HmtelError):
    """A --key value is neither a base64 Ed25519 public key nor a readable key file."""

    retriable = False


def proof_id(host_id: str, start_us: int, length_us: int) -> str:
    """The design's rule: sha256 over (host_id, window start, window length), hex."""
    return hashlib.sha256(f"{host_id}:{start_us}:{length_us}".encode()).hexdigest()


@dataclass(frozen=True)
class Thresholds:
    """What a validator demands of a proof beyond a good signature (HyperMesh validator knobs)."""

    min_storage_bytes: int = 1 * GIB        # PoSpace: storage offered across all types
    min_compute_cores: float = 1.0          # PoWork: CPU capacity = core-seconds capacity / window length
    max_clock_skew_ms: float = 300_000.0    # PoTime: the worst host clock skew seen in the window
    max_age_s: float = 86_400.0             # a proof whose window ended longer ago is stale
    over_capacity_factor: float = 1.05      # work claimed may exceed capacity by this factor
    min_coverage: float = 0.8               # samples / expected samples in the window

    @classmethod
    def from_settings(cls, settings: Any) -> "Thresholds":
        """The verify_* settings (HMTEL_VERIFY_*); the rest keep their defaults."""
        return cls(min_storage_bytes=settings.verify_min_storage_bytes,
                   min_compute_cores=settings.verify_min_compute_cores,
                   max_clock_skew_ms=settings.verify_max_clock_skew_ms,
                   max_age_s=settings.verify_max_age_s)


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str


@dataclass
class Verdict:
    reasons: list[Reason] = field(default_factory=list)
    proof_id: str | None = None
    host_id: str | None = None
    seq: int | None = None
    key_id: str | None = None          # the processor key whose signature verified
    payload: dict[str, Any] | None = None
    payload_sha256: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def add(self, code: str, detail: str) -> None:
        self.reasons.append(Reason(code, detail))

    def to_json(self) -> dict[str, Any]:
        p = self.payload or {}
        window: dict[str, Any] = p["window"] if isinstance(p.get("window"), dict) else {}
        return {"ok": self.ok, "host_id": self.host_id, "seq": self.seq, "proof_id": self.proof_id,
                "window_start_us": window.get("start_us"), "window_end_us": window.get("end_us"),
                "key_id": self.key_id, "duplicate": self.duplicate,
                "reasons": [{"code": r.code, "detail": r.detail} for r in self.reasons]}


@dataclass(frozen=True)
class _Head:
    seq: int
    proof_id: str
    payload_sha256: str


class ChainChecker:
    """Per-host chain state across proofs, fed in Kafka order (one host is one partition).

    Dedupe remembers the last ``remember`` proof_ids per host (redeliveries come soon after
    the original), so memory stays bounded by hosts x remember however long it runs; an
    older proof replayed beyond that is reported as ``chain_fork``.
    """

    def __init__(self, remember: int = 1024) -> None:
        self.remember = remember
        self.heads: dict[str, _Head] = {}
        self.seen: dict[str, OrderedDict[str, str]] = {}  # host_id -> proof_id -> payload sha256
        self.breaks: dict[str, list[str]] = {}  # host_id -> chain reason codes of its latest break

    def check(self, verdict: Verdict) -> None:
        """Add chain reasons to ``verdict`` (signature already verified) and move the host's head."""
        p, pid, digest = verdict.payload or {}, verdict.proof_id, verdict.payload_sha256
        host, seq, prev = verdict.host_id, verdict.seq, p.get("prev_proof_hash")
        if not (isinstance(host, str) and isinstance(seq, int) and pid and digest):
            return
        seen = self.seen.setdefault(host, OrderedDict())
        known = seen.get(pid)
        if known is not None:
            if known == digest:
                verdict.duplicate = True
            else:
                verdict.add("conflict", f"proof_id {pid[:16]}... was already seen with a different payload")
            return
        head = self.heads.get(host)
        advance = True
        if head is None:
            if seq == 0 and prev is not None:
                verdict.add("chain_genesis", "seq 0 must have prev_proof_hash null")
        elif seq == head.seq + 1:
            if prev != head.payload_sha256:
                verdict.add("chain_prev_hash", f"prev_proof_hash {str(prev)[:16]}... is not the sha256 of "
                                               f"proof seq {head.seq} ({head.payload_sha256[:16]}...)")
        elif seq <= head.seq:
            verdict.add("chain_fork", f"seq {seq} repeats or goes back (head is seq {head.seq}) with a new proof_id")
            advance = False
        else:
            verdict.add("chain_gap", f"seq jumps from {head.seq} to {seq}: "
                                     f"{seq - head.seq - 1} proof(s) missing")
        seen[pid] = digest
        if len(seen) > self.remember:
            seen.popitem(last=False)
        codes = [r.code for r in verdict.reasons if r.code.startswith("chain_")]
        if codes:
            self.breaks[host] = codes
        if advance:  # one break is reported once; the proofs after it chain from here
            self.heads[host] = _Head(seq, pid, digest)

    def intact(self, host_id: str) -> bool:
        """True while no chain break has been seen for the host."""
        return host_id not in self.breaks


KeysArg = Mapping[str, bytes] | Iterable[bytes | str]


def normalize_keys(keys: KeysArg | None) -> dict[str, bytes]:
    """key id -> raw 32-byte public key, from a mapping or from raw / base64 keys."""
    if keys is None:
        return {}
    if isinstance(keys, Mapping):
        return {dsse.key_id(bytes(v)): bytes(v) for v in keys.values()}
    out = {}
    for k in keys:
        try:
            raw = base64.b64decode(k, validate=True) if isinstance(k, str) else bytes(k)
        except (binascii.Error, ValueError):
            raise KeyArgError("a processor key given as text must be standard base64") from None
        if len(raw) != 32:
            raise KeyArgError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
        out[dsse.key_id(raw)] = raw
    return out


def parse_key(value: str) -> list[bytes]:
    """Raw public keys from a --key value: standard base64 of the raw key, or a file holding
    base64 keys (one a line), a PEM public key, or a PEM Ed25519 private key (its public half)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
        if len(raw) == 32:
            return [raw]
    except (binascii.Error, ValueError):
        pass
    path = Path(value)
    try:
        text = path.read_bytes()
    except OSError as err:
        raise KeyArgError(f"--key {value!r} is neither a base64 Ed25519 public key nor a readable file "
                        f"({err.strerror})") from None
    if b"-----BEGIN" in text:
        try:
            key: Any = (load_pem_private_key(text, password=None) if b"PRIVATE KEY" in text
                        else load_pem_public_key(text))
        except (ValueError, TypeError) as err:
            raise KeyArgError(f"{path}: not a readable PEM key ({type(err).__name__})") from None
        if not isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
            raise KeyArgError(f"{path}: not an Ed25519 key")
        return [dsse.raw_public_key(key)]
    keys = []
    for n, line in enumerate(text.decode(errors="replace").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise KeyArgError(f"{path}:{n}: expected the standard base64 of a 32-byte Ed25519 public key")
        keys.append(raw)
    if not keys:
        raise KeyArgError(f"{path}: no key in the file")
    return keys


def _verify_signatures(env: dict[str, Any], payload: bytes, keys: dict[str, bytes], v: Verdict) -> None:
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        v.add("unknown_key", "the envelope carries no signature")
        return
    if not keys:
        v.add("unknown_key", "no processor public key given to verify against")
        return
    message = dsse.pae(env["payloadType"], payload)
    tried_known = False
    for entry in sigs:
        if not isinstance(entry, dict):
            continue
        try:
            sig = base64.b64decode(entry.get("sig", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            continue
        kid = entry.get("keyid")
        # keyid is only a hint in DSSE: try the named key first, then every other given key.
        order = ([kid] if kid in keys else []) + [k for k in keys if k != kid]
        tried_known = tried_known or kid in keys
        for k in order:
            try:
                Ed25519PublicKey.from_public_bytes(keys[k]).verify(sig, message)
            except (InvalidSignature, ValueError):
                continue
            v.key_id = k
            return
    if tried_known:
        v.add("bad_signature", "the signature does not verify over this payload with the processor key")
    else:
        named = ", ".join(str(e.get("keyid"))[:16] for e in sigs if isinstance(e, dict))
        v.add("unknown_key", f"signed by key(s) {named or '?'}..., none of which is a given processor key "
                             f"or verifies with one")


def _num(obj: Any, *path: str) -> float | None:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj if isinstance(obj, (int, float)) and not isinstance(obj, bool) else None


def _check_identity(p: dict[str, Any], v: Verdict, kafka_key: bytes | None) -> None:
    start, end = _num(p, "window", "start_us"), _num(p, "window", "end_us")
    if not isinstance(v.host_id, str) or start is None or end is None:
        v.add("proof_id", "cannot recompute proof_id: host_id or window missing")
    else:
        expected = proof_id(v.host_id, int(start), int(end - start))
        if v.proof_id != expected:
            v.add("proof_id", f"proof_id {str(v.proof_id)[:16]}... is not sha256(host_id, window) = {expected[:16]}...")
        length_s = _num(p, "window", "length_s")
        if length_s is not None and round(length_s * 1e6) != end - start:
            v.add("proof_id", f"window.length_s {length_s} disagrees with end_us - start_us")
    if kafka_key is not None and kafka_key.decode(errors="replace") != v.host_id:
        v.add("host_mismatch", f"Kafka key {kafka_key[:40]!r} is not the proof's host_id {v.host_id}")


def _check_thresholds(p: dict[str, Any], t: Thresholds, now_us: int, v: Verdict) -> None:
    storage = _num(p, "space", "storage_total_bytes") or 0
    if storage < t.min_storage_bytes:
        v.add("min_storage", f"storage {storage / GIB:.2f} GiB < minimum {t.min_storage_bytes / GIB:.2f} GiB")
    length_s = _num(p, "window", "length_s") or 0
    capacity = _num(p, "work", "cpu_core_seconds_capacity") or 0
    used = _num(p, "work", "cpu_core_seconds_used") or 0
    cores = capacity / length_s if length_s else 0
    if cores < t.min_compute_cores:
        v.add("min_compute", f"compute {cores:g} cores < minimum {t.min_compute_cores:g}")
    if capacity and used > capacity * t.over_capacity_factor:
        v.add("over_capacity", f"claimed {used:.3f} core-s > capacity {capacity:.3f} x {t.over_capacity_factor:g}")
    coverage = _num(p, "evidence", "coverage")
    if coverage is None or coverage < t.min_coverage:
        v.add("insufficient_evidence", f"coverage {coverage} < {t.min_coverage:g}")
    skew = _num(p, "time", "max_clock_skew_ms")
    if skew is None or skew > t.max_clock_skew_ms:
        v.add("clock_skew", f"max clock skew {skew} ms > {t.max_clock_skew_ms:g} ms")
    end = _num(p, "window", "end_us")
    if end is not None:
        age_s = (now_us - end) / 1e6
        if age_s > t.max_age_s:
            v.add("stale", f"window ended {age_s / 3600:.1f} h ago > {t.max_age_s / 3600:g} h")
        elif -age_s * 1000 > t.max_clock_skew_ms:
            v.add("future", f"window ends {-age_s:.0f} s in the future")


def _check_schema(p: dict[str, Any], v: Verdict) -> None:
    import schemas

    if PROOF_SCHEMA not in schemas.names():
        return
    try:
        schemas.validate(PROOF_SCHEMA, p)
    except schemas.SchemaError as err:
        v.add("schema", f"{err.path}: {err.message}")


def verify_envelope(data: bytes, keys: KeysArg | None, *, thresholds: Thresholds | None = None,
                    chain: ChainChecker | None = None, now_us: int | None = None,
                    kafka_key: bytes | None = None) -> Verdict:
    """The verdict on one hm.proofs.v1 value (the JSON bytes of a DSSE envelope).

    ``keys``: the processor public keys (raw 32 bytes or standard base64, or a mapping
    key id -> raw). ``chain``: keep one ChainChecker across a stream to check continuity and
    dedupe; without it the chain is not checked. ``now_us`` defaults to the current time.
    """
    v = Verdict()
    key_map = normalize_keys(keys)
    try:
        env = orjson.loads(data)
        if not isinstance(env, dict) or not isinstance(env.get("payload"), str):
            raise ValueError("not a DSSE envelope (no payload)")
        payload = base64.b64decode(env["payload"], validate=True)
    except (orjson.JSONDecodeError, ValueError, binascii.Error) as err:
        v.add("malformed", f"not a DSSE envelope: {str(err)[:200]}")
        return v
    if env.get("payloadType") != dsse.PROOF_PAYLOAD_TYPE:
        v.add("payload_type", f"payloadType {str(env.get('payloadType'))[:80]!r} is not {dsse.PROOF_PAYLOAD_TYPE}")
        return v
    _verify_signatures(env, payload, key_map, v)
    try:
        p = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        v.add("malformed", f"payload is not JSON: {str(err)[:200]}")
        return v
    if not isinstance(p, dict):
        v.add("malformed", "payload is not a JSON object")
        return v
    v.payload, v.payload_sha256 = p, hashlib.sha256(payload).hexdigest()
    v.proof_id = p.get("proof_id") if isinstance(p.get("proof_id"), str) else None
    v.host_id = p.get("host_id") if isinstance(p.get("host_id"), str) else None
    v.seq = p.get("seq") if isinstance(p.get("seq"), int) and not isinstance(p.get("seq"), bool) else None
    _check_schema(p, v)
    _check_identity(p, v, kafka_key)
    _check_thresholds(p, thresholds or Thresholds(), now_us if now_us is not None else time.time_ns() // 1000, v)
    if chain is not None and v.key_id is not None and "proof_id" not in v.codes:
        chain.check(v)
    return v
