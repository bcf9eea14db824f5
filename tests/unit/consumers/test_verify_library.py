"""consumers.verify: signatures fail closed, identity, thresholds and chain, on proofs
built from the hm.proof.v1 fixture and signed with real Ed25519 keys."""
from __future__ import annotations

import base64
import copy
import hashlib
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from consumers.verify import ChainChecker, KeyArgError, Thresholds, parse_key, proof_id, verify_envelope
from schemas import dsse

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures/schemas/hm.proof.v1/valid/flagged-source-disagreement.json"
TEMPLATE = orjson.loads(FIXTURE.read_bytes())
HOST = TEMPLATE["host_id"]
START = 1_800_000_000_000_000
LEN_US = 10_000_000
NOW = START + 60_000_000  # a minute after the first window starts


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def pub(k: Ed25519PrivateKey) -> bytes:
    return dsse.raw_public_key(k)


def payload(seq: int = 0, prev: str | None = None, host: str = HOST, slot: int | None = None,
            **changes: object) -> dict:
    """A proof for window number ``slot`` (default: ``seq``); ``a__b=v`` sets p["a"]["b"] = v."""
    p = copy.deepcopy(TEMPLATE)
    start = START + (seq if slot is None else slot) * LEN_US
    p.update(host_id=host, seq=seq, prev_proof_hash=prev, proof_id=proof_id(host, start, LEN_US),
             window={"start_us": start, "end_us": start + LEN_US, "length_s": LEN_US / 1e6},
             issued_at_us=start + LEN_US + 2_000_000)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        obj = p
        for part in parents:
            obj = obj[part]
        obj[leaf] = value
    return p


def envelope(p: dict, k: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """(Kafka value, payload bytes) as the processors publish them."""
    data = orjson.dumps(p, option=orjson.OPT_SORT_KEYS)
    return orjson.dumps(dsse.make_envelope(k, data)), data


def test_fixture_proof_verifies(key):
    value, _ = envelope(payload(), key)
    v = verify_envelope(value, [pub(key)], now_us=NOW)
    assert v.ok, v.reasons
    assert v.key_id == dsse.key_id(pub(key)) and v.host_id == HOST and v.seq == 0


def test_proof_id_rule_agrees_with_processors():
    from processors.proofs import proof_id as processors_proof_id

    for host, start, length in [(HOST, START, LEN_US), ("h-" + "0" * 32, 0, 60_000_000), (HOST, 1, 1)]:
        assert proof_id(host, start, length) == processors_proof_id(host, start, length)
    assert TEMPLATE["proof_id"] == proof_id(HOST, TEMPLATE["window"]["start_us"],
                                            TEMPLATE["window"]["end_us"] - TEMPLATE["window"]["start_us"])


def test_fails_closed_without_keys_or_with_a_stranger_key(key):
    value, _ = envelope(payload(), key)
    assert verify_envelope(value, [], now_us=NOW).codes == ["unknown_key"]
    assert verify_envelope(value, None, now_us=NOW).codes == ["unknown_key"]
    other = Ed25519PrivateKey.generate()
    assert verify_envelope(value, [pub(other)], now_us=NOW).codes == ["unknown_key"]
    # Signed by a stranger who claims our key id: the signature does not verify.
    p = orjson.dumps(payload(), option=orjson.OPT_SORT_KEYS)
    forged = dsse.make_envelope(other, p, keyid=dsse.key_id(pub(key)))
    assert verify_envelope(orjson.dumps(forged), [pub(key)], now_us=NOW).codes == ["bad_signature"]


def test_every_single_byte_change_of_the_payload_is_caught(key):
    value, data = envelope(payload(), key)
    env = orjson.loads(value)
    for i in range(0, len(data), 37):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        env2 = dict(env, payload=base64.b64encode(bytes(tampered)).decode())
        v = verify_envelope(orjson.dumps(env2), [pub(key)], now_us=NOW)
        assert not v.ok and ("bad_signature" in v.codes or "malformed" in v.codes), (i, v.codes)


def test_malformed_envelopes(key):
    assert verify_envelope(b"not json", [pub(key)]).codes == ["malformed"]
    assert verify_envelope(b'{"payload": "%%%"}', [pub(key)]).codes == ["malformed"]
    value, _ = envelope(payload(), key)
    env = orjson.loads(value)
    env["payloadType"] = "application/json"
    assert verify_envelope(orjson.dumps(env), [pub(key)]).codes == ["payload_type"]
    env = orjson.loads(value)
    env["signatures"] = []
    assert verify_envelope(orjson.dumps(env), [pub(key)], now_us=NOW).codes == ["unknown_key"]


def test_identity_proof_id_and_kafka_key(key):
    p = payload()
    p["proof_id"] = hashlib.sha256(b"something else").hexdigest()
    v = verify_envelope(envelope(p, key)[0], [pub(key)], now_us=NOW)
    assert v.codes == ["proof_id"]
    v = verify_envelope(envelope(payload(), key)[0], [pub(key)], now_us=NOW, kafka_key=b"h-" + b"1" * 32)
    assert v.codes == ["host_mismatch"]


def test_schema_violation_is_a_reason(key):
    p = payload()
    del p["evidence"]
    assert "schema" in verify_envelope(envelope(p, key)[0], [pub(key)], now_us=NOW).codes


@pytest.mark.parametrize("change, code", [
    ({"space__storage_total_bytes": 1 << 20}, "min_storage"),
    ({"work__cpu_core_seconds_capacity": 5.0, "work__cpu_core_seconds_used": 1.0}, "min_compute"),  # 0.5 cores
    ({"work__cpu_core_seconds_used": 100.0}, "over_capacity"),
    ({"evidence__coverage": 0.5}, "insufficient_evidence"),
    ({"time__max_clock_skew_ms": 400_000.0}, "clock_skew"),
])
def test_thresholds(key, change, code):
    v = verify_envelope(envelope(payload(**change), key)[0], [pub(key)], now_us=NOW)
    assert v.codes == [code], v.reasons


def test_age_and_future(key):
    value, _ = envelope(payload(), key)
    day = 86_400_000_000
    assert verify_envelope(value, [pub(key)], now_us=START + LEN_US + day + 1).codes == ["stale"]
    assert verify_envelope(value, [pub(key)], now_us=START + LEN_US + day - 1).ok
    assert verify_envelope(value, [pub(key)], now_us=START - 600_000_000).codes == ["future"]
    loose = Thresholds(max_age_s=2 * 86_400)
    assert verify_envelope(value, [pub(key)], now_us=START + LEN_US + day + 1, thresholds=loose).ok


def chain_of(key, n: int) -> list[tuple[bytes, bytes]]:
    out, prev = [], None
    for seq in range(n):
        value, data = envelope(payload(seq, prev), key)
        out.append((value, data))
        prev = hashlib.sha256(data).hexdigest()
    return out


def test_chain_intact_and_duplicates(key):
    chain = ChainChecker()
    proofs = chain_of(key, 4)
    for value, _ in proofs:
        assert verify_envelope(value, [pub(key)], now_us=NOW, chain=chain).ok
    again = verify_envelope(proofs[2][0], [pub(key)], now_us=NOW, chain=chain)
    assert again.ok and again.duplicate
    assert chain.intact(HOST)


def test_chain_gap_prev_hash_fork_and_conflict(key):
    proofs = chain_of(key, 5)
    chain = ChainChecker()
    for value, _ in proofs[:2]:
        verify_envelope(value, [pub(key)], now_us=NOW, chain=chain)
    assert verify_envelope(proofs[3][0], [pub(key)], now_us=NOW, chain=chain).codes == ["chain_gap"]
    assert not chain.intact(HOST)
    # The proof after the gap chains from the head again.
    assert verify_envelope(proofs[4][0], [pub(key)], now_us=NOW, chain=chain).ok

    chain = ChainChecker()
    verify_envelope(proofs[0][0], [pub(key)], now_us=NOW, chain=chain)
    wrong_prev = envelope(payload(1, "ab" * 32), key)[0]
    assert verify_envelope(wrong_prev, [pub(key)], now_us=NOW, chain=chain).codes == ["chain_prev_hash"]
    # Same seq again with a different window (new proof_id): a fork.
    fork = envelope(payload(1, hashlib.sha256(proofs[0][1]).hexdigest(), slot=3), key)[0]
    assert verify_envelope(fork, [pub(key)], now_us=NOW, chain=chain).codes == ["chain_fork"]
    # Same proof_id, different payload: equivocation.
    p0 = payload(0)
    p0["work"]["cpu_core_seconds_used"] = 1.5
    assert verify_envelope(envelope(p0, key)[0], [pub(key)], now_us=NOW, chain=chain).codes == ["conflict"]


def test_genesis_must_have_no_prev(key):
    chain = ChainChecker()
    v = verify_envelope(envelope(payload(0, "cd" * 32), key)[0], [pub(key)], now_us=NOW, chain=chain)
    assert v.codes == ["chain_genesis"]


def test_forged_proof_does_not_move_the_chain(key):
    chain = ChainChecker()
    proofs = chain_of(key, 2)
    verify_envelope(proofs[0][0], [pub(key)], now_us=NOW, chain=chain)
    stranger = Ed25519PrivateKey.generate()
    forged = envelope(payload(1, hashlib.sha256(proofs[0][1]).hexdigest()), stranger)[0]
    assert verify_envelope(forged, [pub(key)], now_us=NOW, chain=chain).codes == ["unknown_key"]
    assert verify_envelope(proofs[1][0], [pub(key)], now_us=NOW, chain=chain).ok


def test_parse_key_forms(tmp_path, key):
    raw = pub(key)
    b64 = base64.b64encode(raw).decode()
    assert parse_key(b64) == [raw]
    (tmp_path / "keys.txt").write_text(f"# processors\n{b64}\n{base64.b64encode(b'x' * 32).decode()}\n")
    assert parse_key(str(tmp_path / "keys.txt")) == [raw, b"x" * 32]
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    assert parse_key(str(tmp_path / "pub.pem")) == [raw]
    from schemas.keys import SigningKey

    sk = SigningKey.load_or_create(tmp_path / "state", "processor.key")
    assert parse_key(str(sk.path)) == [sk.public_key_raw]
    with pytest.raises(KeyArgError, match="neither a base64"):
        parse_key(str(tmp_path / "missing"))
    (tmp_path / "bad.txt").write_text("not-a-key\n")
    with pytest.raises(KeyArgError, match="bad.txt:1"):
        parse_key(str(tmp_path / "bad.txt"))


def test_keys_as_base64_text_or_mapping(key):
    value, _ = envelope(payload(), key)
    b64 = base64.b64encode(pub(key)).decode()
    assert verify_envelope(value, [b64], now_us=NOW).ok
    assert verify_envelope(value, {"any-id": pub(key)}, now_us=NOW).ok
    with pytest.raises(KeyArgError, match="32 bytes"):
        verify_envelope(value, [b"short"], now_us=NOW)
    with pytest.raises(KeyArgError, match="base64"):
        verify_envelope(value, ["not base64!"], now_us=NOW)


def test_dedupe_memory_is_bounded_per_host(key):
    chain = ChainChecker(remember=2)
    proofs = chain_of(key, 4)
    for value, _ in proofs:
        assert verify_envelope(value, [pub(key)], now_us=NOW, chain=chain).ok
    assert len(chain.seen[HOST]) == 2
    assert verify_envelope(proofs[3][0], [pub(key)], now_us=NOW, chain=chain).duplicate
    # Beyond the remembered window a replay can no longer be told from a fork.
    assert verify_envelope(proofs[0][0], [pub(key)], now_us=NOW, chain=chain).codes == ["chain_fork"]
