"""Resource proof v1 (the design's "Resource proof"), as pure functions.

* ``proof_id`` = sha256 hex of ``"{host_id}:{start_us}:{length_us}"``: the same host and
  window always give the same id, so consumers dedupe on it.
* ``seq`` counts issued proofs per host from 0 with no holes; ``prev_proof_hash`` is the
  sha256 hex of the previous proof's payload bytes (null for seq 0).
* payload bytes = ``orjson.dumps(payload, option=OPT_SORT_KEYS)``; ``issued_at_us`` is the
  window end plus the grace period, so a rebuilt proof is byte-identical.
* ``evidence.input_digest`` folds the sha256 of every accepted input record's value bytes,
  in the order the processor accepted them (Kafka order within the host's partition):
  ``d_0 = 32 zero bytes; d_i = sha256(d_{i-1} || sha256(value_i))``; the digest is d_n in hex.
  Anyone holding the records recomputes it; the fold keeps the window state constant-size.
* Work: ``cpu_core_seconds_used`` = sum of the samples' busy_core_s; capacity = cores x window
  length; ``memory_byte_seconds`` = sum(used_bytes x elapsed_s); disk/network bytes are deltas
  of the cumulative counters against the previous sample of the same boot (a new boot has no
  baseline; that sample counts rate x elapsed instead), so samples lost in a gap still count.

Window-level verdicts (``check_window``): coverage below the threshold -> insufficient_evidence
and claimed CPU work above capacity x factor -> over_capacity both withhold the proof; eBPF
on-CPU vs procfs busy agreement below 1 - tolerance -> source_disagreement flags it (still issued).
"""
from __future__ import annotations

import hashlib
from typing import Any

import orjson

from schemas.dsse import make_envelope

from .aggregation import coverage, merge_hist, percentile_log2
from .config import ProcessorConfig
from .validation import dig, numbers

PROOF_SCHEMA = "hm.proof.v1"
ZERO_DIGEST = "00" * 32
STORAGE_TYPES = {"NVMe": "nvme", "SSD": "ssd", "HDD": "hdd", "Network": "network"}  # anything else: unknown
BYTE_COUNTERS = {"disk_read": ("disk.read_bytes", "disk.read_bytes_per_s"),
                 "disk_write": ("disk.write_bytes", "disk.write_bytes_per_s"),
                 "net_rx": ("network.rx_bytes", "network.rx_bytes_per_s"),
                 "net_tx": ("network.tx_bytes", "network.tx_bytes_per_s")}


def proof_id(host_id: str, start_us: int, length_us: int) -> str:
    return hashlib.sha256(f"{host_id}:{start_us}:{length_us}".encode()).hexdigest()


def fold_digest(digest_hex: str, value: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(digest_hex) + hashlib.sha256(value).digest()).hexdigest()


def inventory_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a proof needs from an hm.inventory.v1 record (kept per host in the table)."""
    hm: dict[str, Any] = record["hypermesh"] if isinstance(record.get("hypermesh"), dict) else {}
    storage: dict[str, list[int]] = {}
    for dev in hm.get("storage") or ():
        if not isinstance(dev, dict):
            continue
        kind = STORAGE_TYPES.get(str(dev.get("storage_type")), "unknown")
        t = storage.setdefault(kind, [0, 0])
        t[0] += int(dev.get("total_bytes") or 0)
        t[1] += int(dev.get("used_bytes") or 0)
    return {
        "hash": record.get("inventory_hash"),
        "cores": dig(hm, "cpu.cores"),
        "memory_total_bytes": dig(hm, "memory.total_bytes"),
        "storage": storage,
        "gpus": len(hm.get("gpus") or ()),
    }


def new_acc() -> dict[str, Any]:
    return {"n": 0, "interval_s": None, "boot_id": None, "first_seq": None, "last_seq": None, "gaps": [],
            "digest": ZERO_DIGEST, "inputs": 0, "cpu_core_s": 0.0, "cores": None, "mem_byte_s": 0.0,
            "gpu_s": None, "bytes": {k: 0.0 for k in BYTE_COUNTERS}, "max_skew_us": 0, "sources": [],
            "ebpf": None}


def counter_deltas(baseline: dict[str, float] | None, record: dict[str, Any],
                   nums: dict[str, float] | None = None) -> dict[str, float]:
    """Bytes moved since the previous sample of the same boot (rate x elapsed without a baseline).
    ``nums``: ``validation.numbers(record)``, when known."""
    nums = numbers(record) if nums is None else nums
    elapsed = record.get("elapsed_s") or 0
    out = {}
    for name, (counter, rate) in BYTE_COUNTERS.items():
        if baseline and counter in baseline and counter in nums:
            out[name] = nums[counter] - baseline[counter]
        else:
            out[name] = nums.get(rate, 0.0) * elapsed
    return out


def _sources(acc: dict[str, Any], sources: Any) -> None:
    for s in sources if isinstance(sources, list) else ():
        if isinstance(s, str) and s not in acc["sources"]:
            acc["sources"].append(s)


def add_usage(acc: dict[str, Any], record: dict[str, Any], value: bytes, deltas: dict[str, float],
              gaps: list[list[int]], skew_us: int, nums: dict[str, float] | None = None) -> None:
    """``nums``: ``validation.numbers(record)``, when known."""
    nums = numbers(record) if nums is None else nums
    acc["n"] += 1
    acc["inputs"] += 1
    acc["digest"] = fold_digest(acc["digest"], value)
    acc["interval_s"] = record.get("interval_s") or acc["interval_s"]
    if acc["boot_id"] != record["boot_id"]:  # first_seq/last_seq describe the window's latest boot
        acc["boot_id"], acc["first_seq"], acc["last_seq"] = record["boot_id"], record["seq"], record["seq"]
    acc["first_seq"] = min(acc["first_seq"], record["seq"])
    acc["last_seq"] = max(acc["last_seq"], record["seq"])
    acc["gaps"].extend(gaps)
    busy = nums.get("cpu.busy_core_s")
    if busy is not None:
        acc["cpu_core_s"] += busy
    cores = nums.get("cpu.cores")
    if isinstance(cores, int):
        acc["cores"] = max(acc["cores"] or 0, cores)
    elapsed = record.get("elapsed_s") or 0
    used = nums.get("memory.used_bytes")
    if used is not None:
        acc["mem_byte_s"] += used * elapsed
    gpus = record.get("gpu")
    if isinstance(gpus, list) and gpus:
        acc["gpu_s"] = (acc["gpu_s"] or 0.0) + sum(
            (g.get("utilisation") or 0) * elapsed for g in gpus if isinstance(g, dict))
    for k, v in deltas.items():
        acc["bytes"][k] += v
    acc["max_skew_us"] = max(acc["max_skew_us"], abs(skew_us))
    _sources(acc, record.get("sources"))


def add_ebpf(acc: dict[str, Any], record: dict[str, Any], value: bytes) -> None:
    acc["inputs"] += 1
    acc["digest"] = fold_digest(acc["digest"], value)
    _sources(acc, ["ebpf"])
    e = acc["ebpf"] = acc["ebpf"] or {"snapshots": 0, "oncpu_ns": 0, "procfs_busy_ns": 0, "agreement_inputs": 0,
                                      "runq": {}, "blockio": {}, "syscalls": 0, "page_faults": 0}
    e["snapshots"] += 1
    maps: dict[str, Any] = record["maps"] if isinstance(record.get("maps"), dict) else {}

    def values(name: str) -> dict[str, Any]:
        m = maps.get(name)
        return m["values"] if isinstance(m, dict) and isinstance(m.get("values"), dict) else {}

    program = record.get("program")
    if program == "sched":
        e["oncpu_ns"] += int(sum(v for v in values("oncpu_ns").values() if isinstance(v, (int, float))))
        agree = record.get("cpu_agreement")
        if isinstance(agree, dict) and isinstance(agree.get("procfs_busy_ns"), (int, float)):
            e["procfs_busy_ns"] += int(agree["procfs_busy_ns"])
            e["agreement_inputs"] += 1
        for buckets in values("runq_latency_us").values():
            if isinstance(buckets, dict):
                merge_hist(e["runq"], buckets)
    elif program == "blockio":
        for buckets in values("latency_us").values():
            if isinstance(buckets, dict):
                merge_hist(e["blockio"], buckets)
    elif program == "syscalls":
        total = values("syscalls").get("total")
        if isinstance(total, (int, float)):
            e["syscalls"] += int(total)
    elif program == "mm":
        e["page_faults"] += int(sum(v for v in values("page_faults").values() if isinstance(v, (int, float))))


def cpu_agreement(acc: dict[str, Any]) -> float | None:
    """min/max of eBPF on-CPU ns and procfs busy ns over the window (1.0 = equal); None without eBPF.

    procfs busy comes from the sched snapshots' own cpu_agreement blocks when present (same
    span as the eBPF counts), else from the window's usage samples.
    """
    e = acc["ebpf"]
    if not e or not e["oncpu_ns"]:
        return None
    procfs = e["procfs_busy_ns"] if e["agreement_inputs"] else acc["cpu_core_s"] * 1e9
    a, b = float(e["oncpu_ns"]), float(procfs)
    if max(a, b) == 0:
        return 1.0
    return round(min(a, b) / max(a, b), 6)


def build_payload(acc: dict[str, Any], *, host_id: str, start_us: int, length_us: int, grace_us: int,
                  seq: int, prev_proof_hash: str | None, inventory: dict[str, Any] | None,
                  host_key_id: str, cfg: ProcessorConfig) -> dict[str, Any]:
    inv = inventory or {}
    length_s = length_us / 1e6
    expected, cov = coverage(acc["n"], length_s, acc["interval_s"])
    cores = inv.get("cores") or acc["cores"] or 0
    storage = inv.get("storage") or {}
    by_type = {t: {"total_bytes": storage.get(t, [0, 0])[0], "used_bytes": storage.get(t, [0, 0])[1]}
               for t in ("nvme", "ssd", "hdd", "network", "unknown")}
    work: dict[str, Any] = {
        "cpu_core_seconds_used": round(acc["cpu_core_s"], 6),
        "cpu_core_seconds_capacity": round(cores * length_s, 6),
        "memory_byte_seconds": round(acc["mem_byte_s"], 3),
        "disk_read_bytes": round(acc["bytes"]["disk_read"]),
        "disk_write_bytes": round(acc["bytes"]["disk_write"]),
        "net_rx_bytes": round(acc["bytes"]["net_rx"]),
        "net_tx_bytes": round(acc["bytes"]["net_tx"]),
    }
    if acc["gpu_s"] is not None:
        work["gpu_seconds"] = round(acc["gpu_s"], 6)
    e = acc["ebpf"]
    if e:
        work["ebpf"] = {"oncpu_ns": e["oncpu_ns"], "runq_latency_p99_us": percentile_log2(e["runq"], 0.99),
                        "blockio_latency_p99_us": percentile_log2(e["blockio"], 0.99),
                        "syscalls": e["syscalls"], "page_faults": e["page_faults"]}
    gaps = acc["gaps"]
    return {
        "schema": PROOF_SCHEMA,
        "proof_id": proof_id(host_id, start_us, length_us),
        "host_id": host_id,
        "boot_id": acc["boot_id"],
        "seq": seq,
        "prev_proof_hash": prev_proof_hash,
        "window": {"start_us": start_us, "end_us": start_us + length_us, "length_s": length_s},
        "issued_at_us": start_us + length_us + grace_us,
        "space": {
            "storage_total_bytes": sum(v["total_bytes"] for v in by_type.values()),
            "storage_used_bytes": sum(v["used_bytes"] for v in by_type.values()),
            "storage_by_type": by_type,
            "memory_total_bytes": inv.get("memory_total_bytes"),
            "gpus": inv.get("gpus", 0),
        },
        "stake": {"entity_id": cfg.operator_id or host_key_id, "host_key_id": host_key_id},
        "work": work,
        "time": {"max_clock_skew_ms": round(acc["max_skew_us"] / 1000, 3)},
        "inventory_hash": inv.get("hash"),
        "evidence": {
            "samples": acc["n"], "expected_samples": expected, "coverage": round(cov, 6),
            "sources": sorted(acc["sources"]), "ebpf_procfs_cpu_agreement": cpu_agreement(acc),
            "first_seq": acc["first_seq"], "last_seq": acc["last_seq"],
            "gaps": sum(b - a + 1 for a, b in gaps), "gap_ranges": gaps[:100],
            "inputs": acc["inputs"], "input_digest": acc["digest"],
        },
        "flags": [],
    }


def check_window(payload: dict[str, Any], cfg: ProcessorConfig) -> list[tuple[str, str]]:
    """Window-level verdicts: [(code, detail)]. Any code but source_disagreement withholds the proof.

    Mutates ``payload["flags"]`` for source_disagreement, which is flagged on the issued proof.
    """
    out = []
    ev, work = payload["evidence"], payload["work"]
    if ev["coverage"] < cfg.coverage_threshold:
        out.append(("insufficient_evidence", f"coverage {ev['coverage']:.3f} ({ev['samples']}/"
                                             f"{ev['expected_samples']} samples) < {cfg.coverage_threshold:g}"))
    capacity = work["cpu_core_seconds_capacity"]
    if capacity and work["cpu_core_seconds_used"] > capacity * cfg.over_capacity_factor:
        out.append(("over_capacity", f"claimed {work['cpu_core_seconds_used']:.3f} core-s > capacity "
                                     f"{capacity:.3f} x {cfg.over_capacity_factor:g}"))
    agreement = ev["ebpf_procfs_cpu_agreement"]
    if agreement is not None and agreement < 1 - cfg.source_disagreement_tolerance:
        payload["flags"].append("source_disagreement")
        out.append(("source_disagreement", f"eBPF on-CPU vs procfs busy agreement {agreement:.3f} < "
                                           f"{1 - cfg.source_disagreement_tolerance:g}"))
    return out


def payload_bytes(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def payload_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign(payload: bytes, private_key: Any, key_id: str) -> dict[str, Any]:
    """The DSSE envelope of a proof payload, signed with the processor key."""
    return make_envelope(private_key, payload, keyid=key_id)
