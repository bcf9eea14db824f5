"""The stream source on a host without eBPF: one warning line, no records, returns."""
from __future__ import annotations

import logging
from pathlib import Path

from collector.sources import STREAM, import_builtin
from collector.sources.ebpf import EbpfSource, make_ebpf_source
from hmconfig.settings import load_settings


async def test_degrades_with_one_line(tmp_path: Path, caplog):
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)  # a host_root with no BTF, headers or tracefs
    settings = load_settings(host_root=tmp_path, ebpf_interval_s=0.1)
    source = EbpfSource(settings)
    emitted = []

    async def emit(schema, body):
        emitted.append((schema, body))

    with caplog.at_level(logging.INFO, logger="collector.sources.ebpf"):
        await source.run(emit)  # returns instead of running forever
    assert emitted == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert line == source.degraded_reason and "\n" not in line
    assert "btf" in line and "kernel_headers" in line and "tracefs" in line
    assert "continuing with procfs sources only" in line
    assert not source.active


def test_registered_and_switchable():
    import_builtin()
    assert STREAM["ebpf"] is make_ebpf_source
    assert make_ebpf_source(load_settings(ebpf_enabled=False)) is None
    assert isinstance(make_ebpf_source(load_settings()), EbpfSource)
