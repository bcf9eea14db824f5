"""Typed mirror of the hm.usage.v1 record (schemas/hm.usage.v1.json).

tests/unit/usage/test_records.py checks that every TypedDict here has exactly
the properties of its schema object, with the same required keys, so the two
cannot drift apart. ``total=False`` marks keys the schema does not require.
"""
from __future__ import annotations

from typing import TypedDict


class CoreUsage(TypedDict):
    cpu: int
    utilisation: float | None
    busy_s: float | None


class CpuUsage(TypedDict):
    cores: int | None
    user_s: float | None
    nice_s: float | None
    system_s: float | None
    idle_s: float | None
    iowait_s: float | None
    irq_s: float | None
    softirq_s: float | None
    steal_s: float | None
    busy_s: float | None
    busy_core_s: float | None
    utilisation: float | None
    per_core: list[CoreUsage]


class _PsiRequired(TypedDict):
    some_avg10: float | None
    some_total_us: int | None


class Psi(_PsiRequired, total=False):
    some_avg60: float | None
    some_avg300: float | None
    full_avg10: float | None
    full_avg60: float | None
    full_avg300: float | None
    full_total_us: int | None


class PsiByResource(TypedDict, total=False):
    cpu: Psi | None
    memory: Psi | None
    io: Psi | None


class LoadUsage(TypedDict):
    load1: float | None
    load5: float | None
    load15: float | None
    psi: PsiByResource | None


class _MemoryRequired(TypedDict):
    total_bytes: int | None
    used_bytes: int | None
    available_bytes: int | None


class MemoryUsage(_MemoryRequired, total=False):
    free_bytes: int | None
    cached_bytes: int | None
    buffers_bytes: int | None
    swap_total_bytes: int | None
    swap_used_bytes: int | None


class _DiskDeviceRequired(TypedDict):
    read_bytes: int | None
    write_bytes: int | None
    reads: int | None
    writes: int | None
    io_time_ms: int | None
    read_bytes_per_s: float | None
    write_bytes_per_s: float | None


class DiskDevice(_DiskDeviceRequired, total=False):
    physical: bool


class DiskUsage(TypedDict):
    read_bytes: int | None
    write_bytes: int | None
    read_bytes_per_s: float | None
    write_bytes_per_s: float | None
    devices: dict[str, DiskDevice]


class FilesystemUsage(TypedDict):
    mount: str
    device: str
    fstype: str
    total_bytes: int | None
    used_bytes: int | None
    available_bytes: int | None


class InterfaceUsage(TypedDict):
    rx_bytes: int | None
    tx_bytes: int | None
    rx_packets: int | None
    tx_packets: int | None
    rx_errors: int | None
    tx_errors: int | None
    rx_dropped: int | None
    tx_dropped: int | None
    rx_bytes_per_s: float | None
    tx_bytes_per_s: float | None


class NetworkUsage(TypedDict):
    rx_bytes: int | None
    tx_bytes: int | None
    rx_bytes_per_s: float | None
    tx_bytes_per_s: float | None
    interfaces: dict[str, InterfaceUsage]


class ProcessesUsage(TypedDict):
    processes: int | None
    threads: int | None
    running: int | None
    blocked: int | None


class GpuUsage(TypedDict):
    index: int
    uuid: str | None
    utilisation: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None


class _UsageRecordRequired(TypedDict):
    schema: str
    host_id: str
    boot_id: str
    seq: int
    ts: int
    interval_s: float
    elapsed_s: float
    sources: list[str]
    missing: list[str]


class UsageRecord(_UsageRecordRequired, total=False):
    """One hm.usage.v1 record; a section that could not be read is absent (and named in ``missing``)."""

    cpu: CpuUsage
    load: LoadUsage
    memory: MemoryUsage
    disk: DiskUsage
    filesystem: list[FilesystemUsage]
    network: NetworkUsage
    processes: ProcessesUsage
    gpu: list[GpuUsage]
