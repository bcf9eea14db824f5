//! Batch Ed25519 verification for the processors (processors/validation.py).
//!
//! Why our own binding: libsodium (PyNaCl) and OpenSSL (cryptography) verify one signature at a
//! time, 55-105 us each on the reference machine, and no maintained PyPI package exposes batch
//! verification. ed25519-zebra checks a batch for about a third of that per signature, and this
//! module runs it with the GIL released, so a worker's verify thread uses another core.
//!
//! Rules: ZIP-215 (https://zips.z.cash/zip-0215), the same for `verify` and `verify_batch`.
//! Every signature an honest RFC 8032 signer makes passes; what ZIP-215 accepts beyond libsodium
//! (non-canonical point encodings, small-order R) can only be produced by the key's holder, and
//! `key_is_usable` refuses small-order public keys, which anyone could sign for.
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use getrandom::SysRng;
use rand_core::UnwrapErr;

/// Below this many signatures a failed batch is settled one signature at a time.
const SINGLE_BELOW: usize = 8;

pub struct Item<'a> {
    pub key: [u8; 32],
    pub msg: &'a [u8],
    pub sig: Option<Signature>,
}

fn verify_one(item: &Item) -> bool {
    let Some(sig) = item.sig else { return false };
    VerificationKey::try_from(item.key).and_then(|vk| vk.verify(&sig, item.msg)).is_ok()
}

/// Fills `out` for `items`: one batch check; if it fails, each half again (bisection), so k bad
/// signatures among n cost about 2k log2(n/k) smaller batches instead of n single checks.
pub fn settle(items: &[Item], out: &mut [bool]) {
    if items.len() < SINGLE_BELOW {
        for (item, ok) in items.iter().zip(out.iter_mut()) {
            *ok = verify_one(item);
        }
        return;
    }
    let mut verifier = batch::Verifier::new();
    let mut malformed = false;
    for item in items {
        match item.sig {
            Some(sig) => verifier.queue((VerificationKeyBytes::from(item.key), sig, item.msg)),
            None => malformed = true,
        }
    }
    // UnwrapErr: the batch weights come from the OS; getrandom panics only if the OS cannot give any
    if !malformed && verifier.verify(UnwrapErr(SysRng)).is_ok() {
        out.fill(true);
        return;
    }
    let mid = items.len() / 2;
    let (left, right) = out.split_at_mut(mid);
    settle(&items[..mid], left);
    settle(&items[mid..], right);
}

pub fn item<'a>(key: &[u8], msg: &'a [u8], sig: &[u8]) -> Option<Item<'a>> {
    let key: [u8; 32] = key.try_into().ok()?;
    let sig = <[u8; 64]>::try_from(sig).ok().map(Signature::from);
    Some(Item { key, msg, sig })
}

/// verify_batch(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]
///
/// One answer per (public key 32 B, message, signature 64 B), in order. A key or signature of
/// the wrong length is False, never an exception.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn verify_batch<'py>(
    py: Python<'py>,
    items: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)>,
) -> Vec<bool> {
    // borrowed, not copied: the list holds the bytes objects for the whole call
    let mut parsed = Vec::with_capacity(items.len());
    let mut slots = Vec::with_capacity(items.len());
    for (i, (key, msg, sig)) in items.iter().enumerate() {
        if let Some(it) = item(key.as_bytes(), msg.as_bytes(), sig.as_bytes()) {
            parsed.push(it);
            slots.push(i);
        }
    }
    let n = items.len();
    py.allow_threads(move || {
        let mut out = vec![false; n];
        let mut answers = vec![false; parsed.len()];
        settle(&parsed, &mut answers);
        for (slot, ok) in slots.into_iter().zip(answers) {
            out[slot] = ok;
        }
        out
    })
}

/// verify(public_key, message, signature) -> bool, by the same rules as verify_batch.
#[pyfunction]
fn verify(py: Python<'_>, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match item(key, msg, sig) {
        Some(it) => py.allow_threads(|| verify_one(&it)),
        None => false,
    }
}

/// key_is_usable(public_key) -> bool: 32 bytes that decode to a curve point of large order.
/// Signatures under a small-order key can be forged by anyone under ZIP-215, so such a key must
/// never be pinned.
#[pyfunction]
fn key_is_usable(key: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(key) else { return false };
    match CompressedEdwardsY(bytes).decompress() {
        Some(point) => !point.is_small_order(),
        None => false,
    }
}

#[pymodule]
fn hm_ed25519(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_batch, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(key_is_usable, m)?)?;
    Ok(())
}
