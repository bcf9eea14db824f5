//! Closing a state's dashboard windows natively: processors.engine.Engine.close_due's aggregation
//! part (aggregation.finish for each due window, its outbox entry, agg_seq and closed), the outbox
//! marks and trims of processors.app's delivery, and Engine.next_look_us.
//!
//! Why: at 20,000 hosts a 10 s window closes for 2,000 hosts a second, and closing in Python took
//! each host's whole state out of the store as JSON and back (about a fifth of the worker's
//! thread). A host whose outbox is not empty (a retry) declines here.
//! The outputs are byte for byte what the Python engine writes (tests/unit/processors/
//! test_native_ingest.py compares them).
//!
//! When a proof window is due as well, the dashboard windows still close here, and the proof
//! windows' close (Engine.close_proofs: build, check, sign, chain) runs in Python on the part of
//! the state it reads and writes (`proof_part`, a few hundred bytes), whose results come back with
//! `close_proofs`: the whole state no longer crosses to Python and back as JSON (about two thirds
//! of a proof close's cost, docs/PROCESSORS.md).
use std::cmp::Ordering;

use smallvec::SmallVec;

use super::{push, slice, w_str, w_wins, AggAcc, Ctx, Family, NumMap, ONum, ProofAcc, Slot, State, Wins, S, W};
use crate::Num::{self, F, I};
use crate::{RATE_NAMES, SUM_NAMES};

/// What closing reads of the engine's config (processors.engine.Engine).
pub struct Closing {
    pub proof_len_us: i64,
    /// (name, length in µs, topic) of each aggregation family, in the engine's order
    pub agg: Vec<(String, i64, String)>,
    pub agg_grace_s: f64,
    pub proof_grace_s: f64,
}

impl Closing {
    /// Engine.min_grace_us
    fn min_grace_us(&self) -> i64 {
        (self.agg_grace_s.min(self.proof_grace_s) * 1e6) as i64
    }
}

/// One closed window's outbox entry: (topic, Kafka key, value).
pub type Entry = (String, String, String);

/// Python's `a / b` (always a float); None where int / int would round otherwise than f64 does.
fn div(a: Num, b: Num) -> Option<f64> {
    const EXACT: u64 = 1 << 53;
    if let (I(x), I(y)) = (a, b) {
        if x.unsigned_abs() > EXACT || y.unsigned_abs() > EXACT {
            return None;
        }
    }
    Some(a.f() / b.f())
}

/// aggregation._mean / _rate: sum / count, None without a count.
fn mean(pairs: &[(u8, Num, Num)], k: usize) -> Option<Option<Num>> {
    match pairs.iter().find(|e| e.0 as usize == k) {
        Some(&(_, s, n)) if n.truthy() => Some(Some(F(div(s, n)?))),
        _ => Some(None),
    }
}

/// A numeric field as a look time: Python would keep a float there, and `due <= now_us` of an
/// integral now_us is the same as against its ceiling.
fn time_of(n: Num) -> i64 {
    match n {
        I(i) => i,
        F(f) => f.ceil() as i64,
    }
}

impl State {
    /// The index in `order` of the top-level key ``key`` kept as text: None if absent, Err if
    /// there are two (Python's dict holds the last; such a state is left to Python).
    fn other(&self, key: &str) -> Result<Option<usize>, ()> {
        let mut found = None;
        for (i, slot) in self.order.iter().enumerate() {
            if let Slot::Other(k, _) = slot {
                if self.s(*k) == key {
                    if found.is_some() {
                        return Err(());
                    }
                    found = Some(i);
                }
            }
        }
        Ok(found)
    }

    fn other_value(&self, i: usize) -> S {
        match self.order[i] {
            Slot::Other(_, v) => v,
            _ => unreachable!("not a slot kept as text"),
        }
    }

    /// `state[key] = <json>`: in place, or a new key last (a dict's assignment).
    fn set_other(&mut self, key: &str, json: &str) -> Option<()> {
        let slot = self.other(key).ok()?; // before the text grows: a refusal leaves the state as it was
        let v = push(&mut self.text, json);
        match slot {
            Some(i) => {
                let Slot::Other(_, r) = &mut self.order[i] else { unreachable!() };
                *r = v;
            }
            None => {
                let k = push(&mut self.text, key);
                self.order.push(Slot::Other(k, v));
            }
        }
        Some(())
    }

    /// A {key: number} object kept as text (agg_seq), parsed against the state's text.
    fn num_map_at(&self, r: S) -> Option<NumMap> {
        let mut cx = Ctx::new(&self.text);
        cx.i = r.at as usize;
        let m = cx.num_map()?;
        (cx.extra.is_empty() && cx.i == (r.at + r.len) as usize).then_some(m)
    }

    /// The elements of a JSON array kept as text, as ranges.
    fn elements(&self, r: S) -> Option<SmallVec<[S; 8]>> {
        let mut cx = Ctx::new(&self.text);
        cx.i = r.at as usize;
        let mut out = SmallVec::new();
        cx.array(|cx| {
            let e = cx.skip()?;
            out.push(cx.at(e));
            Some(())
        })?;
        (cx.i == (r.at + r.len) as usize).then_some(out)
    }

    fn seen_of(&self, schema: S) -> Num {
        let key = self.s(schema);
        self.seen.as_deref().unwrap_or_default().iter().find(|(k, _)| self.s(*k) == key).map_or(I(0), |e| e.1)
    }

    /// Engine._due: may the window ending at ``end`` close now? None where Python's arithmetic
    /// would differ from f64's (left to Python).
    fn due(&self, c: &Closing, end: i64, grace_s: f64, now_us: i64) -> Option<bool> {
        if now_us < end {
            return Some(false);
        }
        let grace_us = grace_s * 1e6;
        let overdue = (now_us as f64) >= end as f64 + grace_us;
        let from = I(end.checked_sub(c.proof_len_us)?);
        let mut waited = false;
        for &(schema, wm) in &self.wm {
            if wm.cmp(from)? == Ordering::Less {
                continue; // a topic that stopped before the window is not waited for
            }
            waited = true;
            if wm.cmp(I(end))? != Ordering::Less {
                continue; // past the end
            }
            if overdue && I(now_us).sub(self.seen_of(schema))?.f() >= grace_us {
                continue; // gone silent
            }
            return Some(false);
        }
        Some(waited || overdue)
    }

    /// Engine.next_look_us: (the earliest end of an open window, when to look next), or None with
    /// no window open.
    pub fn next_look(&self, c: &Closing, now_us: i64) -> Option<(i64, i64)> {
        let mut ends: SmallVec<[i64; 8]> = SmallVec::new();
        for (name, fam) in &self.windows {
            let name = self.s(*name);
            match fam {
                Family::Proof(w) if name == "proof" => ends.extend(w.iter().map(|(s, _)| s + c.proof_len_us)),
                Family::Agg(w) => {
                    let len = c.agg.iter().find(|(n, ..)| n == name).map_or(0, |a| a.1);
                    ends.extend(w.iter().map(|(s, _)| s + len));
                }
                _ => {}
            }
        }
        let first = *ends.iter().min()?;
        let look = ends.iter().map(|&end| {
            if end > now_us {
                return end;
            }
            let behind = self.wm.iter()
                .filter(|(_, wm)| wm.cmp(I(end - c.proof_len_us)) != Some(Ordering::Less))
                .filter(|(_, wm)| wm.cmp(I(end)) == Some(Ordering::Less))
                .map(|(schema, _)| time_of(self.seen_of(*schema)))
                .max();
            behind.map_or(end, |b| b.max(end)) + c.min_grace_us()
        }).min()?;
        Some((first, look))
    }

    /// Engine.close_due's dashboard windows for a state whose outbox is empty and unmarked: each due
    /// window's aggregate appended to the outbox, agg_seq and closed moved on; returns the outbox
    /// entries, and whether a proof window is due too (for `proof_part`). None (the state
    /// untouched) for anything else: an outbox not empty, a window with eBPF snapshots, a field not
    /// as the engine writes it.
    pub fn close_aggs(&mut self, host_id: &str, c: &Closing, now_us: i64) -> Option<(Vec<Entry>, bool)> {
        // 1. every read and check, and the outputs written; nothing changed yet
        let host_slot = self.other("host_id").ok()??;
        let mut host_json = Vec::new();
        w_str(&mut host_json, host_id);
        if self.s(self.other_value(host_slot)).as_bytes() != host_json.as_slice() {
            return None;
        }
        let outbox = self.other("outbox").ok()??;
        if self.s(self.other_value(outbox)) != "[]" || self.other("outbox_mark").ok()?.is_some() {
            return None; // a retry: processors.app._mark_outboxes checks what was delivered
        }
        let proof_due = match self.proof_wins()?.iter().map(|(s, _)| *s).min() {
            Some(first) => self.due(c, first.checked_add(c.proof_len_us)?, c.proof_grace_s, now_us)?,
            None => false,
        };
        let seq_slot = self.other("agg_seq").ok()??;
        let mut agg_seq = self.num_map_at(self.other_value(seq_slot))?;
        let mut closed = self.closed.clone();
        let mut entries: Vec<Entry> = Vec::new();
        let mut gone: SmallVec<[(usize, i64); 4]> = SmallVec::new(); // (family, start) of each closed window
        for (name, len, topic) in &c.agg {
            let fam = self.windows.iter().position(|(n, _)| self.s(*n) == name)?;
            let Family::Agg(wins) = &self.windows[fam].1 else { return None };
            let mut order: SmallVec<[usize; 4]> = (0..wins.len()).collect();
            order.sort_by_key(|&i| wins[i].0);
            for i in order {
                let (start, acc) = &wins[i];
                let end = start.checked_add(*len)?;
                if !self.due(c, end, c.agg_grace_s, now_us)? {
                    break;
                }
                let seq_i = agg_seq.iter().position(|(k, _)| self.s(*k) == name)?;
                let closed_i = closed.iter().position(|(k, _)| self.s(*k) == name)?;
                let agg_id = format!("{host_id}/{name}/{start}/{len}");
                let value = self.finish(acc, host_id, name, &agg_id, *start, *len, agg_seq[seq_i].1)?;
                agg_seq[seq_i].1 = agg_seq[seq_i].1.add(I(1))?;
                if I(end).gt(closed[closed_i].1) {
                    closed[closed_i].1 = I(end);
                }
                entries.push((topic.clone(), agg_id, value));
                gone.push((fam, *start));
            }
        }
        if entries.is_empty() {
            return Some((entries, proof_due));
        }
        // 2. the writes
        let mut seq_json = Vec::new();
        W { text: &self.text, out: &mut seq_json }.num_map(&agg_seq);
        let box_json = self.outbox_json(&[], &entries, host_id);
        for (fam, start) in gone {
            let Family::Agg(wins) = &mut self.windows[fam].1 else { unreachable!() };
            wins.retain(|(s, _)| *s != start);
        }
        self.closed = closed;
        self.set_other("agg_seq", std::str::from_utf8(&seq_json).expect("JSON is UTF-8"))?;
        self.set_other("outbox", &box_json)?;
        Some((entries, proof_due))
    }

    /// The proof windows, by start.
    fn proof_wins(&self) -> Option<&Wins<ProofAcc>> {
        self.windows.iter().find_map(|(n, f)| match f {
            Family::Proof(w) if self.s(*n) == "proof" => Some(w),
            _ => None,
        })
    }

    /// An outbox's JSON: the entries kept (ranges of the text), then the new ones of ``host_id``,
    /// each [topic, key, value, host_id] as the engine appends them.
    fn outbox_json(&self, kept: &[S], entries: &[Entry], host_id: &str) -> String {
        let mut out = Vec::from(*b"[");
        for e in kept {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(self.s(*e).as_bytes());
        }
        for (topic, key, value) in entries {
            if out.len() > 1 {
                out.push(b',');
            }
            out.push(b'[');
            for (j, part) in [topic.as_str(), key, value, host_id].into_iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                w_str(&mut out, part);
            }
            out.push(b']');
        }
        out.push(b']');
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The part of the state that Engine.close_proofs reads and writes, as JSON: {"host_id", "key",
    /// "inventory", "chain", "closed": {"proof"}, "windows": {"proof"}, "wm", "seen", "outbox": []}.
    /// None where the close is not the store's: the outbox marked (a retry), a field not as the
    /// engine writes it.
    pub fn proof_part(&self, host_id: &str) -> Option<Vec<u8>> {
        let host = self.other_value(self.other("host_id").ok()??);
        let mut host_json = Vec::new();
        w_str(&mut host_json, host_id);
        if self.s(host).as_bytes() != host_json.as_slice() || self.other("outbox_mark").ok()?.is_some() {
            return None;
        }
        self.other("outbox").ok()??;
        let key = self.other_value(self.other("key").ok()??);
        let chain = self.other_value(self.other("chain").ok()??);
        let Some(&(_, closed @ I(_))) = self.closed.iter().find(|(k, _)| self.s(*k) == "proof") else { return None };
        let proof = self.proof_wins()?;
        let mut out = Vec::with_capacity(512 + proof.len() * 1024);
        let w = &mut W { text: &self.text, out: &mut out };
        w.b(b"{\"host_id\":");
        w.raw(host);
        w.b(b",\"key\":");
        w.raw(key);
        w.b(b",\"inventory\":");
        w.raw(self.inventory);
        w.b(b",\"chain\":");
        w.raw(chain);
        w.b(b",\"closed\":{\"proof\":");
        w.num(closed);
        w.b(b"},\"windows\":{\"proof\":");
        w_wins(w, proof);
        w.b(b"},\"wm\":");
        w.num_map(&self.wm);
        w.b(b",\"seen\":");
        w.num_map(self.seen.as_deref().unwrap_or_default());
        w.b(b",\"outbox\":[]}");
        Some(out)
    }

    /// What Engine.close_proofs did to ``part`` (from `proof_part`), written into the state: the
    /// proof windows but those ``kept`` dropped, closed["proof"], the chain, and the new outbox
    /// entries appended. None (the state untouched) if the state's part is no longer ``part`` (a
    /// record applied meanwhile: the close is done again at the next look) or a kept window is
    /// not there.
    pub fn close_proofs(&mut self, host_id: &str, part: &[u8], kept: &[i64], closed_proof: i64,
                        chain_json: &str, entries: &[Entry]) -> Option<()> {
        if self.proof_part(host_id)? != part {
            return None;
        }
        let fam = self.windows.iter().position(|(n, f)| matches!(f, Family::Proof(_)) && self.s(*n) == "proof")?;
        let Family::Proof(wins) = &self.windows[fam].1 else { return None };
        if !kept.iter().all(|k| wins.iter().any(|(s, _)| s == k)) {
            return None;
        }
        let closed_i = self.closed.iter().position(|(k, _)| self.s(*k) == "proof")?;
        let outbox = self.other_value(self.other("outbox").ok()??);
        let box_json = self.outbox_json(&self.elements(outbox)?, entries, host_id);
        // the writes
        let Family::Proof(wins) = &mut self.windows[fam].1 else { unreachable!() };
        wins.retain(|(s, _)| kept.contains(s));
        self.closed[closed_i].1 = I(closed_proof);
        self.set_other("chain", chain_json)?;
        self.set_other("outbox", &box_json)?;
        Some(())
    }

    /// aggregation.finish's record, as orjson.dumps writes it; None where Python would raise or
    /// round otherwise than f64 does.
    #[allow(clippy::too_many_arguments)]
    fn finish(&self, acc: &AggAcc, host_id: &str, name: &str, agg_id: &str, start: i64, len: i64, seq: Num)
              -> Option<String> {
        if self.s(acc.ebpf_n) != "0" {
            return None; // eBPF histograms and percentiles: the Python engine's
        }
        let n = acc.n?;
        let length_s = len as f64 / 1e6;
        let (expected, coverage) = match acc.interval_s {
            Some(iv) if iv.truthy() && iv.cmp(I(0))? == Ordering::Greater => {
                let q = (length_s / iv.f()).round_ties_even(); // Python's round()
                if !q.is_finite() || q.abs() > (1u64 << 53) as f64 {
                    return None;
                }
                let expected = (q as i64).max(1);
                let ratio = div(n, I(expected))?;
                (expected, if ratio < 1.0 { ratio } else { 1.0 })
            }
            _ => (0, 0.0),
        };
        let mut sources: SmallVec<[&str; 4]> = acc.sources.iter().map(|s| self.s(*s)).collect();
        sources.sort_unstable();
        let sum = |k| mean(&acc.sum, k);
        let max = |k: usize| acc.max.iter().find(|e| e.0 as usize == k).map(|e| e.1);
        let rate = |k| mean(&acc.rate, k);
        debug_assert_eq!(SUM_NAMES[0], "cpu_utilisation");
        debug_assert_eq!(RATE_NAMES[3], "net_tx");
        let mut out = Vec::with_capacity(768);
        let w = &mut W { text: &self.text, out: &mut out };
        w.b(b"{\"schema\":\"hm.usage.agg.v1\",\"agg_id\":");
        w_str(w.out, agg_id);
        w.b(b",\"host_id\":");
        w_str(w.out, host_id);
        w.b(b",\"boot_id\":");
        w.ostr(acc.boot_id);
        w.b(b",\"seq\":");
        w.num(seq);
        w.b(b",\"ts\":");
        w.num(I(start + len));
        w.b(b",\"window_name\":");
        w_str(w.out, name);
        w.b(b",\"window\":{\"start_us\":");
        w.num(I(start));
        w.b(b",\"end_us\":");
        w.num(I(start + len));
        w.b(b",\"length_s\":");
        w.num(F(length_s));
        w.b(b"},\"samples\":");
        w.num(n);
        w.b(b",\"expected_samples\":");
        w.num(I(expected));
        w.b(b",\"coverage\":");
        w.num(F(coverage));
        w.b(b",\"sources\":[");
        for (i, s) in sources.iter().enumerate() {
            w.comma(i);
            w_str(w.out, s);
        }
        // the figures after "sources", each after its key (and the braces around its group)
        let figures: [(&[u8], ONum); 13] = [
            (b"],\"cpu\":{\"cores\":", acc.cores),
            (b",\"utilisation_avg\":", sum(0)?),
            (b",\"utilisation_max\":", max(0)),
            (b"},\"memory\":{\"total_bytes\":", acc.mem_total),
            (b",\"used_bytes_avg\":", sum(1)?),
            (b",\"used_bytes_max\":", max(1)),
            (b"},\"disk\":{\"read_bytes_per_s\":", rate(0)?),
            (b",\"write_bytes_per_s\":", rate(1)?),
            (b"},\"network\":{\"rx_bytes_per_s\":", rate(2)?),
            (b",\"tx_bytes_per_s\":", rate(3)?),
            (b"},\"psi\":{\"cpu_some_avg10\":", sum(2)?),
            (b",\"memory_some_avg10\":", sum(3)?),
            (b",\"io_some_avg10\":", sum(4)?),
        ];
        for (key, v) in figures {
            w.b(key);
            w.onum(v);
        }
        w.b(b"}}");
        Some(String::from_utf8(out).expect("JSON is UTF-8"))
    }

    /// `state["outbox_mark"] = <json>` (processors.app._mark_outboxes).
    pub fn mark(&mut self, marks_json: &str) -> Option<()> {
        self.set_other("outbox_mark", marks_json)
    }

    /// processors.app._send_outboxes once sent: the first ``n`` outbox entries dropped, and the
    /// mark with them when none is left. None (untouched) if the outbox has fewer.
    pub fn trim(&mut self, n: usize) -> Option<()> {
        let outbox = self.other("outbox").ok()??;
        let mark = self.other("outbox_mark").ok()?;
        let all = self.elements(self.other_value(outbox))?;
        if all.len() < n {
            return None;
        }
        let mut json = String::from("[");
        for (i, e) in all[n..].iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(slice(&self.text, *e));
        }
        json.push(']');
        self.set_other("outbox", &json)?;
        if all.len() == n {
            if let Some(i) = mark {
                self.order.remove(i);
            }
        }
        Some(())
    }
}
