"""CPU topology edge cases: P/E split from cpu_capacity (arm64 big.LITTLE), sysfs masked."""
from __future__ import annotations

from collector.inventory import cpu
from collector.inventory.hostfs import HostFS


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_big_little_from_cpu_capacity(tmp_path):
    # RK3588: 4 x Cortex-A55 (cpu0-3, capacity 530) + 4 x Cortex-A76 (cpu4-7, capacity 1024).
    _write(tmp_path, "sys/devices/system/cpu/online", "0-7")
    blocks = []
    for c in range(8):
        big = c >= 4
        _write(tmp_path, f"sys/devices/system/cpu/cpu{c}/cpu_capacity", "1024" if big else "530")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{c}/topology/physical_package_id", "0")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list", str(c))
        _write(tmp_path, f"sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq", "2400000" if big else "1800000")
        blocks.append(f"processor\t: {c}\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
                      f"CPU part\t: {'0xd0b' if big else '0xd05'}\n")
    _write(tmp_path, "proc/cpuinfo", "\n".join(blocks))
    out = cpu.collect(HostFS(tmp_path))
    assert out["hybrid"] == {
        "performance": {"cpus": "4-7", "threads": 4, "cores": 4, "max_freq_mhz": 2400.0},
        "efficiency": {"cpus": "0-3", "threads": 4, "cores": 4, "max_freq_mhz": 1800.0},
    }
    assert [(t["name"], t["cpus"]) for t in out["arm"]["core_types"]] == [("Cortex-A55", 4), ("Cortex-A76", 4)]
    assert (out["cores"], out["threads"], out["architecture"]) == (8, 8, "aarch64")


def test_equal_capacity_is_not_hybrid(tmp_path):
    _write(tmp_path, "sys/devices/system/cpu/online", "0-1")
    for c in range(2):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{c}/cpu_capacity", "1024")
    assert cpu.collect(HostFS(tmp_path))["hybrid"] is None


def test_topology_from_cpuinfo_when_sysfs_is_masked(tmp_path):
    """Some container runtimes mask /sys/devices/system/cpu: counts come from cpuinfo's
    physical id / core id, and the missing sysfs fields are named."""
    from pathlib import Path

    laptop = Path(__file__).resolve().parents[2] / "fixtures/machines/laptop-nvidia-intel/root/proc/cpuinfo"
    _write(tmp_path, "proc/cpuinfo", laptop.read_text())
    fs = HostFS(tmp_path)
    out = cpu.collect(fs)
    assert (out["sockets"], out["cores"], out["threads"]) == (1, 8, 16)
    assert out["base_freq_mhz"] == 2300.0  # from the model name's "@ 2.30GHz"
    assert out["cache"]["l3"] is None and "cpu.cache.l1d" in fs.missing and "cpu.max_freq_mhz" in fs.missing
