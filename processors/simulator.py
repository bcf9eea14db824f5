"""Simulated hosts for `hmtel simulate`, the tests and bench/processors.py.

Each simulated host has its own Ed25519 key (derived from a seed, so the same
``--seed`` gives the same host_ids run after run) and a fresh boot_id per run,
and signs exactly like the collector: orjson value bytes, headers from
schemas.dsse.sign_record. Records follow the binding contracts in the shared
notes (hm.inventory.v1, hm.usage.v1, hm.ebpf.v1).

``bad_record(kind, host, now_us)`` crafts one record that the processors must
refuse with exactly reason code ``kind`` (record-level codes); window-level codes
(insufficient_evidence, source_disagreement, window over_capacity) come from
host behaviour: ``SimHost.drop_share`` and ``SimHost.ebpf_skew``.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.dsse import host_id_for, raw_public_key, sign_record

GIB = 1 << 30
RECORD_BAD_KINDS = ("malformed", "schema", "bad_signature", "key_mismatch", "duplicate", "clock_skew", "stale",
                    "counter_regression", "over_capacity")
WINDOW_BAD_KINDS = ("insufficient_evidence", "source_disagreement")
Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


@dataclass
class SimHost:
    index: int
    seed: str = "sim"
    cores: int = 4
    memory_total: int = 16 * GIB
    interval_s: float = 1.0
    drop_share: float = 0.0      # share of usage samples never sent (-> insufficient_evidence)
    ebpf_skew: float = 1.0       # eBPF on-CPU = procfs busy x skew (-> source_disagreement when far from 1)
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    seqs: dict[str, int] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=lambda: {"busy_s": 1000.0, "idle_s": 5000.0,
                                                                "read": 1e9, "write": 2e9, "rx": 3e9, "tx": 4e9})
    last_usage: dict[str, Any] | None = None
    ebpf_busy_mark: float | None = None  # cumulative busy_s at the last eBPF snapshot

    def __post_init__(self) -> None:
        secret = hashlib.sha256(f"hmtel-simulate:{self.seed}:{self.index}".encode()).digest()
        self.key = Ed25519PrivateKey.from_private_bytes(secret)
        self.public_raw = raw_public_key(self.key)
        self.host_id = host_id_for(self.public_raw)
        self.rng = random.Random(f"{self.seed}:{self.index}")

    def next_seq(self, schema: str) -> int:
        seq = self.seqs.get(schema, 0)
        self.seqs[schema] = seq + 1
        return seq

    def common(self, schema: str, ts_us: int) -> dict[str, Any]:
        return {"schema": schema, "host_id": self.host_id, "boot_id": self.boot_id,
                "seq": self.next_seq(schema), "ts": ts_us}

    def message(self, topic: str, record: dict[str, Any]) -> Message:
        value = orjson.dumps(record)
        return topic, self.host_id.encode(), value, sign_record(self.key, record["schema"], value)

    # --- records ----------------------------------------------------------------
    def inventory(self, ts_us: int) -> dict[str, Any]:
        storage = [{"device": "/dev/nvme0n1p1", "mount_point": "/", "filesystem": "ext4", "total_bytes": 512 * GIB,
                    "used_bytes": 100 * GIB, "available_bytes": 412 * GIB, "usage_percent": 19.5,
                    "storage_type": "NVMe"},
                   {"device": "/dev/sda1", "mount_point": "/data", "filesystem": "xfs", "total_bytes": 4096 * GIB,
                    "used_bytes": 1024 * GIB, "available_bytes": 3072 * GIB, "usage_percent": 25.0,
                    "storage_type": "HDD"}]
        hm = {"cpu": {"cores": self.cores, "model": "Simulated CPU", "architecture": "x86_64"},
              "gpus": [],
              "memory": {"total_bytes": self.memory_total, "available_bytes": self.memory_total // 2,
                         "used_bytes": self.memory_total // 2, "usage_percent": 50.0},
              "storage": storage}
        body = {"source": "linux",
                "cpu": {"vendor": "SimulatedVendor", "model": "Simulated CPU", "architecture": "x86_64",
                        "sockets": 1, "cores": self.cores, "threads": self.cores, "hybrid": None,
                        "base_freq_mhz": 2000.0, "max_freq_mhz": 3000.0, "cache": {}, "flags": []},
                "memory": {"total_bytes": self.memory_total, "swap_total_bytes": 0, "numa_nodes": []},
                "gpus": [], "storage": {"block_devices": [], "filesystems": []},
                "network": {"source": "sysfs", "interfaces": []},
                "system": {"hostname": f"sim-{self.index}", "kernel": None, "os": None, "boot_id": self.boot_id,
                           "machine_id_sha256": None, "virtualization": None, "container": None},
                "hypermesh": hm, "missing": []}
        body["inventory_hash"] = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return {**self.common("hm.inventory.v1", ts_us), **body,
                "public_key": base64.b64encode(self.public_raw).decode()}

    def usage(self, ts_us: int, elapsed_s: float | None = None, utilisation: float | None = None) -> dict[str, Any]:
        elapsed = self.interval_s if elapsed_s is None else elapsed_s
        util = self.rng.uniform(0.1, 0.9) if utilisation is None else utilisation
        busy = util * self.cores * elapsed
        c = self.counters
        c["busy_s"] += busy
        c["idle_s"] += self.cores * elapsed - busy
        rates = {k: self.rng.uniform(1e5, 1e7) for k in ("read", "write", "rx", "tx")}
        for k, r in rates.items():
            c[k] += round(r * elapsed)
        used = int(self.memory_total * self.rng.uniform(0.3, 0.7))
        psi = {r: {"some_avg10": round(self.rng.uniform(0, 5), 2), "some_total_us": 1000} for r in ("cpu", "memory", "io")}
        rec = {**self.common("hm.usage.v1", ts_us), "interval_s": self.interval_s, "elapsed_s": elapsed,
               "sources": ["procfs"], "missing": [],
               "cpu": {"cores": self.cores, "user_s": c["busy_s"] * 0.7, "nice_s": 0.0, "system_s": c["busy_s"] * 0.3,
                       "idle_s": c["idle_s"], "iowait_s": 0.0, "irq_s": 0.0, "softirq_s": 0.0, "steal_s": 0.0,
                       "busy_s": c["busy_s"], "busy_core_s": busy, "utilisation": util, "per_core": []},
               "load": {"load1": util * self.cores, "load5": 1.0, "load15": 1.0, "psi": psi},
               "memory": {"total_bytes": self.memory_total, "used_bytes": used,
                          "available_bytes": self.memory_total - used},
               "disk": {"read_bytes": c["read"], "write_bytes": c["write"], "read_bytes_per_s": rates["read"],
                        "write_bytes_per_s": rates["write"], "devices": {}},
               "network": {"rx_bytes": c["rx"], "tx_bytes": c["tx"], "rx_bytes_per_s": rates["rx"],
                           "tx_bytes_per_s": rates["tx"], "interfaces": {}},
               "processes": {"processes": 200, "threads": 400, "running": 2, "blocked": 0}}
        self.last_usage = rec
        return rec

    def ebpf_sched(self, ts_us: int, procfs_busy_s: float, elapsed_s: float) -> dict[str, Any]:
        oncpu = int(procfs_busy_s * 1e9 * self.ebpf_skew)
        procfs_ns = int(procfs_busy_s * 1e9)
        agree = min(oncpu, procfs_ns) / max(oncpu, procfs_ns) if max(oncpu, procfs_ns) else 1.0
        return {**self.common("hm.ebpf.v1", ts_us), "program": "sched", "interval_s": elapsed_s,
                "elapsed_s": elapsed_s, "attach": {"sched_switch": "raw_tracepoint"},
                "maps": {"oncpu_ns": {"type": "counter", "unit": "ns", "decode": "cgroup",
                                      "values": {"/": oncpu}},
                         "runq_latency_us": {"type": "histogram", "unit": "us", "decode": "none",
                                             "values": {"all": {"2": 50, "4": 30, "7": 5}}}},
                "overflow": {}, "cpu_agreement": {"oncpu_ns": oncpu, "procfs_busy_ns": procfs_ns,
                                                  "ebpf_procfs_cpu_agreement": round(agree, 6)},
                "hypermesh": []}


def bad_record(kind: str, host: SimHost, now_us: int, other: SimHost | None = None) -> Message:
    """One record the processors must refuse with reason ``kind`` (a record-level code)."""
    if kind == "malformed":
        value = b"{not json"
        return "hm.usage.v1", host.host_id.encode(), value, sign_record(host.key, "hm.usage.v1", value)
    if kind == "schema":
        rec = host.usage(now_us)
        rec["seq"] = "seven"  # wrong type
        return host.message("hm.usage.v1", rec)
    if kind == "bad_signature":
        topic, key, value, headers = host.message("hm.usage.v1", host.usage(now_us))
        return topic, key, value, [(k, v if k != "hm-sig" else base64.b64encode(b"\0" * 64)) for k, v in headers]
    if kind == "key_mismatch":  # another key signs a record that claims this host's id
        impostor = other or SimHost(index=10_000 + host.index, seed="impostor")
        rec = host.usage(now_us)
        value = orjson.dumps(rec)
        return "hm.usage.v1", key_of(rec), value, sign_record(impostor.key, "hm.usage.v1", value)
    if kind == "duplicate":
        assert host.last_usage is not None, "send a usage record first"
        return host.message("hm.usage.v1", host.last_usage)
    if kind == "clock_skew":
        return host.message("hm.usage.v1", host.usage(now_us + 3600 * 1_000_000))
    if kind == "stale":
        return host.message("hm.usage.v1", host.usage(now_us - 2 * 86_400 * 1_000_000))
    if kind == "counter_regression":
        rec = host.usage(now_us)
        rec["disk"]["read_bytes"] = 1.0  # this record only: the host's next samples are fine again
        return host.message("hm.usage.v1", rec)
    if kind == "over_capacity":
        rec = host.usage(now_us)
        rec["cpu"]["busy_core_s"] = host.cores * rec["elapsed_s"] * 2
        return host.message("hm.usage.v1", rec)
    raise ValueError(f"unknown bad record kind {kind!r}; one of {', '.join(RECORD_BAD_KINDS)}")


def key_of(record: dict[str, Any]) -> bytes:
    return str(record["host_id"]).encode()


@dataclass
class SimStats:
    sent: int = 0
    usage: int = 0
    ebpf: int = 0
    inventory: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    sent_bad: list[tuple[str, bytes]] = field(default_factory=list)  # (kind, value bytes) of each bad record


async def run(settings: Any, *, hosts: int, rate: float, duration_s: float | None, ebpf: bool = False,
              ebpf_interval_s: float = 5.0, bad: dict[str, int] | None = None, seed: str = "sim",
              drop_share: float = 0.0, ebpf_skew: float = 1.0, backfill_s: float = 0.0,
              progress: Callable[[str], None] | None = None, first_host: int = 0) -> SimStats:
    """Send inventory for every host, then usage at ``rate`` Hz per host for ``duration_s`` (None: until
    cancelled), eBPF sched snapshots every ``ebpf_interval_s`` when ``ebpf``, and ``bad[kind]`` bad records
    of each kind spread over the run. ``backfill_s`` first sends that many seconds of past samples as
    fast as possible (a backlog for throughput measurements)."""
    from hmconfig.kafka_clients import make_producer, start_with_retry

    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    sims = [SimHost(i, seed=seed, interval_s=1.0 / rate, drop_share=drop_share, ebpf_skew=ebpf_skew)
            for i in range(first_host, first_host + hosts)]
    stats = SimStats()
    producer = await start_with_retry(lambda: make_producer(settings, linger_ms=20), settings, what="simulate")
    pending: list[asyncio.Future[Any]] = []

    async def send(msg: Message) -> None:
        topic, key, value, headers = msg
        pending.append(await producer.send(topic, value, key=key, headers=headers))
        stats.sent += 1
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()

    try:
        now = time.time()
        start_us = int((now - backfill_s) * 1e6)
        for h in sims:
            await send(h.message("hm.inventory.v1", h.inventory(start_us)))
            stats.inventory += 1
        await producer.flush()
        interval = 1.0 / rate
        bad_plan = [k for k, n in (bad or {}).items() for _ in range(n)]
        total_ticks = None if duration_s is None else max(1, int((duration_s + backfill_s) * rate))
        bad_every = max(1, (total_ticks or 60) // (len(bad_plan) + 1)) if bad_plan else 0
        tick = 0
        t0 = time.monotonic() - backfill_s
        began = last_report = time.monotonic()
        last_ebpf_tick = 0
        while total_ticks is None or tick < total_ticks:
            due = t0 + tick * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ts_us = start_us + int(tick * interval * 1e6)
            for h in sims:
                rec = h.usage(ts_us)
                if h.drop_share and h.rng.random() < h.drop_share:
                    stats.dropped += 1
                    continue
                await send(h.message("hm.usage.v1", rec))
                stats.usage += 1
            if ebpf and (tick - last_ebpf_tick) * interval >= ebpf_interval_s:
                span = (tick - last_ebpf_tick) * interval
                for h in sims:
                    mark = h.counters["busy_s"] if h.ebpf_busy_mark is None else h.ebpf_busy_mark
                    busy, h.ebpf_busy_mark = h.counters["busy_s"] - mark, h.counters["busy_s"]
                    await send(h.message("hm.ebpf.v1", h.ebpf_sched(ts_us, busy, span)))
                    stats.ebpf += 1
                last_ebpf_tick = tick
            if bad_plan and tick and tick % bad_every == 0:
                kind = bad_plan.pop(0)
                msg = bad_record(kind, sims[0], int(time.time() * 1e6), other=sims[-1])
                stats.sent_bad.append((kind, msg[2]))
                await send(msg)
                stats.bad[kind] = stats.bad.get(kind, 0) + 1
            tick += 1
            if time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(f"simulate: {hosts} hosts, tick {tick}, sent {stats.sent} (usage {stats.usage}, "
                         f"ebpf {stats.ebpf}, bad {sum(stats.bad.values())}), "
                         f"{stats.sent / (time.monotonic() - began):.0f} records/s")
        if pending:
            await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return stats
