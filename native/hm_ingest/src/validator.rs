//! A compiled validator for a subset of JSON Schema draft-07, with the semantics of the
//! `jsonschema` crate 0.61 (draft-07, formats asserted) for the keywords it implements.
//! Compiling a schema that uses any other keyword fails, so it is never silently permissive.

use crate::dom::{short_eq, Dom};
use num_cmp::NumCmp;
use regex::Regex;
use serde_json::Value;
use std::cmp::Ordering;

/// Keywords with no effect on validity (annotations). `$id` is ignored because `$ref` is refused,
/// so no reference can ever resolve against it.
const ANNOTATIONS: &[&str] = &[
    "$schema", "$id", "$comment", "title", "description", "default", "examples", "readOnly", "writeOnly",
];

/// Keywords this validator implements.
pub const IMPLEMENTED: &[&str] = &[
    "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "minLength", "pattern", "items",
    "uniqueItems", "properties", "required", "additionalProperties",
];

// Instance type bits. An integer-valued number (incl. a float with zero fraction) is INT; a
// number with a fraction is FRAC. "integer" accepts INT; "number" accepts INT|FRAC.
const T_NULL: u8 = 1;
const T_BOOL: u8 = 2;
const T_INT: u8 = 4;
const T_FRAC: u8 = 8;
const T_STR: u8 = 16;
const T_ARR: u8 = 32;
const T_OBJ: u8 = 64;
const T_ANY: u8 = 0x7f;

#[derive(Clone, Copy, Debug)]
enum Num {
    I(i64),
    U(u64),
    F(f64),
}

impl Num {
    fn of_value(v: &Value) -> Option<Num> {
        let n = v.as_number()?;
        if let Some(i) = n.as_i64() {
            Some(Num::I(i))
        } else if let Some(u) = n.as_u64() {
            Some(Num::U(u))
        } else {
            n.as_f64().map(Num::F)
        }
    }
    #[inline]
    fn of_dom(d: &Dom) -> Option<Num> {
        match *d {
            Dom::I(i) => Some(Num::I(i)),
            Dom::U(u) => Some(Num::U(u)),
            Dom::F(f) => Some(Num::F(f)),
            _ => None,
        }
    }
    /// Exact comparison of the mathematical values (as jsonschema does with num-cmp).
    #[inline]
    fn cmp(self, o: Num) -> Option<Ordering> {
        match (self, o) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            (Num::I(a), Num::U(b)) => NumCmp::num_cmp(a, b),
            (Num::I(a), Num::F(b)) => NumCmp::num_cmp(a, b),
            (Num::U(a), Num::I(b)) => NumCmp::num_cmp(a, b),
            (Num::U(a), Num::U(b)) => Some(a.cmp(&b)),
            (Num::U(a), Num::F(b)) => NumCmp::num_cmp(a, b),
            (Num::F(a), Num::I(b)) => NumCmp::num_cmp(a, b),
            (Num::F(a), Num::U(b)) => NumCmp::num_cmp(a, b),
            (Num::F(a), Num::F(b)) => a.partial_cmp(&b),
        }
    }
    #[inline]
    fn eq(self, o: Num) -> bool {
        self.cmp(o) == Some(Ordering::Equal)
    }
}

/// A numeric limit, with its exact f64 value when it has one (then a float instance compares
/// with one f64 comparison, which is exact because both sides are exact f64 values).
#[derive(Clone, Copy, Debug)]
struct Limit {
    num: Num,
    f: Option<f64>,
}

impl Limit {
    fn of_value(v: &Value) -> Option<Limit> {
        const EXACT: u64 = 1 << 53;
        let num = Num::of_value(v)?;
        let f = match num {
            Num::I(i) if i.unsigned_abs() <= EXACT => Some(i as f64),
            Num::U(u) if u <= EXACT => Some(u as f64),
            Num::F(f) => Some(f),
            _ => None,
        };
        Some(Limit { num, f })
    }
    #[inline(always)]
    fn cmp_instance(&self, d: &Dom) -> Option<Ordering> {
        match (d, self.num, self.f) {
            (&Dom::F(x), _, Some(l)) => x.partial_cmp(&l),
            (&Dom::I(i), Num::I(j), _) => Some(i.cmp(&j)),
            _ => Num::of_dom(d).unwrap().cmp(self.num),
        }
    }
}

struct ObjKw {
    /// (name, schema) in schema order (serde_json preserve_order), which is the order producers
    /// usually write, so the member after the last match is tried first.
    props: Vec<(String, Node)>,
    /// Open-addressing table: index+1 into props, 0 = empty.
    table: Vec<u8>,
    mask: usize,
    /// Bits of props that are required.
    required_mask: u64,
    /// Required names that are not in `properties`.
    required_extra: Vec<String>,
    /// Schema for members not named in `properties`; None = anything.
    additional: Option<Box<Node>>,
}

#[derive(Default)]
pub struct Node {
    /// The boolean schema `false`.
    never: bool,
    types: u8,
    const_: Option<Value>,
    enum_: Option<Vec<Value>>,
    minimum: Option<Limit>,
    maximum: Option<Limit>,
    exclusive_minimum: Option<Limit>,
    min_length: Option<u64>,
    pattern: Option<Pattern>,
    items: Option<Box<Node>>,
    unique_items: bool,
    obj: Option<Box<ObjKw>>,
}

/// Cheap key hash for the property table: length, first, middle and last bytes.
#[inline(always)]
fn key_hash(s: &[u8]) -> usize {
    let n = s.len();
    if n == 0 {
        return 0;
    }
    let h = (n as u32) ^ (s[0] as u32) << 8 ^ (s[n / 2] as u32) << 16 ^ (s[n - 1] as u32) << 24;
    (h.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

#[inline]
fn fnv(s: &[u8]) -> usize {
    let mut h: u32 = 0x811c9dc5;
    for &b in s {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    (h ^ (h >> 15)) as usize
}

pub fn compile_root(schema: &Value) -> Result<Node, String> {
    if let Some(s) = schema.get("$schema") {
        let s = s.as_str().ok_or("$schema must be a string")?;
        let t = s.trim_end_matches('#');
        if t != "http://json-schema.org/draft-07/schema" && t != "https://json-schema.org/draft-07/schema" {
            return Err(format!("$schema {s:?}: only draft-07 is implemented"));
        }
    }
    compile(schema, "#")
}

fn compile(schema: &Value, path: &str) -> Result<Node, String> {
    let map = match schema {
        Value::Bool(true) => return Ok(Node { types: T_ANY, ..Default::default() }),
        Value::Bool(false) => return Ok(Node { never: true, types: T_ANY, ..Default::default() }),
        Value::Object(m) => m,
        _ => return Err(format!("{path}: a schema must be an object or a boolean")),
    };
    let mut node = Node { types: T_ANY, ..Default::default() };
    let mut props: Option<Vec<(String, Node)>> = None;
    let mut required: Option<Vec<String>> = None;
    let mut additional: Option<Box<Node>> = None;
    for (k, v) in map {
        let at = format!("{path}/{k}");
        match k.as_str() {
            a if ANNOTATIONS.contains(&a) => {}
            "type" => {
                node.types = match v {
                    Value::String(s) => type_bits(s, &at)?,
                    Value::Array(a) => {
                        let mut bits = 0;
                        for t in a {
                            bits |= type_bits(t.as_str().ok_or(format!("{at}: type names must be strings"))?, &at)?;
                        }
                        bits
                    }
                    _ => return Err(format!("{at}: must be a string or an array of strings")),
                }
            }
            "enum" => {
                node.enum_ = Some(v.as_array().ok_or(format!("{at}: must be an array"))?.clone());
            }
            "const" => node.const_ = Some(v.clone()),
            "minimum" => node.minimum = Some(Limit::of_value(v).ok_or(format!("{at}: must be a number"))?),
            "maximum" => node.maximum = Some(Limit::of_value(v).ok_or(format!("{at}: must be a number"))?),
            "exclusiveMinimum" => {
                node.exclusive_minimum = Some(Limit::of_value(v).ok_or(format!("{at}: must be a number"))?)
            }
            "minLength" => {
                node.min_length = Some(v.as_u64().ok_or(format!("{at}: must be a non-negative integer"))?)
            }
            "pattern" => {
                let p = v.as_str().ok_or(format!("{at}: must be a string"))?;
                node.pattern = Some(compile_pattern(p, &at)?);
            }
            "items" => match v {
                Value::Array(_) => return Err(format!("{at}: the array form of items is not implemented")),
                _ => node.items = Some(Box::new(compile(v, &at)?)),
            },
            "uniqueItems" => node.unique_items = v.as_bool().ok_or(format!("{at}: must be a boolean"))?,
            "properties" => {
                let m = v.as_object().ok_or(format!("{at}: must be an object"))?;
                let mut ps = Vec::with_capacity(m.len());
                for (name, sub) in m {
                    ps.push((name.clone(), compile(sub, &format!("{at}/{name}"))?));
                }
                props = Some(ps);
            }
            "required" => {
                let a = v.as_array().ok_or(format!("{at}: must be an array"))?;
                let mut names = Vec::with_capacity(a.len());
                for n in a {
                    names.push(n.as_str().ok_or(format!("{at}: names must be strings"))?.to_owned());
                }
                required = Some(names);
            }
            "additionalProperties" => additional = Some(Box::new(compile(v, &at)?)),
            other => {
                return Err(format!(
                    "{at}: keyword {other:?} is not implemented by fastschema (implemented: {})",
                    IMPLEMENTED.join(", ")
                ))
            }
        }
    }
    if props.is_some() || required.is_some() || additional.is_some() {
        let props = props.unwrap_or_default();
        if props.len() > 64 {
            return Err(format!("{path}: more than 64 properties in one object schema is not implemented"));
        }
        let size = (props.len() * 4).next_power_of_two().max(8);
        let mut table = vec![0u8; size];
        for (i, (name, _)) in props.iter().enumerate() {
            let mut h = key_hash(name.as_bytes()) & (size - 1);
            while table[h] != 0 {
                h = (h + 1) & (size - 1);
            }
            table[h] = (i + 1) as u8;
        }
        let mut required_mask = 0u64;
        let mut required_extra = Vec::new();
        for r in required.unwrap_or_default() {
            match props.iter().position(|(n, _)| *n == r) {
                Some(i) => required_mask |= 1 << i,
                None => {
                    if !required_extra.contains(&r) {
                        required_extra.push(r)
                    }
                }
            }
        }
        node.obj = Some(Box::new(ObjKw { props, table, mask: size - 1, required_mask, required_extra, additional }));
    }
    Ok(node)
}

fn type_bits(s: &str, at: &str) -> Result<u8, String> {
    Ok(match s {
        "null" => T_NULL,
        "boolean" => T_BOOL,
        "integer" => T_INT,
        "number" => T_INT | T_FRAC,
        "string" => T_STR,
        "array" => T_ARR,
        "object" => T_OBJ,
        _ => return Err(format!("{at}: unknown type {s:?}")),
    })
}

/// A compiled `pattern`: the regex crate, or for a pattern of the form `^(atom{n}?)*$` (atoms: ASCII
/// literals and bracket classes of ASCII literals/ranges, exact counts only) a fixed-length matcher:
/// anchored at both ends such a regex matches exactly the strings of that length whose bytes are
/// each in their position's set (a non-ASCII character matches no ASCII atom, so any byte >= 0x80
/// fails both). `$` without the m flag is the end of the text, as in the regex crate.
pub enum Pattern {
    Fixed(Vec<u128>),
    Regex(Regex),
}

impl Pattern {
    #[inline]
    fn is_match(&self, s: &[u8]) -> bool {
        match self {
            Pattern::Fixed(sets) => {
                s.len() == sets.len() && s.iter().zip(sets).all(|(&b, set)| b < 128 && set >> b & 1 == 1)
            }
            Pattern::Regex(re) => re.is_match(std::str::from_utf8(s).unwrap()),
        }
    }
}

fn fixed_form(p: &str) -> Option<Vec<u128>> {
    let b = p.as_bytes();
    if b.len() < 2 || b[0] != b'^' || b[b.len() - 1] != b'$' {
        return None;
    }
    let lit = |c: u8| c.is_ascii_alphanumeric() || b"-_:/,@ ".contains(&c);
    let body = &b[1..b.len() - 1];
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let set: u128 = match body[i] {
            b'\\' => {
                let e = *body.get(i + 1)?;
                if !b".-/\\^$[](){}|?*+".contains(&e) {
                    return None;
                }
                i += 2;
                1 << e
            }
            b'[' => {
                i += 1;
                let mut set = 0u128;
                if body.get(i) == Some(&b'^') || body.get(i) == Some(&b']') {
                    return None;
                }
                loop {
                    let c = *body.get(i)?;
                    if c == b']' {
                        i += 1;
                        break;
                    }
                    if !c.is_ascii_alphanumeric() {
                        return None;
                    }
                    if body.get(i + 1) == Some(&b'-') && body.get(i + 2).is_some_and(|d| d.is_ascii_alphanumeric()) {
                        let d = body[i + 2];
                        if d < c {
                            return None;
                        }
                        for x in c..=d {
                            set |= 1 << x;
                        }
                        i += 3;
                    } else {
                        set |= 1 << c;
                        i += 1;
                    }
                }
                set
            }
            c if lit(c) => {
                i += 1;
                1 << c
            }
            _ => return None,
        };
        let mut count = 1usize;
        if body.get(i) == Some(&b'{') {
            let close = i + body[i..].iter().position(|&c| c == b'}')?;
            let digits = &body[i + 1..close];
            if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            count = std::str::from_utf8(digits).ok()?.parse().ok()?;
            i = close + 1;
        }
        if matches!(body.get(i), Some(b'?' | b'*' | b'+' | b'{')) {
            return None;
        }
        out.extend(std::iter::repeat(set).take(count));
    }
    Some(out)
}

/// Only a conservative subset of regex syntax whose meaning is the same in ECMA-262 (the spec),
/// in jsonschema's ECMA->Rust translation and in the `regex` crate: ASCII literals, `. ^ $ | ( )`,
/// quantifiers `? * + {m,n}`, bracket classes of literals and ranges, and backslash-escaped
/// punctuation. No `\d \w \s \b`, no `(?...)` groups, no class set operations, no non-ASCII.
fn compile_pattern(p: &str, at: &str) -> Result<Pattern, String> {
    let bytes = p.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < bytes.len() {
        let c = bytes[i];
        let ok = match c {
            b'\\' => {
                i += 1;
                match bytes.get(i) {
                    Some(e) if b".-/\\^$[](){}|?*+".contains(e) => true,
                    _ => false,
                }
            }
            b'[' => {
                if in_class {
                    false
                } else {
                    in_class = true;
                    true
                }
            }
            b']' => {
                in_class = false;
                true
            }
            b'(' => bytes.get(i + 1) != Some(&b'?'),
            b'&' | b'~' => !in_class,
            b'-' => !(in_class && bytes.get(i + 1) == Some(&b'-')),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => true,
            b'^' | b'$' | b'.' | b'|' | b')' | b'?' | b'*' | b'+' | b'{' | b'}' | b',' | b'_' | b':' | b'/'
            | b'@' | b'#' | b'%' | b'=' | b'!' | b'"' | b'\'' | b'<' | b'>' | b';' | b' ' => true,
            _ => false,
        };
        if !ok {
            return Err(format!(
                "{at}: pattern {p:?} uses syntax outside the implemented subset (at byte {i})"
            ));
        }
        i += 1;
    }
    let re = Regex::new(p).map_err(|e| format!("{at}: pattern {p:?}: {e}"))?;
    Ok(match fixed_form(p) {
        Some(sets) if std::env::var_os("FASTSCHEMA_NO_FIXED").is_none() => Pattern::Fixed(sets),
        _ => Pattern::Regex(re),
    })
}

impl Node {
    #[inline]
    pub fn is_valid(&self, d: &Dom) -> bool {
        if self.never {
            return false;
        }
        let t = match d {
            Dom::Null => T_NULL,
            Dom::Bool(_) => T_BOOL,
            Dom::I(_) | Dom::U(_) => T_INT,
            Dom::F(f) => {
                // integer-valued: exact through i64 because a Dom float has |f| < 2^63
                if (*f as i64) as f64 == *f {
                    T_INT
                } else {
                    T_FRAC
                }
            }
            Dom::Str(_) => T_STR,
            Dom::Arr(_) => T_ARR,
            Dom::Obj(_) => T_OBJ,
        };
        if self.types & t == 0 {
            return false;
        }
        if let Some(c) = &self.const_ {
            if !eq_value(d, c) {
                return false;
            }
        }
        if let Some(e) = &self.enum_ {
            if !e.iter().any(|v| eq_value(d, v)) {
                return false;
            }
        }
        match d {
            Dom::I(_) | Dom::U(_) | Dom::F(_) => {
                if let Some(m) = &self.minimum {
                    if !matches!(m.cmp_instance(d), Some(Ordering::Greater | Ordering::Equal)) {
                        return false;
                    }
                }
                if let Some(m) = &self.maximum {
                    if !matches!(m.cmp_instance(d), Some(Ordering::Less | Ordering::Equal)) {
                        return false;
                    }
                }
                if let Some(m) = &self.exclusive_minimum {
                    if m.cmp_instance(d) != Some(Ordering::Greater) {
                        return false;
                    }
                }
                true
            }
            Dom::Str(s) => {
                if let Some(m) = self.min_length {
                    // bytes >= code points, so a short byte length settles it
                    if (s.len() as u64) < m || (s.chars().count() as u64) < m {
                        return false;
                    }
                }
                if let Some(re) = &self.pattern {
                    if !re.is_match(s.as_bytes()) {
                        return false;
                    }
                }
                true
            }
            Dom::Arr(a) => {
                if let Some(it) = &self.items {
                    if !a.iter().all(|x| it.is_valid(x)) {
                        return false;
                    }
                }
                if self.unique_items && !all_unique(a) {
                    return false;
                }
                true
            }
            Dom::Obj(members) => match &self.obj {
                None => true,
                Some(o) => o.is_valid(members),
            },
            _ => true,
        }
    }
}

impl ObjKw {
    #[inline]
    fn lookup(&self, key: &str, hint: usize) -> Option<usize> {
        if let Some((n, _)) = self.props.get(hint) {
            if short_eq(n.as_bytes(), key.as_bytes()) {
                return Some(hint);
            }
        }
        let mut h = key_hash(key.as_bytes()) & self.mask;
        loop {
            let e = self.table[h];
            if e == 0 {
                return None;
            }
            let i = (e - 1) as usize;
            if short_eq(self.props[i].0.as_bytes(), key.as_bytes()) {
                return Some(i);
            }
            h = (h + 1) & self.mask;
        }
    }

    #[inline]
    fn is_valid(&self, members: &[(std::borrow::Cow<str>, Dom)]) -> bool {
        let mut seen = 0u64;
        let mut hint = 0usize;
        for (k, v) in members {
            match self.lookup(k, hint) {
                Some(i) => {
                    seen |= 1 << i;
                    hint = i + 1;
                    if !self.props[i].1.is_valid(v) {
                        return false;
                    }
                }
                None => {
                    if let Some(a) = &self.additional {
                        if !a.is_valid(v) {
                            return false;
                        }
                    }
                }
            }
        }
        if seen & self.required_mask != self.required_mask {
            return false;
        }
        self.required_extra.iter().all(|r| members.iter().any(|(k, _)| k == r))
    }
}

/// JSON-Schema equality of an instance value and a schema value (numbers by mathematical value).
fn eq_value(d: &Dom, v: &Value) -> bool {
    match (d, v) {
        (Dom::Null, Value::Null) => true,
        (Dom::Bool(a), Value::Bool(b)) => a == b,
        (Dom::I(_) | Dom::U(_) | Dom::F(_), Value::Number(_)) => match (Num::of_dom(d), Num::of_value(v)) {
            (Some(a), Some(b)) => a.eq(b),
            _ => false,
        },
        (Dom::Str(a), Value::String(b)) => short_eq(a.as_bytes(), b.as_bytes()),
        (Dom::Arr(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq_value(x, y)),
        (Dom::Obj(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k.as_ref()).is_some_and(|y| eq_value(x, y)))
        }
        _ => false,
    }
}

/// JSON-Schema equality of two instance values (keys are unique within a Dom object).
fn eq_dom(a: &Dom, b: &Dom) -> bool {
    match (a, b) {
        (Dom::Null, Dom::Null) => true,
        (Dom::Bool(x), Dom::Bool(y)) => x == y,
        (Dom::I(_) | Dom::U(_) | Dom::F(_), Dom::I(_) | Dom::U(_) | Dom::F(_)) => {
            Num::of_dom(a).unwrap().eq(Num::of_dom(b).unwrap())
        }
        (Dom::Str(x), Dom::Str(y)) => x == y,
        (Dom::Arr(x), Dom::Arr(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq_dom(p, q)),
        (Dom::Obj(x), Dom::Obj(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, p)| y.iter().find(|(k2, _)| k2 == k).is_some_and(|(_, q)| eq_dom(p, q)))
        }
        _ => false,
    }
}

/// A hash consistent with `eq_dom`: equal values hash alike.
fn hash_dom(d: &Dom) -> u64 {
    const P: u64 = 0x100000001b3;
    fn mix(h: u64, x: u64) -> u64 {
        (h ^ x).wrapping_mul(P).rotate_left(29)
    }
    match d {
        Dom::Null => 1,
        Dom::Bool(b) => 2 + *b as u64,
        Dom::I(_) | Dom::U(_) | Dom::F(_) => {
            // equal numbers convert to the same f64 (the conversion is monotonic and exact on floats)
            let f = match *d {
                Dom::I(i) => i as f64,
                Dom::U(u) => u as f64,
                Dom::F(f) => f,
                _ => unreachable!(),
            };
            mix(4, if f == 0.0 { 0 } else { f.to_bits() })
        }
        Dom::Str(s) => mix(5, fnv(s.as_bytes()) as u64),
        Dom::Arr(a) => a.iter().fold(6, |h, x| mix(h, hash_dom(x))),
        Dom::Obj(m) => {
            let mut acc = 0u64;
            for (k, v) in m {
                acc = acc.wrapping_add(mix(fnv(k.as_bytes()) as u64, hash_dom(v)));
            }
            mix(7, acc)
        }
    }
}

fn all_unique(a: &[Dom]) -> bool {
    let n = a.len();
    if n < 2 {
        return true;
    }
    if n <= 16 {
        for i in 1..n {
            for j in 0..i {
                if eq_dom(&a[i], &a[j]) {
                    return false;
                }
            }
        }
        return true;
    }
    let mut hs: Vec<(u64, usize)> = a.iter().enumerate().map(|(i, x)| (hash_dom(x), i)).collect();
    hs.sort_unstable();
    let mut s = 0;
    while s < hs.len() {
        let mut e = s + 1;
        while e < hs.len() && hs[e].0 == hs[s].0 {
            e += 1;
        }
        for i in s + 1..e {
            for j in s..i {
                if eq_dom(&a[hs[i].1], &a[hs[j].1]) {
                    return false;
                }
            }
        }
        s = e;
    }
    true
}
