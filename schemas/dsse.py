"""Signing on the wire: host identity, record signatures and DSSE envelopes.

* **Host identity.** ``key_id`` is the hex SHA-256 of the raw 32-byte Ed25519
  public key; ``host_id`` is ``"h-"`` plus its first 32 hex digits, so a host
  cannot claim another host's id without its key.
* **Raw records** are signed over their exact value bytes (no canonical JSON):
  ``sig = Ed25519(PAE(schema, value))``, carried in the Kafka headers
  ``hm-keyid`` (the key id, ASCII) and ``hm-sig`` (standard base64, ASCII).
* **Proofs** are DSSE envelopes (https://github.com/secure-systems-lab/dsse):
  ``{"payloadType", "payload": b64, "signatures": [{"keyid", "sig": b64}]}``;
  any DSSE implementation verifies them.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER_KEYID = "hm-keyid"
HEADER_SIG = "hm-sig"
PROOF_PAYLOAD_TYPE = "application/vnd.hypermesh.resource-proof.v1+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def raw_public_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()


def host_id_for(public_key_raw: bytes) -> str:
    return "h-" + key_id(public_key_raw)[:32]


def sign_record(private_key: Ed25519PrivateKey, schema: str, value: bytes,
                keyid: str | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the signature of ``value`` as record type ``schema``."""
    sig = private_key.sign(pae(schema, value))
    kid = keyid or key_id(raw_public_key(private_key))
    return [(HEADER_KEYID, kid.encode()), (HEADER_SIG, base64.b64encode(sig))]


def verify_record(public_key_raw: bytes, schema: str, value: bytes, sig_b64: bytes | str) -> bool:
    """True when ``sig_b64`` is ``public_key_raw``'s signature over PAE(schema, value)."""
    try:
        sig = base64.b64decode(sig_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(sig, pae(schema, value))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def headers_dict(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> dict[str, bytes]:
    return {k: v for k, v in (headers or ())}


def make_envelope(private_key: Ed25519PrivateKey, payload: bytes, payload_type: str = PROOF_PAYLOAD_TYPE,
                  keyid: str | None = None) -> dict[str, Any]:
    sig = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid or key_id(raw_public_key(private_key)),
                        "sig": base64.b64encode(sig).decode()}],
    }


def envelope_bytes(envelope: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope)


def verify_envelope_signatures(envelope: dict[str, Any], keys: dict[str, bytes]) -> list[str]:
    """Key ids (from ``keys``: key id -> raw public key) whose signature on ``envelope`` verifies.

    Fails closed: unknown key ids and malformed fields simply do not count.
    """
    try:
        payload_type = envelope["payloadType"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        sigs = envelope["signatures"]
    except (KeyError, TypeError, ValueError):
        return []
    good: list[str] = []
    for entry in sigs if isinstance(sigs, list) else ():
        if not isinstance(entry, dict):
            continue
        kid = entry.get("keyid")
        if not isinstance(kid, str) or kid not in keys:
            continue
        pub = keys[kid]
        try:
            Ed25519PublicKey.from_public_bytes(pub).verify(
                base64.b64decode(entry.get("sig", ""), validate=True), pae(payload_type, payload))
            good.append(kid)
        except (InvalidSignature, ValueError, TypeError):
            continue
    return good
