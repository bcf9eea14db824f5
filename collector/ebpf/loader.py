"""Compile, load and attach one program with bcc, trying its attach variants in order.

The final C is ``bpf/hm_common.h`` followed by ``bpf/<program>.c``; every
parameter goes in as a ``-D`` cflag (``hmtel ebpf --dump-bpf NAME`` prints both).
bcc is imported lazily: only hosts that run eBPF need it.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.ebpf.btf import Btf, BtfError, parse_btf
from collector.ebpf.cache import AttachCache
from collector.ebpf.spec import BPF_DIR, ProgramSpec, Variant
from hmconfig.errors import HmtelError

log = logging.getLogger(__name__)

COMMON_HEADER = "hm_common.h"


class LoadError(HmtelError):
    """No attach variant of a program loaded; the message lists each attempt."""

    retriable = False


@dataclass
class LoadedProgram:
    spec: ProgramSpec
    variant: Variant
    bpf: Any  # bcc.BPF
    cflags: list[str]
    load_s: float
    failed: list[str] = field(default_factory=list)  # "<variant>: <reason>" for variants tried first
    tables: dict[str, Any] = field(default_factory=dict)  # bcc table objects, built once

    def table(self, name: str) -> Any:
        if name not in self.tables:
            self.tables[name] = self.bpf.get_table(name.encode())
        return self.tables[name]

    @property
    def attach(self) -> dict[str, str]:
        return dict(self.variant.probes)

    def close(self) -> None:
        if self.bpf is not None:
            self.tables.clear()
            self.bpf.cleanup()
            self.bpf = None


def final_source(spec: ProgramSpec, bpf_dir: Path = BPF_DIR) -> str:
    header = (bpf_dir / COMMON_HEADER).read_text()
    return f"{header}\n/* ---- {spec.source.name} ---- */\n{spec.source.read_text()}"


@functools.cache
def _btf_at(path: str, size: int, mtime_ns: int) -> Btf:
    with open(path, "rb") as f:
        return parse_btf(f.read())


def kernel_btf(host_root: Path = Path("/")) -> Btf:
    """The running kernel's BTF, parsed once per process (about 0.2 s)."""
    path = host_root / "sys/kernel/btf/vmlinux"
    try:
        st = path.stat()
    except OSError as err:
        raise BtfError(f"{path}: {err.strerror}") from None
    return _btf_at(str(path), st.st_size, st.st_mtime_ns)


def resolve_offsets(variant: Variant, btf: Btf) -> dict[str, int]:
    """HM_OFF_<NAME> -> byte offset, taking the first alternative the kernel has."""
    out: dict[str, int] = {}
    for name, alternatives in variant.offsets.items():
        errors = []
        for alt in alternatives:
            struct_name, _, member = alt.partition(".")
            try:
                out[name] = btf.offset(struct_name, member)
                break
            except BtfError as err:
                errors.append(str(err))
        else:
            raise BtfError("; ".join(errors))
    return out


def cflags(spec: ProgramSpec, variant: Variant, offsets: dict[str, int]) -> list[str]:
    flags = [f"-D{variant.define}", f"-DHM_OVERFLOW_SLOTS={len(spec.maps)}"]
    for slot, m in enumerate(spec.maps):
        flags.append(f"-DHM_OVF_{m.name.upper()}={slot}")
        if m.max_entries is not None:
            flags.append(f"-DHM_MAX_{m.name.upper()}={m.max_entries}")
    flags += [f"-DHM_OFF_{name}={off}" for name, off in sorted(offsets.items())]
    return flags


def variant_cflags(spec: ProgramSpec, variant: Variant, host_root: Path = Path("/")) -> list[str]:
    offsets = resolve_offsets(variant, kernel_btf(host_root)) if variant.offsets else {}
    return cflags(spec, variant, offsets)


def release_compiler_memory() -> None:
    """Hand the heap LLVM freed after compiling back to the OS (~40 MB after five programs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def load_program(spec: ProgramSpec, *, host_root: Path = Path("/"), bpf_dir: Path = BPF_DIR,
                 cache: AttachCache | None = None) -> LoadedProgram:
    """Try each variant in order; log the one used. Raises LoadError when none loads.

    With a ``cache``, variants that already failed on this boot are skipped
    (unless that would leave none) and BTF offsets are reused."""
    from bcc import BPF  # distribution package python3-bpfcc

    text = final_source(spec, bpf_dir)
    # Failures are remembered per exact source: an edited program is tried afresh.
    cache_name = f"{spec.name}@{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    known_bad = cache.failed(cache_name) if cache else {}
    if all(v.name in known_bad for v in spec.variants):
        known_bad = {}
    failed: list[str] = []
    for variant in spec.variants:
        if variant.name in known_bad:
            failed.append(f"{variant.name}: {known_bad[variant.name]} (cached)")
            log.info("ebpf %s: skipping attach variant %s, it failed earlier on this boot (%s)",
                     spec.name, variant.name, known_bad[variant.name])
            continue
        started = time.monotonic()
        try:
            offsets = cache.offsets(spec.name, variant.name) if cache and variant.offsets else None
            if offsets is None or set(offsets) != set(variant.offsets):  # none cached, or the spec changed
                offsets = resolve_offsets(variant, kernel_btf(host_root)) if variant.offsets else {}
                if cache and variant.offsets:
                    cache.store_offsets(spec.name, variant.name, offsets)
            flags = cflags(spec, variant, offsets)
            bpf = BPF(text=text.encode(), cflags=flags)
        except Exception as err:  # noqa: BLE001 - bcc raises bare Exception for compile/attach failures
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            failed.append(f"{variant.name}: {reason}")
            if cache:
                cache.record_failure(cache_name, variant.name, reason)
            log.info("ebpf %s: attach variant %s failed (%s); trying the next", spec.name, variant.name, reason)
            continue
        loaded = LoadedProgram(spec, variant, bpf, flags, time.monotonic() - started, failed)
        log.info("ebpf %s: attached via %s (%s) in %.2fs", spec.name, variant.name,
                 ", ".join(f"{p}={k}" for p, k in variant.probes.items()), loaded.load_s)
        return loaded
    raise LoadError(f"eBPF program {spec.name} did not load: " + " | ".join(failed))


# --- reading maps -------------------------------------------------------------

def _plain_key(key: Any) -> int | tuple[int, ...]:
    if isinstance(key, int):
        return key
    if hasattr(key, "value"):
        return int(key.value)
    return tuple(int(getattr(key, name)) for name, _ in key._fields_ if name != "pad")


def _plain_value(value: Any) -> int:
    if isinstance(value, int):
        return value
    if hasattr(value, "value"):
        return int(value.value or 0)
    return int(sum(value))  # per-CPU map: one value per possible CPU


def read_map(table: Any) -> dict[int | tuple[int, ...], int]:
    """All non-zero entries of a bcc table as plain ints/tuples.

    Arrays are read in one BPF_MAP_LOOKUP_BATCH call (kernel 5.6+) where the
    kernel has it: the 1024-entry per-CPU syscalls array costs ~0.5 ms that
    way instead of ~4 ms entry by entry."""
    out: dict[int | tuple[int, ...], int] = {}
    entries = None
    if "Array" in type(table).__name__:
        try:
            entries = list(table.items_lookup_batch())
        except Exception:  # noqa: BLE001 - older kernels: EINVAL; fall back to per-entry reads
            entries = None
    if entries is None:
        entries = table.items()
    for key, value in entries:
        v = _plain_value(value)
        if v:
            out[_plain_key(key)] = v
    return out


def read_program(loaded: LoadedProgram) -> tuple[dict[str, dict[Any, int]], dict[str, int]]:
    """(published map name -> {raw key: cumulative value}, map name -> cumulative overflow count)."""
    maps = {m.name: read_map(loaded.table(m.name)) for m in loaded.spec.maps if m.published}
    overflow_raw = read_map(loaded.table("hm_overflow"))
    overflow = {m.name: overflow_raw.get(slot, 0) for slot, m in enumerate(loaded.spec.maps)}
    return maps, overflow
