"""Each fixture machine (tests/fixtures/machines/<name>/root) against its expected.json,
with the live-I/O edges (statvfs, NVML) taken from its edges.json; plus the facts each
tree exists to test, and util-linux lscpu's reading of the same trees."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fixtures.machine_edges import MACHINES, build_with_edges, machine_names  # noqa: E402

NAMES = machine_names()


def test_every_issue_machine_has_a_tree():
    assert set(NAMES) >= {"this-ci-vm", "laptop-nvidia-intel", "amd-gpu-vram", "storage-mix", "bond-vlan-nics",
                          "arm64-server", "intel-hybrid"}


@pytest.fixture(scope="module")
def built() -> dict[str, dict]:
    return {name: build_with_edges(MACHINES / name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_matches_expected(built, name):
    expected = json.loads((MACHINES / name / "expected.json").read_text())
    assert json.loads(json.dumps(built[name])) == expected


def _by(items, key, value):
    return next(i for i in items if i[key] == value)


def test_laptop_has_nvidia_discrete_and_intel_integrated(built):
    gpus = built["laptop-nvidia-intel"]["gpus"]
    nvidia, intel = _by(gpus, "vendor", "NVIDIA"), _by(gpus, "vendor", "Intel")
    assert (nvidia["gpu_type"], nvidia["driver"], nvidia["pci_address"]) == ("Discrete", "nvidia", "0000:01:00.0")
    assert nvidia["nvml"]["compute_capability"] == "8.6" and nvidia["memory_bytes"] == 4 << 30
    assert (intel["gpu_type"], intel["driver"], intel["model"]) == ("Integrated", "i915", "TigerLake-H GT1 [UHD Graphics]")
    hm = built["laptop-nvidia-intel"]["hypermesh"]["gpus"]
    assert {g["gpu_type"] for g in hm} == {"Discrete", "Integrated"}
    assert "cuda:8.6" in _by(hm, "vendor", "NVIDIA")["capabilities"]


def test_amd_vram_from_sysfs(built):
    gpus = built["amd-gpu-vram"]["gpus"]
    dgpu, igpu = _by(gpus, "device_id", "0x744c"), _by(gpus, "device_id", "0x164e")
    assert (dgpu["memory_bytes"], dgpu["gpu_type"], dgpu["memory_source"]) == (25753026560, "Discrete", "amdgpu")
    assert (igpu["memory_bytes"], igpu["gpu_type"]) == (536870912, "Integrated")


def test_storage_mix_types(built):
    inv = built["storage-mix"]
    kinds = {d["name"]: (d["type"], d["rotational"]) for d in inv["storage"]["block_devices"]}
    assert kinds == {"nvme0n1": ("nvme", False), "sda": ("ssd", False), "sdb": ("hdd", True),
                     "sdc": ("network", True), "vda": ("virtual", True), "dm-0": ("hdd", True)}
    lvm = _by(inv["storage"]["block_devices"], "name", "dm-0")
    assert (lvm["dm_name"], lvm["members"]) == ("vg_archive-lv_archive", ["sdb"])  # slave sdb1 -> its disk
    assert _by(inv["storage"]["block_devices"], "name", "sda")["serial"] == "S6PTNM0T612345X"  # from VPD page 0x80
    mounts = {f["mount_point"]: f["type"] for f in inv["storage"]["filesystems"]}
    assert mounts["/mnt/shared"] == "network" and mounts["/srv/archive"] == "hdd"
    assert "/var/lib/docker/volumes/x" not in mounts and "/proc" not in mounts  # bind mount, pseudo fs
    hm = {s["mount_point"]: s["storage_type"] for s in inv["hypermesh"]["storage"]}
    assert hm == {"/": "Unknown", "/boot/efi": "Unknown", "/var/lib/fast": "NVMe", "/srv/ssd": "SSD",
                  "/srv/archive": "HDD", "/mnt/backup": "Network", "/mnt/shared": "Network"}


def test_bond_vlan_bridge(built):
    ifaces = {i["name"]: i for i in built["bond-vlan-nics"]["network"]["interfaces"]}
    assert ifaces["bond0"]["kind"] == "bond" and ifaces["bond0"]["bond"] == {"mode": "802.3ad", "slaves": ["eno1", "eno2"]}
    assert (ifaces["bond0.100"]["kind"], ifaces["bond0.100"]["vlan_id"], ifaces["bond0.100"]["parent"]) == ("vlan", 100, "bond0")
    assert ifaces["eno2"]["master"] == "bond0" and ifaces["eno2"]["permanent_mac"] == "24:6e:96:4a:10:22"
    assert ifaces["br0"]["bridge_ports"] == ["bond0.200"] and ifaces["bond0.200"]["master"] == "br0"
    assert ifaces["eno1"]["speed_mbps"] == 10000 and ifaces["eno3"]["speed_mbps"] is None
    assert {"198.51.100.10", "2001:db8:100::10"} <= {a["address"] for a in ifaces["bond0.100"]["addresses"]}
    assert [n["node"] for n in built["bond-vlan-nics"]["memory"]["numa_nodes"]] == [0, 1]


def test_arm64_named_from_midr(built):
    cpu = built["arm64-server"]["cpu"]
    assert (cpu["vendor"], cpu["model"], cpu["architecture"]) == ("ARM", "Neoverse-N1", "aarch64")
    assert (cpu["cores"], cpu["threads"], cpu["avx_level"]) == (16, 16, None)
    assert "asimd" in cpu["arm_simd"]
    ebs = _by(built["arm64-server"]["storage"]["block_devices"], "name", "nvme0n1")
    assert ebs["type"] == "network"  # EBS is network storage behind an NVMe face


def test_intel_hybrid_split(built):
    cpu = built["intel-hybrid"]["cpu"]
    assert cpu["hybrid"]["performance"] == {"cpus": "0-15", "threads": 16, "cores": 8, "max_freq_mhz": 5200.0}
    assert cpu["hybrid"]["efficiency"] == {"cpus": "16-23", "threads": 8, "cores": 8, "max_freq_mhz": 3900.0}
    assert (cpu["cores"], cpu["threads"], cpu["base_freq_mhz"], cpu["avx_level"]) == (16, 24, 3200.0, "avx2")


LSCPU = shutil.which("lscpu")


@pytest.mark.skipif(LSCPU is None, reason="lscpu (util-linux) not installed")
@pytest.mark.parametrize("name", [n for n in NAMES if n != "this-ci-vm"])
def test_cpu_counts_agree_with_lscpu_sysroot(built, name):
    """util-linux reads the same tree with `lscpu --sysroot`; counts and model must agree."""
    out = subprocess.run([LSCPU, "-J", "-s", str(MACHINES / name / "root")], capture_output=True, text=True, check=True)
    fields = {}
    for row in json.loads(out.stdout)["lscpu"]:
        fields.setdefault(row["field"].rstrip(":"), row["data"])
        for child in row.get("children", []):
            fields.setdefault(child["field"].rstrip(":"), child["data"])
    cpu = built[name]["cpu"]
    assert int(fields["CPU(s)"]) == cpu["threads"]
    assert int(fields["Socket(s)"]) == cpu["sockets"]
    assert int(fields["Core(s) per socket"]) * cpu["sockets"] == cpu["cores"]
    assert int(fields["Thread(s) per core"]) == cpu["threads_per_core"]
    assert fields["Model name"] == cpu["model"]
