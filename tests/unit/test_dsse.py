"""Record signatures and DSSE envelopes, checked against independent implementations:
PyNaCl (libsodium) for the raw Ed25519 signatures, securesystemslib for DSSE envelopes.
"""
from __future__ import annotations

import base64
import copy
import re

import nacl.exceptions
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from schemas import dsse

SCHEMA = "hm.usage.v1"
VALUE = b'{"schema":"hm.usage.v1","host_id":"h-0123456789abcdef0123456789abcdef","seq":7}'


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def pub(key: Ed25519PrivateKey) -> bytes:
    return dsse.raw_public_key(key)


def test_pae_matches_the_dsse_spec_vector() -> None:
    # From the DSSE protocol spec (secure-systems-lab/dsse, protocol.md).
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("t\u00e9", b"\xff") == b"DSSEv1 3 t\xc3\xa9 1 \xff"


def test_identity_is_derived_from_the_public_key(pub: bytes) -> None:
    kid = dsse.key_id(pub)
    assert re.fullmatch(r"[0-9a-f]{64}", kid)
    assert dsse.host_id_for(pub) == "h-" + kid[:32]
    assert re.fullmatch(r"h-[0-9a-f]{32}", dsse.host_id_for(pub))
    other = dsse.raw_public_key(Ed25519PrivateKey.generate())
    assert dsse.host_id_for(other) != dsse.host_id_for(pub)


def test_sign_verify_round_trip(key: Ed25519PrivateKey, pub: bytes) -> None:
    headers = dict(dsse.sign_record(key, SCHEMA, VALUE))
    assert set(headers) == {dsse.HEADER_KEYID, dsse.HEADER_SIG}
    assert headers[dsse.HEADER_KEYID] == dsse.key_id(pub).encode()
    assert dsse.verify_record(pub, SCHEMA, VALUE, headers[dsse.HEADER_SIG])
    assert dsse.verify_record(pub, SCHEMA, VALUE, headers[dsse.HEADER_SIG].decode())  # str too


def test_record_signature_verifies_with_pynacl(key: Ed25519PrivateKey, pub: bytes) -> None:
    sig = base64.b64decode(dict(dsse.sign_record(key, SCHEMA, VALUE))[dsse.HEADER_SIG])
    # Built independently of schemas.dsse.pae: what any DSSE verifier would sign over.
    message = b"DSSEv1 %d %s %d %s" % (len(SCHEMA), SCHEMA.encode(), len(VALUE), VALUE)
    assert nacl.signing.VerifyKey(pub).verify(message, sig) == message
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(pub).verify(VALUE, sig)  # not a signature over the bare value


def test_pynacl_signature_verifies_with_ours() -> None:
    signing = nacl.signing.SigningKey.generate()
    sig = signing.sign(dsse.pae(SCHEMA, VALUE)).signature
    assert dsse.verify_record(bytes(signing.verify_key), SCHEMA, VALUE, base64.b64encode(sig))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def test_any_single_byte_tamper_fails(key: Ed25519PrivateKey, pub: bytes) -> None:
    sig_b64 = dict(dsse.sign_record(key, SCHEMA, VALUE))[dsse.HEADER_SIG]
    sig = base64.b64decode(sig_b64)
    for i in range(len(VALUE)):
        assert not dsse.verify_record(pub, SCHEMA, flip(VALUE, i), sig_b64), f"value byte {i}"
    for i in range(len(sig)):
        assert not dsse.verify_record(pub, SCHEMA, VALUE, base64.b64encode(flip(sig, i))), f"sig byte {i}"
    assert not dsse.verify_record(pub, "hm.ebpf.v1", VALUE, sig_b64)  # same bytes, other record type
    assert not dsse.verify_record(flip(pub, 0), SCHEMA, VALUE, sig_b64)


def test_malformed_signatures_fail_closed(pub: bytes) -> None:
    for bad in (b"", b"not base64!", base64.b64encode(b"short"), "\u00e9"):
        assert not dsse.verify_record(pub, SCHEMA, VALUE, bad)


def test_envelope_verifies_with_securesystemslib(key: Ed25519PrivateKey, pub: bytes) -> None:
    payload = b'{"proof_id":"abc","seq":0}'
    envelope = dsse.make_envelope(key, payload)
    assert envelope["payloadType"] == dsse.PROOF_PAYLOAD_TYPE
    kid = dsse.key_id(pub)
    sslib_key = SSlibKey.from_crypto(key.public_key(), keyid=kid)

    # from_dict rewrites the signatures in place, hence the copies.
    accepted = Envelope.from_dict(copy.deepcopy(envelope)).verify([sslib_key], 1)
    assert list(accepted) == [kid]

    tampered = copy.deepcopy(envelope)
    tampered["payload"] = base64.b64encode(flip(payload, 3)).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([sslib_key], 1)

    stranger = SSlibKey.from_crypto(Ed25519PrivateKey.generate().public_key(), keyid=kid)
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(envelope)).verify([stranger], 1)


def test_securesystemslib_envelope_verifies_with_ours() -> None:
    private = Ed25519PrivateKey.generate()
    pub = dsse.raw_public_key(private)
    signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid=dsse.key_id(pub)))
    envelope = Envelope(b'{"n":1}', dsse.PROOF_PAYLOAD_TYPE, {})
    envelope.sign(signer)
    as_dict = envelope.to_dict()
    assert dsse.verify_envelope_signatures(as_dict, {dsse.key_id(pub): pub}) == [dsse.key_id(pub)]


def test_our_envelope_verification(key: Ed25519PrivateKey, pub: bytes) -> None:
    kid = dsse.key_id(pub)
    payload = b'{"proof_id":"abc"}'
    envelope = dsse.make_envelope(key, payload)
    assert dsse.verify_envelope_signatures(envelope, {kid: pub}) == [kid]
    assert dsse.verify_envelope_signatures(envelope, {}) == []  # unknown key id does not count
    other = dsse.raw_public_key(Ed25519PrivateKey.generate())
    assert dsse.verify_envelope_signatures(envelope, {kid: other}) == []

    tampered = dict(envelope, payload=base64.b64encode(flip(payload, 0)).decode())
    assert dsse.verify_envelope_signatures(tampered, {kid: pub}) == []
    retyped = dict(envelope, payloadType="application/json")
    assert dsse.verify_envelope_signatures(retyped, {kid: pub}) == []
    for broken in ({}, {"payloadType": 1}, dict(envelope, payload="!!"), dict(envelope, signatures="x"),
                   dict(envelope, signatures=[None, {"keyid": kid, "sig": "%%"}])):
        assert dsse.verify_envelope_signatures(broken, {kid: pub}) == []
