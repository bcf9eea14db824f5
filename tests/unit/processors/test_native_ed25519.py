"""native/hm_ed25519: batch Ed25519 checks agree with libsodium on every signature an honest
signer makes, and find exactly the bad ones in a batch (the bisection after a failed batch)."""
import os

import hm_ed25519
import nacl.signing
import pytest
from hypothesis import given, settings, strategies as st

from processors import validation as v

KEYS = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(16)]

# Encodings of the eight small-order points of edwards25519 (RFC 8032 test vectors' torsion
# subgroup, as listed in "Taming the many EdDSAs", Chalkias et al. 2020, table 5).
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
)]


def signed(i: int, msg: bytes) -> tuple[bytes, bytes, bytes]:
    key = KEYS[i % len(KEYS)]
    return bytes(key.verify_key), msg, key.sign(msg).signature


def libsodium_says(pub: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(pub).verify(msg, sig)
        return True
    except Exception:  # noqa: BLE001 - any refusal is "no"
        return False


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 70), bad=st.sets(st.integers(0, 69), max_size=12),
       how=st.sampled_from(["message", "signature", "key"]))
def test_batch_finds_exactly_the_bad_signatures(n: int, bad: set[int], how: str) -> None:
    items = [signed(i, b"record %d " % i + os.urandom(i % 7)) for i in range(n)]
    for i in sorted(bad):
        if i >= n:
            continue
        pub, msg, sig = items[i]
        if how == "message":
            msg += b"!"
        elif how == "signature":
            sig = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
        else:
            pub = bytes(KEYS[(i + 1) % len(KEYS)].verify_key)
        items[i] = (pub, msg, sig)
    answers = hm_ed25519.verify_batch(items)
    assert answers == [libsodium_says(*it) for it in items]
    assert answers == [i not in bad for i in range(n)]
    assert answers == [hm_ed25519.verify(*it) for it in items]


def test_wrong_lengths_are_false_not_errors() -> None:
    pub, msg, sig = signed(0, b"m")
    items = [(pub, msg, sig), (pub[:31], msg, sig), (pub, msg, sig[:63]), (pub, msg, b""), (b"", msg, sig)]
    assert hm_ed25519.verify_batch(items) == [True, False, False, False, False]
    assert [hm_ed25519.verify(*it) for it in items] == [True, False, False, False, False]
    with pytest.raises(TypeError):
        hm_ed25519.verify_batch([("not bytes", msg, sig)])


def test_small_order_keys_are_never_pinned() -> None:
    """Under ZIP-215 anyone can sign for a small-order key: key_is_usable refuses all eight, and
    an inventory carrying one is refused with key_mismatch."""
    import base64

    assert not any(hm_ed25519.key_is_usable(p) for p in SMALL_ORDER)
    assert all(hm_ed25519.key_is_usable(bytes(k.verify_key)) for k in KEYS)
    assert not hm_ed25519.key_is_usable(b"\x02" + bytes(31))  # not a point's encoding (y=2)
    assert not hm_ed25519.key_is_usable(b"short")
    for p in SMALL_ORDER:
        with pytest.raises(v.Rejection) as e:
            v.decode_key(base64.b64encode(p).decode())
        assert (e.value.code, e.value.check) == ("key_mismatch", "public_key")
