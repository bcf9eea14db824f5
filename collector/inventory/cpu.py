"""CPU: vendor, model, architecture, topology, hybrid split, frequencies, caches, flags.

Sources, in order of trust: sysfs topology and caches (what lscpu uses), cpufreq
policies, then /proc/cpuinfo. arm64 cpuinfo has no "model name", so the name comes
from the MIDR implementer/part tables below (same values as util-linux lscpu-arm.c).
"""
from __future__ import annotations

import re
from typing import Any

from collector.inventory.hostfs import HostFS, parse_cpu_list, parse_int

SYS_CPU = "sys/devices/system/cpu"

X86_VENDORS = {
    "GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon",
    "CentaurHauls": "Centaur", "  Shanghai  ": "Zhaoxin", "GenuineTMx86": "Transmeta",
}

# MIDR_EL1 implementer codes and part numbers (arch/arm64/include/asm/cputype.h,
# util-linux sys-utils/lscpu-arm.c).
ARM_IMPLEMENTERS = {
    0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
    0x4E: "NVIDIA", 0x50: "APM", 0x51: "Qualcomm", 0x53: "Samsung", 0x56: "Marvell",
    0x61: "Apple", 0x69: "Intel", 0x6D: "Microsoft", 0xC0: "Ampere",
}
ARM_PARTS = {
    0x41: {
        0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57",
        0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76",
        0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD40: "Neoverse-V1", 0xD41: "Cortex-A78",
        0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD48: "Cortex-X2",
        0xD49: "Neoverse-N2", 0xD4A: "Neoverse-E1", 0xD4F: "Neoverse-V2", 0xD80: "Cortex-A520",
        0xD81: "Cortex-A720", 0xD82: "Cortex-X4", 0xD84: "Neoverse-V3", 0xD8E: "Neoverse-N3",
    },
    0x43: {0x0A1: "ThunderX 88XX", 0x0AF: "ThunderX2 99xx", 0x0B8: "ThunderX3 T110"},
    0x46: {0x001: "A64FX"},
    0x48: {0xD01: "Kunpeng-920", 0xD02: "Kunpeng-930"},
    0x4E: {0x004: "Carmel"},
    0x50: {0x000: "X-Gene"},
    0x51: {0x800: "Falkor V1/Kryo", 0xC00: "Falkor", 0x001: "Oryon"},
    0x61: {0x022: "Icestorm", 0x023: "Firestorm", 0x024: "Icestorm-Pro", 0x025: "Firestorm-Pro"},
    0xC0: {0xAC3: "Ampere-1", 0xAC4: "Ampere-1a"},
}

# x86-64 psABI micro-architecture levels, by /proc/cpuinfo flag names
# (pni is SSE3, abm carries LZCNT).
X86_64_LEVELS = (
    ("v2", {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    ("v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ("v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
)

_GHZ_IN_NAME = re.compile(r"@\s*([0-9]+(?:\.[0-9]+)?)\s*GHz", re.IGNORECASE)


# --- parsers (text in, plain data out) ----------------------------------------------

def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo to one dict per block. x86 has one block per CPU; arm64 has one
    per CPU plus header/trailer blocks ("Hardware", "Serial") without "processor"."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def summarize_cpuinfo(blocks: list[dict[str, str]]) -> dict[str, Any]:
    """Vendor, model, identification and flags from parsed cpuinfo blocks (x86 or arm64)."""
    cpus = [b for b in blocks if "processor" in b and parse_int(b["processor"]) is not None]
    first = cpus[0] if cpus else (blocks[0] if blocks else {})
    merged: dict[str, str] = {}
    for block in blocks:  # arm64 may put "Hardware"/"model name" in a trailer block
        for key, value in block.items():
            merged.setdefault(key, value)
    out: dict[str, Any] = {
        "vendor": None, "vendor_id": None, "model": None, "family": None, "model_number": None,
        "stepping": None, "microcode": None, "arm": None, "flags": [],
        "logical_cpus": len(cpus) or None, "packages": None, "core_keys": None,
    }
    flags = first.get("flags") or first.get("Features") or merged.get("flags") or merged.get("Features") or ""
    out["flags"] = sorted(set(flags.split()))
    vendor_id = first.get("vendor_id") or first.get("vendor")
    if vendor_id:
        out["vendor_id"] = vendor_id
        out["vendor"] = X86_VENDORS.get(vendor_id, vendor_id.strip() or None)
        out["family"] = parse_int(first.get("cpu family"))
        out["model_number"] = parse_int(first.get("model"))
        out["stepping"] = parse_int(first.get("stepping"))
        out["microcode"] = first.get("microcode")
    implementer = parse_int(first.get("CPU implementer"), 16) if "CPU implementer" in first else None
    if implementer is not None:
        part = parse_int(first.get("CPU part"), 16) if first.get("CPU part") else None
        out["vendor_id"] = f"0x{implementer:02x}"
        out["vendor"] = ARM_IMPLEMENTERS.get(implementer, f"0x{implementer:02x}")
        out["arm"] = {
            "implementer": f"0x{implementer:02x}",
            "part": f"0x{part:03x}" if part is not None else None,
            "variant": first.get("CPU variant"),
            "revision": parse_int(first.get("CPU revision")),
            "architecture": first.get("CPU architecture"),
            "core_types": _arm_core_types(cpus),
        }
        name = ARM_PARTS.get(implementer, {}).get(part) if part is not None else None
        out["model"] = name or (f"{out['vendor']} part 0x{part:03x}" if part is not None else None)
    model_name = first.get("model name") or merged.get("model name") or first.get("cpu model")
    if model_name and implementer is None:
        out["model"] = " ".join(model_name.split())
    packages = {b.get("physical id") for b in cpus if b.get("physical id") is not None}
    cores = {(b.get("physical id"), b.get("core id")) for b in cpus if b.get("core id") is not None}
    out["packages"] = len(packages) or None
    out["core_keys"] = len(cores) or None
    return out


def _arm_core_types(cpus: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Distinct (implementer, part) pairs with their CPU counts: big.LITTLE shows as two."""
    counts: dict[tuple[int | None, int | None], int] = {}
    for block in cpus:
        key = (parse_int(block.get("CPU implementer"), 16), parse_int(block.get("CPU part"), 16))
        counts[key] = counts.get(key, 0) + 1
    out = []
    for (impl, part), count in sorted(counts.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or 0)):
        name = ARM_PARTS.get(impl or -1, {}).get(part or -1)
        out.append({"part": f"0x{part:03x}" if part is not None else None, "name": name, "cpus": count})
    return out


def parse_cache_size(text: str | None) -> int | None:
    """sysfs cache ``size`` ("32K", "1024K", "32M") to bytes."""
    if text is None:
        return None
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    number = parse_int(text[:-1] if scale != 1 else text)
    return number * scale if number is not None and number >= 0 else None


def parse_khz(text: str | None) -> float | None:
    """cpufreq values are kHz; returned as MHz."""
    value = parse_int(text)
    return round(value / 1000, 1) if value is not None and value > 0 else None


def base_ghz_from_model(model: str | None) -> float | None:
    """Intel names carry the base clock ("... CPU @ 2.40GHz"); MHz or None."""
    match = _GHZ_IN_NAME.search(model or "")
    return round(float(match.group(1)) * 1000, 1) if match else None


def simd_summary(flags: list[str]) -> dict[str, Any]:
    """AVX flags, the highest AVX level, and the x86-64 psABI level (None off x86)."""
    have = set(flags)
    avx = sorted(f for f in have if f.startswith("avx"))
    level = "avx512" if "avx512f" in have else "avx2" if "avx2" in have else "avx" if "avx" in have else None
    x86_level = None
    if "lm" in have:
        x86_level = "v1"
        for name, needed in X86_64_LEVELS:
            if not needed <= have:
                break
            x86_level = name
    virt = "VT-x" if "vmx" in have else "AMD-V" if "svm" in have else None
    arm_simd = sorted(f for f in have if f in {"asimd", "sve", "sve2", "sme", "asimddp", "i8mm", "bf16"})
    return {"avx": avx, "avx_level": level, "x86_64_level": x86_level,
            "virtualization": virt, "arm_simd": arm_simd}


def infer_arch(flags: list[str], blocks: list[dict[str, str]]) -> str | None:
    have = set(flags)
    if "lm" in have:
        return "x86_64"
    if blocks and any("CPU implementer" in b for b in blocks):
        arch = next((b.get("CPU architecture") or "" for b in blocks if "CPU architecture" in b), "")
        return "aarch64" if arch.strip() in ("8", "AArch64", "9") else "arm"
    if {"fpu", "tsc"} <= have:
        return "i686"
    return None


# --- collection ---------------------------------------------------------------------

def collect(fs: HostFS) -> dict[str, Any]:
    text = fs.read("proc/cpuinfo", "cpu.cpuinfo")
    blocks = parse_cpuinfo(text) if text else []
    info = summarize_cpuinfo(blocks)
    arch = fs.read_line("proc/sys/kernel/arch") or infer_arch(info["flags"], blocks)
    cpu: dict[str, Any] = {
        "vendor": info["vendor"], "vendor_id": info["vendor_id"], "model": info["model"],
        "architecture": arch, "family": info["family"], "model_number": info["model_number"],
        "stepping": info["stepping"], "microcode": info["microcode"], "arm": info["arm"],
    }
    for field in ("vendor", "model", "architecture"):
        if cpu[field] is None:
            fs.note(f"cpu.{field}")
    online = parse_cpu_list(fs.read_line(f"{SYS_CPU}/online"))
    if not online:
        online = list(range(info["logical_cpus"])) if info["logical_cpus"] else []
    cpu.update(_topology(fs, online, info))
    cpu["hybrid"] = _hybrid(fs, online)
    cpu.update(_frequency(fs, info["model"]))
    cpu["cache"] = _caches(fs, online)
    cpu["flags"] = info["flags"]
    if not info["flags"]:
        fs.note("cpu.flags")
    cpu.update(simd_summary(info["flags"]))
    cpu["hypervisor_flag"] = "hypervisor" in info["flags"]
    return cpu


def _topology(fs: HostFS, online: list[int], info: dict[str, Any]) -> dict[str, Any]:
    packages: set[str] = set()
    siblings: set[str] = set()
    for n in online:
        topo = f"{SYS_CPU}/cpu{n}/topology"
        pkg = fs.read_line(f"{topo}/physical_package_id")
        sib = fs.read_line(f"{topo}/thread_siblings_list") or fs.read_line(f"{topo}/core_cpus_list")
        if pkg is not None:
            packages.add(pkg)
        if sib is not None:
            siblings.add(sib)
    threads = len(online) or None
    sockets = len(packages) or info["packages"]
    cores = len(siblings) or info["core_keys"]
    if cores is None and threads is not None and info["arm"]:
        cores = threads  # arm64 without sysfs topology: none of the known parts has SMT
    if threads and sockets is None:
        sockets = 1 if info["arm"] else None
    for name, value in (("threads", threads), ("cores", cores), ("sockets", sockets)):
        if value is None:
            fs.note(f"cpu.{name}")
    return {
        "sockets": sockets, "cores": cores, "threads": threads,
        "cores_per_socket": cores // sockets if cores and sockets else None,
        # The widest core, as lscpu: a hybrid part with HT on its P-cores has 2.
        "threads_per_core": max(len(parse_cpu_list(s) or [0]) for s in siblings) if siblings
        else (threads // cores if threads and cores else None),
        "online_cpus": fs.read_line(f"{SYS_CPU}/online"),
    }


def _hybrid(fs: HostFS, online: list[int]) -> dict[str, Any] | None:
    """The P/E split. Intel hybrid parts expose a PMU per core type (Linux 5.13+): cpu_core
    (P) and cpu_atom (E). Elsewhere (arm64 big.LITTLE/DynamIQ) the scheduler's per-CPU
    ``cpu_capacity`` differs by core type: the highest capacity is "performance"."""
    groups: dict[str, list[int]] = {}
    for name, pmu in (("performance", "cpu_core"), ("efficiency", "cpu_atom")):
        cpus = parse_cpu_list(fs.read_line(f"sys/devices/{pmu}/cpus"))
        if cpus:
            groups[name] = [c for c in cpus if c in set(online)] or cpus
    if not groups:
        capacity = {c: parse_int(fs.read_line(f"{SYS_CPU}/cpu{c}/cpu_capacity")) for c in online}
        known = {c: v for c, v in capacity.items() if v is not None}
        if len(set(known.values())) > 1:
            top = max(known.values())
            groups = {"performance": [c for c, v in known.items() if v == top],
                      "efficiency": [c for c, v in known.items() if v != top]}
    out = {}
    for name, cpus in groups.items():
        text = _cpu_list_text(cpus)
        cores = {fs.read_line(f"{SYS_CPU}/cpu{c}/topology/thread_siblings_list") or str(c) for c in cpus}
        max_mhz = [parse_khz(fs.read_line(f"{SYS_CPU}/cpu{c}/cpufreq/cpuinfo_max_freq")) for c in cpus]
        maxes = [m for m in max_mhz if m is not None]
        out[name] = {"cpus": text, "threads": len(cpus), "cores": len(cores), "max_freq_mhz": max(maxes) if maxes else None}
    return out or None


def _cpu_list_text(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the kernel's list format)."""
    parts: list[str] = []
    for c in sorted(cpus):
        if parts and parts[-1].split("-")[-1] == str(c - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{c}"
        else:
            parts.append(str(c))
    return ",".join(parts)


def _frequency(fs: HostFS, model: str | None) -> dict[str, Any]:
    """Base and max from cpufreq policies (kHz); base falls back to ACPI CPPC, then the model name."""
    base: list[float] = []
    maxes: list[float] = []
    mins: list[float] = []
    driver = None
    for policy in fs.listdir(f"{SYS_CPU}/cpufreq"):
        if not policy.startswith("policy"):
            continue
        d = f"{SYS_CPU}/cpufreq/{policy}"
        driver = driver or fs.read_line(f"{d}/scaling_driver")
        for target, name in ((base, "base_frequency"), (maxes, "cpuinfo_max_freq"), (mins, "cpuinfo_min_freq")):
            value = parse_khz(fs.read_line(f"{d}/{name}"))
            if value is not None:
                target.append(value)
    if not base:
        nominal = parse_int(fs.read_line(f"{SYS_CPU}/cpu0/acpi_cppc/nominal_freq"))  # MHz
        if nominal:
            base.append(float(nominal))
    base_mhz = max(base) if base else base_ghz_from_model(model)
    out = {"base_freq_mhz": base_mhz, "max_freq_mhz": max(maxes) if maxes else None,
           "min_freq_mhz": min(mins) if mins else None, "scaling_driver": driver}
    for field in ("base_freq_mhz", "max_freq_mhz"):
        if out[field] is None:
            fs.note(f"cpu.{field}")
    return out


def _caches(fs: HostFS, online: list[int]) -> dict[str, dict[str, Any] | None]:
    """Per level: one instance's size, the instance count and the total, like lscpu.

    A CPU already covered by an instance seen on another CPU (via shared_cpu_list) is
    not read again, so a 128-thread host reads about one L3 directory per L3 slice.
    """
    seen: dict[str, dict[str, Any]] = {}
    covered: dict[str, set[int]] = {}
    for n in online:
        base = f"{SYS_CPU}/cpu{n}/cache"
        for index in fs.listdir(base):
            if not index.startswith("index"):
                continue
            d = f"{base}/{index}"
            level = fs.read_line(f"{d}/level")
            kind = fs.read_line(f"{d}/type")
            if level is None or kind is None:
                continue
            name = f"l{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
            if n in covered.get(name, set()):
                continue
            size = parse_cache_size(fs.read_line(f"{d}/size"))
            shared = parse_cpu_list(fs.read_line(f"{d}/shared_cpu_list")) or [n]
            covered.setdefault(name, set()).update(shared)
            entry = seen.setdefault(name, {"size_bytes": size, "instances": 0, "total_bytes": 0})
            entry["instances"] += 1
            entry["total_bytes"] = (entry["total_bytes"] or 0) + (size or 0) if size is not None else entry["total_bytes"]
            if size is not None and (entry["size_bytes"] or 0) < size:
                entry["size_bytes"] = size  # hybrid parts: the largest instance (lscpu gives totals only)
    out: dict[str, dict[str, Any] | None] = {}
    for name in ("l1d", "l1i", "l2", "l3"):
        if name in seen:
            out[name] = seen[name]
        else:
            out[name] = None
            if name != "l3" or not seen:  # many embedded arm64 parts have no L3
                fs.note(f"cpu.cache.{name}")
    for name, entry in seen.items():
        out.setdefault(name, entry)  # e.g. l4 on some parts
    return out
