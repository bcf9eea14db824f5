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
use smallvec::SmallVec;

mod close;
pub use close::Closing;

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

/// A cursor over a state's text, which load has checked to be JSON: one pass parses the typed parts
/// in place and skips the rest (their ranges kept). It reads compact JSON (as orjson writes it)
/// only; anything else fails, and the state stays raw.
pub struct Ctx<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
    /// unescaped strings, to append to the text
    extra: String,
}

fn parse_num(t: &str) -> Option<Num> {
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    // Rust's parsers round correctly, as serde_json's float_roundtrip does; past i64: None
    if t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
        t.parse().ok().map(F)
    } else {
        t.parse().ok().map(I)
    }
}

fn distinct<K: PartialEq>(keys: &[K]) -> bool {
    keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k))
}

/// A window's key: str(start) of an int start.
fn window_key(k: &str) -> Option<i64> {
    let start: i64 = k.parse().ok()?;
    (itoa::Buffer::new().format(start) == k).then_some(start)
}

impl<'a> Ctx<'a> {
    fn new(t: &'a str) -> Self {
        Self { t, b: t.as_bytes(), i: 0, extra: String::new() }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn lit(&mut self, l: &str) -> bool {
        let hit = self.b.get(self.i..).is_some_and(|b| b.starts_with(l.as_bytes()));
        if hit {
            self.i += l.len();
        }
        hit
    }

    /// A range of the text.
    fn at(&self, part: &str) -> S {
        let at = part.as_ptr() as usize - self.t.as_ptr() as usize;
        debug_assert!(at + part.len() <= self.t.len());
        S { at: at as u32, len: part.len() as u32 }
    }

    fn push(&mut self, s: &str) -> S {
        let at = self.t.len() + self.extra.len();
        self.extra.push_str(s);
        S { at: at as u32, len: s.len() as u32 }
    }

    /// A string token: its text with the quotes, and whether it holds an escape.
    fn str_tok(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        self.eat(b'"')?;
        let mut esc = false;
        loop {
            let j = self.i + memchr::memchr2(b'"', b'\\', self.b.get(self.i..)?)?;
            if self.b[j] == b'"' {
                self.i = j + 1;
                return Some((&self.t[start..self.i], esc));
            }
            esc = true;
            self.i = j + 2;
        }
    }

    /// A key (without an escape) and its colon.
    fn key(&mut self) -> Option<&'a str> {
        let (k, esc) = self.str_tok()?;
        self.eat(b':')?;
        (!esc).then(|| &k[1..k.len() - 1])
    }

    /// Past any value: its text.
    fn skip(&mut self) -> Option<&'a str> {
        let start = self.i;
        match self.peek()? {
            b'"' => {
                self.str_tok()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'{' | b'[' => {
                            depth += 1;
                            self.i += 1;
                        }
                        b'}' | b']' => {
                            depth -= 1;
                            self.i += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'"' => {
                            self.str_tok()?;
                        }
                        _ => self.i += 1,
                    }
                }
            }
            _ => {
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']')) {
                    self.i += 1;
                }
            }
        }
        Some(&self.t[start..self.i])
    }

    fn raw(&mut self) -> Option<S> {
        let r = self.skip()?;
        Some(self.at(r))
    }

    fn is_null(&mut self) -> bool {
        self.lit("null")
    }

    fn number(&mut self) -> Option<Num> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.i += 1;
        }
        parse_num(&self.t[start..self.i])
    }

    fn onum(&mut self) -> Option<ONum> {
        if self.is_null() {
            Some(None)
        } else {
            self.number().map(Some)
        }
    }

    fn int(&mut self) -> Option<i64> {
        match self.number()? {
            I(i) => Some(i),
            F(_) => None,
        }
    }

    /// A string value's content: in place if it has no escape, else unescaped and appended.
    fn string(&mut self) -> Option<S> {
        let (t, esc) = self.str_tok()?;
        if !esc {
            return Some(self.at(&t[1..t.len() - 1]));
        }
        let s: String = serde_json::from_str(t).ok()?;
        Some(self.push(&s))
    }

    fn ostring(&mut self) -> Option<Option<S>> {
        if self.is_null() {
            Some(None)
        } else {
            self.string().map(Some)
        }
    }

    /// `f(key)` per member of an object, which parses the member's value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let k = self.key()?;
            f(self, k)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            f(self)?;
            if self.eat(b',').is_none() {
                return self.eat(b']');
            }
        }
    }

    /// The next member of an object of fixed keys: ``k``'s (``first``: after the brace).
    fn field(&mut self, k: &str, first: bool) -> Option<()> {
        if first {
            self.eat(b'{')?;
        } else {
            self.eat(b',')?;
        }
        (self.key()? == k).then_some(())
    }

    fn strings(&mut self) -> Option<SmallVec<[S; 2]>> {
        let mut v = SmallVec::new();
        self.array(|cx| {
            v.push(cx.string()?);
            Some(())
        })?;
        Some(v)
    }

    fn num_map(&mut self) -> Option<NumMap> {
        let mut m = NumMap::new();
        let mut keys: SmallVec<[&str; 8]> = SmallVec::new();
        self.object(|cx, k| {
            keys.push(k);
            let n = cx.number()?;
            m.push((cx.at(k), n));
            Some(())
        })?;
        distinct(&keys).then_some(m)
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

fn parse_seqs(cx: &mut Ctx) -> Option<Seqs> {
    let mut out = Seqs::new();
    let mut schemas: SmallVec<[&str; 4]> = SmallVec::new();
    cx.object(|cx, schema| {
        schemas.push(schema);
        let mut v: SmallVec<[Boot; 2]> = SmallVec::new();
        let mut ids: SmallVec<[&str; 4]> = SmallVec::new();
        cx.object(|cx, id| {
            ids.push(id);
            cx.eat(b'[')?;
            let top = cx.int()?;
            cx.eat(b',')?;
            let missing = cx.raw()?;
            cx.eat(b']')?;
            v.push(Boot { id: cx.at(id), top, missing });
            Some(())
        })?;
        if !distinct(&ids) {
            return None;
        }
        out.push((cx.at(schema), v));
        Some(())
    })?;
    distinct(&schemas).then_some(out)
}

/// state["last"] when not null: the usage baseline; counters by their index in COUNTERS.
pub struct Last {
    pub boot: S,
    pub seq: i64,
    pub counters: [ONum; 5],
}

impl Last {
    fn parse(cx: &mut Ctx) -> Option<Self> {
        cx.field("boot_id", true)?;
        let boot = cx.string()?;
        cx.field("seq", false)?;
        let seq = cx.int()?;
        cx.field("counters", false)?;
        let mut c = [None; 5];
        cx.object(|cx, k| {
            c[COUNTERS.iter().position(|p| *p == k)?] = Some(cx.number()?);
            Some(())
        })?;
        cx.eat(b'}')?;
        Some(Self { boot, seq, counters: c })
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
    fn parse(cx: &mut Ctx) -> Option<Self> {
        let mut k = PROOF_KEYS.into_iter().enumerate();
        let mut f = |cx: &mut Ctx| {
            let (i, key) = k.next().expect("as many fields as PROOF_KEYS");
            cx.field(key, i == 0)
        };
        f(cx)?;
        let n = cx.onum()?;
        f(cx)?;
        let interval_s = cx.onum()?;
        f(cx)?;
        let boot_id = cx.ostring()?;
        f(cx)?;
        let first_seq = cx.onum()?;
        f(cx)?;
        let last_seq = cx.onum()?;
        f(cx)?;
        // untouched by the fast path, but proofs.add_usage's `acc["gaps"].extend(gaps)` raises on
        // anything but a list
        if cx.peek()? != b'[' {
            return None;
        }
        let gaps = cx.raw()?;
        f(cx)?;
        let (hex_digits, esc) = cx.str_tok()?;
        let mut digest = [0u8; 32];
        if esc {
            return None;
        }
        hex::decode_to_slice(&hex_digits[1..hex_digits.len() - 1], &mut digest).ok()?;
        f(cx)?;
        let inputs = cx.onum()?;
        f(cx)?;
        let cpu_core_s = cx.onum()?;
        f(cx)?;
        let cores = cx.onum()?;
        f(cx)?;
        let mem_byte_s = cx.onum()?;
        f(cx)?;
        let gpu_s = cx.onum()?;
        f(cx)?;
        let mut bytes = [None; 4];
        for (i, (b, name)) in bytes.iter_mut().zip(BYTE_NAMES).enumerate() {
            cx.field(name, i == 0)?;
            *b = cx.onum()?;
        }
        cx.eat(b'}')?;
        f(cx)?;
        let max_skew_us = cx.onum()?;
        f(cx)?;
        let sources = cx.strings()?;
        f(cx)?;
        let ebpf = cx.raw()?;
        cx.eat(b'}')?;
        Some(Self {
            n, interval_s, boot_id, first_seq, last_seq, gaps, digest, inputs, cpu_core_s, cores, mem_byte_s, gpu_s,
            bytes, max_skew_us, sources, ebpf,
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

fn parse_pairs<const N: usize>(cx: &mut Ctx, names: &[&str]) -> Option<SmallVec<[(u8, Num, Num); N]>>
where
    [(u8, Num, Num); N]: smallvec::Array<Item = (u8, Num, Num)>,
{
    let mut v: SmallVec<[(u8, Num, Num); N]> = SmallVec::new();
    cx.object(|cx, k| {
        let i = names.iter().position(|n| *n == k)? as u8;
        cx.eat(b'[')?;
        let a = cx.number()?;
        cx.eat(b',')?;
        let b = cx.number()?;
        cx.eat(b']')?;
        v.push((i, a, b));
        Some(())
    })?;
    distinct(&v.iter().map(|e| e.0).collect::<SmallVec<[u8; 8]>>()).then_some(v)
}

impl AggAcc {
    fn parse(cx: &mut Ctx) -> Option<Self> {
        let mut k = AGG_KEYS.into_iter().enumerate();
        let mut f = |cx: &mut Ctx| {
            let (i, key) = k.next().expect("as many fields as AGG_KEYS");
            cx.field(key, i == 0)
        };
        f(cx)?;
        let n = cx.onum()?;
        f(cx)?;
        let interval_s = cx.onum()?;
        f(cx)?;
        let boot_id = cx.ostring()?;
        f(cx)?;
        let sources = cx.strings()?;
        f(cx)?;
        let cores = cx.onum()?;
        f(cx)?;
        let mem_total = cx.onum()?;
        f(cx)?;
        let sum = parse_pairs(cx, &SUM_NAMES)?;
        f(cx)?;
        let mut max: SmallVec<[(u8, Num); 5]> = SmallVec::new();
        cx.object(|cx, k| {
            max.push((SUM_NAMES.iter().position(|n| *n == k)? as u8, cx.number()?));
            Some(())
        })?;
        if !distinct(&max.iter().map(|e| e.0).collect::<SmallVec<[u8; 8]>>()) {
            return None;
        }
        f(cx)?;
        let rate = parse_pairs(cx, &RATE_NAMES)?;
        f(cx)?;
        let hist = cx.raw()?;
        f(cx)?;
        let unit = cx.raw()?;
        f(cx)?;
        let ctr = cx.raw()?;
        f(cx)?;
        let ebpf_n = cx.raw()?;
        cx.eat(b'}')?;
        Some(Self { n, interval_s, boot_id, sources, cores, mem_total, sum, max, rate, hist, unit, ctr, ebpf_n })
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
    fn parse(cx: &mut Ctx) -> Option<Self>;
    fn write(&self, w: &mut W);
    /// Every range it holds, to move it to another text.
    fn ranges(&mut self) -> impl Iterator<Item = &mut S>;
}

impl Acc for ProofAcc {
    fn parse(cx: &mut Ctx) -> Option<Self> {
        ProofAcc::parse(cx)
    }
    fn write(&self, w: &mut W) {
        ProofAcc::write(self, w)
    }
    fn ranges(&mut self) -> impl Iterator<Item = &mut S> {
        [&mut self.gaps, &mut self.ebpf].into_iter().chain(self.boot_id.iter_mut()).chain(self.sources.iter_mut())
    }
}

impl Acc for AggAcc {
    fn parse(cx: &mut Ctx) -> Option<Self> {
        AggAcc::parse(cx)
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
        let mut cx = Ctx::new(text);
        let acc = A::parse(&mut cx)?;
        if cx.i != text.len() {
            return None;
        }
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

fn parse_wins<A: Acc>(cx: &mut Ctx) -> Option<Wins<A>> {
    let mut v: Wins<A> = SmallVec::new();
    cx.object(|cx, k| {
        v.push((window_key(k)?, A::parse(cx)?));
        Some(())
    })?;
    distinct(&v.iter().map(|e| e.0).collect::<SmallVec<[i64; 8]>>()).then_some(v)
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

/// state["inventory"]: its range, and what check_capacity reads of it.
fn parse_inventory(cx: &mut Ctx) -> Option<(S, Option<(ONum, ONum)>)> {
    let start = cx.i;
    if cx.is_null() {
        return Some((cx.at(&cx.t[start..cx.i]), None));
    }
    let (mut cores, mut mem) = (None, None);
    // the last of duplicate keys, as Python's dict holds it
    cx.object(|cx, k| {
        match k {
            "cores" => cores = cx.onum()?,
            "memory_total_bytes" => mem = cx.onum()?,
            _ => {
                cx.skip()?;
            }
        }
        Some(())
    })?;
    Some((cx.at(&cx.t[start..cx.i]), Some((cores, mem))))
}

impl State {
    /// The state typed, or None where it does not fit the types (see the module's doc: the caller
    /// also checks that it writes back the same bytes). ``agg``: the aggregation families.
    pub fn parse(json: &[u8], agg: &[(String, i64)]) -> Option<Self> {
        let base = std::str::from_utf8(json).ok()?;
        let mut cx = Ctx::new(base);
        let mut order = SmallVec::new();
        let (mut inventory, mut seqs, mut last, mut wm) = (None, None, None, None);
        let (mut windows, mut closed, mut counts, mut seen) = (None, None, None, None);
        cx.object(|cx, k| {
            let slot = match k {
                "inventory" if inventory.is_none() => {
                    inventory = Some(parse_inventory(cx)?);
                    Slot::Inventory
                }
                "seqs" if seqs.is_none() => {
                    seqs = Some(parse_seqs(cx)?);
                    Slot::Seqs
                }
                "last" if last.is_none() => {
                    last = Some(if cx.is_null() { None } else { Some(Last::parse(cx)?) });
                    Slot::Last
                }
                "wm" if wm.is_none() => {
                    wm = Some(cx.num_map()?);
                    Slot::Wm
                }
                "windows" if windows.is_none() => {
                    let mut fams: SmallVec<[(S, Family); 3]> = SmallVec::new();
                    let mut names: SmallVec<[&str; 4]> = SmallVec::new();
                    cx.object(|cx, name| {
                        names.push(name);
                        let fam = if name == "proof" {
                            Family::Proof(parse_wins(cx)?)
                        } else if agg.iter().any(|(n, _)| n == name) {
                            Family::Agg(parse_wins(cx)?)
                        } else {
                            Family::Other(cx.raw()?)
                        };
                        fams.push((cx.at(name), fam));
                        Some(())
                    })?;
                    if !distinct(&names) {
                        return None;
                    }
                    windows = Some(fams);
                    Slot::Windows
                }
                "closed" if closed.is_none() => {
                    closed = Some(cx.num_map()?);
                    Slot::Closed
                }
                "counts" if counts.is_none() => {
                    counts = Some(cx.num_map()?);
                    Slot::Counts
                }
                "seen" if seen.is_none() => {
                    seen = Some(cx.num_map()?);
                    Slot::Seen
                }
                "inventory" | "seqs" | "last" | "wm" | "windows" | "closed" | "counts" | "seen" => return None,
                _ => Slot::Other(cx.at(k), cx.raw()?),
            };
            order.push(slot);
            Some(())
        })?;
        if cx.i != base.len() {
            return None;
        }
        let (inventory, inv) = inventory?;
        let mut text = String::with_capacity(base.len() + cx.extra.len() + 256);
        text.push_str(base);
        text.push_str(&cx.extra);
        Some(Self {
            text,
            loaded: base.len() + cx.extra.len(),
            order,
            inventory,
            inv,
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

    /// validation.mark_seen's first sight of a boot, `seqs[schema][boot] = [seq, []]` (a new
    /// schema and the boot go last; past ``kept`` boots the oldest go), and Engine.ingest's new
    /// baseline, `last = {boot_id, seq, counters}`. Returns the boot's range.
    pub fn first_sight(&mut self, schema: &str, boot: &str, seq: i64, counters: [ONum; 5], kept: usize) -> S {
        let id = push(&mut self.text, boot);
        let missing = push(&mut self.text, "[]");
        let si = match self.seqs.iter().position(|(k, _)| slice(&self.text, *k) == schema) {
            Some(i) => i,
            None => {
                let k = push(&mut self.text, schema);
                self.seqs.push((k, SmallVec::new()));
                self.seqs.len() - 1
            }
        };
        let boots = &mut self.seqs[si].1;
        boots.push(Boot { id, top: seq, missing });
        if boots.len() > kept {
            boots.drain(..boots.len() - kept);
        }
        self.last = Some(Last { boot: id, seq, counters });
        id
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
