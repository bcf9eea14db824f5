"""The eBPF stream source: loads the programs in ``ebpf_programs`` and emits one
hm.ebpf.v1 body per program every ``ebpf_interval_s``.

Without the privileges, BTF, kernel headers, tracefs or bcc it logs ONE line
naming what is missing and the fix, then returns: the agent keeps publishing
usage from its procfs sources. bcc is imported only once the checks pass.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from collector.ebpf.capabilities import check_capabilities
from collector.sources import Emit, register_stream

if TYPE_CHECKING:
    from hmconfig.settings import Settings

log = logging.getLogger(__name__)

SCHEMA = "hm.ebpf.v1"


class EbpfSource:
    name = "ebpf"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.active = False  # True while programs are loaded and snapshots flow
        self.degraded_reason = ""  # the one line logged when eBPF cannot run here
        self.failed: dict[str, str] = {}  # program -> why it did not load

    async def run(self, emit: Emit) -> None:
        s = self.settings
        report = check_capabilities(s.host_root)
        if not report.ok:
            self.degraded_reason = report.one_line()
            log.warning("%s", self.degraded_reason)
            return

        from collector.ebpf.runtime import Runtime

        runtime = Runtime(host_root=s.host_root, interval_s=s.ebpf_interval_s, syscalls_top_n=s.ebpf_syscalls_top_n,
                          state_dir=s.state_dir)
        try:
            await asyncio.to_thread(runtime.load, tuple(s.ebpf_programs))
            self.failed = dict(runtime.failed)
            if not runtime.loaded:
                self.degraded_reason = "eBPF disabled: no program loaded (" + "; ".join(
                    f"{k}: {v}" for k, v in runtime.failed.items()) + "); continuing with procfs sources only"
                log.warning("%s", self.degraded_reason)
                return
            log.info("ebpf: %d program(s) loaded in %.2fs: %s", len(runtime.loaded), runtime.load_s,
                     ", ".join(f"{n} via {p.variant.name}" for n, p in runtime.loaded.items()))
            self.active = True
            next_at = time.monotonic() + s.ebpf_interval_s
            while True:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                for body in await asyncio.to_thread(runtime.snapshot):
                    await emit(SCHEMA, body)
                next_at += s.ebpf_interval_s
                if next_at < time.monotonic():  # fell behind (suspend): skip, do not burst
                    next_at = time.monotonic() + s.ebpf_interval_s
        finally:
            self.active = False
            runtime.close()


@register_stream("ebpf")
def make_ebpf_source(settings: Settings) -> EbpfSource | None:
    return EbpfSource(settings) if settings.ebpf_enabled else None
