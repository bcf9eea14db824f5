"""Memory: total, swap, huge pages, NUMA nodes with memory per node (/proc/meminfo, sysfs)."""
from __future__ import annotations

from typing import Any

from collector.inventory.hostfs import HostFS, parse_cpu_list, parse_int

SYS_NODE = "sys/devices/system/node"


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo (or a node's meminfo) to bytes by key. "kB" means KiB (fs/proc/meminfo.c);
    HugePages_* counts have no unit. Node files prefix each line with "Node N "."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        key = key.split()[-1] if key.startswith("Node ") and key.split() else key.strip()
        parts = rest.split()
        if not parts:
            continue
        value = parse_int(parts[0])
        if value is None or value < 0:
            continue
        out[key] = value * 1024 if len(parts) > 1 and parts[1].lower() == "kb" else value
    return out


def collect(fs: HostFS) -> dict[str, Any]:
    text = fs.read("proc/meminfo", "memory.meminfo")
    info = parse_meminfo(text) if text else {}
    mem: dict[str, Any] = {
        "total_bytes": info.get("MemTotal"),
        "swap_total_bytes": info.get("SwapTotal"),
        # Volatile (left out of the inventory hash): a reading at collection time.
        "available_bytes": info.get("MemAvailable"),
        "free_bytes": info.get("MemFree"),
        "swap_free_bytes": info.get("SwapFree"),
    }
    for field in ("total_bytes", "swap_total_bytes", "available_bytes"):
        if mem[field] is None:
            fs.note(f"memory.{field}")
    mem["huge_pages"] = _huge_pages(fs, info)
    mem["numa_nodes"] = _numa_nodes(fs)
    return mem


def _huge_pages(fs: HostFS, info: dict[str, int]) -> dict[str, Any]:
    sizes = []
    for entry in fs.listdir("sys/kernel/mm/hugepages"):
        if not entry.startswith("hugepages-") or not entry.endswith("kB"):
            continue
        kib = parse_int(entry[len("hugepages-"):-2])
        count = fs.read_int(f"sys/kernel/mm/hugepages/{entry}/nr_hugepages")
        if kib is not None:
            sizes.append({"page_size_bytes": kib * 1024, "pages": count})
    sizes.sort(key=lambda s: s["page_size_bytes"] or 0)
    return {
        "default_page_size_bytes": info.get("Hugepagesize"),
        "total_pages": info.get("HugePages_Total"),
        "total_bytes": info.get("Hugetlb"),
        "sizes": sizes,
    }


def _numa_nodes(fs: HostFS) -> list[dict[str, Any]]:
    """One entry per online node; memory-less nodes (CPU-only, CXL) keep total_bytes 0."""
    nodes = parse_cpu_list(fs.read_line(f"{SYS_NODE}/online"))
    if nodes is None:
        nodes = sorted(int(e[4:]) for e in fs.listdir(SYS_NODE) if e.startswith("node") and e[4:].isdigit())
    out = []
    for n in nodes:
        text = fs.read(f"{SYS_NODE}/node{n}/meminfo", f"memory.numa_nodes.node{n}")
        info = parse_meminfo(text) if text else {}
        out.append({
            "node": n,
            "total_bytes": info.get("MemTotal"),
            "cpus": fs.read_line(f"{SYS_NODE}/node{n}/cpulist"),
        })
    return out
