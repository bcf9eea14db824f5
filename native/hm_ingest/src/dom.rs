//! A borrowed JSON DOM parsed with serde_json, refusing every document that Python's orjson
//! would read differently (so a verdict on the DOM is a verdict on what orjson.loads returns).
//!
//! Refused (parse returns None):
//! * anything serde_json rejects (syntax, lone surrogates, 1e400, trailing data, depth > 128);
//! * duplicate keys in one object (orjson keeps the last, we would see both);
//! * a float -0.0 (the literal `-0` is int 0 in orjson but -0.0 in serde_json; `-0.0` is refused too);
//! * a float with |x| >= 2^63 (an integer literal outside i64/u64 becomes a float in serde_json;
//!   the visitor cannot tell a literal `1e19` from `10000000000000000000000`, so all are refused).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug)]
pub enum Dom<'a> {
    Null,
    Bool(bool),
    /// Any integer that fits i64.
    I(i64),
    /// An integer in (i64::MAX, u64::MAX].
    U(u64),
    /// A float literal (finite, never -0.0, |x| < 2^63).
    F(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Dom<'a>>),
    /// Members in document order, keys unique.
    Obj(Vec<(Cow<'a, str>, Dom<'a>)>),
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;

struct V;

impl<'de> Visitor<'de> for V {
    type Value = Dom<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    #[inline]
    fn visit_unit<E>(self) -> Result<Dom<'de>, E> {
        Ok(Dom::Null)
    }
    #[inline]
    fn visit_bool<E>(self, b: bool) -> Result<Dom<'de>, E> {
        Ok(Dom::Bool(b))
    }
    #[inline]
    fn visit_i64<E>(self, i: i64) -> Result<Dom<'de>, E> {
        Ok(Dom::I(i))
    }
    #[inline]
    fn visit_u64<E>(self, u: u64) -> Result<Dom<'de>, E> {
        Ok(if u <= i64::MAX as u64 { Dom::I(u as i64) } else { Dom::U(u) })
    }
    #[inline]
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Dom<'de>, E> {
        if f == 0.0 && f.is_sign_negative() {
            return Err(E::custom("refused: -0 (orjson reads the literal -0 as int 0)"));
        }
        if !(f.abs() < TWO_63) {
            // also catches NaN/inf, which serde_json never produces
            return Err(E::custom("refused: float with |x| >= 2^63 (maybe an out-of-range integer)"));
        }
        Ok(Dom::F(f))
    }
    #[inline]
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Dom<'de>, E> {
        Ok(Dom::Str(Cow::Borrowed(s)))
    }
    #[inline]
    fn visit_str<E>(self, s: &str) -> Result<Dom<'de>, E> {
        Ok(Dom::Str(Cow::Owned(s.to_owned())))
    }
    #[inline]
    fn visit_string<E>(self, s: String) -> Result<Dom<'de>, E> {
        Ok(Dom::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Dom<'de>, A::Error> {
        let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Dom::Arr(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Dom<'de>, A::Error> {
        let mut v: Vec<(Cow<'de, str>, Dom<'de>)> = Vec::with_capacity(8);
        while let Some(k) = a.next_key::<K<'de>>()? {
            let val = a.next_value()?;
            v.push((k.0, val));
        }
        if has_duplicate_keys(&v) {
            return Err(de::Error::custom("refused: duplicate key in object"));
        }
        Ok(Dom::Obj(v))
    }
}

/// Equality of short byte strings without a libc memcmp call (keys are mostly 2..16 bytes).
#[inline(always)]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        if n > 16 {
            return a == b;
        }
        let ld = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        ld(a, 0) == ld(b, 0) && ld(a, n - 8) == ld(b, n - 8)
    } else if n >= 4 {
        let ld = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap());
        ld(a, 0) == ld(b, 0) && ld(a, n - 4) == ld(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// Length and first and last bytes: keys that differ here differ.
#[inline(always)]
fn fingerprint(k: &[u8]) -> u32 {
    match k {
        [] => 0,
        [f, .., l] => (k.len() as u32) << 16 | (*f as u32) << 8 | *l as u32,
        [f] => 1 << 16 | (*f as u32) << 8 | *f as u32,
    }
}

/// Pairwise over fingerprints for small objects (no allocation); sort for larger ones.
#[inline]
fn has_duplicate_keys(v: &[(Cow<'_, str>, Dom<'_>)]) -> bool {
    let n = v.len();
    if n < 2 {
        return false;
    }
    if n <= 32 {
        let mut fp = [0u32; 32];
        for (i, (k, _)) in v.iter().enumerate() {
            let f = fingerprint(k.as_bytes());
            for j in 0..i {
                if fp[j] == f && short_eq(v[j].0.as_bytes(), k.as_bytes()) {
                    return true;
                }
            }
            fp[i] = f;
        }
        false
    } else {
        let mut keys: Vec<&str> = v.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

struct K<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for K<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KV;
        impl<'de> Visitor<'de> for KV {
            type Value = K<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<K<'de>, E> {
                Ok(K(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<K<'de>, E> {
                Ok(K(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<K<'de>, E> {
                Ok(K(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KV)
    }
}

impl<'de> Deserialize<'de> for Dom<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(V)
    }
}

/// Parse, or None when serde_json fails or the document is one orjson could read differently.
#[inline]
pub fn parse(bytes: &[u8]) -> Option<Dom<'_>> {
    serde_json::from_slice(bytes).ok()
}
