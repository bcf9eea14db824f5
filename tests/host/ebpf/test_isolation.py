"""A program that fails to load does not stop the others; the failure names every variant tried."""
from __future__ import annotations

import shutil
from pathlib import Path

from collector.ebpf.runtime import Runtime
from collector.ebpf.spec import BPF_DIR

BROKEN_C = """
BPF_HASH(hits, u32, u64, HM_MAX_HITS);
#if defined(HM_ATTACH_RAW_TRACEPOINT)
RAW_TRACEPOINT_PROBE(hm_no_such_tracepoint) { return 0; }
#elif defined(HM_ATTACH_TRACEPOINT)
TRACEPOINT_PROBE(hm_no_such_group, hm_no_such_event) { return 0; }
#endif
"""
BROKEN_YAML = """
program: broken
source: broken.c
attach:
  - variant: raw_tracepoint
    probes: {hm_no_such_tracepoint: raw_tracepoint}
  - variant: tracepoint
    probes: {hm_no_such_event: tracepoint}
maps:
  hits: {type: counter, unit: count, decode: none, max_entries: 16}
"""


def test_broken_program_does_not_stop_the_others(ebpf_host, tmp_path: Path):
    for name in ("hm_common.h", "syscalls.c", "syscalls.yaml"):
        shutil.copy(BPF_DIR / name, tmp_path / name)
    (tmp_path / "broken.c").write_text(BROKEN_C)
    (tmp_path / "broken.yaml").write_text(BROKEN_YAML)
    runtime = Runtime(bpf_dir=tmp_path, interval_s=1.0)
    try:
        runtime.load(["broken", "syscalls"])
        assert list(runtime.loaded) == ["syscalls"]
        reason = runtime.failed["broken"]
        assert reason.startswith("eBPF program broken did not load: raw_tracepoint: ") and "| tracepoint: " in reason
        (body,) = runtime.snapshot()
        assert body["program"] == "syscalls" and body["maps"]["syscalls"]["values"]["total"] > 0
    finally:
        runtime.close()
