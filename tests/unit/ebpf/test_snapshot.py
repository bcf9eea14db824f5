"""Snapshot bodies from two readings: deltas, resets, decoding, top N, cpu_agreement; schema-valid."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.ebpf.snapshot import Reading, build_body
from collector.ebpf.spec import load_spec
from schemas import is_valid, validate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures/schemas/hm.ebpf.v1"
COMMON = {"schema": "hm.ebpf.v1", "host_id": "h-" + "ab" * 16,
          "boot_id": "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "seq": 0, "ts": 1}


class FakeLabels:
    """Labels without a host: cgroup ids 1 and 2 both decode to "/" to show that labels are summed."""

    def label(self, decode, key):
        if decode == "cgroup":
            return "/" if key in (1, 2) else f"/c{key}"
        if decode == "syscall":
            return {0: "read", 1: "write", 39: "getpid"}.get(key, f"sys_{key}")
        if decode == "disk":
            return "vda" if key == 254 << 20 else "sda"
        if decode == "ifindex":
            return f"if{key[1]}"
        return str(key)


def body(name, prev, cur, top_n=None):
    spec = load_spec(name)
    attach = dict(spec.variants[0].probes)
    out = build_body(spec, attach, prev, cur, FakeLabels(), interval_s=5.0, ts_ms=1000, top_n=top_n)
    validate("hm.ebpf.v1", {**COMMON, **out})
    return out


def test_sched_deltas_labels_histogram_and_agreement():
    prev = Reading({"oncpu_ns": {1: 100, 7: 50}, "runq_latency_us": {0: 5, 3: 1}},
                   {"oncpu_ns": 0, "enqueued_ns": 2}, mono_ns=0, procfs_busy_ns=1_000)
    cur = Reading({"oncpu_ns": {1: 400, 2: 100, 7: 50}, "runq_latency_us": {0: 9, 3: 1, 10: 2}},
                  {"oncpu_ns": 0, "enqueued_ns": 5}, mono_ns=5_000_000_000, procfs_busy_ns=1_500)
    b = body("sched", prev, cur)
    assert b["elapsed_s"] == 5.0
    assert b["maps"]["oncpu_ns"] == {"type": "counter", "unit": "ns", "decode": "cgroup", "values": {"/": 400}}
    assert b["maps"]["runq_latency_us"]["values"] == {"all": {"0": 4, "10": 2}}
    assert b["overflow"] == {"oncpu_ns": 0, "enqueued_ns": 3}
    assert b["cpu_agreement"] == {"oncpu_ns": 400, "procfs_busy_ns": 500, "ebpf_procfs_cpu_agreement": 0.8}
    hm = {m["name"]: m for m in b["hypermesh"]}
    assert hm["runq_latency_us"]["metric_type"] == "Histogram"
    assert hm["runq_latency_us"]["values"] == {"all:0": 4, "all:10": 2}
    assert hm["oncpu_ns"]["metadata"]["program"] == "sched"


def test_counter_reset_counts_the_new_value():
    prev = Reading({"read_bytes": {254 << 20: 10_000}}, {}, mono_ns=0)
    cur = Reading({"read_bytes": {254 << 20: 4096}}, {}, mono_ns=1)  # program reloaded
    assert body("blockio", prev, cur)["maps"]["read_bytes"]["values"] == {"vda": 4096}


def test_histogram_per_disk():
    vda, sda = 254 << 20, 8 << 20
    cur = Reading({"latency_us": {(vda, 4): 3, (vda, 5): 1, (sda, 12): 2}, "read_bytes": {}, "write_bytes": {}},
                  {}, mono_ns=1)
    assert body("blockio", Reading(), cur)["maps"]["latency_us"]["values"] == {
        "vda": {"4": 3, "5": 1}, "sda": {"12": 2}}


def test_syscalls_top_n_plus_total():
    cur = Reading({"syscalls": {0: 30, 1: 20, 39: 100_000, 60: 1}}, {"syscalls": 0}, mono_ns=1)
    values = body("syscalls", Reading(), cur, top_n=2)["maps"]["syscalls"]["values"]
    assert values == {"getpid": 100_000, "read": 30, "total": 100_051}


def test_no_agreement_without_procfs():
    cur = Reading({"oncpu_ns": {1: 5}}, {}, mono_ns=1)
    assert "cpu_agreement" not in body("sched", Reading(), cur)


@pytest.mark.parametrize("path", sorted((FIXTURES / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_examples(path):
    validate("hm.ebpf.v1", json.loads(path.read_text()))


@pytest.mark.parametrize("path", sorted((FIXTURES / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_examples(path):
    record = json.loads(path.read_text())
    record.pop("_why")
    assert not is_valid("hm.ebpf.v1", record)
