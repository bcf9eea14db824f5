//! A native host-state store with a batch fast path for hm.usage.v1 records.
//!
//! Why: in Python the per-record work (parse, JSON Schema, the seq/time/counter/capacity rules,
//! the window updates) costs tens of microseconds of interpreter time per record, and the
//! interpreter has one thread. Here the host states live natively (serde_json values) and
//! `HostStore.ingest` runs a whole batch with the GIL released, so that work leaves the
//! interpreter's thread.
//!
//! A fast path, not a second engine: `ingest` accepts only the common case (the next seq of a
//! boot the state already knows, every rule passing) and declines anything else, leaving that
//! state untouched; the caller then takes the state out and runs the Python engine
//! (processors/engine.py), which stays the authority for every rule and every rejection. When it
//! accepts, the state is what the Python engine would have made of it, down to int vs float and
//! dict key order (tests/unit/processors/test_native_ingest.py compares the two). Each record is
//! worked in two phases: every read and check on the borrowed state (any surprise declines), then
//! the writes, which cannot fail.
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

const SCHEMA: &str = "hm.usage.v1";
/// validation.COUNTERS: cumulative counters that must not go backwards within a boot.
const COUNTERS: [&str; 5] = ["cpu.busy_s", "disk.read_bytes", "disk.write_bytes", "network.rx_bytes", "network.tx_bytes"];
/// proofs.BYTE_COUNTERS: name -> (counter, rate)
const BYTE_COUNTERS: [(&str, &str, &str); 4] = [
    ("disk_read", "disk.read_bytes", "disk.read_bytes_per_s"),
    ("disk_write", "disk.write_bytes", "disk.write_bytes_per_s"),
    ("net_rx", "network.rx_bytes", "network.rx_bytes_per_s"),
    ("net_tx", "network.tx_bytes", "network.tx_bytes_per_s"),
];
/// aggregation.SUMS and aggregation.RATES: figure -> dotted path
const SUMS: [(&str, &str); 5] = [
    ("cpu_utilisation", "cpu.utilisation"),
    ("memory_used_bytes", "memory.used_bytes"),
    ("psi_cpu", "load.psi.cpu.some_avg10"),
    ("psi_memory", "load.psi.memory.some_avg10"),
    ("psi_io", "load.psi.io.some_avg10"),
];
const RATES: [(&str, &str); 4] = [
    ("disk_read", "disk.read_bytes_per_s"),
    ("disk_write", "disk.write_bytes_per_s"),
    ("net_rx", "network.rx_bytes_per_s"),
    ("net_tx", "network.tx_bytes_per_s"),
];
/// The other paths of validation.USAGE_NUMBERS that the rules and windows read.
const OTHER_NUMBERS: [&str; 3] = ["cpu.cores", "cpu.busy_core_s", "memory.total_bytes"];

/// A number with Python's arithmetic: int op int stays an int (declining past i64), anything with
/// a float is a float (the int converted first, rounded to nearest as CPython does).
#[derive(Clone, Copy, Debug)]
enum Num {
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
    /// The JSON value; None (decline) for inf or NaN, which orjson would write as null.
    fn value(self) -> Option<Value> {
        match self {
            I(i) => Some(Value::from(i)),
            F(f) => Number::from_f64(f).map(Value::Number),
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

/// A JSON number as Python holds it (orjson and the state's JSON alike): Some(None) for a
/// non-number, None (decline) for an int beyond i64.
fn num(v: &Value) -> Option<Option<Num>> {
    match v {
        Value::Number(n) if n.is_f64() => Some(n.as_f64().map(F)),
        Value::Number(n) => n.as_i64().map(|i| Some(I(i))),
        _ => Some(None),
    }
}

/// A state field that must hold a number or null (None for null); anything else declines.
fn num_or_null(v: Option<&Value>) -> Option<Option<Num>> {
    match v? {
        Value::Null => Some(None),
        v => Some(Some(num(v)??)),
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match num(v?)? {
        Some(I(i)) => Some(i),
        _ => None,
    }
}

fn obj<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    m.get(key)?.as_object()
}

/// A float -0.0 anywhere in the record: orjson reads the literal `-0` as the int 0 and serde_json
/// as -0.0, so such a record is left to Python rather than told apart.
fn has_negative_zero(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64() && n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()),
        Value::Array(a) => a.iter().any(has_negative_zero),
        Value::Object(o) => o.values().any(has_negative_zero),
        _ => false,
    }
}

/// validation.numbers at one dotted path: the number there (objects all the way down), if any.
fn pick(rec: &Map<String, Value>, path: &str) -> Option<Option<Num>> {
    let mut obj = rec;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(v) = obj.get(part) else { return Some(None) };
        if parts.peek().is_none() {
            return num(v);
        }
        match v {
            Value::Object(o) => obj = o,
            _ => return Some(None),
        }
    }
    Some(None)
}

/// A `[sum, count]` pair of an aggregation accumulator, or `default` where the figure is new.
fn pair(m: &Map<String, Value>, key: &str, default: (Num, Num)) -> Option<(Num, Num)> {
    let Some(v) = m.get(key) else { return Some(default) };
    match v.as_array()?.as_slice() {
        [a, b] => Some((num(a)??, num(b)??)),
        _ => None,
    }
}

/// A window's accumulator as it is, or the template of a fresh one. One whose keys are not the
/// template's, in its order, declines: Python would raise, or add a key at the end.
fn acc_ref<'a>(wins: &'a Map<String, Value>, key: &str, template: &'a Map<String, Value>)
               -> Option<&'a Map<String, Value>> {
    match wins.get(key) {
        None => Some(template),
        Some(v) => {
            let acc = v.as_object()?;
            (acc.len() == template.len() && acc.keys().eq(template.keys())).then_some(acc)
        }
    }
}

/// The writes into one window's accumulator (`windows[family][key]`, made from the template if
/// new): `acc[field] = value` or `acc[field][sub] = value` in order (a new key goes last, as in a
/// Python dict), then the record's sources the accumulator lacks appended.
struct AccWrites {
    family: String,
    key: String,
    sets: Vec<(&'static str, Option<&'static str>, Value)>,
    sources: Vec<String>,
}

impl AccWrites {
    /// proofs._sources / aggregation._add_sources: each of the record's sources not yet listed.
    fn new(family: &str, key: String, acc: &Map<String, Value>, sources: &[&str]) -> Option<Self> {
        let listed = acc.get("sources")?.as_array()?;
        let mut new: Vec<String> = Vec::new();
        for s in sources {
            if !listed.iter().any(|v| v.as_str() == Some(s)) && !new.iter().any(|n| n == s) {
                new.push((*s).to_owned());
            }
        }
        Some(Self { family: family.to_owned(), key, sets: Vec::with_capacity(24), sources: new })
    }

    fn set(&mut self, field: &'static str, n: Num) -> Option<()> {
        self.sets.push((field, None, n.value()?));
        Some(())
    }
}

/// What an accepted record writes into the state, worked out before anything is written.
struct Plan {
    ts: i64,
    boot: String,
    seq: i64,
    accepted: i64,
    wm: i64,
    now_us: i64,
    proof: AccWrites,
    last: Value,
    aggs: Vec<AccWrites>,
}

struct Config {
    validator: jsonschema::Validator,
    proof_len_us: i64,
    agg: Vec<(String, i64)>,
    stale_after_s: f64,
    clock_skew_s: f64,
    over_capacity_factor: f64,
    new_proof_acc: Map<String, Value>,
    new_agg_acc: Map<String, Value>,
}

impl Config {
    /// The record parsed, if it is an hm.usage.v1 record of ``host_id`` that passes the schema.
    fn parse(&self, host_id: &str, value: &[u8]) -> Option<Map<String, Value>> {
        let rec: Value = serde_json::from_slice(value).ok()?;
        if has_negative_zero(&rec) || !self.validator.is_valid(&rec) {
            return None;
        }
        let Value::Object(rec) = rec else { return None };
        if rec.get("schema")?.as_str()? != SCHEMA || rec.get("host_id")?.as_str()? != host_id {
            return None; // the Python path files a record under its own host_id
        }
        Some(rec)
    }

    /// Engine.ingest's decisions and writes for the common case; None declines.
    fn plan(&self, state: &Value, rec: &Map<String, Value>, value: &[u8], now_us: i64) -> Option<Plan> {
        // integral floats pass "integer" but stay floats in Python: as_i64 declines them
        let (boot, seq, ts) = (rec.get("boot_id")?.as_str()?, rec.get("seq")?.as_i64()?, rec.get("ts")?.as_i64()?);
        let st = state.as_object()?;

        // dedupe: only the next seq of a boot already seen (first sights, gaps, fills: Python)
        let entry = obj(obj(st, "seqs")?, SCHEMA)?.get(boot)?.as_array()?;
        if entry.len() != 2 || int(entry.first())?.checked_add(1)? != seq {
            return None;
        }

        // validation.check_time, then late
        let age_s = now_us.checked_sub(ts)? as f64 / 1e6;
        if age_s > self.stale_after_s || age_s.abs() > self.clock_skew_s {
            return None;
        }
        let closed = obj(st, "closed")?;
        let pstart = ts - ts.rem_euclid(self.proof_len_us);
        if pstart.checked_add(self.proof_len_us)? <= int(closed.get("proof"))? {
            return None;
        }

        // validation.numbers and counters_of
        let mut nums: Vec<(&str, Num)> = Vec::with_capacity(17);
        let paths = COUNTERS.iter().chain(SUMS.iter().map(|(_, p)| p)).chain(RATES.iter().map(|(_, p)| p))
            .chain(OTHER_NUMBERS.iter());
        for path in paths {
            if let Some(n) = pick(rec, path)? {
                nums.push((path, n));
            }
        }
        let nget = |path: &str| nums.iter().find(|(p, _)| *p == path).map(|(_, n)| *n);
        let counters: Vec<(&str, Num)> = COUNTERS.iter().filter_map(|p| nget(p).map(|n| (*p, n))).collect();

        // the baseline: the previous sample of this boot (none, or another boot's: Python)
        let last = obj(st, "last")?;
        if last.get("boot_id")?.as_str()? != boot || int(last.get("seq"))? >= seq {
            return None;
        }
        let base = obj(last, "counters")?;
        let mut baseline: Vec<(&str, Num)> = Vec::new();
        for path in COUNTERS {
            if let Some(v) = base.get(path) {
                baseline.push((path, num(v)??)); // a null would make Python raise in counter_deltas
            }
        }
        let base_of = |path: &str| baseline.iter().find(|(p, _)| *p == path).map(|(_, n)| *n);
        // validation.check_counters
        for (path, v) in &counters {
            if base_of(path).is_some_and(|before| !before.le(*v)) {
                return None;
            }
        }

        // validation.check_capacity
        let inventory = match st.get("inventory")? {
            Value::Null => None,
            v => Some(v.as_object()?),
        };
        let inv_num = |key: &str| -> Option<Option<Num>> {
            match inventory.and_then(|inv| inv.get(key)) {
                None => Some(None),
                v => num_or_null(v),
            }
        };
        let elapsed = match rec.get("elapsed_s") {
            Some(v) => Some(num(v)??), // a null or non-number elapsed_s: Python
            None => None,
        };
        let cores = match inv_num("cores")? {
            Some(c) if c.truthy() => Some(c),
            _ => nget("cpu.cores"),
        };
        if let (Some(busy), Some(cores), Some(elapsed)) = (nget("cpu.busy_core_s"), cores, elapsed) {
            if !busy.le(cores.mul(elapsed)?.mul(F(self.over_capacity_factor))?) {
                return None;
            }
        }
        if let Some(used) = nget("memory.used_bytes") {
            for total in [nget("memory.total_bytes"), inv_num("memory_total_bytes")?].into_iter().flatten() {
                if !used.le(total) {
                    return None;
                }
            }
        }

        // what the windows read from the record
        let interval = match rec.get("interval_s") {
            None | Some(Value::Null) => None,
            Some(v) => Some(num(v)??), // `record.get("interval_s") or ...` would keep a non-number
        }
        .filter(|i| i.truthy());
        let sources: Vec<&str> = match rec.get("sources") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let elapsed_or_0 = elapsed.filter(|e| e.truthy()).unwrap_or(I(0)); // `record.get("elapsed_s") or 0`
        let skew = now_us.checked_sub(ts)?.checked_abs()?;

        // the proof window (proofs.counter_deltas, proofs.add_usage)
        let windows = obj(st, "windows")?;
        let pkey = pstart.to_string();
        let pacc = acc_ref(obj(windows, "proof")?, &pkey, &self.new_proof_acc)?;
        let mut pw = AccWrites::new("proof", pkey, pacc, &sources)?;
        pw.set("n", I(int(pacc.get("n"))?.checked_add(1)?))?;
        pw.set("inputs", I(int(pacc.get("inputs"))?.checked_add(1)?))?;
        let mut prev = [0u8; 32];
        hex::decode_to_slice(pacc.get("digest")?.as_str()?, &mut prev).ok()?;
        let digest = hex::encode(Sha256::new().chain_update(prev).chain_update(Sha256::digest(value)).finalize());
        pw.sets.push(("digest", None, Value::String(digest)));
        if let Some(i) = interval {
            pw.set("interval_s", i)?;
        }
        let (first_seq, last_seq) = if pacc.get("boot_id")?.as_str() == Some(boot) {
            (int(pacc.get("first_seq"))?.min(seq), int(pacc.get("last_seq"))?.max(seq))
        } else {
            pw.sets.push(("boot_id", None, Value::from(boot)));
            (seq, seq)
        };
        pw.set("first_seq", I(first_seq))?;
        pw.set("last_seq", I(last_seq))?;
        if let Some(busy) = nget("cpu.busy_core_s") {
            pw.set("cpu_core_s", num_or_null(pacc.get("cpu_core_s"))??.add(busy)?)?;
        }
        if let Some(I(c)) = nget("cpu.cores") {
            let cur = num_or_null(pacc.get("cores"))?.filter(|x| x.truthy()).unwrap_or(I(0));
            pw.set("cores", if I(c).gt(cur) { I(c) } else { cur })?; // max() keeps the first of equals
        }
        if let Some(used) = nget("memory.used_bytes") {
            pw.set("mem_byte_s", num_or_null(pacc.get("mem_byte_s"))??.add(used.mul(elapsed_or_0)?)?)?;
        }
        if let Some(Value::Array(gpus)) = rec.get("gpu") {
            if !gpus.is_empty() {
                let mut total = I(0); // sum() starts from the int 0
                for g in gpus.iter().filter_map(Value::as_object) {
                    let u = match g.get("utilisation") {
                        None | Some(Value::Null) | Some(Value::Bool(false)) => I(0),
                        Some(v) => num(v)??,
                    };
                    total = total.add(if u.truthy() { u } else { I(0) }.mul(elapsed_or_0)?)?;
                }
                let start = num_or_null(pacc.get("gpu_s"))?.filter(|x| x.truthy()).unwrap_or(F(0.0));
                pw.set("gpu_s", start.add(total)?)?;
            }
        }
        let bytes = obj(pacc, "bytes")?;
        for (name, counter, rate) in BYTE_COUNTERS {
            let delta = match (base_of(counter), nget(counter)) {
                (Some(before), Some(now)) if !base.is_empty() => now.sub(before)?,
                _ => nget(rate).unwrap_or(F(0.0)).mul(elapsed_or_0)?,
            };
            let v = num_or_null(bytes.get(name))??.add(delta)?;
            pw.sets.push(("bytes", Some(name), v.value()?));
        }
        if I(skew).gt(num_or_null(pacc.get("max_skew_us"))??) {
            pw.set("max_skew_us", I(skew))?;
        }

        // the new baseline
        let mut new_counters = Map::new();
        for (path, v) in &counters {
            new_counters.insert((*path).to_owned(), v.value()?);
        }
        let mut new_last = Map::new();
        new_last.insert("boot_id".into(), Value::from(boot));
        new_last.insert("seq".into(), Value::from(seq));
        new_last.insert("counters".into(), Value::Object(new_counters));

        // the dashboard windows (aggregation.usage_figures, aggregation.add_usage)
        let cores = nget("cpu.cores").filter(|c| c.truthy());
        let mem_total = nget("memory.total_bytes").filter(|m| m.truthy());
        let mut aggs = Vec::with_capacity(self.agg.len());
        for (name, length) in &self.agg {
            let start = ts - ts.rem_euclid(*length);
            if start.checked_add(*length)? <= int(closed.get(name))? {
                continue; // that window was emitted; the proof still counts the record
            }
            let akey = start.to_string();
            let acc = acc_ref(obj(windows, name)?, &akey, &self.new_agg_acc)?;
            let mut aw = AccWrites::new(name, akey, acc, &sources)?;
            aw.set("n", I(int(acc.get("n"))?.checked_add(1)?))?;
            if let Some(i) = interval {
                aw.set("interval_s", i)?;
            }
            aw.sets.push(("boot_id", None, Value::from(boot)));
            if let Some(c) = cores {
                aw.set("cores", c)?;
            }
            if let Some(m) = mem_total {
                aw.set("mem_total", m)?;
            }
            let (sums, maxes) = (obj(acc, "sum")?, obj(acc, "max")?);
            for (figure, path) in SUMS {
                let Some(v) = nget(path) else { continue };
                let (s, c) = pair(sums, figure, (F(0.0), I(0)))?;
                aw.sets.push(("sum", Some(figure), Value::Array(vec![s.add(v)?.value()?, c.add(I(1))?.value()?])));
                let higher = match maxes.get(figure) {
                    None => true, // v > -inf
                    Some(cur) => v.gt(num(cur)??), // a null max would make Python raise
                };
                if higher {
                    aw.sets.push(("max", Some(figure), v.value()?));
                }
            }
            if let Some(e) = elapsed.filter(|e| e.truthy()) {
                let rates = obj(acc, "rate")?;
                for (figure, path) in RATES {
                    let Some(v) = nget(path) else { continue };
                    let (s, w) = pair(rates, figure, (F(0.0), F(0.0)))?;
                    let entry = vec![s.add(v.mul(e)?)?.value()?, w.add(e)?.value()?];
                    aw.sets.push(("rate", Some(figure), Value::Array(entry)));
                }
            }
            aggs.push(aw);
        }

        // the state's counters and watermark
        let accepted = int(obj(st, "counts")?.get("accepted"))?.checked_add(1)?;
        let wm = match obj(st, "wm")?.get(SCHEMA) {
            None => 0,
            v => int(v)?,
        };
        match st.get("seen") {
            None | Some(Value::Object(_)) => {}
            Some(_) => return None, // setdefault would hand Python a non-dict
        }
        Some(Plan {
            ts,
            boot: boot.to_owned(),
            seq,
            accepted,
            wm: if ts > wm { ts } else { wm },
            now_us,
            proof: pw,
            last: Value::Object(new_last),
            aggs,
        })
    }
}

const CHECKED: &str = "checked by Config::plan";

fn at<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    m.get_mut(key).and_then(Value::as_object_mut).expect(CHECKED)
}

/// The writes of a plan. Every place written was checked by `plan` on this very state, so the
/// lookups cannot miss; a missing one is a bug, not a record to decline.
fn apply(state: &mut Value, plan: Plan, cfg: &Config) {
    let st = state.as_object_mut().expect(CHECKED);
    let seqs = at(at(st, "seqs"), SCHEMA);
    seqs.get_mut(&plan.boot).and_then(Value::as_array_mut).expect(CHECKED)[0] = Value::from(plan.seq);
    at(st, "counts").insert("accepted".into(), Value::from(plan.accepted));
    // a missing "seen" is added at the end, as setdefault does
    let seen = st.entry("seen").or_insert_with(|| Value::Object(Map::new()));
    seen.as_object_mut().expect(CHECKED).insert(SCHEMA.into(), Value::from(plan.now_us));
    at(st, "wm").insert(SCHEMA.into(), Value::from(plan.wm));
    let windows = at(st, "windows");
    apply_acc(windows, plan.proof, &cfg.new_proof_acc);
    for w in plan.aggs {
        apply_acc(windows, w, &cfg.new_agg_acc);
    }
    st.insert("last".into(), plan.last);
}

fn apply_acc(windows: &mut Map<String, Value>, w: AccWrites, template: &Map<String, Value>) {
    // a new window goes last, as in the engine's `wins[str(start)] = new_acc()`
    let acc = at(windows, &w.family).entry(w.key).or_insert_with(|| Value::Object(template.clone()));
    let acc = acc.as_object_mut().expect(CHECKED);
    for (field, sub, value) in w.sets {
        match sub {
            None => acc.insert(field.into(), value),
            Some(sub) => at(acc, field).insert(sub.into(), value),
        };
    }
    let listed = acc.get_mut("sources").and_then(Value::as_array_mut).expect(CHECKED);
    listed.extend(w.sources.into_iter().map(Value::String));
}

struct Entry {
    state: Value,
    dirty: bool,
}

/// Host states by host_id, each the JSON of processors.engine.new_state, with a dirty flag.
#[pyclass(frozen, module = "hm_ingest")]
struct HostStore {
    cfg: Config,
    hosts: Mutex<HashMap<String, Entry>>,
}

fn value_error(err: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(err.to_string())
}

fn template(json: &[u8], what: &str) -> PyResult<Map<String, Value>> {
    match serde_json::from_slice(json).map_err(value_error)? {
        Value::Object(m) => Ok(m),
        _ => Err(PyValueError::new_err(format!("{what} is not a JSON object"))),
    }
}

fn to_json(state: &Value) -> Vec<u8> {
    serde_json::to_vec(state).expect("a serde_json Value with string keys always serialises")
}

impl HostStore {
    /// No thread ever waits for the GIL while it holds the lock (ingest holds it per record, with
    /// the GIL released), so the cheap calls take the lock with the GIL held: each waits for at
    /// most one record. Releasing the GIL in every call instead handed it to other Python threads
    /// (the verify thread's) for up to a switch interval each time.
    fn lock(&self) -> PyResult<MutexGuard<'_, HashMap<String, Entry>>> {
        self.hosts.lock().map_err(|_| PyRuntimeError::new_err("hm_ingest.HostStore: poisoned by an earlier panic"))
    }
}

#[pymethods]
impl HostStore {
    /// ``usage_schema_json``: hm.usage.v1's JSON Schema text; window lengths in microseconds
    /// (``agg`` in the engine's order); the rest as processors.config.ProcessorConfig; the two
    /// templates are the JSON of proofs.new_acc() and aggregation.new_acc().
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(usage_schema_json: &str, proof_len_us: i64, agg: Vec<(String, i64)>, stale_after_s: f64,
           clock_skew_s: f64, over_capacity_factor: f64, new_proof_acc_json: &[u8], new_agg_acc_json: &[u8])
           -> PyResult<Self> {
        let schema: Value = serde_json::from_str(usage_schema_json).map_err(value_error)?;
        // draft 7 with formats asserted, as schemas._compiled builds it
        let validator = jsonschema::draft7::options().should_validate_formats(true).build(&schema).map_err(value_error)?;
        if proof_len_us <= 0 || agg.iter().any(|(_, n)| *n <= 0) {
            return Err(PyValueError::new_err("window lengths must be positive"));
        }
        let cfg = Config {
            validator, proof_len_us, agg, stale_after_s, clock_skew_s, over_capacity_factor,
            new_proof_acc: template(new_proof_acc_json, "new_proof_acc_json")?,
            new_agg_acc: template(new_agg_acc_json, "new_agg_acc_json")?,
        };
        Ok(Self { cfg, hosts: Mutex::new(HashMap::new()) })
    }

    /// Insert or replace a host's state (its JSON, as orjson.dumps writes it).
    fn load(&self, host_id: String, state_json: &[u8], dirty: bool) -> PyResult<()> {
        let state: Value = serde_json::from_slice(state_json).map_err(value_error)?;
        if !state.is_object() {
            return Err(PyValueError::new_err("a host state is a JSON object"));
        }
        self.lock()?.insert(host_id, Entry { state, dirty });
        Ok(())
    }

    /// Remove a host's state and return (its JSON, its dirty flag), or None if not stored.
    fn take<'py>(&self, py: Python<'py>, host_id: &str) -> PyResult<Option<(Bound<'py, PyBytes>, bool)>> {
        let taken = self.lock()?.remove(host_id).map(|e| (to_json(&e.state), e.dirty));
        Ok(taken.map(|(json, dirty)| (PyBytes::new(py, &json), dirty)))
    }

    /// (host_id, state JSON) of every dirty state; their flags are cleared, the states stay.
    fn dump_dirty<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let dumped = py.allow_threads(|| {
            let mut hosts = self.lock()?;
            Ok::<_, PyErr>(hosts.iter_mut().filter(|(_, e)| e.dirty).map(|(h, e)| {
                e.dirty = false;
                (h.clone(), to_json(&e.state))
            }).collect::<Vec<_>>())
        })?;
        let items = dumped.iter().map(|(h, json)| PyTuple::new(py, [h.into_pyobject(py)?.into_any(),
                                                                        PyBytes::new(py, json).into_any()]));
        PyList::new(py, items.collect::<PyResult<Vec<_>>>()?)
    }

    /// The state's pinned ``key``: None if absent, null, or the host is not stored.
    fn key(&self, host_id: &str) -> PyResult<Option<String>> {
        Ok(self.lock()?.get(host_id).and_then(|e| e.state.get("key")?.as_str().map(str::to_owned)))
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.lock()?.len())
    }

    fn __contains__(&self, host_id: &str) -> PyResult<bool> {
        Ok(self.lock()?.contains_key(host_id))
    }

    fn clear(&self) -> PyResult<()> {
        self.lock()?.clear();
        Ok(())
    }

    fn hosts(&self) -> PyResult<Vec<String>> {
        Ok(self.lock()?.keys().cloned().collect())
    }

    /// For each (host_id, value) in order, with the GIL released: accept the record into the
    /// stored state of its host and give its ``ts``, or None (declined: the state untouched). A
    /// host not stored declines, and after one of a host's records declines so do its later ones
    /// in the batch, so the caller can replay them in order through the Python engine. The caller
    /// has checked the identity rules (validation.check_identity) for every record.
    fn ingest(&self, py: Python<'_>, batch: Vec<(String, Bound<'_, PyBytes>)>, now_us: i64)
              -> PyResult<Vec<Option<i64>>> {
        let items: Vec<(&str, &[u8])> = batch.iter().map(|(h, v)| (h.as_str(), v.as_bytes())).collect();
        py.allow_threads(|| {
            let mut declined: HashSet<&str> = HashSet::new();
            let mut out = Vec::with_capacity(items.len());
            for &(host_id, value) in &items {
                let ts = if declined.contains(host_id) {
                    None
                } else {
                    self.ingest_one(host_id, value, now_us)?
                };
                if ts.is_none() {
                    declined.insert(host_id);
                }
                out.push(ts);
            }
            Ok(out)
        })
    }
}

impl HostStore {
    /// One record, with the lock held for its state work only (not its parse): a take or load from
    /// another thread waits for one record, not for the batch.
    fn ingest_one(&self, host_id: &str, value: &[u8], now_us: i64) -> PyResult<Option<i64>> {
        let Some(rec) = self.cfg.parse(host_id, value) else { return Ok(None) };
        let mut hosts = self.lock()?;
        Ok(hosts.get_mut(host_id).and_then(|e| {
            let plan = self.cfg.plan(&e.state, &rec, value, now_us)?;
            let ts = plan.ts;
            apply(&mut e.state, plan, &self.cfg);
            e.dirty = true;
            Some(ts)
        }))
    }
}

#[pymodule]
fn hm_ingest(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HostStore>()?;
    Ok(())
}
