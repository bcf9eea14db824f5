//! A host state (the JSON of processors.engine.new_state) typed where the fast path reads or writes
//! it, and kept as its JSON text (`RawValue`) everywhere else, so that it is written back byte for
//! byte as `orjson.dumps` writes the same Python state.
//!
//! Parsing is lenient about nothing it cannot write back: `State::parse` takes what fits the types,
//! and the store keeps a state typed only if `State::write` then gives back the very bytes it was
//! loaded from (`crate::load_state`); anything else (a key order, a key or a type the engine never
//! writes, a duplicate key, a number orjson writes otherwise) stays raw and is left to Python.
//! Numbers are written as orjson writes them (itoa; ryu, with orjson's `e+` for a positive exponent).
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Number;

use crate::Num::{self, F, I};
use crate::{BYTE_NAMES, COUNTERS, RATE_NAMES, SUM_NAMES};

pub type Raw = Box<RawValue>;
/// A state field that holds a number or null.
pub type ONum = Option<Num>;

// --- parsing ------------------------------------------------------------------------------------

/// A JSON object as its (key, value text) pairs in order, duplicates kept.
struct RawObj(Vec<(String, Raw)>);

impl<'de> Deserialize<'de> for RawObj {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObj;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawObj, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some(k) = m.next_key::<String>()? {
                    out.push((k, m.next_value::<Raw>()?));
                }
                Ok(RawObj(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn obj(r: &RawValue) -> Option<Vec<(String, Raw)>> {
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

fn number(r: &RawValue) -> Option<Num> {
    number_of(&serde_json::from_str::<Number>(r.get()).ok()?)
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

fn string(r: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(r.get()).ok()
}

fn ostring(r: &RawValue) -> Option<Option<String>> {
    if is_null(r) {
        Some(None)
    } else {
        string(r).map(Some)
    }
}

fn distinct<K: PartialEq>(keys: &[K]) -> bool {
    keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k))
}

fn no_dups<K: PartialEq, T>(v: &[(K, T)]) -> bool {
    v.iter().enumerate().all(|(i, (k, _))| v[..i].iter().all(|(k2, _)| k2 != k))
}

/// A {key: number} object (wm, closed, counts, seen).
fn num_map(r: &RawValue) -> Option<Vec<(String, Num)>> {
    let v = obj(r)?.into_iter().map(|(k, r)| Some((k, number(&r)?))).collect::<Option<Vec<_>>>()?;
    no_dups(&v).then_some(v)
}

/// An object with exactly these keys in this order: its values.
fn fields<const N: usize>(r: &RawValue, keys: [&str; N]) -> Option<[Raw; N]> {
    let o = obj(r)?;
    if o.len() != N || !o.iter().zip(keys).all(|((k, _), want)| k == want) {
        return None;
    }
    o.into_iter().map(|(_, v)| v).collect::<Vec<_>>().try_into().ok()
}

/// A window's key: str(start) of an int start.
fn window_key(k: &str) -> Option<i64> {
    let start: i64 = k.parse().ok()?;
    (start.to_string() == k).then_some(start)
}

// --- writing ------------------------------------------------------------------------------------

fn w_raw(out: &mut Vec<u8>, r: &RawValue) {
    out.extend_from_slice(r.get().as_bytes());
}

pub fn w_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a str into a Vec cannot fail");
}

/// `"key":`
fn w_key(out: &mut Vec<u8>, k: &str) {
    w_str(out, k);
    out.push(b':');
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

fn w_ostr(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => w_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn w_num_map(out: &mut Vec<u8>, m: &[(String, Num)]) {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        w_key(out, k);
        w_num(out, *v);
    }
    out.push(b'}');
}

fn w_strs(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        w_str(out, s);
    }
    out.push(b']');
}

/// `{"name":[a,b],...}` of an aggregation accumulator's sum or rate.
fn w_pairs(out: &mut Vec<u8>, names: &[&str], v: &[(u8, Num, Num)]) {
    out.push(b'{');
    for (i, (k, a, b)) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        w_key(out, names[*k as usize]);
        out.push(b'[');
        w_num(out, *a);
        out.push(b',');
        w_num(out, *b);
        out.push(b']');
    }
    out.push(b'}');
}

// --- the parts ----------------------------------------------------------------------------------

/// One boot's entry of seqs[schema]: [max_seq, missing].
pub struct Boot {
    pub id: String,
    pub top: i64,
    missing: Raw,
}

fn parse_seqs(r: &RawValue) -> Option<Vec<(String, Vec<Boot>)>> {
    let mut out = Vec::new();
    for (schema, boots) in obj(r)? {
        let mut v = Vec::new();
        for (id, entry) in obj(&boots)? {
            let (top, missing): (Number, Raw) = serde_json::from_str(entry.get()).ok()?;
            let I(top) = number_of(&top)? else { return None };
            v.push(Boot { id, top, missing });
        }
        if !distinct(&v.iter().map(|b| b.id.as_str()).collect::<Vec<_>>()) {
            return None;
        }
        out.push((schema, v));
    }
    no_dups(&out).then_some(out)
}

fn w_seqs(out: &mut Vec<u8>, seqs: &[(String, Vec<Boot>)]) {
    out.push(b'{');
    for (i, (schema, boots)) in seqs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        w_key(out, schema);
        out.push(b'{');
        for (j, b) in boots.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            w_key(out, &b.id);
            out.push(b'[');
            w_num(out, I(b.top));
            out.push(b',');
            w_raw(out, &b.missing);
            out.push(b']');
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// state["last"] when not null: the usage baseline; counters by their index in COUNTERS.
pub struct Last {
    pub boot: String,
    pub seq: i64,
    pub counters: [ONum; 5],
}

impl Last {
    fn parse(r: &RawValue) -> Option<Self> {
        let [boot, seq, counters] = fields(r, ["boot_id", "seq", "counters"])?;
        let mut c = [None; 5];
        for (k, v) in obj(&counters)? {
            c[COUNTERS.iter().position(|p| *p == k)?] = Some(number(&v)?);
        }
        Some(Self { boot: string(&boot)?, seq: int(&seq)?, counters: c })
    }

    /// In COUNTERS order, as validation.counters_of builds it (a loaded state in another order
    /// does not write back the same and stays raw).
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"boot_id\":");
        w_str(out, &self.boot);
        out.extend_from_slice(b",\"seq\":");
        w_num(out, I(self.seq));
        out.extend_from_slice(b",\"counters\":{");
        let mut first = true;
        for (path, v) in COUNTERS.iter().zip(self.counters) {
            if let Some(v) = v {
                if !first {
                    out.push(b',');
                }
                first = false;
                w_key(out, path);
                w_num(out, v);
            }
        }
        out.extend_from_slice(b"}}");
    }
}

/// proofs.new_acc(), field for field in its order.
#[derive(Clone)]
pub struct ProofAcc {
    pub n: ONum,
    pub interval_s: ONum,
    pub boot_id: Option<String>,
    pub first_seq: ONum,
    pub last_seq: ONum,
    gaps: Raw,
    pub digest: [u8; 32],
    pub inputs: ONum,
    pub cpu_core_s: ONum,
    pub cores: ONum,
    pub mem_byte_s: ONum,
    pub gpu_s: ONum,
    /// by proofs.BYTE_COUNTERS, in its order (BYTE_NAMES)
    pub bytes: [ONum; 4],
    pub max_skew_us: ONum,
    pub sources: Vec<String>,
    ebpf: Raw,
}

const PROOF_KEYS: [&str; 16] = ["n", "interval_s", "boot_id", "first_seq", "last_seq", "gaps", "digest", "inputs",
                                "cpu_core_s", "cores", "mem_byte_s", "gpu_s", "bytes", "max_skew_us", "sources", "ebpf"];

impl ProofAcc {
    pub fn parse(r: &RawValue) -> Option<Self> {
        let [n, interval_s, boot_id, first_seq, last_seq, gaps, digest, inputs, cpu_core_s, cores, mem_byte_s,
             gpu_s, bytes, max_skew_us, sources, ebpf] = fields(r, PROOF_KEYS)?;
        let mut d = [0u8; 32];
        hex::decode_to_slice(string(&digest)?, &mut d).ok()?;
        let b = fields(&bytes, BYTE_NAMES)?;
        Some(Self {
            n: onum(&n)?,
            interval_s: onum(&interval_s)?,
            boot_id: ostring(&boot_id)?,
            first_seq: onum(&first_seq)?,
            last_seq: onum(&last_seq)?,
            gaps,
            digest: d,
            inputs: onum(&inputs)?,
            cpu_core_s: onum(&cpu_core_s)?,
            cores: onum(&cores)?,
            mem_byte_s: onum(&mem_byte_s)?,
            gpu_s: onum(&gpu_s)?,
            bytes: [onum(&b[0])?, onum(&b[1])?, onum(&b[2])?, onum(&b[3])?],
            max_skew_us: onum(&max_skew_us)?,
            sources: serde_json::from_str(sources.get()).ok()?,
            ebpf,
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"n\":");
        w_onum(out, self.n);
        out.extend_from_slice(b",\"interval_s\":");
        w_onum(out, self.interval_s);
        out.extend_from_slice(b",\"boot_id\":");
        w_ostr(out, self.boot_id.as_deref());
        out.extend_from_slice(b",\"first_seq\":");
        w_onum(out, self.first_seq);
        out.extend_from_slice(b",\"last_seq\":");
        w_onum(out, self.last_seq);
        out.extend_from_slice(b",\"gaps\":");
        w_raw(out, &self.gaps);
        out.extend_from_slice(b",\"digest\":\"");
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.digest, &mut hex).expect("64 hex digits for 32 bytes");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"\",\"inputs\":");
        w_onum(out, self.inputs);
        out.extend_from_slice(b",\"cpu_core_s\":");
        w_onum(out, self.cpu_core_s);
        out.extend_from_slice(b",\"cores\":");
        w_onum(out, self.cores);
        out.extend_from_slice(b",\"mem_byte_s\":");
        w_onum(out, self.mem_byte_s);
        out.extend_from_slice(b",\"gpu_s\":");
        w_onum(out, self.gpu_s);
        out.extend_from_slice(b",\"bytes\":{");
        for (i, (k, v)) in BYTE_NAMES.iter().zip(self.bytes).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            w_key(out, k);
            w_onum(out, v);
        }
        out.extend_from_slice(b"},\"max_skew_us\":");
        w_onum(out, self.max_skew_us);
        out.extend_from_slice(b",\"sources\":");
        w_strs(out, &self.sources);
        out.extend_from_slice(b",\"ebpf\":");
        w_raw(out, &self.ebpf);
        out.push(b'}');
    }
}

/// aggregation.new_acc(), field for field in its order; sum, max and rate keep their insertion
/// order, by the figure's index in SUM_NAMES (sum, max) or RATE_NAMES (rate).
#[derive(Clone)]
pub struct AggAcc {
    pub n: ONum,
    pub interval_s: ONum,
    pub boot_id: Option<String>,
    pub sources: Vec<String>,
    pub cores: ONum,
    pub mem_total: ONum,
    pub sum: Vec<(u8, Num, Num)>,
    pub max: Vec<(u8, Num)>,
    pub rate: Vec<(u8, Num, Num)>,
    hist: Raw,
    unit: Raw,
    ctr: Raw,
    ebpf_n: Raw,
}

const AGG_KEYS: [&str; 13] =
    ["n", "interval_s", "boot_id", "sources", "cores", "mem_total", "sum", "max", "rate", "hist", "unit", "ctr", "ebpf_n"];

fn parse_pairs(r: &RawValue, names: &[&str]) -> Option<Vec<(u8, Num, Num)>> {
    let mut v = Vec::new();
    for (k, p) in obj(r)? {
        let i = names.iter().position(|n| *n == k)? as u8;
        let (a, b): (Number, Number) = serde_json::from_str(p.get()).ok()?;
        v.push((i, number_of(&a)?, number_of(&b)?));
    }
    distinct(&v.iter().map(|(i, _, _)| *i).collect::<Vec<_>>()).then_some(v)
}

impl AggAcc {
    pub fn parse(r: &RawValue) -> Option<Self> {
        let [n, interval_s, boot_id, sources, cores, mem_total, sum, max, rate, hist, unit, ctr, ebpf_n] =
            fields(r, AGG_KEYS)?;
        let mut maxes = Vec::new();
        for (k, v) in obj(&max)? {
            maxes.push((SUM_NAMES.iter().position(|n| *n == k)? as u8, number(&v)?));
        }
        if !no_dups(&maxes) {
            return None;
        }
        Some(Self {
            n: onum(&n)?,
            interval_s: onum(&interval_s)?,
            boot_id: ostring(&boot_id)?,
            sources: serde_json::from_str(sources.get()).ok()?,
            cores: onum(&cores)?,
            mem_total: onum(&mem_total)?,
            sum: parse_pairs(&sum, &SUM_NAMES)?,
            max: maxes,
            rate: parse_pairs(&rate, &RATE_NAMES)?,
            hist,
            unit,
            ctr,
            ebpf_n,
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"n\":");
        w_onum(out, self.n);
        out.extend_from_slice(b",\"interval_s\":");
        w_onum(out, self.interval_s);
        out.extend_from_slice(b",\"boot_id\":");
        w_ostr(out, self.boot_id.as_deref());
        out.extend_from_slice(b",\"sources\":");
        w_strs(out, &self.sources);
        out.extend_from_slice(b",\"cores\":");
        w_onum(out, self.cores);
        out.extend_from_slice(b",\"mem_total\":");
        w_onum(out, self.mem_total);
        out.extend_from_slice(b",\"sum\":");
        w_pairs(out, &SUM_NAMES, &self.sum);
        out.extend_from_slice(b",\"max\":{");
        for (i, (k, v)) in self.max.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            w_key(out, SUM_NAMES[*k as usize]);
            w_num(out, *v);
        }
        out.extend_from_slice(b"},\"rate\":");
        w_pairs(out, &RATE_NAMES, &self.rate);
        out.extend_from_slice(b",\"hist\":");
        w_raw(out, &self.hist);
        out.extend_from_slice(b",\"unit\":");
        w_raw(out, &self.unit);
        out.extend_from_slice(b",\"ctr\":");
        w_raw(out, &self.ctr);
        out.extend_from_slice(b",\"ebpf_n\":");
        w_raw(out, &self.ebpf_n);
        out.push(b'}');
    }
}

/// One family of state["windows"]: {str(start): acc} by start, in order.
pub enum Wins {
    Proof(Vec<(i64, ProofAcc)>),
    Agg(Vec<(i64, AggAcc)>),
    /// a family the engine's config does not have
    Other(Raw),
}

pub struct Family {
    pub name: String,
    pub wins: Wins,
}

fn parse_wins<T>(r: &RawValue, acc: fn(&RawValue) -> Option<T>) -> Option<Vec<(i64, T)>> {
    let v = obj(r)?.into_iter().map(|(k, a)| Some((window_key(&k)?, acc(&a)?))).collect::<Option<Vec<_>>>()?;
    no_dups(&v).then_some(v)
}

fn w_wins<T>(out: &mut Vec<u8>, v: &[(i64, T)], write: fn(&T, &mut Vec<u8>)) {
    out.push(b'{');
    for (i, (start, acc)) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(itoa::Buffer::new().format(*start).as_bytes());
        out.extend_from_slice(b"\":");
        write(acc, out);
    }
    out.push(b'}');
}

// --- the state ----------------------------------------------------------------------------------

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
    Other(String, Raw),
}

pub struct State {
    order: Vec<Slot>,
    inventory: Raw,
    /// what check_capacity reads of the inventory: None for a null one, else (cores,
    /// memory_total_bytes), each None when absent or null
    pub inv: Option<(ONum, ONum)>,
    pub seqs: Vec<(String, Vec<Boot>)>,
    pub last: Option<Last>,
    pub wm: Vec<(String, Num)>,
    pub windows: Vec<Family>,
    pub closed: Vec<(String, Num)>,
    pub counts: Vec<(String, Num)>,
    pub seen: Option<Vec<(String, Num)>>,
}

fn inv_nums(r: &RawValue) -> Option<Option<(ONum, ONum)>> {
    if is_null(r) {
        return Some(None);
    }
    let o = obj(r)?;
    // the last of duplicate keys, as Python's dict holds it
    let get = |key: &str| match o.iter().rev().find(|(k, _)| k == key) {
        None => Some(None),
        Some((_, v)) => onum(v),
    };
    Some(Some((get("cores")?, get("memory_total_bytes")?)))
}

impl State {
    /// The state typed, or None where it does not fit the types (see the module's doc: the caller
    /// also checks that it writes back the same bytes). ``agg``: the aggregation families.
    pub fn parse(json: &[u8], agg: &[(String, i64)]) -> Option<Self> {
        let top = serde_json::from_slice::<RawObj>(json).ok()?.0;
        let mut order = Vec::with_capacity(top.len());
        let (mut inventory, mut inv, mut seqs, mut last, mut wm) = (None, None, None, None, None);
        let (mut windows, mut closed, mut counts, mut seen) = (None, None, None, None);
        for (k, r) in top {
            let slot = match k.as_str() {
                "inventory" if inventory.is_none() => {
                    inv = Some(inv_nums(&r)?);
                    inventory = Some(r);
                    Slot::Inventory
                }
                "seqs" if seqs.is_none() => {
                    seqs = Some(parse_seqs(&r)?);
                    Slot::Seqs
                }
                "last" if last.is_none() => {
                    last = Some(if is_null(&r) { None } else { Some(Last::parse(&r)?) });
                    Slot::Last
                }
                "wm" if wm.is_none() => {
                    wm = Some(num_map(&r)?);
                    Slot::Wm
                }
                "windows" if windows.is_none() => {
                    let mut fams = Vec::new();
                    for (name, w) in obj(&r)? {
                        let wins = if name == "proof" {
                            Wins::Proof(parse_wins(&w, ProofAcc::parse)?)
                        } else if agg.iter().any(|(n, _)| *n == name) {
                            Wins::Agg(parse_wins(&w, AggAcc::parse)?)
                        } else {
                            Wins::Other(w)
                        };
                        fams.push((name, wins));
                    }
                    if !no_dups(&fams) {
                        return None;
                    }
                    windows = Some(fams.into_iter().map(|(name, wins)| Family { name, wins }).collect());
                    Slot::Windows
                }
                "closed" if closed.is_none() => {
                    closed = Some(num_map(&r)?);
                    Slot::Closed
                }
                "counts" if counts.is_none() => {
                    counts = Some(num_map(&r)?);
                    Slot::Counts
                }
                "seen" if seen.is_none() => {
                    seen = Some(num_map(&r)?);
                    Slot::Seen
                }
                "inventory" | "seqs" | "last" | "wm" | "windows" | "closed" | "counts" | "seen" => return None,
                _ => Slot::Other(k, r),
            };
            order.push(slot);
        }
        Some(Self {
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

    /// state["seen"], added at the end if absent (as `setdefault` does).
    pub fn seen_mut(&mut self) -> &mut Vec<(String, Num)> {
        if self.seen.is_none() {
            self.order.push(Slot::Seen);
        }
        self.seen.get_or_insert_with(Vec::new)
    }

    /// state["key"] if it is a string.
    pub fn key(&self) -> Option<String> {
        self.order.iter().rev().find_map(|s| match s {
            Slot::Other(k, r) if k == "key" => Some(ostring(r).flatten()),
            _ => None,
        })?
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, slot) in self.order.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match slot {
                Slot::Inventory => {
                    out.extend_from_slice(b"\"inventory\":");
                    w_raw(out, &self.inventory);
                }
                Slot::Seqs => {
                    out.extend_from_slice(b"\"seqs\":");
                    w_seqs(out, &self.seqs);
                }
                Slot::Last => {
                    out.extend_from_slice(b"\"last\":");
                    match &self.last {
                        None => out.extend_from_slice(b"null"),
                        Some(l) => l.write(out),
                    }
                }
                Slot::Wm => {
                    out.extend_from_slice(b"\"wm\":");
                    w_num_map(out, &self.wm);
                }
                Slot::Windows => {
                    out.extend_from_slice(b"\"windows\":{");
                    for (j, f) in self.windows.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        w_key(out, &f.name);
                        match &f.wins {
                            Wins::Proof(v) => w_wins(out, v, ProofAcc::write),
                            Wins::Agg(v) => w_wins(out, v, AggAcc::write),
                            Wins::Other(r) => w_raw(out, r),
                        }
                    }
                    out.push(b'}');
                }
                Slot::Closed => {
                    out.extend_from_slice(b"\"closed\":");
                    w_num_map(out, &self.closed);
                }
                Slot::Counts => {
                    out.extend_from_slice(b"\"counts\":");
                    w_num_map(out, &self.counts);
                }
                Slot::Seen => {
                    out.extend_from_slice(b"\"seen\":");
                    w_num_map(out, self.seen.as_deref().unwrap_or_default());
                }
                Slot::Other(k, r) => {
                    w_key(out, k);
                    w_raw(out, r);
                }
            }
        }
        out.push(b'}');
    }
}

/// Parse a template accumulator (the JSON of proofs.new_acc() or aggregation.new_acc()), which
/// must write back the same bytes.
pub fn template<T>(json: &[u8], parse: fn(&RawValue) -> Option<T>, write: fn(&T, &mut Vec<u8>)) -> Option<T> {
    let raw: Raw = serde_json::from_slice(json).ok()?;
    let acc = parse(&raw)?;
    let mut out = Vec::new();
    write(&acc, &mut out);
    (out == json).then_some(acc)
}
