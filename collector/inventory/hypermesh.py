"""The ``hypermesh`` object: the native sections projected onto the consensus layer's
Rust types (blockmatrix/src/os_integration/types.rs; see docs/INVENTORY.md).

serde's defaults apply: enum variants are bare names ("NVMe", "Discrete"), Option
fields are null when unknown. The native sections stay the source of truth.
"""
from __future__ import annotations

from typing import Any

STORAGE_TYPES = {"nvme": "NVMe", "ssd": "SSD", "hdd": "HDD", "network": "Network"}  # virtual -> Unknown


def derive(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpu": _cpu(body.get("cpu") or {}),
        "gpus": [_gpu(g) for g in body.get("gpus") or []],
        "memory": _memory(body.get("memory") or {}),
        "storage": [_storage(f) for f in (body.get("storage") or {}).get("filesystems") or []],
    }


def _cpu(cpu: dict[str, Any]) -> dict[str, Any]:
    cache = cpu.get("cache") or {}

    def kb(*names: str) -> int | None:
        # Whole-machine totals (all instances), like lscpu's summary; L1 = L1d + L1i.
        totals = [(cache.get(n) or {}).get("total_bytes") for n in names]
        known = [t for t in totals if t is not None]
        return sum(known) // 1024 if known else None

    has_cache = any(cache.get(n) for n in ("l1d", "l1i", "l2", "l3"))
    return {
        "cores": cpu.get("threads") or 0,  # CpuInfo.cores is the logical CPU count
        "model": cpu.get("model") or "Unknown",
        "architecture": cpu.get("architecture") or "unknown",
        "frequency_mhz": _int(cpu.get("max_freq_mhz") or cpu.get("base_freq_mhz")),
        "usage_percent": None,
        "vendor": cpu.get("vendor"),
        "cache_kb": {"l1_kb": kb("l1d", "l1i"), "l2_kb": kb("l2"), "l3_kb": kb("l3")} if has_cache else None,
    }


def _gpu(gpu: dict[str, Any]) -> dict[str, Any]:
    nvml = gpu.get("nvml") or {}
    caps = []
    if nvml.get("compute_capability"):
        caps.append(f"cuda:{nvml['compute_capability']}")
    if gpu.get("driver"):
        caps.append(f"driver:{gpu['driver']}")
    return {
        "model": gpu.get("model") or "Unknown",
        "vendor": gpu.get("vendor") or "Unknown",
        "memory_bytes": gpu.get("memory_bytes"),
        "available_bytes": None,
        "gpu_type": gpu.get("gpu_type") or "Discrete",
        "capabilities": caps,
        "pci_address": gpu.get("pci_address"),
    }


def _memory(mem: dict[str, Any]) -> dict[str, Any]:
    total = mem.get("total_bytes") or 0
    available = mem.get("available_bytes")
    used = total - available if available is not None else 0
    swap_total = mem.get("swap_total_bytes")
    swap_free = mem.get("swap_free_bytes")
    return {
        "total_bytes": total,
        "available_bytes": available or 0,
        "used_bytes": used,
        "usage_percent": round(used * 100 / total, 2) if total else 0.0,
        "swap_total_bytes": swap_total,
        "swap_used_bytes": swap_total - swap_free if swap_total is not None and swap_free is not None else None,
    }


def _storage(fs: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": fs.get("device") or "",
        "mount_point": fs.get("mount_point") or "",
        "filesystem": fs.get("fstype") or "",
        "total_bytes": fs.get("total_bytes") or 0,
        "used_bytes": fs.get("used_bytes") or 0,
        "available_bytes": fs.get("available_bytes") or 0,
        "usage_percent": float(fs.get("usage_percent") or 0.0),
        "storage_type": STORAGE_TYPES.get(fs.get("type") or "", "Unknown"),
    }


def _int(value: Any) -> int | None:
    return int(round(value)) if isinstance(value, (int, float)) else None
