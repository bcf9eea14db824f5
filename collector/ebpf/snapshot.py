"""Turn two readings of a program's maps into one hm.ebpf.v1 body (pure).

Counters and histograms are published as deltas over the interval between the
readings; overflow counts likewise. Labels come from the map's decoder; keys
that decode to the same label are summed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from collector.ebpf.decoders import agreement, counter_delta, log2_buckets
from collector.ebpf.spec import MapSpec, ProgramSpec

RawKey = int | tuple[int, ...]
METRIC_TYPES = {"counter": "Counter", "gauge": "Gauge", "histogram": "Histogram"}


class Labeller(Protocol):
    def label(self, decode: str, key: RawKey) -> str: ...


@dataclass
class Reading:
    """Cumulative map contents at one moment."""
    maps: dict[str, dict[RawKey, int]] = field(default_factory=dict)
    overflow: dict[str, int] = field(default_factory=dict)
    mono_ns: int = 0
    procfs_busy_ns: int | None = None  # /proc/stat busy time read at the same moment (sched)


def _deltas(prev: dict[RawKey, int], cur: dict[RawKey, int]) -> dict[RawKey, int]:
    out = {}
    for key, value in cur.items():
        d = counter_delta(prev.get(key), value)
        if d:
            out[key] = d
    return out


def decode_counter(m: MapSpec, deltas: dict[RawKey, int], labeller: Labeller, top_n: int | None) -> dict[str, int]:
    values: dict[str, int] = {}
    for key, d in deltas.items():
        label = labeller.label(m.decode, key)
        values[label] = values.get(label, 0) + d
    if m.top_n and top_n is not None:
        total = sum(values.values())
        values = dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n])
        values["total"] = total
    return values


def decode_histogram(m: MapSpec, deltas: dict[RawKey, int], labeller: Labeller) -> dict[str, dict[str, int]]:
    """Keys are a bare slot (one histogram, labelled ``m.label``) or (key..., slot)."""
    slots: dict[str, dict[int, int]] = {}
    for key, d in deltas.items():
        if isinstance(key, tuple):
            *label_key, slot = key
            label = labeller.label(m.decode, label_key[0] if len(label_key) == 1 else tuple(label_key))
        else:
            label, slot = m.label or "all", key
        per = slots.setdefault(label, {})
        per[slot] = per.get(slot, 0) + d
    return {label: log2_buckets(s) for label, s in slots.items()}


def build_body(spec: ProgramSpec, attach: dict[str, str], prev: Reading, cur: Reading, labeller: Labeller, *,
               interval_s: float, ts_ms: int, top_n: int | None = None) -> dict[str, Any]:
    """One hm.ebpf.v1 body (without the common fields the agent adds)."""
    maps: dict[str, Any] = {}
    hypermesh = []
    for m in spec.maps:
        if not m.published:
            continue
        deltas = _deltas(prev.maps.get(m.name, {}), cur.maps.get(m.name, {}))
        if m.type == "histogram":
            values: dict[str, Any] = decode_histogram(m, deltas, labeller)
            flat = {f"{label}:{k}": n for label, buckets in values.items() for k, n in buckets.items()}
        else:
            values = decode_counter(m, deltas, labeller, top_n)
            flat = dict(values)
        maps[m.name] = {"type": m.type, "unit": m.unit, "decode": m.decode, "values": values}
        hypermesh.append({
            "name": m.name,
            "metric_type": METRIC_TYPES[m.type],
            "values": flat,
            "timestamp_ms": ts_ms,
            "metadata": {"program": spec.name, "unit": m.unit, "decode": m.decode,
                         **({"bucket": "log2 k: [2^k, 2^(k+1))"} if m.type == "histogram" else {})},
        })
    body: dict[str, Any] = {
        "program": spec.name,
        "interval_s": interval_s,
        "elapsed_s": round(max(0, cur.mono_ns - prev.mono_ns) / 1e9, 6),
        "attach": dict(attach),
        "maps": maps,
        "overflow": {name: counter_delta(prev.overflow.get(name), n) for name, n in cur.overflow.items()},
        "hypermesh": hypermesh,
    }
    if spec.name == "sched" and prev.procfs_busy_ns is not None and cur.procfs_busy_ns is not None:
        oncpu = sum(maps.get("oncpu_ns", {}).get("values", {}).values())
        busy = counter_delta(prev.procfs_busy_ns, cur.procfs_busy_ns)
        body["cpu_agreement"] = {
            "oncpu_ns": oncpu,
            "procfs_busy_ns": busy,
            "ebpf_procfs_cpu_agreement": round(agreement(oncpu, busy), 6),
        }
    return body
