//! A native host-state store with a batch fast path for hm.usage.v1 records.
//!
//! Why: in Python the per-record work (parse, JSON Schema, the seq/time/counter/capacity rules,
//! the window updates) costs tens of microseconds of interpreter time per record, and the
//! interpreter has one thread. Here the host states live natively and `HostStore.ingest` runs a
//! whole batch with the GIL released, so that work leaves the interpreter's thread.
//!
//! A fast path, not a second engine: `ingest` accepts only the common case (the next seq of a
//! boot the state already knows, or the first record of a boot it has not seen, every rule
//! passing) and declines anything else, leaving that
//! state untouched; the caller then takes the state out and runs the Python engine
//! (processors/engine.py), which stays the authority for every rule and every rejection. When it
//! accepts, the state is what the Python engine would have made of it, down to int vs float and
//! dict key order (tests/unit/processors/test_native_ingest.py compares the two). Each record is
//! worked in two phases: every read and check on the borrowed state (any surprise declines), then
//! the writes, which cannot fail.
//!
//! A state is held typed (state.rs: the parts the fast path reads and writes as Rust fields, the
//! rest as its JSON text) when it writes back to the very bytes it was loaded from, else as those
//! bytes, and then every record of its host declines. A typed state is written as orjson.dumps
//! writes the Python state.
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod dom;
mod state;
mod validator;
use dom::Dom;
use smallvec::SmallVec;
use state::{AggAcc, Closing, Family, ONum, ProofAcc, State, Template, S};

const SCHEMA: &str = "hm.usage.v1";
/// validation.BOOTS_KEPT: the boots whose seqs a state tracks per schema (a test compares them).
const BOOTS_KEPT: usize = 2;
/// validation.COUNTERS: cumulative counters that must not go backwards within a boot.
const COUNTERS: [&str; 5] = ["cpu.busy_s", "disk.read_bytes", "disk.write_bytes", "network.rx_bytes", "network.tx_bytes"];
/// proofs.BYTE_COUNTERS' names, in its order (the state's acc["bytes"])
const BYTE_NAMES: [&str; 4] = ["disk_read", "disk_write", "net_rx", "net_tx"];
/// aggregation.SUMS' and aggregation.RATES' figures, in their order
const SUM_NAMES: [&str; 5] = ["cpu_utilisation", "memory_used_bytes", "psi_cpu", "psi_memory", "psi_io"];
const RATE_NAMES: [&str; 4] = ["disk_read", "disk_write", "net_rx", "net_tx"];

/// The paths of validation.USAGE_NUMBERS that the rules and windows read: COUNTERS, then
/// aggregation.SUMS' paths, then aggregation.RATES' (also proofs.BYTE_COUNTERS' rates), then the rest.
const PATHS: [&str; NP] = [
    "cpu.busy_s", "disk.read_bytes", "disk.write_bytes", "network.rx_bytes", "network.tx_bytes",
    "cpu.utilisation", "memory.used_bytes", "load.psi.cpu.some_avg10", "load.psi.memory.some_avg10",
    "load.psi.io.some_avg10",
    "disk.read_bytes_per_s", "disk.write_bytes_per_s", "network.rx_bytes_per_s", "network.tx_bytes_per_s",
    "cpu.cores", "cpu.busy_core_s", "memory.total_bytes",
];
const NP: usize = 17;
const P_SUMS: usize = 5;
const P_MEM_USED: usize = 6;
const P_RATES: usize = 10;
const P_CORES: usize = 14;
const P_BUSY_CORE_S: usize = 15;
const P_MEM_TOTAL: usize = 16;
/// proofs.BYTE_COUNTERS in BYTE_NAMES' order: (counter, rate) as indices of PATHS
const BYTES: [(usize, usize); 4] = [(1, P_RATES), (2, P_RATES + 1), (3, P_RATES + 2), (4, P_RATES + 3)];

/// A number with Python's arithmetic: int op int stays an int (declining past i64), anything with
/// a float is a float (the int converted first, rounded to nearest as CPython does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    I(i64),
    F(f64),
}

use Num::{F, I};

impl Num {
    fn f(self) -> f64 {
        match self {
            I(i) => i as f64,
            F(f) => f,
        }
    }
    fn truthy(self) -> bool {
        match self {
            I(i) => i != 0,
            F(f) => f != 0.0,
        }
    }
    fn add(self, o: Num) -> Option<Num> {
        match (self, o) {
            (I(a), I(b)) => a.checked_add(b).map(I),
            _ => Some(F(self.f() + o.f())),
        }
    }
    fn sub(self, o: Num) -> Option<Num> {
        match (self, o) {
            (I(a), I(b)) => a.checked_sub(b).map(I),
            _ => Some(F(self.f() - o.f())),
        }
    }
    fn mul(self, o: Num) -> Option<Num> {
        match (self, o) {
            (I(a), I(b)) => a.checked_mul(b).map(I),
            _ => Some(F(self.f() * o.f())),
        }
    }
    /// Python's comparison, exact between ints and floats (no rounding of the int).
    fn cmp(self, o: Num) -> Option<Ordering> {
        match (self, o) {
            (I(a), I(b)) => Some(a.cmp(&b)),
            (F(a), F(b)) => a.partial_cmp(&b),
            (I(a), F(b)) => int_float_cmp(a, b),
            (F(a), I(b)) => int_float_cmp(b, a).map(Ordering::reverse),
        }
    }
    fn gt(self, o: Num) -> bool {
        self.cmp(o) == Some(Ordering::Greater)
    }
    /// `self <= o`: the rules' "within the limit" (a NaN, which JSON cannot carry, would decline).
    fn le(self, o: Num) -> bool {
        matches!(self.cmp(o), Some(Ordering::Less | Ordering::Equal))
    }
    /// The number to store; None (decline) for inf or NaN, which orjson would write as null.
    fn fin(self) -> Option<Num> {
        match self {
            F(f) if !f.is_finite() => None,
            n => Some(n),
        }
    }
}

fn int_float_cmp(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let floor = f.floor();
    const TWO_63: f64 = (1u64 << 63) as f64;
    if floor >= TWO_63 {
        return Some(Ordering::Less);
    }
    if floor < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let k = floor as i64; // exact: an integral f64 within i64's range
    Some(match i.cmp(&k) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    })
}

/// A JSON number of the record as Python holds it (orjson.loads): Some(None) for a non-number,
/// None (decline) for an int beyond i64.
fn num(v: &Dom) -> Option<Option<Num>> {
    match *v {
        Dom::F(f) => Some(Some(F(f))),
        Dom::I(i) => Some(Some(I(i))),
        Dom::U(_) => None,
        _ => Some(None),
    }
}

/// A record's object: its members in document order, keys unique (dom::parse refuses duplicates).
type Obj<'a> = [(std::borrow::Cow<'a, str>, Dom<'a>)];

/// `obj.get(key)` of the record's dict.
fn get<'o, 'a>(obj: &'o Obj<'a>, key: &str) -> Option<&'o Dom<'a>> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn as_str<'o>(v: &'o Dom) -> Option<&'o str> {
    match v {
        Dom::Str(s) => Some(s),
        _ => None,
    }
}

/// An int of the record (a float, even integral, is not: it stays a float in Python).
fn as_i64(v: &Dom) -> Option<i64> {
    match *v {
        Dom::I(i) => Some(i),
        _ => None,
    }
}

/// validation.numbers at one dotted path: the number there (objects all the way down), if any.
fn pick(rec: &Obj, path: &str) -> Option<Option<Num>> {
    let mut obj = rec;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(v) = get(obj, part) else { return Some(None) };
        if parts.peek().is_none() {
            return num(v);
        }
        match v {
            Dom::Obj(o) => obj = o,
            _ => return Some(None),
        }
    }
    Some(None)
}

struct Config {
    validator: validator::Node,
    proof_len_us: i64,
    agg: Vec<(String, i64)>,
    stale_after_s: f64,
    clock_skew_s: f64,
    over_capacity_factor: f64,
    new_proof_acc: Template<ProofAcc>,
    new_agg_acc: Template<AggAcc>,
    closing: Closing,
}

impl Config {
    /// The record parsed, if it is an hm.usage.v1 record of ``host_id`` that passes the schema.
    /// dom::parse refuses (declines) every record orjson could read differently: duplicate keys,
    /// a float -0.0 (orjson reads the literal `-0` as the int 0, serde_json as -0.0), a float of
    /// 2^63 or more (maybe an integer literal past u64), nesting past 128. What it accepts, the
    /// compiled validator judges as jsonschema (draft 7, formats asserted) judges orjson's dict.
    fn parse<'a>(&self, host_id: &str, value: &'a [u8]) -> Option<Vec<(std::borrow::Cow<'a, str>, Dom<'a>)>> {
        let rec = dom::parse(value)?;
        if !self.validator.is_valid(&rec) {
            return None;
        }
        let Dom::Obj(rec) = rec else { return None };
        if as_str(get(&rec, "schema")?)? != SCHEMA || as_str(get(&rec, "host_id")?)? != host_id {
            return None; // the Python path files a record under its own host_id
        }
        Some(rec)
    }

    /// Every number of PATHS in the record (validation.numbers), in one walk of the objects on
    /// the way (a lookup per path hashed some forty keys); None declines.
    fn numbers(rec: &Obj) -> Option<[ONum; NP]> {
        let mut nums = [None; NP];
        for (k, v) in rec {
            let Dom::Obj(o) = v else { continue };
            let leaves: &[(&str, usize)] = match k.as_ref() {
                "cpu" => &[("busy_s", 0), ("utilisation", 5), ("cores", P_CORES), ("busy_core_s", P_BUSY_CORE_S)],
                "disk" => &[("read_bytes", 1), ("write_bytes", 2), ("read_bytes_per_s", 10), ("write_bytes_per_s", 11)],
                "network" => &[("rx_bytes", 3), ("tx_bytes", 4), ("rx_bytes_per_s", 12), ("tx_bytes_per_s", 13)],
                "memory" => &[("used_bytes", P_MEM_USED), ("total_bytes", P_MEM_TOTAL)],
                "load" => {
                    let Some(Dom::Obj(psi)) = get(o, "psi") else { continue };
                    for (k, i) in [("cpu", 7), ("memory", 8), ("io", 9)] {
                        if let Some(Dom::Obj(r)) = get(psi, k) {
                            if let Some(v) = get(r, "some_avg10") {
                                nums[i] = num(v)?;
                            }
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            for (k, v) in o {
                if let Some(&(_, i)) = leaves.iter().find(|(name, _)| *name == k) {
                    nums[i] = num(v)?;
                }
            }
        }
        debug_assert!(PATHS.iter().zip(&nums).all(|(p, n)| pick(rec, p).map(|x| x.map(|x| x.f().to_bits()))
                                                    == Some(n.map(|x| x.f().to_bits()))));
        Some(nums)
    }

    /// Engine.ingest's decisions for the common case, on the borrowed state; None declines. The
    /// dashboard windows' writes go to ``aggs``. ``vh``: sha256 of the record's value.
    fn plan(&self, st: &State, rec: &Obj, vh: &[u8; 32], now_us: i64, aggs: &mut Vec<AggPlan>)
            -> Option<Plan> {
        // integral floats pass "integer" but stay floats in Python: as_i64 declines them
        let (boot, seq, ts) = (as_str(get(rec, "boot_id")?)?, as_i64(get(rec, "seq")?)?, as_i64(get(rec, "ts")?)?);

        // dedupe: the next seq of a boot already seen, or the first sight of a boot (gaps, fills,
        // duplicates: Python)
        let si = st.seqs.iter().position(|(s, _)| st.s(*s) == SCHEMA);
        let seen = si.and_then(|si| Some((si, st.seqs[si].1.iter().position(|b| st.s(b.id) == boot)?)));
        if let Some((si, bi)) = seen {
            if st.seqs[si].1[bi].top.checked_add(1)? != seq {
                return None;
            }
        }

        // validation.check_time, then late
        let age_s = now_us.checked_sub(ts)? as f64 / 1e6;
        if age_s > self.stale_after_s || age_s.abs() > self.clock_skew_s {
            return None;
        }
        let closed = |name: &str| match st.closed.iter().find(|(k, _)| st.s(*k) == name) {
            Some((_, I(i))) => Some(*i),
            _ => None,
        };
        let pstart = ts - ts.rem_euclid(self.proof_len_us);
        if pstart.checked_add(self.proof_len_us)? <= closed("proof")? {
            return None;
        }

        // validation.numbers and counters_of
        let nums = Self::numbers(rec)?;

        // the baseline: the previous sample of this boot; a boot's first record starts a new one
        // (Engine.ingest's new_boot: its counters restart, nothing to check them against)
        const NO_BASE: [ONum; 5] = [None; 5];
        let base = match (seen, st.last.as_ref()) {
            (None, Some(last)) if st.s(last.boot) == boot => return None, // its boot trimmed from seqs: Python
            (None, _) => &NO_BASE,
            (Some(_), None) => return None,
            (Some(_), Some(last)) => {
                if st.s(last.boot) != boot || last.seq >= seq {
                    return None; // another boot's baseline, or none: Python
                }
                // validation.check_counters
                for (before, now) in last.counters.iter().zip(&nums[..5]) {
                    if let (Some(before), Some(now)) = (before, now) {
                        if !before.le(*now) {
                            return None;
                        }
                    }
                }
                &last.counters
            }
        };

        // validation.check_capacity
        let (inv_cores, inv_mem) = st.inv.unwrap_or((None, None));
        let elapsed = match get(rec, "elapsed_s") {
            Some(v) => Some(num(v)??), // a null or non-number elapsed_s: Python
            None => None,
        };
        let cores = match inv_cores {
            Some(c) if c.truthy() => Some(c),
            _ => nums[P_CORES],
        };
        if let (Some(busy), Some(cores), Some(elapsed)) = (nums[P_BUSY_CORE_S], cores, elapsed) {
            if !busy.le(cores.mul(elapsed)?.mul(F(self.over_capacity_factor))?) {
                return None;
            }
        }
        if let Some(used) = nums[P_MEM_USED] {
            for total in [nums[P_MEM_TOTAL], inv_mem].into_iter().flatten() {
                if !used.le(total) {
                    return None;
                }
            }
        }

        // what the windows read from the record
        let interval = match get(rec, "interval_s") {
            None | Some(Dom::Null) => None,
            Some(v) => Some(num(v)??), // `record.get("interval_s") or ...` would keep a non-number
        }
        .filter(|i| i.truthy());
        let elapsed_or_0 = elapsed.filter(|e| e.truthy()).unwrap_or(I(0)); // `record.get("elapsed_s") or 0`
        let skew = now_us.checked_sub(ts)?.checked_abs()?;

        // the proof window (proofs.counter_deltas, proofs.add_usage)
        let pfam = st.windows.iter().position(|(name, _)| st.s(*name) == "proof")?;
        let Family::Proof(pwins) = &st.windows[pfam].1 else { return None };
        let pwin = pwins.iter().position(|(s, _)| *s == pstart);
        let pacc = pwin.map_or(self.new_proof_acc.acc(), |i| &pwins[i].1);
        let int = |n: ONum| match n {
            Some(I(i)) => Some(i),
            _ => None,
        };
        let digest: [u8; 32] = Sha256::new().chain_update(pacc.digest).chain_update(vh).finalize().into();
        let new_boot = pacc.boot_id.map(|b| st.s(b)) != Some(boot);
        let (first_seq, last_seq) = if new_boot {
            (seq, seq)
        } else {
            (int(pacc.first_seq)?.min(seq), int(pacc.last_seq)?.max(seq))
        };
        let cpu_core_s = match nums[P_BUSY_CORE_S] {
            Some(busy) => Some(pacc.cpu_core_s?.add(busy)?.fin()?),
            None => None,
        };
        let pcores = match nums[P_CORES] {
            Some(I(c)) => {
                let cur = pacc.cores.filter(|x| x.truthy()).unwrap_or(I(0));
                Some(if I(c).gt(cur) { I(c) } else { cur }) // max() keeps the first of equals
            }
            _ => None,
        };
        let mem_byte_s = match nums[P_MEM_USED] {
            Some(used) => Some(pacc.mem_byte_s?.add(used.mul(elapsed_or_0)?)?.fin()?),
            None => None,
        };
        let mut gpu_s = None;
        if let Some(Dom::Arr(gpus)) = get(rec, "gpu") {
            if !gpus.is_empty() {
                let mut total = I(0); // sum() starts from the int 0
                for g in gpus.iter().filter_map(|g| match g {
                    Dom::Obj(o) => Some(o),
                    _ => None,
                }) {
                    let u = match get(g, "utilisation") {
                        None | Some(Dom::Null) | Some(Dom::Bool(false)) => I(0),
                        Some(v) => num(v)??,
                    };
                    total = total.add(if u.truthy() { u } else { I(0) }.mul(elapsed_or_0)?)?;
                }
                let start = pacc.gpu_s.filter(|x| x.truthy()).unwrap_or(F(0.0));
                gpu_s = Some(start.add(total)?.fin()?);
            }
        }
        let mut bytes = [I(0); 4];
        for (i, (counter, rate)) in BYTES.into_iter().enumerate() {
            let delta = match (base[counter], nums[counter]) {
                (Some(before), Some(now)) => now.sub(before)?,
                _ => nums[rate].unwrap_or(F(0.0)).mul(elapsed_or_0)?,
            };
            bytes[i] = pacc.bytes[i]?.add(delta)?.fin()?;
        }
        let max_skew_us = if I(skew).gt(pacc.max_skew_us?) { Some(I(skew)) } else { None };
        let proof = ProofPlan {
            fam: pfam,
            win: pwin,
            start: pstart,
            n: int(pacc.n)?.checked_add(1)?,
            inputs: int(pacc.inputs)?.checked_add(1)?,
            digest,
            new_boot,
            first_seq,
            last_seq,
            cpu_core_s,
            cores: pcores,
            mem_byte_s,
            gpu_s,
            bytes,
            max_skew_us,
        };

        // the dashboard windows (aggregation.usage_figures, aggregation.add_usage)
        aggs.clear();
        let rate_elapsed = elapsed.filter(|e| e.truthy());
        for (name, length) in &self.agg {
            let start = ts - ts.rem_euclid(*length);
            if start.checked_add(*length)? <= closed(name)? {
                continue; // that window was emitted; the proof still counts the record
            }
            let fam = st.windows.iter().position(|(n, _)| st.s(*n) == name)?;
            let Family::Agg(wins) = &st.windows[fam].1 else { return None };
            let win = wins.iter().position(|(s, _)| *s == start);
            let acc = win.map_or(self.new_agg_acc.acc(), |i| &wins[i].1);
            let mut sums = [None; 5];
            for (k, out) in sums.iter_mut().enumerate() {
                let Some(v) = nums[P_SUMS + k] else { continue };
                let (s, c) = acc.sum.iter().find(|e| e.0 as usize == k).map_or((F(0.0), I(0)), |e| (e.1, e.2));
                let higher = match acc.max.iter().find(|e| e.0 as usize == k) {
                    None => true, // v > -inf
                    Some(&(_, cur)) => v.gt(cur),
                };
                *out = Some((s.add(v)?.fin()?, c.add(I(1))?.fin()?, higher.then_some(v)));
            }
            let mut rates = [None; 4];
            if let Some(e) = rate_elapsed {
                for (k, out) in rates.iter_mut().enumerate() {
                    let Some(v) = nums[P_RATES + k] else { continue };
                    let (s, w) = acc.rate.iter().find(|e| e.0 as usize == k).map_or((F(0.0), F(0.0)), |e| (e.1, e.2));
                    *out = Some((s.add(v.mul(e)?)?.fin()?, w.add(e)?.fin()?));
                }
            }
            aggs.push(AggPlan { fam, win, start, n: int(acc.n)?.checked_add(1)?, sums, rates });
        }

        // the state's counters and watermark
        if st.grown() > MAX_GROWTH {
            return None; // the Python path's reload gives the state a fresh text
        }
        let accepted_i = st.counts.iter().position(|(k, _)| st.s(*k) == "accepted")?;
        let accepted = int(Some(st.counts[accepted_i].1))?.checked_add(1)?;
        let wm = match st.wm.iter().find(|(k, _)| st.s(*k) == SCHEMA) {
            None => 0,
            Some((_, v)) => int(Some(*v))?,
        };
        let mut counters = [None; 5];
        counters.copy_from_slice(&nums[..5]);
        Some(Plan {
            ts,
            seq,
            seen,
            accepted_i,
            accepted,
            wm: if ts > wm { ts } else { wm },
            now_us,
            interval,
            cores: nums[P_CORES].filter(|c| c.truthy()),
            mem_total: nums[P_MEM_TOTAL].filter(|m| m.truthy()),
            counters,
            proof,
        })
    }
}

/// What an accepted record writes into the proof window (`windows["proof"][start]`, made from the
/// template when `win` is None).
struct ProofPlan {
    fam: usize,
    win: Option<usize>,
    start: i64,
    n: i64,
    inputs: i64,
    digest: [u8; 32],
    new_boot: bool,
    first_seq: i64,
    last_seq: i64,
    cpu_core_s: ONum,
    cores: ONum,
    mem_byte_s: ONum,
    gpu_s: ONum,
    bytes: [Num; 4],
    max_skew_us: ONum,
}

/// ... into one dashboard window: per figure the new [sum, count] and the new max if higher, the
/// new rate pair.
struct AggPlan {
    fam: usize,
    win: Option<usize>,
    start: i64,
    n: i64,
    sums: [Option<(Num, Num, ONum)>; 5],
    rates: [Option<(Num, Num)>; 4],
}

/// What an accepted record writes into the state, worked out before anything is written.
struct Plan {
    ts: i64,
    seq: i64,
    /// (schema, boot) of the record's boot in seqs; None: its first sight
    seen: Option<(usize, usize)>,
    accepted_i: usize,
    accepted: i64,
    wm: i64,
    now_us: i64,
    /// the record's interval_s, cpu.cores and memory.total_bytes when truthy
    interval: ONum,
    cores: ONum,
    mem_total: ONum,
    /// the new baseline's counters
    counters: [ONum; 5],
    proof: ProofPlan,
}

fn upsert<T>(v: &mut SmallVec<[(u8, T); 5]>, k: usize, x: T) {
    match v.iter_mut().find(|e| e.0 as usize == k) {
        Some(e) => e.1 = x,
        None => v.push((k as u8, x)),
    }
}

/// A state's text grows by the strings and new windows' parts the fast path adds (a few bytes
/// per new window); past this, records decline, and the Python path's reload compacts it.
const MAX_GROWTH: usize = 1 << 16;

const CHECKED: &str = "checked by Config::plan";

/// The writes of a plan. Every place written was checked by `plan` on this very state, so the
/// lookups cannot miss; a missing one is a bug, not a record to decline.
fn apply(st: &mut State, p: &Plan, aggs: &[AggPlan], rec: &Obj, cfg: &Config) {
    // the record's boot: the baseline's (plan), or a new one (mark_seen's first sight, new_boot)
    let boot = match p.seen {
        Some((si, bi)) => {
            st.seqs[si].1[bi].top = p.seq;
            let last = st.last.as_mut().expect(CHECKED); // of this boot: only its seq and counters change
            last.seq = p.seq;
            last.counters = p.counters;
            last.boot
        }
        None => {
            let boot = get(rec, "boot_id").and_then(as_str).expect(CHECKED);
            st.first_sight(SCHEMA, boot, p.seq, p.counters, BOOTS_KEPT)
        }
    };
    st.counts[p.accepted_i].1 = I(p.accepted);
    st.set_seen(SCHEMA, I(p.now_us));
    st.set_wm(SCHEMA, I(p.wm));
    // the record's sources as ranges of the state's text
    let mut sources: SmallVec<[(&str, S); 4]> = SmallVec::new();
    if let Some(Dom::Arr(a)) = get(rec, "sources") {
        for s in a.iter().filter_map(as_str) {
            sources.push((s, st.source(s)));
        }
    }

    // the proof window; a new window goes last, as in the engine's `wins[str(start)] = new_acc()`
    let pp = &p.proof;
    let pwin = match pp.win {
        Some(i) => i,
        None => {
            let acc = st.adopt(&cfg.new_proof_acc);
            let Family::Proof(wins) = &mut st.windows[pp.fam].1 else { unreachable!("{CHECKED}") };
            wins.push((pp.start, acc));
            wins.len() - 1
        }
    };
    st.add_sources(pp.fam, pwin, &sources);
    let Family::Proof(wins) = &mut st.windows[pp.fam].1 else { unreachable!("{CHECKED}") };
    let acc = &mut wins[pwin].1;
    acc.n = Some(I(pp.n));
    acc.inputs = Some(I(pp.inputs));
    acc.digest = pp.digest;
    if p.interval.is_some() {
        acc.interval_s = p.interval;
    }
    if pp.new_boot {
        acc.boot_id = Some(boot);
    }
    acc.first_seq = Some(I(pp.first_seq));
    acc.last_seq = Some(I(pp.last_seq));
    if pp.cpu_core_s.is_some() {
        acc.cpu_core_s = pp.cpu_core_s;
    }
    if pp.cores.is_some() {
        acc.cores = pp.cores;
    }
    if pp.mem_byte_s.is_some() {
        acc.mem_byte_s = pp.mem_byte_s;
    }
    if pp.gpu_s.is_some() {
        acc.gpu_s = pp.gpu_s;
    }
    acc.bytes = pp.bytes.map(Some);
    if pp.max_skew_us.is_some() {
        acc.max_skew_us = pp.max_skew_us;
    }

    for a in aggs {
        let win = match a.win {
            Some(i) => i,
            None => {
                let acc = st.adopt(&cfg.new_agg_acc);
                let Family::Agg(wins) = &mut st.windows[a.fam].1 else { unreachable!("{CHECKED}") };
                wins.push((a.start, acc));
                wins.len() - 1
            }
        };
        st.add_sources(a.fam, win, &sources);
        let Family::Agg(wins) = &mut st.windows[a.fam].1 else { unreachable!("{CHECKED}") };
        let acc = &mut wins[win].1;
        acc.n = Some(I(a.n));
        if p.interval.is_some() {
            acc.interval_s = p.interval;
        }
        acc.boot_id = Some(boot); // `acc["boot_id"] = record.get("boot_id")`
        if p.cores.is_some() {
            acc.cores = p.cores;
        }
        if p.mem_total.is_some() {
            acc.mem_total = p.mem_total;
        }
        for (k, s) in a.sums.iter().enumerate() {
            let Some((sum, count, max)) = *s else { continue };
            match acc.sum.iter_mut().find(|e| e.0 as usize == k) {
                Some(e) => (e.1, e.2) = (sum, count),
                None => acc.sum.push((k as u8, sum, count)),
            }
            if let Some(m) = max {
                upsert(&mut acc.max, k, m);
            }
        }
        for (k, r) in a.rates.iter().enumerate() {
            let Some((s, w)) = *r else { continue };
            match acc.rate.iter_mut().find(|e| e.0 as usize == k) {
                Some(e) => (e.1, e.2) = (s, w),
                None => acc.rate.push((k as u8, s, w)),
            }
        }
    }
}

/// A stored state: typed, or (not in a shape the typed state writes back byte for byte) its JSON,
/// whose records all decline.
enum Host {
    Typed(Box<State>),
    Raw(Box<[u8]>),
}

impl Host {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Host::Typed(st) => st.write(out),
            Host::Raw(json) => out.extend_from_slice(json),
        }
    }

    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        self.write(&mut out);
        out
    }

    fn size_hint(&self) -> usize {
        match self {
            Host::Typed(st) => st.size_hint(),
            Host::Raw(json) => json.len(),
        }
    }
}

struct Entry {
    host: Host,
    dirty: bool,
    /// the pinned key's raw bytes and its hm-keyid, worked out at load (no usage record changes the key)
    ident: Option<Ident>,
}

struct Ident {
    key: [u8; 32],
    kid: String,
}

impl Ident {
    /// As validation._key_facts works them out of the pinned key, for a key that decodes strictly
    /// to 32 bytes (decode_key pins no other); None declines every record of the host.
    fn of(host: &Host) -> Option<Ident> {
        let Host::Typed(st) = host else { return None };
        let key: [u8; 32] = B64.decode(st.key()?).ok()?.try_into().ok()?;
        Some(Ident { key, kid: hex::encode(Sha256::digest(key)) })
    }
}

/// DSSE v1 pre-authentication encoding (schemas/dsse.py pae) of a usage record
fn pae(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 40);
    out.extend_from_slice(format!("DSSEv1 {} {} {} ", SCHEMA.len(), SCHEMA, value.len()).as_bytes());
    out.extend_from_slice(value);
    out
}

/// The first header of this name (validation.header), if it is bytes; None declines.
fn header<'py>(headers: &Bound<'py, PyAny>, name: &str) -> Option<Bound<'py, PyBytes>> {
    if let Ok(d) = headers.downcast::<PyDict>() {
        return d.get_item(name).ok()??.downcast_into::<PyBytes>().ok();
    }
    for item in headers.try_iter().ok()? {
        let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item.ok()?.extract().ok()?;
        if k.downcast::<PyString>().ok()?.to_str().ok()? == name {
            return v.downcast_into::<PyBytes>().ok();
        }
    }
    None
}

struct Inner {
    hosts: HashMap<String, Entry>,
    /// hosts with a declined record the caller has not handled yet (see ``ingest``), stored or not
    blocked: HashSet<String>,
    /// scratch space for the dashboard windows' plans of one record
    aggs: Vec<AggPlan>,
}

/// Host states by host_id, each the JSON of processors.engine.new_state, with a dirty flag.
#[pyclass(frozen, module = "hm_ingest")]
struct HostStore {
    cfg: Config,
    inner: Mutex<Inner>,
}

fn value_error(err: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// A state as loaded: typed if it writes back to the same bytes, else kept as its bytes.
fn load_state(cfg: &Config, json: &[u8]) -> PyResult<Host> {
    // State::parse reads JSON it trusts to be valid (it skips the parts it keeps as text)
    let valid = serde_json::from_slice::<serde::de::IgnoredAny>(json).is_ok();
    if let Some(st) = valid.then(|| State::parse(json, &cfg.agg)).flatten() {
        let mut out = Vec::with_capacity(json.len());
        st.write(&mut out);
        if out == json {
            return Ok(Host::Typed(Box::new(st)));
        }
    }
    match serde_json::from_slice::<Value>(json).map_err(value_error)? {
        Value::Object(_) => Ok(Host::Raw(json.into())),
        _ => Err(PyValueError::new_err("a host state is a JSON object")),
    }
}

impl HostStore {
    /// No thread ever waits for the GIL while it holds the lock (ingest holds it per record, with
    /// the GIL released), so the cheap calls take the lock with the GIL held: each waits for at
    /// most one record. Releasing the GIL in every call instead handed it to other Python threads
    /// (the verify thread's) for up to a switch interval each time.
    fn lock(&self) -> PyResult<MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| PyRuntimeError::new_err("hm_ingest.HostStore: poisoned by an earlier panic"))
    }
}

#[pymethods]
impl HostStore {
    /// ``usage_schema_json``: hm.usage.v1's JSON Schema text; window lengths in microseconds
    /// (``agg`` in the engine's order); the rest as processors.config.ProcessorConfig; the two
    /// templates are the JSON of proofs.new_acc() and aggregation.new_acc(); ``agg_topics``: each
    /// aggregation family's output topic, in ``agg``'s order.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(usage_schema_json: &str, proof_len_us: i64, agg: Vec<(String, i64)>, stale_after_s: f64,
           clock_skew_s: f64, over_capacity_factor: f64, new_proof_acc_json: &[u8], new_agg_acc_json: &[u8],
           agg_topics: Vec<String>, agg_grace_s: f64, proof_grace_s: f64) -> PyResult<Self> {
        let schema: Value = serde_json::from_str(usage_schema_json).map_err(value_error)?;
        // verdicts of jsonschema draft 7 with formats asserted, as schemas._compiled builds it, for
        // the keywords validator.rs implements; a schema with any other keyword is a ValueError
        let validator = validator::compile_root(&schema).map_err(PyValueError::new_err)?;
        if proof_len_us <= 0 || agg.iter().any(|(_, n)| *n <= 0) {
            return Err(PyValueError::new_err("window lengths must be positive"));
        }
        if agg.iter().any(|(n, _)| n == "proof") {
            return Err(PyValueError::new_err("\"proof\" is the proof windows' family, not an aggregation's"));
        }
        let new_proof_acc = Template::new(new_proof_acc_json).ok_or_else(|| {
            PyValueError::new_err("new_proof_acc_json is not the JSON of proofs.new_acc() that hm_ingest knows")
        })?;
        let new_agg_acc = Template::new(new_agg_acc_json).ok_or_else(|| {
            PyValueError::new_err("new_agg_acc_json is not the JSON of aggregation.new_acc() that hm_ingest knows")
        })?;
        if agg_topics.len() != agg.len() {
            return Err(PyValueError::new_err("agg_topics: one topic per aggregation family"));
        }
        let closing = Closing {
            proof_len_us,
            agg: agg.iter().zip(agg_topics).map(|((n, l), t)| (n.clone(), *l, t)).collect(),
            agg_grace_s,
            proof_grace_s,
        };
        let cfg = Config {
            validator, proof_len_us, agg, stale_after_s, clock_skew_s, over_capacity_factor, new_proof_acc, new_agg_acc,
            closing,
        };
        Ok(Self { cfg, inner: Mutex::new(Inner { hosts: HashMap::new(), blocked: HashSet::new(), aggs: Vec::new() }) })
    }

    /// Insert or replace a host's state (its JSON, as orjson.dumps writes it).
    fn load(&self, host_id: String, state_json: &[u8], dirty: bool) -> PyResult<()> {
        let host = load_state(&self.cfg, state_json)?;
        let ident = Ident::of(&host);
        self.lock()?.hosts.insert(host_id, Entry { host, dirty, ident });
        Ok(())
    }

    /// Remove a host's state and return (its JSON, its dirty flag), or None if not stored.
    fn take<'py>(&self, py: Python<'py>, host_id: &str) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        let taken = self.lock()?.hosts.remove(host_id);
        Ok(taken.map(|e| (PyBytes::new(py, &e.host.to_json()), e.dirty)))
    }

    /// (host_id, state JSON) of every dirty state; their flags are cleared, the states stay.
    fn dump_dirty<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // Without the GIL, and the lock held for DUMP_GROUP hosts at a time, not for the whole dump
        // (20,000 states, ~100 ms): the ingest thread applies its chunks meanwhile. A host whose
        // record applies after the listing is written with it (the changelog may run ahead of the
        // acks, never behind); one dirty after its write waits for the next dump.
        const DUMP_GROUP: usize = 64;
        let (buf, dumped) = py.allow_threads(|| {
            let listed: Vec<String> = self.lock()?.hosts.iter().filter(|(_, e)| e.dirty).map(|(h, _)| h.clone()).collect();
            let mut buf: Vec<u8> = Vec::new();
            let mut dumped: Vec<(String, Range<usize>)> = Vec::with_capacity(listed.len());
            for group in listed.chunks(DUMP_GROUP) {
                let mut inner = self.lock()?;
                buf.reserve(group.iter().filter_map(|h| inner.hosts.get(h)).map(|e| e.host.size_hint()).sum());
                for (i, h) in group.iter().enumerate() {
                    if let Some(Entry { host: Host::Typed(next), .. }) = group.get(i + 1).and_then(|n| inner.hosts.get(n)) {
                        next.prefetch(); // warm while this one is written
                    }
                    let Some(e) = inner.hosts.get_mut(h) else { continue };
                    if !e.dirty {
                        continue;
                    }
                    e.dirty = false;
                    let at = buf.len();
                    e.host.write(&mut buf);
                    dumped.push((h.clone(), at..buf.len()));
                }
            }
            Ok::<_, PyErr>((buf, dumped))
        })?;
        let items = dumped.into_iter().map(|(h, r)| {
            PyTuple::new(py, [h.into_pyobject(py)?.into_any(), PyBytes::new(py, &buf[r]).into_any()])
        });
        PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
    }

    /// The state's pinned ``key``: None if absent, null, or the host is not stored.
    fn key(&self, host_id: &str) -> PyResult<Option<String>> {
        Ok(self.lock()?.hosts.get(host_id).and_then(|e| match &e.host {
            Host::Typed(st) => st.key(),
            Host::Raw(json) => serde_json::from_slice::<Value>(json).ok()?.get("key")?.as_str().map(str::to_owned),
        }))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.lock()?.hosts.len())
    }

    fn __contains__(&self, host_id: &str) -> PyResult<bool> {
        Ok(self.lock()?.hosts.contains_key(host_id))
    }

    fn clear(&self) -> PyResult<()> {
        let mut inner = self.lock()?;
        inner.hosts.clear();
        inner.blocked.clear();
        Ok(())
    }

    /// Let these hosts' records be taken again: the caller has handled their declined ones.
    fn unblock(&self, host_ids: Vec<String>) -> PyResult<()> {
        let mut inner = self.lock()?;
        for h in &host_ids {
            inner.blocked.remove(h);
        }
        Ok(())
    }

    /// The hosts blocked by a decline and not unblocked since.
    fn blocked(&self) -> PyResult<Vec<String>> {
        Ok(self.lock()?.blocked.iter().cloned().collect())
    }

    fn hosts(&self) -> PyResult<Vec<String>> {
        Ok(self.lock()?.hosts.keys().cloned().collect())
    }

    /// Engine.close_due's dashboard windows for each host (state.rs's close module says which
    /// states it leaves): per host None (declined: the state untouched, or not stored; close it in
    /// Python), or (the outbox entries appended, as (topic, key, value), Engine.next_look_us of
    /// the state after, whether a proof window is due: see ``proof_part``). A host with an entry
    /// is dirty.
    #[allow(clippy::type_complexity)]
    fn close_aggs(&self, py: Python<'_>, host_ids: Vec<String>, now_us: i64)
                  -> PyResult<Vec<Option<(Vec<(String, String, String)>, Option<(i64, i64)>, bool)>>> {
        // Without the GIL, and the lock held per host: the ingest thread applies its chunks
        // meanwhile (a proof window's end is due for every host within a tick or two).
        let c = &self.cfg.closing;
        py.allow_threads(|| {
            host_ids.iter().map(|h| {
                let mut inner = self.lock()?;
                let Some(Entry { host: Host::Typed(st), dirty, .. }) = inner.hosts.get_mut(h) else { return Ok(None) };
                let Some((entries, proof_due)) = st.close_aggs(h, c, now_us) else { return Ok(None) };
                if !entries.is_empty() {
                    *dirty = true;
                    compact(st, &self.cfg);
                }
                Ok(Some((entries, st.next_look(c, now_us), proof_due)))
            }).collect()
        })
    }

    /// The part of a stored host's state that closing its proof windows reads and writes
    /// (Engine.close_proofs), as JSON; None if the host is not stored typed or the close is not
    /// the store's (its outbox marked: a retry).
    fn proof_part<'py>(&self, py: Python<'py>, host_id: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let inner = self.lock()?;
        let Some(Entry { host: Host::Typed(st), .. }) = inner.hosts.get(host_id) else { return Ok(None) };
        Ok(st.proof_part(host_id).map(|json| PyBytes::new(py, &json)))
    }

    /// Engine.close_proofs' results on ``part`` (``proof_part``'s JSON) written into the host's
    /// state: the proof windows but those ``kept`` dropped, ``closed_proof``, the chain (JSON)
    /// and the outbox entries (topic, key, value) appended, the state dirty. (True, and
    /// Engine.next_look_us of the state after); or (False, None), the state untouched, if its part
    /// changed since (a record applied meanwhile: close again later) or the host is not stored
    /// typed.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::type_complexity)]
    fn close_proofs(&self, host_id: &str, part: &[u8], kept: Vec<i64>, closed_proof: i64, chain_json: &str,
                    entries: Vec<(String, String, String)>, now_us: i64) -> PyResult<(bool, Option<(i64, i64)>)> {
        serde_json::from_str::<serde::de::IgnoredAny>(chain_json).map_err(value_error)?;
        let mut inner = self.lock()?;
        let c = &self.cfg.closing;
        let Some(Entry { host: Host::Typed(st), dirty, .. }) = inner.hosts.get_mut(host_id) else {
            return Ok((false, None));
        };
        if st.close_proofs(host_id, part, &kept, closed_proof, chain_json, &entries).is_none() {
            return Ok((false, None));
        }
        *dirty = true;
        compact(st, &self.cfg);
        Ok((true, st.next_look(c, now_us)))
    }

    /// ``state["outbox_mark"] = marks`` (the JSON of processors.app._mark_outboxes' dict), then the
    /// state's JSON to write to the table: the state is clean after. None if not stored typed.
    fn mark<'py>(&self, py: Python<'py>, host_id: &str, marks_json: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        serde_json::from_str::<serde::de::IgnoredAny>(marks_json).map_err(value_error)?;
        let mut inner = self.lock()?;
        let Some(Entry { host: Host::Typed(st), dirty, .. }) = inner.hosts.get_mut(host_id) else { return Ok(None) };
        if st.mark(marks_json).is_none() {
            return Ok(None);
        }
        compact(st, &self.cfg);
        *dirty = false;
        let mut out = Vec::with_capacity(st.size_hint());
        st.write(&mut out);
        Ok(Some(PyBytes::new(py, &out)))
    }

    /// Once a host's first ``n`` outbox entries are sent: they are dropped (and the mark when none
    /// is left), the state dirty. False (untouched) if the host is not stored typed or its outbox
    /// has fewer.
    fn trim(&self, host_id: &str, n: usize) -> PyResult<bool> {
        let mut inner = self.lock()?;
        let Some(Entry { host: Host::Typed(st), dirty, .. }) = inner.hosts.get_mut(host_id) else { return Ok(false) };
        if st.trim(n).is_none() {
            return Ok(false);
        }
        compact(st, &self.cfg);
        *dirty = true;
        Ok(true)
    }

    /// For each (host_id, value, the record's Kafka headers) in order, with the GIL released:
    /// accept the record into the stored state of its host and give its ``ts``, or None (declined:
    /// the state untouched). A host not stored declines. A decline blocks its host: the host's
    /// later records decline too, in this batch and in every later one, until the caller has
    /// replayed the declined ones through the Python engine and calls ``unblock``. So batches can
    /// be queued before the ones ahead of them are settled, and a host's records still apply in
    /// order. The identity rules (validation.check_identity) are checked here: the stored state
    /// has a pinned key, hm-keyid is that key's id and hm-sig (strict base64) is its Ed25519
    /// signature over PAE(hm.usage.v1, value) by hm_ed25519's rules, the batch's signatures
    /// checked as one batch (about a third of the cost of single checks). Strict mode (enrolled
    /// hosts only) is the caller's: it stores no host outside the enrollment.
    fn ingest(&self, py: Python<'_>, batch: Vec<(String, Bound<'_, PyBytes>, Bound<'_, PyAny>)>, now_us: i64)
                     -> PyResult<Vec<Option<i64>>> {
        let items: Vec<(&str, &[u8], Option<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>)> = batch.iter()
            .map(|(h, v, headers)| {
                let sig_kid = header(headers, "hm-sig").zip(header(headers, "hm-keyid"));
                (h.as_str(), v.as_bytes(), sig_kid)
            })
            .collect();
        let items: Vec<(&str, &[u8], Option<(&[u8], &[u8])>)> = items.iter()
            .map(|(h, v, sk)| (*h, *v, sk.as_ref().map(|(s, k)| (s.as_bytes(), k.as_bytes()))))
            .collect();
        py.allow_threads(|| {
            // 1. what each record's signature check needs, from its host's pinned key (None declines)
            let mut checks: Vec<Option<([u8; 32], Vec<u8>, [u8; 64])>> = Vec::with_capacity(items.len());
            {
                let inner = self.lock()?;
                for &(host_id, value, sig_kid) in &items {
                    checks.push((|| {
                        let ident = inner.hosts.get(host_id)?.ident.as_ref()?;
                        let (sig_b64, kid) = sig_kid?;
                        if kid != ident.kid.as_bytes() {
                            return None;
                        }
                        let sig: [u8; 64] = B64.decode(sig_b64).ok()?.try_into().ok()?;
                        Some((ident.key, pae(value), sig))
                    })());
                }
            }
            // 2. the signatures, as one batch (no lock held)
            let (slots, sigs): (Vec<usize>, Vec<hm_ed25519::Item>) = checks.iter().enumerate()
                .filter_map(|(i, c)| c.as_ref().and_then(|(k, m, s)| hm_ed25519::item(k, m, s)).map(|it| (i, it)))
                .unzip();
            let mut answers = vec![false; sigs.len()];
            hm_ed25519::settle(&sigs, &mut answers);
            let mut signed = vec![false; items.len()];
            for (i, ok) in slots.into_iter().zip(answers) {
                signed[i] = ok;
            }
            // 3. the records in order; a decline blocks the host (ingest_one)
            let mut out = Vec::with_capacity(items.len());
            for (&(host_id, value, _), ok) in items.iter().zip(signed) {
                out.push(self.ingest_one(host_id, value, ok, now_us)?);
            }
            Ok(out)
        })
    }
}

/// A state whose text grew by half of MAX_GROWTH (closes and trims append their new parts) is
/// written and parsed again, which drops what is no longer referred to.
fn compact(st: &mut Box<State>, cfg: &Config) {
    if st.grown() > MAX_GROWTH / 2 {
        let mut json = Vec::with_capacity(st.size_hint());
        st.write(&mut json);
        if let Some(fresh) = State::parse(&json, &cfg.agg) {
            **st = fresh;
        }
    }
}

impl HostStore {
    /// One record: applied if its signature checked out and the fast path takes it; any decline
    /// blocks its host.
    fn ingest_one(&self, host_id: &str, value: &[u8], signed: bool, now_us: i64) -> PyResult<Option<i64>> {
        let ts = if signed { self.apply_one(host_id, value, now_us)? } else { None };
        if ts.is_none() {
            self.lock()?.blocked.insert(host_id.to_owned());
        }
        Ok(ts)
    }

    /// The lock is held for the state work only (not the parse, schema and hash): a take or load
    /// from another thread waits for one record, not for the batch.
    fn apply_one(&self, host_id: &str, value: &[u8], now_us: i64) -> PyResult<Option<i64>> {
        // the host's state (most likely cold) comes into the caches while the record is parsed
        {
            let inner = self.lock()?;
            if inner.blocked.contains(host_id) {
                return Ok(None);
            }
            if let Some(Entry { host: Host::Typed(st), .. }) = inner.hosts.get(host_id) {
                st.prefetch();
            }
        }
        let Some(rec) = self.cfg.parse(host_id, value) else { return Ok(None) };
        let vh: [u8; 32] = Sha256::digest(value).into();
        let mut inner = self.lock()?;
        let Inner { hosts, blocked, aggs } = &mut *inner;
        if blocked.contains(host_id) {
            return Ok(None); // blocked by another thread's call meanwhile
        }
        let Some(Entry { host: Host::Typed(st), dirty, .. }) = hosts.get_mut(host_id) else { return Ok(None) };
        let Some(plan) = self.cfg.plan(st, &rec, &vh, now_us, aggs) else { return Ok(None) };
        apply(st, &plan, aggs, &rec, &self.cfg);
        *dirty = true;
        Ok(Some(plan.ts))
    }
}

#[pymodule]
fn hm_ingest(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HostStore>()?;
    m.add("BOOTS_KEPT", BOOTS_KEPT)?;
    Ok(())
}
