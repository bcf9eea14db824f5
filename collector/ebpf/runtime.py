"""Load a set of programs and take snapshots of them: shared by the stream
source (collector/sources/ebpf.py) and `hmtel ebpf`.

A program that fails to load is logged and left out; the others run.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.ebpf.cache import AttachCache
from collector.ebpf.decoders import Decoders, proc_stat_busy_ns
from collector.ebpf.loader import LoadedProgram, load_program, read_program, release_compiler_memory
from collector.ebpf.snapshot import Reading, build_body
from collector.ebpf.spec import BPF_DIR, PROGRAMS, load_spec

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    host_root: Path = Path("/")
    interval_s: float = 5.0
    syscalls_top_n: int = 20
    state_dir: Path | None = None  # where the attach cache lives; None: no cache
    bpf_dir: Path = BPF_DIR
    loaded: dict[str, LoadedProgram] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # program -> why it did not load
    load_s: float = 0.0
    _last: dict[str, Reading] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.decoders = Decoders(self.host_root)
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        self.cache = AttachCache.for_host(self.state_dir, self.host_root)

    def load(self, programs: Sequence[str] = PROGRAMS) -> None:
        """Compile and attach ``programs`` one after another: libbcc 0.26 segfaults
        when two threads compile at once (LLVM state is process-global)."""
        started = time.monotonic()
        for name in programs:
            try:
                loaded = load_program(load_spec(name, self.bpf_dir), host_root=self.host_root, cache=self.cache,
                                      bpf_dir=self.bpf_dir)
            except Exception as err:  # noqa: BLE001 - one program's failure must not stop the others
                self.failed[name] = str(err)
                log.warning("ebpf %s not loaded: %s", name, err)
                continue
            self.loaded[name] = loaded
            self._last[name] = self.read(loaded)
        release_compiler_memory()
        self.load_s = time.monotonic() - started

    def _busy_ns(self) -> int | None:
        try:
            return proc_stat_busy_ns((self.host_root / "proc/stat").read_text(), self._clk_tck)
        except (OSError, ValueError):
            return None

    def read(self, loaded: LoadedProgram) -> Reading:
        maps, overflow = read_program(loaded)
        busy = self._busy_ns() if loaded.spec.name == "sched" else None
        return Reading(maps, overflow, time.monotonic_ns(), busy)

    def snapshot(self) -> list[dict[str, Any]]:
        """One body per loaded program: deltas since the previous snapshot (or the load)."""
        self.decoders.new_round()
        ts_ms = time.time_ns() // 1_000_000
        bodies = []
        for name, loaded in self.loaded.items():
            cur = self.read(loaded)
            prev = self._last.get(name, Reading(mono_ns=cur.mono_ns))
            self._last[name] = cur
            bodies.append(build_body(loaded.spec, loaded.attach, prev, cur, self.decoders,
                                     interval_s=self.interval_s, ts_ms=ts_ms, top_n=self.syscalls_top_n))
        return bodies

    def close(self) -> None:
        for loaded in self.loaded.values():
            loaded.close()
        self.loaded.clear()
