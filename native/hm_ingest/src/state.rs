//! A host state (the JSON of processors.engine.new_state) typed where the fast path reads or writes
//! it, and kept as its JSON text everywhere else, so that it is written back byte for byte as
//! `orjson.dumps` writes the same Python state.
//!
//! Layout: one text per state (the JSON it was loaded from, with strings the fast path adds
//! appended), which every string, key and untouched part refers to by range (`S`), and the typed
//! parts inline (SmallVec): a state is two or three allocations, not a tree of small ones, so the
//! fast path and the writer touch few cache lines of a cold state.
//!
//! Parsing is lenient about nothing it cannot write back: `State::parse` takes what fits the types,
//! and the store keeps a state typed only if `State::write` then gives back the very bytes it was
//! loaded from (`crate::load_state`); anything else (a key order, a key or a type the engine never
//! writes, a duplicate key, an escape in a key, a number orjson writes otherwise) stays raw and is
//! left to Python. Numbers are written as orjson writes them (itoa; ryu, with orjson's `e+` for a
//! positive exponent).
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Number;
use smallvec::SmallVec;

use crate::Num::{self, F, I};
use crate::{BYTE_NAMES, COUNTERS, RATE_NAMES, SUM_NAMES};

/// A state field that holds a number or null.
pub type ONum = Option<Num>;

/// A range of the state's text: a string's content (unescaped), a key, or a value's JSON.
#[derive(Clone, Copy, Debug)]
pub struct S {
    at: u32,
    len: u32,
}

/// A {key: number} dict (wm, closed, counts, seen).
pub type NumMap = SmallVec<[(S, Num); 4]>;

// --- parsing ------------------------------------------------------------------------------------

/// A JSON object as its (key, value text) pairs in order, duplicates kept, borrowed from the text
/// (a key with an escape fails the parse).
struct RawObj<'a>(SmallVec<[(&'a str, &'a RawValue); 16]>);

impl<'de> Deserialize<'de> for RawObj<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObj<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawObj<'de>, A::Error> {
                let mut out = SmallVec::new();
                while let Some(k) = m.next_key::<&'de str>()? {
                    out.push((k, m.next_value::<&'de RawValue>()?));
                }
                Ok(RawObj(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn obj(r: &RawValue) -> Option<SmallVec<[(&str, &RawValue); 16]>> {
    serde_json::from_str::<RawObj>(r.get()).ok().map(|o| o.0)
}

fn is_null(r: &RawValue) -> bool {
    r.get() == "null"
}

/// A number as Python holds it: an int within i64 or a float (None for anything else).
fn number_of(n: &Number) -> Option<Num> {
    if n.is_f64() {
        n.as_f64().map(F)
    } else {
        n.as_i64().map(I)
    }
}

/// A number value: its text is a JSON number token (a RawValue is valid JSON), so Rust's own
/// parsers read it (both they and serde_json's round correctly): an int unless it has a fraction
/// or an exponent, None past i64 (as number_of).
fn number(r: &RawValue) -> Option<Num> {
    let t = r.get();
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    if t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        t.parse().ok().map(F)
    } else {
        t.parse().ok().map(I)
    }
}

fn onum(r: &RawValue) -> Option<ONum> {
    if is_null(r) {
        Some(None)
    } else {
        number(r).map(Some)
    }
}

fn int(r: &RawValue) -> Option<i64> {
    match number(r)? {
        I(i) => Some(i),
        F(_) => None,
    }
}

fn distinct<K: PartialEq>(keys: impl Iterator<Item = K> + Clone) -> bool {
    keys.clone().enumerate().all(|(i, k)| !keys.clone().take(i).any(|k2| k2 == k))
}

/// An object with exactly these keys in this order: its values.
fn fields<'a, const N: usize>(r: &'a RawValue, keys: [&str; N]) -> Option<[&'a RawValue; N]> {
    let o = obj(r)?;
    if o.len() != N || !o.iter().zip(keys).all(|((k, _), want)| *k == want) {
        return None;
    }
    let mut out = [r; N];
    for (slot, (_, v)) in out.iter_mut().zip(o) {
        *slot = v;
    }
    Some(out)
}

/// A window's key: str(start) of an int start.
fn window_key(k: &str) -> Option<i64> {
    let start: i64 = k.parse().ok()?;
    (itoa::Buffer::new().format(start) == k).then_some(start)
}

/// The text being parsed, and the strings (unescaped ones) to append to it.
pub struct Ctx<'a> {
    base: &'a str,
    extra: String,
}

impl<'a> Ctx<'a> {
    /// A part of the base text.
    fn at(&self, part: &str) -> S {
        let at = part.as_ptr() as usize - self.base.as_ptr() as usize;
        debug_assert!(at + part.len() <= self.base.len());
        S { at: at as u32, len: part.len() as u32 }
    }

    fn raw(&self, r: &RawValue) -> S {
        self.at(r.get())
    }

    fn push(&mut self, s: &str) -> S {
        let at = self.base.len() + self.extra.len();
        self.extra.push_str(s);
        S { at: at as u32, len: s.len() as u32 }
    }

    /// A JSON string's content: in place if it has no escape, else unescaped and appended.
    fn string(&mut self, r: &RawValue) -> Option<S> {
        let t = r.get();
        if !t.starts_with('"') {
            return None;
        }
        if !t.contains('\\') {
            return Some(self.at(&t[1..t.len() - 1]));
        }
        let s: String = serde_json::from_str(t).ok()?;
        Some(self.push(&s))
    }

    fn ostring(&mut self, r: &RawValue) -> Option<Option<S>> {
        if is_null(r) {
            Some(None)
        } else {
            self.string(r).map(Some)
        }
    }

    fn strings(&mut self, r: &RawValue) -> Option<SmallVec<[S; 2]>> {
        let v: Vec<&RawValue> = serde_json::from_str(r.get()).ok()?;
        v.into_iter().map(|s| self.string(s)).collect()
    }

    fn num_map(&self, r: &RawValue) -> Option<NumMap> {
        let o = obj(r)?;
        if !distinct(o.iter().map(|(k, _)| *k)) {
            return None;
        }
        o.iter().map(|(k, v)| Some((self.at(k), number(v)?))).collect()
    }
}

// --- writing ------------------------------------------------------------------------------------

/// A str as orjson (and serde_json) writes it.
fn w_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing a str into a Vec cannot fail");
    }
}

/// A number as orjson writes it: an int in decimal; a float as ryu's shortest form, which is
/// orjson's too except that orjson writes a positive exponent with its sign (`1e+16` where ryu, and
/// serde_json, write `1e16`).
fn w_num(out: &mut Vec<u8>, n: Num) {
    match n {
        I(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        F(f) if f.is_finite() => {
            let mut buf = ryu::Buffer::new();
            let s = buf.format_finite(f).as_bytes();
            match s.iter().position(|&c| c == b'e') {
                Some(e) if s[e + 1] != b'-' => {
                    out.extend_from_slice(&s[..=e]);
                    out.push(b'+');
                    out.extend_from_slice(&s[e + 1..]);
                }
                _ => out.extend_from_slice(s),
            }
        }
        // orjson writes a non-finite float as null (the fast path never stores one)
        F(_) => out.extend_from_slice(b"null"),
    }
}

fn w_onum(out: &mut Vec<u8>, n: ONum) {
    match n {
        Some(n) => w_num(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writing against the state's text.
pub struct W<'a> {
    text: &'a str,
    out: &'a mut Vec<u8>,
}

impl W<'_> {
    fn b(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    fn raw(&mut self, s: S) {
        self.out.extend_from_slice(&self.text.as_bytes()[s.at as usize..][..s.len as usize]);
    }
    fn str(&mut self, s: S) {
        w_str(self.out, &self.text[s.at as usize..][..s.len as usize]);
    }
    fn ostr(&mut self, s: Option<S>) {
        match s {
            Some(s) => self.str(s),
            None => self.b(b"null"),
        }
    }
    /// `"key":`
    fn key(&mut self, k: S) {
        self.str(k);
        self.out.push(b':');
    }
    fn num(&mut self, n: Num) {
        w_num(self.out, n);
    }
    fn onum(&mut self, n: ONum) {
        w_onum(self.out, n);
    }
    fn comma(&mut self, i: usize) {
        if i > 0 {
            self.out.push(b',');
        }
    }
    fn num_map(&mut self, m: &[(S, Num)]) {
        self.out.push(b'{');
        for (i, (k, v)) in m.iter().enumerate() {
            self.comma(i);
            self.key(*k);
            self.num(*v);
        }
        self.out.push(b'}');
    }
    fn strs(&mut self, v: &[S]) {
        self.out.push(b'[');
        for (i, s) in v.iter().enumerate() {
            self.comma(i);
            self.str(*s);
        }
        self.out.push(b']');
    }
    /// `{"name":[a,b],...}` of an aggregation accumulator's sum or rate.
    fn pairs(&mut self, names: &[&str], v: &[(u8, Num, Num)]) {
        self.out.push(b'{');
        for (i, (k, a, b)) in v.iter().enumerate() {
            self.comma(i);
            w_str(self.out, names[*k as usize]);
            self.b(b":[");
            self.num(*a);
            self.out.push(b',');
            self.num(*b);
            self.out.push(b']');
        }
        self.out.push(b'}');
    }
}

// --- the parts ----------------------------------------------------------------------------------

/// One boot's entry of seqs[schema]: [max_seq, missing].
pub struct Boot {
    pub id: S,
    pub top: i64,
    missing: S,
}

pub type Seqs = SmallVec<[(S, SmallVec<[Boot; 2]>); 3]>;

fn parse_seqs(cx: &mut Ctx, r: &RawValue) -> Option<Seqs> {
    let o = obj(r)?;
    if !distinct(o.iter().map(|(k, _)| *k)) {
        return None;
    }
    let mut out = Seqs::new();
    for (schema, boots) in o {
        let b = obj(boots)?;
        if !distinct(b.iter().map(|(k, _)| *k)) {
            return None;
        }
        let mut v = SmallVec::new();
        for (id, entry) in b {
            let (top, missing): (Number, &RawValue) = serde_json::from_str(entry.get()).ok()?;
            let I(top) = number_of(&top)? else { return None };
            v.push(Boot { id: cx.at(id), top, missing: cx.raw(missing) });
        }
        out.push((cx.at(schema), v));
    }
    Some(out)
}

/// state["last"] when not null: the usage baseline; counters by their index in COUNTERS.
pub struct Last {
    pub boot: S,
    pub seq: i64,
    pub counters: [ONum; 5],
}

impl Last {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self> {
        let [boot, seq, counters] = fields(r, ["boot_id", "seq", "counters"])?;
        let mut c = [None; 5];
        for (k, v) in obj(counters)? {
            c[COUNTERS.iter().position(|p| *p == k)?] = Some(number(v)?);
        }
        Some(Self { boot: cx.string(boot)?, seq: int(seq)?, counters: c })
    }

    /// In COUNTERS order, as validation.counters_of builds it (a loaded state in another order
    /// does not write back the same and stays raw).
    fn write(&self, w: &mut W) {
        w.b(b"{\"boot_id\":");
        w.str(self.boot);
        w.b(b",\"seq\":");
        w.num(I(self.seq));
        w.b(b",\"counters\":{");
        let mut first = true;
        for (path, v) in COUNTERS.iter().zip(self.counters) {
            if let Some(v) = v {
                if !first {
                    w.b(b",");
                }
                first = false;
                w_str(w.out, path);
                w.b(b":");
                w.num(v);
            }
        }
        w.b(b"}}");
    }
}

/// proofs.new_acc(), field for field in its order.
#[derive(Clone)]
pub struct ProofAcc {
    pub n: ONum,
    pub interval_s: ONum,
    pub boot_id: Option<S>,
    pub first_seq: ONum,
    pub last_seq: ONum,
    gaps: S,
    pub digest: [u8; 32],
    pub inputs: ONum,
    pub cpu_core_s: ONum,
    pub cores: ONum,
    pub mem_byte_s: ONum,
    pub gpu_s: ONum,
    /// by proofs.BYTE_COUNTERS, in its order (BYTE_NAMES)
    pub bytes: [ONum; 4],
    pub max_skew_us: ONum,
    pub sources: SmallVec<[S; 2]>,
    ebpf: S,
}

const PROOF_KEYS: [&str; 16] = ["n", "interval_s", "boot_id", "first_seq", "last_seq", "gaps", "digest", "inputs",
                                "cpu_core_s", "cores", "mem_byte_s", "gpu_s", "bytes", "max_skew_us", "sources", "ebpf"];

impl ProofAcc {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self> {
        let [n, interval_s, boot_id, first_seq, last_seq, gaps, digest, inputs, cpu_core_s, cores, mem_byte_s,
             gpu_s, bytes, max_skew_us, sources, ebpf] = fields(r, PROOF_KEYS)?;
        let mut d = [0u8; 32];
        let hex_digits: &str = serde_json::from_str(digest.get()).ok()?;
        hex::decode_to_slice(hex_digits, &mut d).ok()?;
        let b = fields(bytes, BYTE_NAMES)?;
        Some(Self {
            n: onum(n)?,
            interval_s: onum(interval_s)?,
            boot_id: cx.ostring(boot_id)?,
            first_seq: onum(first_seq)?,
            last_seq: onum(last_seq)?,
            gaps: cx.raw(gaps),
            digest: d,
            inputs: onum(inputs)?,
            cpu_core_s: onum(cpu_core_s)?,
            cores: onum(cores)?,
            mem_byte_s: onum(mem_byte_s)?,
            gpu_s: onum(gpu_s)?,
            bytes: [onum(b[0])?, onum(b[1])?, onum(b[2])?, onum(b[3])?],
            max_skew_us: onum(max_skew_us)?,
            sources: cx.strings(sources)?,
            ebpf: cx.raw(ebpf),
        })
    }

    fn write(&self, w: &mut W) {
        w.b(b"{\"n\":");
        w.onum(self.n);
        w.b(b",\"interval_s\":");
        w.onum(self.interval_s);
        w.b(b",\"boot_id\":");
        w.ostr(self.boot_id);
        w.b(b",\"first_seq\":");
        w.onum(self.first_seq);
        w.b(b",\"last_seq\":");
        w.onum(self.last_seq);
        w.b(b",\"gaps\":");
        w.raw(self.gaps);
        w.b(b",\"digest\":\"");
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.digest, &mut hex).expect("64 hex digits for 32 bytes");
        w.b(&hex);
        w.b(b"\",\"inputs\":");
        w.onum(self.inputs);
        w.b(b",\"cpu_core_s\":");
        w.onum(self.cpu_core_s);
        w.b(b",\"cores\":");
        w.onum(self.cores);
        w.b(b",\"mem_byte_s\":");
        w.onum(self.mem_byte_s);
        w.b(b",\"gpu_s\":");
        w.onum(self.gpu_s);
        w.b(b",\"bytes\":{");
        for (i, (k, v)) in BYTE_NAMES.iter().zip(self.bytes).enumerate() {
            w.comma(i);
            w_str(w.out, k);
            w.b(b":");
            w.onum(v);
        }
        w.b(b"},\"max_skew_us\":");
        w.onum(self.max_skew_us);
        w.b(b",\"sources\":");
        w.strs(&self.sources);
        w.b(b",\"ebpf\":");
        w.raw(self.ebpf);
        w.b(b"}");
    }
}

/// aggregation.new_acc(), field for field in its order; sum, max and rate keep their insertion
/// order, by the figure's index in SUM_NAMES (sum, max) or RATE_NAMES (rate).
#[derive(Clone)]
pub struct AggAcc {
    pub n: ONum,
    pub interval_s: ONum,
    pub boot_id: Option<S>,
    pub sources: SmallVec<[S; 2]>,
    pub cores: ONum,
    pub mem_total: ONum,
    pub sum: SmallVec<[(u8, Num, Num); 5]>,
    pub max: SmallVec<[(u8, Num); 5]>,
    pub rate: SmallVec<[(u8, Num, Num); 4]>,
    hist: S,
    unit: S,
    ctr: S,
    ebpf_n: S,
}

const AGG_KEYS: [&str; 13] =
    ["n", "interval_s", "boot_id", "sources", "cores", "mem_total", "sum", "max", "rate", "hist", "unit", "ctr", "ebpf_n"];

fn parse_pairs<const N: usize>(r: &RawValue, names: &[&str]) -> Option<SmallVec<[(u8, Num, Num); N]>>
where
    [(u8, Num, Num); N]: smallvec::Array<Item = (u8, Num, Num)>,
{
    let o = obj(r)?;
    if !distinct(o.iter().map(|(k, _)| *k)) {
        return None;
    }
    let mut v = SmallVec::new();
    for (k, p) in o {
        let i = names.iter().position(|n| *n == k)? as u8;
        let (a, b): (Number, Number) = serde_json::from_str(p.get()).ok()?;
        v.push((i, number_of(&a)?, number_of(&b)?));
    }
    Some(v)
}

impl AggAcc {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self> {
        let [n, interval_s, boot_id, sources, cores, mem_total, sum, max, rate, hist, unit, ctr, ebpf_n] =
            fields(r, AGG_KEYS)?;
        let mo = obj(max)?;
        if !distinct(mo.iter().map(|(k, _)| *k)) {
            return None;
        }
        let mut maxes = SmallVec::new();
        for (k, v) in mo {
            maxes.push((SUM_NAMES.iter().position(|n| *n == k)? as u8, number(v)?));
        }
        Some(Self {
            n: onum(n)?,
            interval_s: onum(interval_s)?,
            boot_id: cx.ostring(boot_id)?,
            sources: cx.strings(sources)?,
            cores: onum(cores)?,
            mem_total: onum(mem_total)?,
            sum: parse_pairs(sum, &SUM_NAMES)?,
            max: maxes,
            rate: parse_pairs(rate, &RATE_NAMES)?,
            hist: cx.raw(hist),
            unit: cx.raw(unit),
            ctr: cx.raw(ctr),
            ebpf_n: cx.raw(ebpf_n),
        })
    }

    fn write(&self, w: &mut W) {
        w.b(b"{\"n\":");
        w.onum(self.n);
        w.b(b",\"interval_s\":");
        w.onum(self.interval_s);
        w.b(b",\"boot_id\":");
        w.ostr(self.boot_id);
        w.b(b",\"sources\":");
        w.strs(&self.sources);
        w.b(b",\"cores\":");
        w.onum(self.cores);
        w.b(b",\"mem_total\":");
        w.onum(self.mem_total);
        w.b(b",\"sum\":");
        w.pairs(&SUM_NAMES, &self.sum);
        w.b(b",\"max\":{");
        for (i, (k, v)) in self.max.iter().enumerate() {
            w.comma(i);
            w_str(w.out, SUM_NAMES[*k as usize]);
            w.b(b":");
            w.num(*v);
        }
        w.b(b"},\"rate\":");
        w.pairs(&RATE_NAMES, &self.rate);
        w.b(b",\"hist\":");
        w.raw(self.hist);
        w.b(b",\"unit\":");
        w.raw(self.unit);
        w.b(b",\"ctr\":");
        w.raw(self.ctr);
        w.b(b",\"ebpf_n\":");
        w.raw(self.ebpf_n);
        w.b(b"}");
    }
}

/// An accumulator type of a window family.
pub trait Acc: Clone + Sized {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self>;
    fn write(&self, w: &mut W);
    /// Every range it holds, to move it to another text.
    fn ranges(&mut self) -> impl Iterator<Item = &mut S>;
}

impl Acc for ProofAcc {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self> {
        ProofAcc::parse(cx, r)
    }
    fn write(&self, w: &mut W) {
        ProofAcc::write(self, w)
    }
    fn ranges(&mut self) -> impl Iterator<Item = &mut S> {
        [&mut self.gaps, &mut self.ebpf].into_iter().chain(self.boot_id.iter_mut()).chain(self.sources.iter_mut())
    }
}

impl Acc for AggAcc {
    fn parse(cx: &mut Ctx, r: &RawValue) -> Option<Self> {
        AggAcc::parse(cx, r)
    }
    fn write(&self, w: &mut W) {
        AggAcc::write(self, w)
    }
    fn ranges(&mut self) -> impl Iterator<Item = &mut S> {
        [&mut self.hist, &mut self.unit, &mut self.ctr, &mut self.ebpf_n]
            .into_iter()
            .chain(self.boot_id.iter_mut())
            .chain(self.sources.iter_mut())
    }
}

/// A template accumulator (the JSON of proofs.new_acc() or aggregation.new_acc()) with its own
/// text; it must write back the same bytes.
pub struct Template<A> {
    text: String,
    acc: A,
}

impl<A: Acc> Template<A> {
    pub fn new(json: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(json).ok()?;
        let raw: &RawValue = serde_json::from_str(text).ok()?;
        let mut cx = Ctx { base: text, extra: String::new() };
        let acc = A::parse(&mut cx, raw)?;
        let text = format!("{text}{}", cx.extra);
        let mut out = Vec::new();
        acc.write(&mut W { text: &text, out: &mut out });
        (out == json).then_some(Self { text, acc })
    }

    pub fn acc(&self) -> &A {
        &self.acc
    }
}

pub type Wins<A> = SmallVec<[(i64, A); 2]>;

/// One family of state["windows"]: {str(start): acc} by start, in order.
pub enum Family {
    Proof(Wins<ProofAcc>),
    Agg(Wins<AggAcc>),
    /// a family the engine's config does not have
    Other(S),
}

fn parse_wins<A: Acc>(cx: &mut Ctx, r: &RawValue) -> Option<Wins<A>> {
    let o = obj(r)?;
    if !distinct(o.iter().map(|(k, _)| *k)) {
        return None;
    }
    o.into_iter().map(|(k, a)| Some((window_key(k)?, A::parse(cx, a)?))).collect()
}

fn w_wins<A: Acc>(w: &mut W, v: &[(i64, A)]) {
    w.b(b"{");
    for (i, (start, acc)) in v.iter().enumerate() {
        w.comma(i);
        w.b(b"\"");
        w.b(itoa::Buffer::new().format(*start).as_bytes());
        w.b(b"\":");
        acc.write(w);
    }
    w.b(b"}");
}

// --- the state ----------------------------------------------------------------------------------

fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..len).step_by(64) {
        // SAFETY: a prefetch is a hint that never faults, whatever the address.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.wrapping_add(off) as *const i8)
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

fn slice(text: &str, s: S) -> &str {
    &text[s.at as usize..][..s.len as usize]
}

fn push(text: &mut String, s: &str) -> S {
    let at = text.len();
    text.push_str(s);
    S { at: at as u32, len: s.len() as u32 }
}

/// `m[key] = v`: in place, or a new key (appended to the text) last.
fn set_in(text: &mut String, m: &mut NumMap, key: &str, v: Num) {
    match m.iter_mut().find(|(k, _)| slice(text, *k) == key) {
        Some(e) => e.1 = v,
        None => {
            let k = push(text, key);
            m.push((k, v));
        }
    }
}

/// A top-level key of the state, in the state's order: the typed ones are fields of State.
enum Slot {
    Inventory,
    Seqs,
    Last,
    Wm,
    Windows,
    Closed,
    Counts,
    Seen,
    Other(S, S),
}

pub struct State {
    text: String,
    /// the text's length as loaded (what it grows by is strings the fast path added)
    loaded: usize,
    order: SmallVec<[Slot; 16]>,
    inventory: S,
    /// what check_capacity reads of the inventory: None for a null one, else (cores,
    /// memory_total_bytes), each None when absent or null
    pub inv: Option<(ONum, ONum)>,
    pub seqs: Seqs,
    pub last: Option<Last>,
    pub wm: NumMap,
    /// by name, in order
    pub windows: SmallVec<[(S, Family); 3]>,
    pub closed: NumMap,
    pub counts: NumMap,
    pub seen: Option<NumMap>,
}

fn inv_nums(r: &RawValue) -> Option<Option<(ONum, ONum)>> {
    if is_null(r) {
        return Some(None);
    }
    let o = obj(r)?;
    // the last of duplicate keys, as Python's dict holds it
    let get = |key: &str| match o.iter().rev().find(|(k, _)| *k == key) {
        None => Some(None),
        Some((_, v)) => onum(v),
    };
    Some(Some((get("cores")?, get("memory_total_bytes")?)))
}

impl State {
    /// The state typed, or None where it does not fit the types (see the module's doc: the caller
    /// also checks that it writes back the same bytes). ``agg``: the aggregation families.
    pub fn parse(json: &[u8], agg: &[(String, i64)]) -> Option<Self> {
        let base = std::str::from_utf8(json).ok()?;
        let top = serde_json::from_str::<RawObj>(base).ok()?.0;
        let mut cx = Ctx { base, extra: String::new() };
        let mut order = SmallVec::new();
        let (mut inventory, mut inv, mut seqs, mut last, mut wm) = (None, None, None, None, None);
        let (mut windows, mut closed, mut counts, mut seen) = (None, None, None, None);
        for (k, r) in top {
            let slot = match k {
                "inventory" if inventory.is_none() => {
                    inv = Some(inv_nums(r)?);
                    inventory = Some(cx.raw(r));
                    Slot::Inventory
                }
                "seqs" if seqs.is_none() => {
                    seqs = Some(parse_seqs(&mut cx, r)?);
                    Slot::Seqs
                }
                "last" if last.is_none() => {
                    last = Some(if is_null(r) { None } else { Some(Last::parse(&mut cx, r)?) });
                    Slot::Last
                }
                "wm" if wm.is_none() => {
                    wm = Some(cx.num_map(r)?);
                    Slot::Wm
                }
                "windows" if windows.is_none() => {
                    let o = obj(r)?;
                    if !distinct(o.iter().map(|(k, _)| *k)) {
                        return None;
                    }
                    let mut fams = SmallVec::new();
                    for (name, w) in o {
                        let fam = if name == "proof" {
                            Family::Proof(parse_wins(&mut cx, w)?)
                        } else if agg.iter().any(|(n, _)| n == name) {
                            Family::Agg(parse_wins(&mut cx, w)?)
                        } else {
                            Family::Other(cx.raw(w))
                        };
                        fams.push((cx.at(name), fam));
                    }
                    windows = Some(fams);
                    Slot::Windows
                }
                "closed" if closed.is_none() => {
                    closed = Some(cx.num_map(r)?);
                    Slot::Closed
                }
                "counts" if counts.is_none() => {
                    counts = Some(cx.num_map(r)?);
                    Slot::Counts
                }
                "seen" if seen.is_none() => {
                    seen = Some(cx.num_map(r)?);
                    Slot::Seen
                }
                "inventory" | "seqs" | "last" | "wm" | "windows" | "closed" | "counts" | "seen" => return None,
                _ => Slot::Other(cx.at(k), cx.raw(r)),
            };
            order.push(slot);
        }
        let mut text = String::with_capacity(base.len() + cx.extra.len() + 256);
        text.push_str(base);
        text.push_str(&cx.extra);
        Some(Self {
            text,
            loaded: base.len() + cx.extra.len(),
            order,
            inventory: inventory?,
            inv: inv?,
            seqs: seqs?,
            last: last?,
            wm: wm?,
            windows: windows?,
            closed: closed?,
            counts: counts?,
            seen,
        })
    }

    /// The text of a range.
    pub fn s(&self, s: S) -> &str {
        slice(&self.text, s)
    }

    /// Ask the CPU to bring the state's memory into its caches (a hint: it cannot fault), so that
    /// a cold state is warm by the time it is worked on.
    pub fn prefetch(&self) {
        prefetch(self as *const Self as *const u8, std::mem::size_of::<Self>());
        prefetch(self.text.as_ptr(), self.text.len());
    }

    /// The length of its JSON, about.
    pub fn size_hint(&self) -> usize {
        self.text.len() + 256
    }

    /// How much the text grew since the load (strings and new windows' parts appended).
    pub fn grown(&self) -> usize {
        self.text.len() - self.loaded
    }

    /// A new window's accumulator: the template's, its ranges moved to this state's text.
    pub fn adopt<A: Acc>(&mut self, t: &Template<A>) -> A {
        let mut acc = t.acc.clone();
        for r in acc.ranges() {
            *r = push(&mut self.text, slice(&t.text, *r));
        }
        acc
    }

    /// `state["wm"][key] = v`: in place, or a new key last.
    pub fn set_wm(&mut self, key: &str, v: Num) {
        let State { text, wm, .. } = self;
        set_in(text, wm, key, v);
    }

    /// `state.setdefault("seen", {})[key] = v`: a missing "seen" is added at the end.
    pub fn set_seen(&mut self, key: &str, v: Num) {
        if self.seen.is_none() {
            self.order.push(Slot::Seen);
        }
        let State { text, seen, .. } = self;
        set_in(text, seen.get_or_insert_with(SmallVec::new), key, v);
    }

    /// A range holding ``s`` as a source: one some window already lists, else appended.
    pub fn source(&mut self, s: &str) -> S {
        for (_, f) in &self.windows {
            let found = match f {
                Family::Proof(w) => w.iter().flat_map(|(_, a)| &a.sources).find(|x| self.s(**x) == s),
                Family::Agg(w) => w.iter().flat_map(|(_, a)| &a.sources).find(|x| self.s(**x) == s),
                Family::Other(_) => None,
            };
            if let Some(x) = found {
                return *x;
            }
        }
        push(&mut self.text, s)
    }

    /// proofs._sources / aggregation._add_sources into window ``win`` of family ``fam``: each
    /// (text, range) of the record's sources not yet listed, in order.
    pub fn add_sources(&mut self, fam: usize, win: usize, sources: &[(&str, S)]) {
        let State { text, windows, .. } = self;
        let list = match &mut windows[fam].1 {
            Family::Proof(w) => &mut w[win].1.sources,
            Family::Agg(w) => &mut w[win].1.sources,
            Family::Other(_) => unreachable!("sources of a family that is not typed"),
        };
        for (t, s) in sources {
            if !list.iter().any(|x| slice(text, *x) == *t) {
                list.push(*s);
            }
        }
    }

    /// state["key"] if it is a string.
    pub fn key(&self) -> Option<String> {
        self.order.iter().rev().find_map(|s| match s {
            Slot::Other(k, r) if self.s(*k) == "key" => Some(serde_json::from_str::<Option<String>>(self.s(*r)).ok().flatten()),
            _ => None,
        })?
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let w = &mut W { text: &self.text, out };
        w.b(b"{");
        for (i, slot) in self.order.iter().enumerate() {
            w.comma(i);
            match slot {
                Slot::Inventory => {
                    w.b(b"\"inventory\":");
                    w.raw(self.inventory);
                }
                Slot::Seqs => {
                    w.b(b"\"seqs\":{");
                    for (j, (schema, boots)) in self.seqs.iter().enumerate() {
                        w.comma(j);
                        w.key(*schema);
                        w.b(b"{");
                        for (k, b) in boots.iter().enumerate() {
                            w.comma(k);
                            w.key(b.id);
                            w.b(b"[");
                            w.num(I(b.top));
                            w.b(b",");
                            w.raw(b.missing);
                            w.b(b"]");
                        }
                        w.b(b"}");
                    }
                    w.b(b"}");
                }
                Slot::Last => {
                    w.b(b"\"last\":");
                    match &self.last {
                        None => w.b(b"null"),
                        Some(l) => l.write(w),
                    }
                }
                Slot::Wm => {
                    w.b(b"\"wm\":");
                    w.num_map(&self.wm);
                }
                Slot::Windows => {
                    w.b(b"\"windows\":{");
                    for (j, (name, f)) in self.windows.iter().enumerate() {
                        w.comma(j);
                        w.key(*name);
                        match f {
                            Family::Proof(v) => w_wins(w, v),
                            Family::Agg(v) => w_wins(w, v),
                            Family::Other(r) => w.raw(*r),
                        }
                    }
                    w.b(b"}");
                }
                Slot::Closed => {
                    w.b(b"\"closed\":");
                    w.num_map(&self.closed);
                }
                Slot::Counts => {
                    w.b(b"\"counts\":");
                    w.num_map(&self.counts);
                }
                Slot::Seen => {
                    w.b(b"\"seen\":");
                    w.num_map(self.seen.as_deref().unwrap_or_default());
                }
                Slot::Other(k, r) => {
                    w.key(*k);
                    w.raw(*r);
                }
            }
        }
        w.b(b"}");
    }
}
