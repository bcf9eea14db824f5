"""Table-driven parser tests (text in, plain data out) and Hypothesis fuzzing: no parser
raises on any text, and the whole inventory never raises on a garbled tree."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.inventory import build_inventory, cpu, gpu, memory, network, storage, system
from collector.inventory.hostfs import parse_cpu_list, parse_key_values

MACHINES = Path(__file__).resolve().parents[2] / "fixtures" / "machines"


@pytest.mark.parametrize("text, expected", [
    ("0-3,8,10-11", [0, 1, 2, 3, 8, 10, 11]), ("0", [0]), ("", []), ("3-1", None), ("a-b", None), (None, None),
])
def test_cpu_list(text, expected):
    assert parse_cpu_list(text) == expected


@pytest.mark.parametrize("text, expected", [("32K", 32768), ("1024K", 1 << 20), ("32M", 32 << 20), ("12", 12),
                                            ("K", None), ("-1K", None), (None, None)])
def test_cache_size(text, expected):
    assert cpu.parse_cache_size(text) == expected


def test_arm64_cpuinfo_without_model_name():
    text = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp sve\n"
            "CPU implementer\t: 0xc0\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xac3\nCPU revision\t: 0\n\n"
            "processor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\n")
    info = cpu.summarize_cpuinfo(cpu.parse_cpuinfo(text))
    assert (info["vendor"], info["model"], info["logical_cpus"]) == ("Ampere", "Ampere-1", 2)
    assert [t["name"] for t in info["arm"]["core_types"]] == ["Cortex-A55", "Ampere-1"]
    assert cpu.infer_arch(info["flags"], cpu.parse_cpuinfo(text)) == "aarch64"


@pytest.mark.parametrize("flags, avx, level, virt", [
    ("fpu lm cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3", None, "v2", None),
    ("lm cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave vmx", "avx2", "v3", "VT-x"),
    ("lm svm avx", "avx", "v1", "AMD-V"),
    ("fp asimd", None, None, None),
])
def test_simd_summary(flags, avx, level, virt):
    out = cpu.simd_summary(flags.split())
    assert (out["avx_level"], out["x86_64_level"], out["virtualization"]) == (avx, level, virt)


def test_base_clock_from_model_name():
    assert cpu.base_ghz_from_model("Intel(R) Xeon(R) CPU E5-2603 v4 @ 1.70GHz") == 1700.0
    assert cpu.base_ghz_from_model("AMD EPYC") is None


def test_meminfo_and_node_meminfo():
    assert memory.parse_meminfo("MemTotal:  1024 kB\nHugePages_Total:  4\nbad line\nX: y kB\n") == \
        {"MemTotal": 1 << 20, "HugePages_Total": 4}
    assert memory.parse_meminfo("Node 1 MemTotal:  2 kB\n") == {"MemTotal": 2048}


def test_mountinfo_unescapes_and_skips_garbage():
    rows = storage.parse_mountinfo(
        "36 35 8:1 / /mnt/my\\040disk rw,noatime shared:1 - ext4 /dev/sda1 rw\nnonsense\n37 35 x:y / /a rw - ext4 b rw\n")
    assert [(r["mount_point"], r["major"], r["minor"], r["fstype"]) for r in rows] == [("/mnt/my disk", 8, 1, "ext4")]


def test_vpd_pg80():
    assert storage.parse_vpd_pg80(b"\x00\x80\x00\x05ABCDE") == "ABCDE"
    assert storage.parse_vpd_pg80(b"\x00\x83\x00\x01A") is None
    assert storage.parse_vpd_pg80(b"") is None


@pytest.mark.parametrize("args, expected", [
    (("nvme0n1", "nvme", False, None, "nvme", "Samsung", []), "nvme"),
    (("nvme1n1", "nvme-tcp", False, None, None, "Linux", []), "network"),
    (("sda", "sata", False, "sd", "ahci", "Samsung SSD", []), "ssd"),
    (("sdb", "sata", True, "sd", "ahci", "WDC", []), "hdd"),
    (("sdc", None, True, "sd", "virtio_scsi", "QEMU HARDDISK", []), "virtual"),
    (("vda", "virtio", True, "virtio_blk", "virtio-pci", None, []), "virtual"),
    (("sdd", "iscsi", True, "sd", None, "LIO-ORG", []), "network"),
    (("dm-0", None, None, None, None, None, ["ssd"]), "ssd"),
])
def test_storage_classify(args, expected):
    assert storage.classify(*args) == expected


def test_pci_ids_lookup():
    text = "# c\n10de  NVIDIA Corporation\n\t25a0  GA107M\n\t\t1028 0a61  sub\n8086  Intel Corporation\n\t9a60  UHD\n"
    assert gpu.lookup_pci_ids(text, 0x8086, 0x9A60) == ("Intel Corporation", "UHD")
    assert gpu.lookup_pci_ids(text, 0x10DE, 0x1028) == ("NVIDIA Corporation", None)  # a subsystem line is not a device
    assert gpu.lookup_pci_ids(text, 0x1002, 0x1) == (None, None)


def test_gpu_classify():
    assert gpu.classify(0x8086, 0x9A60, "0000:00:02.0") == "Integrated"
    assert gpu.classify(0x8086, 0x56A0, "0000:03:00.0") == "Discrete"  # Arc A770
    assert gpu.classify(0x1234, 0x1111, "0000:00:02.0") == "Virtual"
    assert gpu.classify(0x10DE, 0x2684, "0000:01:00.0") == "Discrete"


def test_network_procfs_addresses():
    route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\nen0\t000200C0\t0\t1\t0\t0\t0\t00FFFFFF\n"
    trie = "Local:\n  |-- 192.0.2.7\n     /32 host LOCAL\n  |-- 127.0.0.0\n     /8 host LOCAL\n"
    rows = network.ipv4_by_interface(network.parse_fib_trie_local(trie), network.parse_route(route))
    assert rows == [{"interface": "en0", "family": "inet", "address": "192.0.2.7", "prefixlen": 24, "scope": "global"}]
    v6 = network.parse_if_inet6("20010db8000000000000000000000001 02 40 00 01 en0\nshort\n")
    assert v6[0]["address"] == "2001:db8::1" and v6[0]["temporary"] is True
    assert network.parse_vlan_config("VLAN Dev name | VLAN ID\neth0.5 | 5 | eth0\n") == {"eth0.5": (5, "eth0")}


def test_system_detection():
    assert system.parse_os_release('ID=debian\nPRETTY_NAME="Debian GNU/Linux 12"\n# c\nBAD') == \
        {"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12"}
    assert system.hypervisor_from_dmi({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine"}) == "microsoft"
    assert system.hypervisor_from_dmi({"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R630"}) is None
    assert system.container_from_cgroup("0::/kubepods/besteffort/pod1/abc\n") == "kubernetes"


# --- fuzzing -------------------------------------------------------------------------

TEXT_PARSERS = [
    parse_cpu_list, parse_key_values, cpu.parse_cpuinfo, cpu.parse_cache_size, cpu.parse_khz,
    cpu.base_ghz_from_model, memory.parse_meminfo, storage.parse_mountinfo, storage.parse_filesystems,
    storage.unescape, network.parse_if_inet6, network.parse_fib_trie_local, network.parse_route,
    network.parse_vlan_config, network.parse_uevent, gpu.parse_pci_class, gpu.parse_uevent,
    system.parse_os_release, system.container_from_cgroup,
    lambda t: cpu.summarize_cpuinfo(cpu.parse_cpuinfo(t)),
    lambda t: gpu.lookup_pci_ids(t, 0x10DE, 0x25A0),
    lambda t: network.ipv4_by_interface(network.parse_fib_trie_local(t), network.parse_route(t)),
    lambda t: storage.transport_from_path("sda", t),
]
# Real file contents, cut anywhere: truncation is the common way real files go wrong.
SAMPLES = [p.read_text() for p in (MACHINES / "intel-hybrid/root/proc/cpuinfo", MACHINES / "arm64-server/root/proc/cpuinfo",
                                   MACHINES / "storage-mix/root/proc/1/mountinfo", MACHINES / "bond-vlan-nics/root/proc/meminfo",
                                   MACHINES / "bond-vlan-nics/root/proc/net/if_inet6", MACHINES / "bond-vlan-nics/root/proc/net/route")]
text_or_cut = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=st.sampled_from(list("0123456789abcdefx:-,|/ \t\n.KMkB=")), max_size=300),
    st.tuples(st.sampled_from(SAMPLES), st.integers(0, 40000)).map(lambda s: s[0][: s[1]]),
)


@pytest.mark.parametrize("parser", TEXT_PARSERS, ids=lambda p: getattr(p, "__name__", "lambda"))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=text_or_cut)
def test_parsers_never_raise(parser, text):
    parser(text)


def test_vpd_never_raises():
    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=64))
    def run(data):
        storage.parse_vpd_pg80(data)

    run()


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("garbled") / "root"
    shutil.copytree(MACHINES / "bond-vlan-nics" / "root", root, symlinks=True)
    return root


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_garbled_tree_never_raises(tree, data):
    """Damage some files of a machine tree (cut, garbage, empty, deleted): build_inventory
    still returns a body, with the damage showing as None/missing, never an exception.
    The files are restored after each example."""
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    damaged = data.draw(st.lists(st.sampled_from(files), max_size=25, unique=True))
    originals = {path: path.read_bytes() for path in damaged}
    try:
        for path, original in originals.items():
            mode = data.draw(st.sampled_from(["cut", "garbage", "empty", "delete"]))
            if mode == "cut":
                path.write_bytes(original[: data.draw(st.integers(0, max(len(original) - 1, 0)))])
            elif mode == "garbage":
                path.write_bytes(data.draw(st.binary(max_size=200)))
            elif mode == "empty":
                path.write_bytes(b"")
            else:
                path.unlink()
        body = build_inventory(tree, platform="linux", statvfs=None, nvml=None, netlink=False)
    finally:
        for path, original in originals.items():
            path.write_bytes(original)
    assert set(body) >= {"cpu", "memory", "gpus", "storage", "network", "system", "missing", "inventory_hash"}
    assert not {"cpu", "memory", "gpus", "storage", "network", "system"} & set(body["missing"]), body["missing"]
