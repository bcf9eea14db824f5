// HyperMesh telemetry dashboard: one EventSource (/events) feeds a per-host model;
// the selected host's charts are uPlot instances over its 10 s and 1 min aggregates.
"use strict";

const model = { fields: [], hosts: {}, status: {}, verifying: false, historyS: 3600, clockSkew: 0 };
let F = {};                       // field name -> index in a point
let selected = decodeURIComponent(location.hash.slice(1)) || null;
let charts = {};                  // chart id -> {u, el}
let dirty = { list: true, detail: true, charts: true };

const C10 = "#4cc9f0", C1M = "#f8961e";
const MAX_LISTED = 300;           // a fleet of thousands is found through the filter, not by scrolling
const CHARTS = [
  { id: "cpu", title: "CPU utilisation", fmt: "pct", lines: [{ f: "cpu_utilisation", label: "avg" }] },
  { id: "mem", title: "Memory used", fmt: "bytes", lines: [{ f: "memory_used_bytes", label: "used" }],
    ceiling: "memory_total_bytes" },
  { id: "disk", title: "Disk I/O", fmt: "rate", note: "read ↑ · write ↓",
    lines: [{ f: "disk_read_bytes_per_s", label: "read" }, { f: "disk_write_bytes_per_s", label: "write", neg: true }] },
  { id: "net", title: "Network", fmt: "rate", note: "rx ↑ · tx ↓",
    lines: [{ f: "net_rx_bytes_per_s", label: "rx" }, { f: "net_tx_bytes_per_s", label: "tx", neg: true }] },
  { id: "runq", title: "Run-queue latency p99", fmt: "us", note: "eBPF sched", lines: [{ f: "runq_latency_p99_us", label: "p99" }] },
  { id: "bio", title: "Block I/O latency p99", fmt: "us", note: "eBPF blockio", lines: [{ f: "blockio_latency_p99_us", label: "p99" }] },
];

// ---------- formatting ----------
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
function fmtBytes(v, digits = 1) {
  if (v == null || !isFinite(v)) return "–";
  let i = 0, a = Math.abs(v);
  while (a >= 1024 && i < UNITS.length - 1) { a /= 1024; i++; }
  return (v < 0 ? "-" : "") + a.toFixed(a >= 100 || i === 0 ? 0 : digits) + " " + UNITS[i];
}
function fmtRate(v) { return v == null ? "–" : fmtBytes(Math.abs(v)) + "/s"; }
function fmtPct(v) { return v == null ? "–" : (v * 100).toFixed(v >= 0.995 ? 0 : 1) + " %"; }
function fmtUs(v) {
  if (v == null) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + " s";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + " ms";
  return Math.round(v) + " µs";
}
// Byte axes tick at 1, 2, 4 ... 512 x 1024^k, so labels read "4 GiB", not "4.7 GiB".
const BINARY_INCRS = [0, 1, 2, 3, 4, 5].flatMap((k) => [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((m) => m * 1024 ** k));
const FMT = { pct: fmtPct, bytes: (v) => fmtBytes(v), rate: fmtRate, us: fmtUs };
function ago(tsSec) {
  if (!tsSec) return "never";
  const s = Math.max(0, Date.now() / 1000 - model.clockSkew - tsSec);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}
function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const nowSec = () => Date.now() / 1000 - model.clockSkew;

// ---------- model ----------
function host(id) {
  return model.hosts[id] ||= { host_id: id, inventory: null, series: { "10s": [], "1m": [] }, proof: null,
    proofs: { valid: 0, invalid: 0, duplicates: 0 }, chain_intact: null, rejected: {}, rejected_last: null, last_seen: null };
}
function applySnapshot(s) {
  model.fields = s.fields; model.hosts = s.hosts; model.status = s.status; model.verifying = s.verifying;
  model.historyS = s.history_s; model.clockSkew = Date.now() / 1000 - s.now;
  F = Object.fromEntries(s.fields.map((f, i) => [f, i]));
  document.getElementById("span-label").textContent =
    s.history_s === 3600 ? "last hour" : s.history_s < 3600 ? `last ${Math.round(s.history_s / 60)} min` : `last ${(s.history_s / 3600).toFixed(1)} h`;
  dirty = { list: true, detail: true, charts: true };
}
function applyEvent(e) {
  if (e.t === "status") { model.status = e.status; return; }
  const h = host(e.host);
  if (e.t === "inventory") h.inventory = e.inventory;
  else if (e.t === "point") {
    const s = h.series[e.series], t = e.point[0];
    const i = s.findIndex((p) => p[0] === t);
    if (i >= 0) s[i] = e.point; else { s.push(e.point); s.sort((a, b) => a[0] - b[0]); }
    const cutoff = nowSec() - model.historyS;
    while (s.length && s[0][0] < cutoff) s.shift();
    h.last_seen = Math.max(h.last_seen || 0, t);
    if (e.host === selected) dirty.charts = true;
  } else if (e.t === "proof") { h.proof = e.proof; h.proofs = e.proofs; h.chain_intact = e.chain_intact; }
  else if (e.t === "rejected") { h.rejected = e.rejected; h.rejected_last = e.last; }
  dirty.list = true;
  if (e.host === selected) dirty.detail = true;
}

// ---------- host list ----------
function hostName(h) { return (h.inventory && h.inventory.hostname) || h.host_id.slice(0, 14) + "…"; }
function latest(h) { const s = h.series["10s"]; return s.length ? s[s.length - 1] : (h.series["1m"].slice(-1)[0] || null); }
function proofBadge(h) {
  const p = h.proof;
  if (!p) return ['<span class="badge">no proof yet</span>', null];
  if (!p.ok && !model.verifying) return [`<span class="badge">#${p.seq ?? "?"} unverified</span>`, null];
  if (!p.ok) return [`<span class="badge bad">proof invalid</span>`, "bad"];
  if (h.chain_intact === false) return [`<span class="badge bad">chain broken</span>`, "bad"];
  return [`<span class="badge ok">proof #${p.seq} ✓</span>`, "ok"];
}
function hostHealth(h) {
  const fresh = h.last_seen && nowSec() - h.last_seen < 180;
  const [, pstate] = proofBadge(h);
  if (pstate === "bad") return "bad";
  return fresh ? "ok" : "idle";
}
function invLine(inv) {
  if (!inv) return "inventory pending";
  const parts = [];
  if (inv.cpu_cores) parts.push(inv.cpu_cores + " cores");
  if (inv.memory_total_bytes) parts.push(fmtBytes(inv.memory_total_bytes, 0) + " RAM");
  parts.push(inv.gpus && inv.gpus.length ? inv.gpus.length + " GPU" : "no GPU");
  return parts.join(" · ");
}
function storageLine(inv) {
  const st = Object.entries((inv && inv.storage) || {}).sort((a, b) => b[1].total_bytes - a[1].total_bytes);
  if (!st.length) return inv ? '<span class="stype">no storage</span>' : "";
  return st.map(([t, s]) => `<span class="stype">${esc(t)}</span> ${esc(fmtBytes(s.total_bytes, 0))}`).join("  ");
}
function renderList() {
  const ul = document.getElementById("hosts");
  const q = document.getElementById("filter").value.trim().toLowerCase();
  const ids = Object.keys(model.hosts).sort((a, b) => hostName(model.hosts[a]).localeCompare(hostName(model.hosts[b])));
  document.getElementById("host-count").textContent = ids.length;
  if (!selected || !model.hosts[selected]) { selected = ids[0] || null; dirty.detail = dirty.charts = true; }
  const shown = ids.filter((id) => !q || id.includes(q) || hostName(model.hosts[id]).toLowerCase().includes(q));
  const html = shown.slice(0, MAX_LISTED).map((id) => {
    const h = model.hosts[id], p = latest(h), [badge] = proofBadge(h);
    const cpu = p ? p[F.cpu_utilisation] : null;
    const mem = p && p[F.memory_total_bytes] ? p[F.memory_used_bytes] / p[F.memory_total_bytes] : null;
    return `<li class="host${id === selected ? " selected" : ""}" data-host="${esc(id)}">
      <div class="row1"><span class="dot ${hostHealth(h)}"></span><span class="name" title="${esc(id)}">${esc(hostName(h))} <span class="hid">${esc(id.slice(2, 8))}</span></span>${badge}</div>
      <div class="sub">${esc(invLine(h.inventory))}</div>
      <div class="sub stor">${storageLine(h.inventory)}</div>
      <div class="bars"><span>CPU</span><div class="bar"><i style="width:${((cpu || 0) * 100).toFixed(1)}%"></i></div><span class="v">${cpu == null ? "–" : Math.round(cpu * 100) + "%"}</span>
      <span>MEM</span><div class="bar mem"><i style="width:${((mem || 0) * 100).toFixed(1)}%"></i></div><span class="v">${mem == null ? "–" : Math.round(mem * 100) + "%"}</span></div>
    </li>`;
  }).join("") + (shown.length > MAX_LISTED
    ? `<li class="more">${shown.length - MAX_LISTED} more hosts: filter by name or id to find one</li>` : "");
  ul.innerHTML = html;
}
document.getElementById("hosts").addEventListener("click", (ev) => {
  const li = ev.target.closest("li.host");
  if (!li) return;
  selected = li.dataset.host;
  history.replaceState(null, "", "#" + encodeURIComponent(selected));
  dirty = { list: true, detail: true, charts: true };
  destroyCharts();
});
document.getElementById("filter").addEventListener("input", () => { dirty.list = true; });

// ---------- top bar ----------
function renderTop() {
  const hs = Object.values(model.hosts);
  const sum = (f) => hs.reduce((a, h) => a + f(h), 0);
  const rej = sum((h) => Object.values(h.rejected).reduce((a, b) => a + b, 0));
  const inv = sum((h) => h.proofs.invalid);
  const live = sum((h) => (h.last_seen && nowSec() - h.last_seen < 180 ? 1 : 0));
  document.getElementById("totals").innerHTML = [
    [hs.length, "hosts"], [live, "reporting"], [sum((h) => h.proofs.valid), "valid proofs"],
    [`<span class="${inv ? "badc" : ""}">${inv}</span>`, "invalid proofs"],
    [`<span class="${rej ? "warnc" : ""}">${rej}</span>`, "rejected records"],
  ].map(([v, l]) => `<div class="total"><b>${v}</b><span>${l}</span></div>`).join("");
  const st = model.status || {}, k = st.kafka || "connecting";
  const el = document.getElementById("status");
  el.querySelector(".dot").className = "dot " + (k === "live" ? "ok" : k.startsWith("error") ? "bad" : "");
  el.querySelector(".label").textContent = k === "live" ? `live · ${st.bootstrap}` : k;
  el.title = k;
}

// ---------- detail ----------
function chip(label, value) { return `<div class="chip"><span>${esc(label)}</span>${esc(value)}</div>`; }
function kv(rows) { return `<dl class="kv">${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`; }
function renderDetail() {
  const h = selected && model.hosts[selected];
  document.getElementById("empty").hidden = !!h;
  document.getElementById("host-view").hidden = !h;
  if (!h) return;
  const inv = h.inventory;
  document.getElementById("h-name").textContent = hostName(h);
  document.getElementById("h-id").textContent = h.host_id + (inv && inv.os ? "  ·  " + inv.os : "") + (inv && inv.kernel ? "  ·  " + inv.kernel : "");
  const chips = [];
  if (inv) {
    chips.push(chip("CPU", `${inv.cpu_cores ?? "?"} × ${inv.cpu_model || "unknown"}`));
    chips.push(chip("GPU", inv.gpus.length ? inv.gpus.map((g) => g.model || "GPU").join(", ") : "none"));
    chips.push(chip("Memory", fmtBytes(inv.memory_total_bytes, 0)));
    if (inv.virtualization) chips.push(chip("Virt", inv.virtualization));
    const st = Object.entries(inv.storage || {});
    if (!st.length) chips.push(chip("Storage", "none"));
    for (const [type, s] of st) chips.push(chip(type, `${fmtBytes(s.total_bytes, 0)} · ${Math.round((100 * s.used_bytes) / (s.total_bytes || 1))}% used`));
  } else chips.push(chip("Inventory", "not received yet"));
  document.getElementById("h-inv").innerHTML = chips.join("");

  const p = latest(h);
  document.getElementById("c-now").innerHTML = `<h3>Latest window <span>${p ? ago(p[0]) : ""}</span></h3>` + (p ? kv([
    ["CPU", `<span class="big">${fmtPct(p[F.cpu_utilisation])}</span>`],
    ["Memory", `${fmtBytes(p[F.memory_used_bytes])} / ${fmtBytes(p[F.memory_total_bytes], 0)}`],
    ["Disk r / w", `${fmtRate(p[F.disk_read_bytes_per_s])} · ${fmtRate(p[F.disk_write_bytes_per_s])}`],
    ["Net rx / tx", `${fmtRate(p[F.net_rx_bytes_per_s])} · ${fmtRate(p[F.net_tx_bytes_per_s])}`],
    ["Coverage", fmtPct(p[F.coverage])],
  ]) : '<div class="dim">no aggregates yet</div>');

  const pr = h.proof;
  let proofHtml = `<h3>Resource proof <span>${pr ? ago(pr.window_end_us / 1e6) : ""}</span></h3>`;
  if (!pr) proofHtml += '<div class="dim">no proof yet (one per host per proof window)</div>';
  else {
    const sig = pr.key_id ? `<span class="okc">✓ ${esc(pr.key_id.slice(0, 12))}…</span>`
      : model.verifying ? '<span class="badc">✗ not by the processor key</span>' : '<span class="dim">unchecked (no key)</span>';
    const chain = h.chain_intact == null ? '<span class="dim">–</span>'
      : h.chain_intact ? '<span class="okc">intact</span>' : '<span class="badc">broken</span>';
    proofHtml += kv([
      ["Last", `<span class="big ${pr.ok ? "okc" : model.verifying ? "badc" : ""}">#${pr.seq ?? "?"} ${pr.ok ? "valid" : model.verifying ? "invalid" : ""}</span>`],
      ["Signature", sig], ["Chain", chain],
      ["Work", `${(pr.cpu_core_seconds_used ?? 0).toFixed(1)} / ${(pr.cpu_core_seconds_capacity ?? 0).toFixed(0)} core-s`],
      ["Coverage · skew", `${fmtPct(pr.coverage)} · ${pr.max_clock_skew_ms ?? "–"} ms`],
      ["Proofs", `${h.proofs.valid} valid · <span class="${h.proofs.invalid ? "badc" : ""}">${h.proofs.invalid} invalid</span>`],
    ]);
    const reasons = (pr.reasons || []).filter((r) => model.verifying || r.code !== "unknown_key");
    if (reasons.length) proofHtml += `<div class="detailtxt badc">${esc(reasons.map((r) => r.code + ": " + r.detail).join("; "))}</div>`;
    if (pr.flags && pr.flags.length) proofHtml += `<div class="detailtxt warnc">flags: ${esc(pr.flags.join(", "))}</div>`;
  }
  document.getElementById("c-proof").innerHTML = proofHtml;

  const rj = Object.entries(h.rejected).sort((a, b) => b[1] - a[1]);
  const total = rj.reduce((a, [, n]) => a + n, 0);
  document.getElementById("c-rejected").innerHTML = `<h3>Rejected records <span>${total}</span></h3>` + (rj.length
    ? `<div class="reasons">${rj.slice(0, 5).map(([r, n]) => `<div class="reason"><span class="mono">${esc(r)}</span><span class="n">${n}</span></div>`).join("")}</div>`
      + (h.rejected_last ? `<div class="detailtxt">last: ${esc(h.rejected_last.detail || "")}</div>` : "")
    : '<div class="okc">none — every record passed validation</div>');
}

// ---------- charts ----------
// The live uPlot instances by chart id, for the browser test and for poking at from devtools.
window.__hm_charts = {};
function destroyCharts() {
  for (const c of Object.values(charts)) c.u && c.u.destroy();
  charts = {}; window.__hm_charts = {};
  document.getElementById("charts").innerHTML = "";
}
function chartData(h, def) {
  const s10 = h.series["10s"], s1m = h.series["1m"];
  const xs = [...new Set([...s10.map((p) => p[0]), ...s1m.map((p) => p[0])])].sort((a, b) => a - b);
  const idx = new Map(xs.map((x, i) => [x, i]));
  const cols = [xs];
  let points = 0;
  for (const line of def.lines) {
    for (const series of [s10, s1m]) {
      const col = new Array(xs.length).fill(null);
      for (const p of series) {
        let v = p[F[line.f]];
        if (v == null) continue;
        if (def.fmt === "pct") v = Math.min(1, v);
        col[idx.get(p[0])] = line.neg ? -v : v;
        points++;
      }
      cols.push(col);
    }
  }
  if (def.ceiling) {
    const col = new Array(xs.length).fill(null);
    for (const p of [...s1m, ...s10]) if (p[F[def.ceiling]] != null) col[idx.get(p[0])] = p[F[def.ceiling]];
    cols.push(col);
  }
  return [cols, points];
}
function latestText(h, def) {
  const p = latest(h);
  if (!p) return "";
  const fmt = FMT[def.fmt];
  return def.lines.map((l) => (def.lines.length > 1 ? l.label + " " : "") + fmt(p[F[l.f]])).join(" · ");
}
const hhmm = (v) => new Date(v * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
function makeChart(def, el, width) {
  const fmt = FMT[def.fmt];
  const stepped = uPlot.paths.stepped({ align: -1 });
  const series = [{ value: (u, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) }];
  for (const line of def.lines) {
    const lab = def.lines.length > 1 ? line.label + " " : "";
    series.push({ label: lab + "10 s", stroke: C10, width: 1.4, spanGaps: true, points: { show: false },
      fill: def.lines.length === 1 ? "rgba(76,201,240,0.10)" : line.neg ? "rgba(76,201,240,0.06)" : "rgba(76,201,240,0.10)",
      value: (u, v) => (v == null ? "–" : fmt(Math.abs(v))) });
    series.push({ label: lab + "1 min", stroke: C1M, width: 2.2, spanGaps: true, paths: stepped, points: { show: false },
      value: (u, v) => (v == null ? "–" : fmt(Math.abs(v))) });
  }
  if (def.ceiling) series.push({ label: "total", stroke: "#8593ad", width: 1, dash: [4, 4], spanGaps: true, points: { show: false },
    value: (u, v) => (v == null ? "–" : fmt(v)) });
  const axisColor = "#8593ad", grid = { stroke: "rgba(133,147,173,0.12)", width: 1 };
  const opts = {
    width, height: 170, series, cursor: { drag: { x: false, y: false } },
    legend: { show: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => {
      if (def.fmt === "pct") return [0, 1];
      const lo = Math.min(0, min ?? 0), hi = Math.max(max ?? 1, lo + 1e-9);
      const pad = (hi - lo) * 0.08 || 1;
      return [lo < 0 ? lo - pad : 0, hi + pad];
    } } },
    axes: [
      { stroke: axisColor, grid, ticks: grid, font: "11px system-ui", values: (u, vals) => vals.map(hhmm) },
      { stroke: axisColor, grid, ticks: grid, font: "11px system-ui", size: 74, space: 24,
        incrs: def.fmt === "bytes" || def.fmt === "rate" ? BINARY_INCRS : undefined,
        values: (u, vals) => vals.map((v) => fmt(Math.abs(v))) },
    ],
  };
  return new uPlot(opts, [[]], el);
}
function renderCharts() {
  const h = selected && model.hosts[selected];
  const box = document.getElementById("charts");
  if (!h) { destroyCharts(); return; }
  for (const def of CHARTS) {
    let c = charts[def.id];
    if (!c) {
      const el = document.createElement("div");
      el.className = "chart";
      el.dataset.chart = def.id;
      el.innerHTML = `<h4><span>${esc(def.title)} <span class="note">${esc(def.note || "")}</span></span><span class="latest"></span></h4><div class="plot"></div>`;
      box.appendChild(el);
      c = charts[def.id] = { el, u: null };
    }
    const [data, points] = chartData(h, def);
    c.el.dataset.points = points;
    c.el.querySelector(".latest").textContent = latestText(h, def);
    const plot = c.el.querySelector(".plot");
    if (!points) {
      if (c.u) { c.u.destroy(); c.u = null; delete window.__hm_charts[def.id]; }
      plot.innerHTML = `<div class="nodata">${def.id === "runq" || def.id === "bio" ? "no eBPF data from this host (needs root and BTF)" : "no data yet"}</div>`;
      continue;
    }
    if (!c.u) { plot.innerHTML = ""; c.u = window.__hm_charts[def.id] = makeChart(def, plot, plot.clientWidth || 500); }
    c.u.setData(data, false);
    const now = nowSec();
    c.u.setScale("x", { min: now - model.historyS, max: now });
  }
}
window.addEventListener("resize", () => {
  for (const c of Object.values(charts)) if (c.u) c.u.setSize({ width: c.el.querySelector(".plot").clientWidth, height: 170 });
});

// ---------- loop ----------
function frame() {
  renderTop();
  if (dirty.list) { renderList(); dirty.list = false; }
  if (dirty.detail) { renderDetail(); dirty.detail = false; }
  if (dirty.charts) { renderCharts(); dirty.charts = false; }
}
setInterval(() => { dirty.list = true; dirty.charts = true; frame(); }, 5000);   // ages and the sliding hour

function connect() {
  const es = new EventSource("/events");
  es.addEventListener("snapshot", (m) => { destroyCharts(); applySnapshot(JSON.parse(m.data)); frame(); });
  es.addEventListener("batch", (m) => { for (const e of JSON.parse(m.data)) applyEvent(e); frame(); });
  es.onerror = () => { model.status = { ...model.status, kafka: "dashboard server unreachable; retrying" }; renderTop(); };
}
connect();
