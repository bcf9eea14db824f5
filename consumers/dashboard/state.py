"""The dashboard's model: records from five topics folded into a per-host view, as plain
JSON-able dicts (pure; the server feeds it and ships its deltas to browsers).

* hm.inventory.v1 -> ``inventory``: hostname, CPU, GPUs, memory, storage totals by type.
* hm.usage.agg.{10s,1m}.v1 -> ``series[name]``: one point per window, ``POINT_FIELDS`` in
  order (window end in Unix seconds first), trimmed to the history span.
* hm.proofs.v1 -> ``proof``: the last proof's figures and verdict (consumers.verify, with
  one ChainChecker across the stream), counts of valid and invalid proofs, chain state.
* hm.rejected.v1 -> ``rejected``: counts by reason code and the latest detail.
"""
from __future__ import annotations

import math
import time
from typing import Any

import orjson

from consumers.verify import ChainChecker, Thresholds, verify_envelope

AGG_SERIES = {"hm.usage.agg.10s.v1": "10s", "hm.usage.agg.1m.v1": "1m"}
INVENTORY_TOPIC = "hm.inventory.v1"
PROOFS_TOPIC = "hm.proofs.v1"
REJECTED_TOPIC = "hm.rejected.v1"
TOPICS = [INVENTORY_TOPIC, *AGG_SERIES, PROOFS_TOPIC, REJECTED_TOPIC]

# One chart series per field; the names follow hm.usage.agg.v1 (one name per thing).
POINT_FIELDS = ["t", "cpu_utilisation", "cpu_utilisation_max", "memory_used_bytes", "memory_total_bytes",
                "disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s",
                "runq_latency_p99_us", "blockio_latency_p99_us", "coverage"]
STORAGE_TYPES = ("NVMe", "SSD", "HDD", "Network", "Unknown")


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def percentile_log2(buckets: dict[str, int], q: float) -> int | None:
    """Upper bound 2^(k+1) of the log2 bucket holding rank ceil(q*N), as the processors report it."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for k in sorted(buckets, key=int):
        seen += buckets[k]
        if seen >= rank:
            return 2 ** (int(k) + 1)
    return None


def hist_p99(agg: dict[str, Any], map_name: str) -> float | None:
    """p99 over every label of an eBPF histogram in an aggregate (e.g. all disks together)."""
    labels = _get(agg, f"ebpf.histograms.{map_name}")
    if not isinstance(labels, dict) or not labels:
        return None
    if len(labels) == 1:
        only = next(iter(labels.values()))
        if isinstance(only, dict) and _num(only.get("p99")) is not None:
            return only["p99"]
    merged: dict[str, int] = {}
    for h in labels.values():
        for k, c in (h.get("buckets") or {}).items() if isinstance(h, dict) else ():
            if _num(c):
                merged[str(k)] = merged.get(str(k), 0) + int(c)
    return percentile_log2(merged, 0.99)


def agg_point(agg: dict[str, Any]) -> list[float | None]:
    end_us = _num(_get(agg, "window.end_us")) or _num(agg.get("ts")) or 0
    return [
        round(end_us / 1e6, 3),
        _num(_get(agg, "cpu.utilisation_avg")),
        _num(_get(agg, "cpu.utilisation_max")),
        _num(_get(agg, "memory.used_bytes_avg")),
        _num(_get(agg, "memory.total_bytes")),
        _num(_get(agg, "disk.read_bytes_per_s")),
        _num(_get(agg, "disk.write_bytes_per_s")),
        _num(_get(agg, "network.rx_bytes_per_s")),
        _num(_get(agg, "network.tx_bytes_per_s")),
        hist_p99(agg, "runq_latency_us"),
        hist_p99(agg, "latency_us"),
        _num(agg.get("coverage")),
    ]


def inventory_summary(rec: dict[str, Any]) -> dict[str, Any]:
    hm: dict[str, Any] = rec["hypermesh"] if isinstance(rec.get("hypermesh"), dict) else {}
    storage: dict[str, dict[str, int]] = {}
    for dev in hm.get("storage") or ():
        if isinstance(dev, dict):
            kind = str(dev["storage_type"]) if dev.get("storage_type") in STORAGE_TYPES else "Unknown"
            s = storage.setdefault(kind, {"total_bytes": 0, "used_bytes": 0, "devices": 0})
            s["total_bytes"] += int(_num(dev.get("total_bytes")) or 0)
            s["used_bytes"] += int(_num(dev.get("used_bytes")) or 0)
            s["devices"] += 1
    gpus = [g for g in hm.get("gpus") or () if isinstance(g, dict)]
    return {
        "hostname": _get(rec, "system.hostname"),
        "cpu_model": _get(hm, "cpu.model") or _get(rec, "cpu.model"),
        "cpu_cores": _get(hm, "cpu.cores"),
        "cpu_sockets": _get(rec, "cpu.sockets"),
        "architecture": _get(hm, "cpu.architecture") or _get(rec, "cpu.architecture"),
        "gpus": [{"model": g.get("model") or g.get("name"), "memory_bytes": g.get("memory_bytes") or
                  g.get("memory_total_bytes")} for g in gpus],
        "memory_total_bytes": _get(hm, "memory.total_bytes"),
        "storage": storage,
        "kernel": _text(_get(rec, "system.kernel"), "release", "name"),
        "os": _text(_get(rec, "system.os"), "pretty_name", "name"),
        "virtualization": _get(rec, "system.virtualization"),
        "source": rec.get("source"),
        "missing": rec.get("missing") or [],
        "inventory_hash": rec.get("inventory_hash"),
        "ts": rec.get("ts"),
    }


def _text(value: Any, *keys: str) -> str | None:
    """A display string from a field that is a string or an object (e.g. os {pretty_name, ...})."""
    if isinstance(value, dict):
        value = next((value[k] for k in keys if isinstance(value.get(k), str)), None)
    return value if isinstance(value, str) else None


def proof_summary(v: Any) -> dict[str, Any]:
    p = v.payload or {}
    return {
        "seq": v.seq, "proof_id": v.proof_id, "ok": v.ok, "duplicate": v.duplicate,
        "reasons": [{"code": r.code, "detail": r.detail} for r in v.reasons],
        "window_end_us": _get(p, "window.end_us"), "window_length_s": _get(p, "window.length_s"),
        "coverage": _get(p, "evidence.coverage"), "samples": _get(p, "evidence.samples"),
        "cpu_core_seconds_used": _get(p, "work.cpu_core_seconds_used"),
        "cpu_core_seconds_capacity": _get(p, "work.cpu_core_seconds_capacity"),
        "storage_total_bytes": _get(p, "space.storage_total_bytes"),
        "max_clock_skew_ms": _get(p, "time.max_clock_skew_ms"),
        "ebpf_procfs_cpu_agreement": _get(p, "evidence.ebpf_procfs_cpu_agreement"),
        "flags": p.get("flags") or [],
        "key_id": v.key_id,
    }


class Board:
    """Per-host state. ``apply`` folds one Kafka record and returns the delta to broadcast."""

    def __init__(self, *, history_s: float = 3600.0, keys: list[bytes] | None = None,
                 thresholds: Thresholds | None = None):
        self.history_s = history_s
        self.keys = keys or []
        self.thresholds = thresholds or Thresholds()
        self.chain = ChainChecker(remember=64)  # about an hour of 1 min proofs per host
        self.hosts: dict[str, dict[str, Any]] = {}
        self.records = 0

    def host(self, host_id: str) -> dict[str, Any]:
        h = self.hosts.get(host_id)
        if h is None:
            h = self.hosts[host_id] = {"host_id": host_id, "inventory": None, "series": {"10s": [], "1m": []},
                                       "proof": None, "proofs": {"valid": 0, "invalid": 0, "duplicates": 0},
                                       "chain_intact": None, "rejected": {}, "rejected_last": None,
                                       "last_seen": None}
        return h

    def apply(self, topic: str, key: bytes | None, value: bytes | None,
              now_s: float | None = None) -> dict[str, Any] | None:
        now_s = time.time() if now_s is None else now_s
        self.records += 1
        if topic == PROOFS_TOPIC:
            return self._proof(key, value or b"", int(now_s * 1e6))
        try:
            rec = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return None
        if not isinstance(rec, dict):
            return None
        host_id: str = rec["host_id"] if isinstance(rec.get("host_id"), str) else (key or b"unknown").decode(
            errors="replace")
        if topic == INVENTORY_TOPIC:
            h = self.host(host_id)
            h["inventory"] = inventory_summary(rec)
            return {"t": "inventory", "host": host_id, "inventory": h["inventory"]}
        if topic in AGG_SERIES:
            name = AGG_SERIES[topic]
            point = agg_point(rec)
            h = self.host(host_id)
            series = h["series"][name]
            t = float(point[0] or 0)
            if series and t <= series[-1][0]:  # a re-sent window (at-least-once): replace in place
                for i, old in enumerate(series):
                    if old[0] == t:
                        series[i] = point
                        break
                else:
                    return None
            else:
                series.append(point)
            cutoff = now_s - self.history_s
            while series and series[0][0] < cutoff:
                series.pop(0)
            h["last_seen"] = max(h["last_seen"] or 0, t)
            return {"t": "point", "host": host_id, "series": name, "point": point}
        if topic == REJECTED_TOPIC:
            h = self.host(host_id)
            reason = str(rec.get("reason") or "unknown")
            h["rejected"][reason] = h["rejected"].get(reason, 0) + 1
            h["rejected_last"] = {"reason": reason, "detail": rec.get("detail"), "check": rec.get("check"),
                                  "topic": rec.get("topic"), "ts": rec.get("ts")}
            return {"t": "rejected", "host": host_id, "rejected": h["rejected"], "last": h["rejected_last"]}
        return None

    def _proof(self, key: bytes | None, value: bytes, now_us: int) -> dict[str, Any] | None:
        v = verify_envelope(value, self.keys, thresholds=self.thresholds, chain=self.chain, kafka_key=key,
                            now_us=now_us)
        host_id = v.host_id or (key or b"unknown").decode(errors="replace")
        h = self.host(host_id)
        if v.duplicate:
            h["proofs"]["duplicates"] += 1
        else:
            h["proofs"]["valid" if v.ok else "invalid"] += 1
        h["proof"] = proof_summary(v)
        h["chain_intact"] = self.chain.intact(host_id) if v.key_id else None
        return {"t": "proof", "host": host_id, "proof": h["proof"], "proofs": h["proofs"],
                "chain_intact": h["chain_intact"]}

    def snapshot(self) -> dict[str, Any]:
        return {"fields": POINT_FIELDS, "history_s": self.history_s, "verifying": bool(self.keys),
                "hosts": self.hosts}
