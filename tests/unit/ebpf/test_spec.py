"""Program specs: every shipped spec parses and agrees with its C; malformed specs fail with one line."""
from __future__ import annotations

import re

import pytest

from collector.ebpf.loader import cflags
from collector.ebpf.spec import BPF_DIR, PROGRAMS, SpecError, load_spec, parse_spec

# The record contract (common.md, hm.ebpf.v1): published map names per program.
CONTRACT = {
    "sched": {"oncpu_ns", "runq_latency_us"},
    "blockio": {"latency_us", "read_bytes", "write_bytes"},
    "net": {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes"},
    "syscalls": {"syscalls"},
    "mm": {"page_faults", "oom_kills"},
}
ORDER = ["fentry", "raw_tracepoint", "tracepoint", "kprobe"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_shipped_spec_matches_contract_and_c(name):
    spec = load_spec(name)
    assert spec.name == name
    assert {m.name for m in spec.maps if m.published} == CONTRACT[name]
    c = spec.source.read_text()
    for m in spec.maps:  # every map in the spec is declared in the C, under the same name
        assert re.search(rf"BPF_\w+\({m.name},", c), f"{m.name} not declared in {spec.source}"
    for variant in spec.variants:
        assert f"defined({variant.define})" in c, f"{variant.define} not handled in {spec.source}"
    # variants are listed in order of preference
    ranks = [ORDER.index(v.name) for v in spec.variants]
    assert ranks == sorted(ranks)
    # no variant is kprobe-only (this CI's kernel has no kprobes)
    assert any(v.name != "kprobe" for v in spec.variants)


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_cflag_the_c_uses_is_defined(name):
    spec = load_spec(name)
    text = (BPF_DIR / "hm_common.h").read_text() + spec.source.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments name example macros
    used = set(re.findall(r"\b(HM_(?:MAX|OVF|OFF)_\w+|HM_OVERFLOW_SLOTS)\b", text))
    for variant in spec.variants:
        flags = cflags(spec, variant, {k: 8 for k in variant.offsets})
        defined = {f[2:].split("=")[0] for f in flags}
        needed = {u for u in used if not u.startswith("HM_OFF_")} | {f"HM_OFF_{k}" for k in variant.offsets}
        assert needed <= defined, f"{name}/{variant.name} misses {needed - defined}"
        assert f"-D{variant.define}" in flags


def test_cflags_shape():
    spec = load_spec("syscalls")
    assert cflags(spec, spec.variants[0], {}) == [
        "-DHM_ATTACH_RAW_TRACEPOINT", "-DHM_OVERFLOW_SLOTS=1", "-DHM_OVF_SYSCALLS=0", "-DHM_MAX_SYSCALLS=1024",
    ]


GOOD = """
program: demo
source: demo.c
attach:
  - variant: raw_tracepoint
    probes: {sys_enter: raw_tracepoint}
    offsets: {TASK_PID: task_struct.pid}
  - variant: tracepoint
    probes: {sys_enter: tracepoint}
maps:
  hits: {type: counter, unit: count, decode: syscall, max_entries: 64}
  hist: {type: histogram, unit: us, label: all}
  scratch: {type: internal}
"""


def test_parse_good():
    spec = parse_spec(GOOD)
    assert [v.name for v in spec.variants] == ["raw_tracepoint", "tracepoint"]
    assert spec.variants[0].offsets == {"TASK_PID": ("task_struct.pid",)}
    assert spec.variants[0].define == "HM_ATTACH_RAW_TRACEPOINT"
    assert spec.map("hits").max_entries == 64
    assert spec.map("hist").label == "all"
    assert not spec.map("scratch").published


@pytest.mark.parametrize("old, new, message", [
    ("probes: {sys_enter: tracepoint}", "probes: {sys_enter: uprobe}", "unknown kind 'uprobe'"),
    ("decode: syscall", "decode: pid", "decode: 'pid' is not one of"),
    ("type: counter", "type: summary", "type: 'summary' is not one of"),
    ("max_entries: 64", "max_entries: 0", "max_entries must be a positive integer"),
    ("offsets: {TASK_PID: task_struct.pid}", "offsets: {TASK_PID: pid}", "must list struct.member paths"),
    ("program: demo", "program: 7", "program must be a str"),
])
def test_parse_errors_name_the_field(old, new, message):
    assert old in GOOD
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        parse_spec(GOOD.replace(old, new), where="demo.yaml")
    assert str(err.value).startswith("demo.yaml: ") and "\n" not in str(err.value)


def test_kprobe_only_is_refused():
    text = """
program: demo
source: demo.c
attach:
  - variant: kprobe
    probes: {vfs_read: kprobe}
maps: {}
"""
    with pytest.raises(SpecError, match="kprobes cannot be the only attach option"):
        parse_spec(text)


def test_invalid_yaml_and_unknown_program(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("program: [", where="x.yaml")
    with pytest.raises(SpecError, match="no eBPF program named 'nope'"):
        load_spec("nope", bpf_dir=tmp_path)
