"""Tumbling per-host usage windows for dashboards (hm.usage.agg.v1), as pure functions.

A window is ``[start, start + length)`` in the record's own ``ts`` (event time);
the accumulator is a plain JSON-able dict so it lives in a changelog-backed table.

Figures:
* CPU utilisation and memory used: mean and max over the samples that carry them.
* Disk and network byte rates: time-weighted mean of the samples' rates,
  ``sum(rate_i * elapsed_i) / sum(elapsed_i)``.
* PSI: mean of ``some_avg10`` per resource.
* eBPF histograms: log2 buckets (bucket k = [2^k, 2^(k+1))) summed per map and
  label; p50/p99 by ``percentile_log2``. eBPF counters are summed.
* samples, expected_samples = round(length / interval_s), coverage = samples / expected (max 1).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

from .validation import USAGE_NUMBERS, numbers

SUMS = {  # figure -> dotted path in hm.usage.v1; mean and max are kept
    "cpu_utilisation": "cpu.utilisation",
    "memory_used_bytes": "memory.used_bytes",
    "psi_cpu": "load.psi.cpu.some_avg10",
    "psi_memory": "load.psi.memory.some_avg10",
    "psi_io": "load.psi.io.some_avg10",
}
RATES = {
    "disk_read": "disk.read_bytes_per_s",
    "disk_write": "disk.write_bytes_per_s",
    "net_rx": "network.rx_bytes_per_s",
    "net_tx": "network.tx_bytes_per_s",
}

assert set(SUMS.values()) | set(RATES.values()) <= set(USAGE_NUMBERS), "validation.USAGE_NUMBERS lacks a path"


def window_start(ts_us: int, length_us: int) -> int:
    return ts_us - ts_us % length_us


def agg_id(host_id: str, name: str, start_us: int, length_us: int) -> str:
    """The aggregate's Kafka key: the same host and window always give the same key."""
    return f"{host_id}/{name}/{start_us}/{length_us}"


def new_acc() -> dict[str, Any]:
    return {"n": 0, "interval_s": None, "boot_id": None, "sources": [], "cores": None, "mem_total": None,
            "sum": {}, "max": {}, "rate": {}, "hist": {}, "unit": {}, "ctr": {}, "ebpf_n": 0}


def _num(v: Any) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _add_sources(acc: dict[str, Any], sources: Any) -> None:
    for s in sources if isinstance(sources, list) else ():
        if isinstance(s, str) and s not in acc["sources"]:
            acc["sources"].append(s)


def usage_figures(record: dict[str, Any], nums: dict[str, float] | None = None) -> dict[str, Any]:
    """What add_usage reads from an hm.usage.v1 record: extracted once per record and shared by the
    10 s and 1 min windows. ``nums``: ``validation.numbers(record)``, when known."""
    nums = numbers(record) if nums is None else nums
    elapsed = _num(record.get("elapsed_s"))
    return {
        "interval_s": _num(record.get("interval_s")),
        "cores": nums.get("cpu.cores"),
        "mem_total": nums.get("memory.total_bytes"),
        "sums": [(name, nums[path]) for name, path in SUMS.items() if path in nums],
        "rates": [(name, nums[path], elapsed) for name, path in RATES.items() if elapsed and path in nums],
    }


def add_usage(acc: dict[str, Any], record: dict[str, Any], figures: dict[str, Any] | None = None) -> None:
    f = figures if figures is not None else usage_figures(record)
    acc["n"] += 1
    acc["interval_s"] = f["interval_s"] or acc["interval_s"]
    acc["boot_id"] = record.get("boot_id")
    acc["cores"] = f["cores"] or acc["cores"]
    acc["mem_total"] = f["mem_total"] or acc["mem_total"]
    _add_sources(acc, record.get("sources"))
    for name, v in f["sums"]:
        s = acc["sum"].setdefault(name, [0.0, 0])
        s[0] += v
        s[1] += 1
        if v > acc["max"].get(name, -math.inf):
            acc["max"][name] = v
    for name, v, elapsed in f["rates"]:
        r = acc["rate"].setdefault(name, [0.0, 0.0])
        r[0] += v * elapsed
        r[1] += elapsed


def merge_hist(into: dict[str, int], buckets: dict[str, Any]) -> None:
    for k, c in buckets.items():
        if _num(c):
            into[str(k)] = into.get(str(k), 0) + int(c)


def add_ebpf(acc: dict[str, Any], record: dict[str, Any]) -> None:
    acc["ebpf_n"] += 1
    if "ebpf" not in acc["sources"]:
        acc["sources"].append("ebpf")
    maps = record.get("maps")
    for map_name, m in (maps.items() if isinstance(maps, dict) else ()):
        if not isinstance(m, dict) or not isinstance(m.get("values"), dict):
            continue
        kind = m.get("type")
        acc["unit"][map_name] = m.get("unit")
        if kind == "histogram":
            per_label = acc["hist"].setdefault(map_name, {})
            for label, buckets in m["values"].items():
                if isinstance(buckets, dict):
                    merge_hist(per_label.setdefault(label, {}), buckets)
        elif kind == "counter":
            per_label = acc["ctr"].setdefault(map_name, {})
            for label, v in m["values"].items():
                if _num(v) is not None:
                    per_label[label] = per_label.get(label, 0) + v


def percentile_log2(buckets: dict[str, int], q: float) -> int | None:
    """The q-quantile (0 < q <= 1) of a log2 histogram, as the upper bound 2^(k+1) of the bucket
    holding the rank ceil(q * N) (1-based, ascending). None for an empty histogram.

    Example: {"0": 1, "3": 2, "5": 1}, N = 4: p50 -> rank 2 -> bucket 3 -> 16; p99 -> rank 4 -> bucket 5 -> 64.
    Reporting the upper bound never understates a latency.
    """
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for k in sorted(buckets, key=int):
        seen += buckets[k]
        if seen >= rank:
            return 2 ** (int(k) + 1)
    raise AssertionError("unreachable: rank <= total")


def coverage(samples: int, length_s: float, interval_s: float | None) -> tuple[int, float]:
    """(expected_samples, coverage) for a window; coverage is capped at 1."""
    if not interval_s or interval_s <= 0:
        return 0, 0.0
    expected = max(1, round(length_s / interval_s))
    return expected, min(1.0, samples / expected)


def _mean(acc: dict[str, Any], name: str) -> float | None:
    s = acc["sum"].get(name)
    return s[0] / s[1] if s and s[1] else None


def _rate(acc: dict[str, Any], name: str) -> float | None:
    r = acc["rate"].get(name)
    return r[0] / r[1] if r and r[1] else None


def finish(acc: dict[str, Any], *, host_id: str, name: str, start_us: int, length_us: int,
           seq: int) -> dict[str, Any]:
    """The hm.usage.agg.v1 record of a closed window. Deterministic: ts is the window end."""
    length_s = length_us / 1e6
    expected, cov = coverage(acc["n"], length_s, acc["interval_s"])
    out: dict[str, Any] = {
        "schema": "hm.usage.agg.v1",
        "agg_id": agg_id(host_id, name, start_us, length_us),
        "host_id": host_id,
        "boot_id": acc["boot_id"],
        "seq": seq,
        "ts": start_us + length_us,
        "window_name": name,
        "window": {"start_us": start_us, "end_us": start_us + length_us, "length_s": length_s},
        "samples": acc["n"],
        "expected_samples": expected,
        "coverage": cov,
        "sources": sorted(acc["sources"]),
        "cpu": {"cores": acc["cores"], "utilisation_avg": _mean(acc, "cpu_utilisation"),
                "utilisation_max": acc["max"].get("cpu_utilisation")},
        "memory": {"total_bytes": acc["mem_total"], "used_bytes_avg": _mean(acc, "memory_used_bytes"),
                   "used_bytes_max": acc["max"].get("memory_used_bytes")},
        "disk": {"read_bytes_per_s": _rate(acc, "disk_read"), "write_bytes_per_s": _rate(acc, "disk_write")},
        "network": {"rx_bytes_per_s": _rate(acc, "net_rx"), "tx_bytes_per_s": _rate(acc, "net_tx")},
        "psi": {"cpu_some_avg10": _mean(acc, "psi_cpu"), "memory_some_avg10": _mean(acc, "psi_memory"),
                "io_some_avg10": _mean(acc, "psi_io")},
    }
    if acc["ebpf_n"]:
        hists = {
            m: {label: {"unit": acc["unit"].get(m), "count": sum(b.values()), "buckets": b,
                        "p50": percentile_log2(b, 0.5), "p99": percentile_log2(b, 0.99)}
                for label, b in per_label.items()}
            for m, per_label in acc["hist"].items()
        }
        out["ebpf"] = {"snapshots": acc["ebpf_n"], "histograms": hists, "counters": acc["ctr"]}
    return out


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
