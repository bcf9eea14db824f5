"""Decoders: table-driven, pure functions first, then label lookups over a fake host_root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.ebpf.decoders import (
    Decoders,
    agreement,
    bucket_bounds,
    cgroup2_mount,
    cgroup_index,
    counter_delta,
    dev_to_majmin,
    histogram_quantile,
    ifindex_index,
    log2_buckets,
    netns_inode,
    proc_stat_busy_ns,
    syscall_name,
)


@pytest.mark.parametrize("prev, cur, want", [
    (None, 7, 7),        # first reading: all of it is new
    (5, 5, 0),
    (5, 12, 7),
    (100, 3, 3),         # counter reset (entry re-created): the current value is new
    (0, 0, 0),
    (2**63, 2**63 + 1, 1),
])
def test_counter_delta(prev, cur, want):
    assert counter_delta(prev, cur) == want


@pytest.mark.parametrize("slots, want", [
    ({}, {}),
    ({0: 3, 1: 0, 5: 2}, {"0": 3, "5": 2}),
    ({63: 1, 2: 4}, {"2": 4, "63": 1}),
])
def test_log2_buckets(slots, want):
    assert log2_buckets(slots) == want


@pytest.mark.parametrize("k, lo, hi", [(0, 0, 2), (1, 2, 4), (10, 1024, 2048), (63, 2**63, 2**64)])
def test_bucket_bounds(k, lo, hi):
    assert bucket_bounds(k) == (lo, hi)


@pytest.mark.parametrize("buckets, q, want", [
    ({}, 0.99, None),
    ({"3": 100}, 0.5, 16),
    ({"0": 98, "10": 2}, 0.99, 2048),
    ({"0": 99, "10": 1}, 0.99, 2),
])
def test_histogram_quantile(buckets, q, want):
    assert histogram_quantile(buckets, q) == want


@pytest.mark.parametrize("a, b, want", [(0, 0, 1.0), (50, 100, 0.5), (100, 50, 0.5), (0, 10, 0.0), (7, 7, 1.0)])
def test_agreement(a, b, want):
    assert agreement(a, b) == want


@pytest.mark.parametrize("text, hz, want", [
    ("cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n", 100, (10 + 1 + 5 + 2 + 3 + 4) * 10_000_000),
    ("cpu  100 0 0 0\n", 250, 100 * 4_000_000),  # old kernels: fewer columns
])
def test_proc_stat_busy_ns(text, hz, want):
    assert proc_stat_busy_ns(text, hz) == want


def test_proc_stat_busy_ns_rejects_garbage():
    with pytest.raises(ValueError):
        proc_stat_busy_ns("intr 1 2 3\n")


@pytest.mark.parametrize("dev, want", [(254 << 20, (254, 0)), ((8 << 20) | 16, (8, 16)), ((259 << 20) | 3, (259, 3))])
def test_dev_to_majmin(dev, want):
    assert dev_to_majmin(dev) == want


@pytest.mark.parametrize("nr, machine, want", [
    (39, "x86_64", "getpid"), (0, "x86_64", "read"), (1, "x86_64", "write"), (59, "x86_64", "execve"),
    (172, "aarch64", "getpid"), (63, "aarch64", "read"), (221, "aarch64", "execve"), (79, "aarch64", "newfstatat"),
    (222, "arm64", "mmap"), (9999, "x86_64", "sys_9999"), (39, "riscv64", "sys_39"),
])
def test_syscall_name(nr, machine, want):
    assert syscall_name(nr, machine) == want


HYBRID = (
    "30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
    "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:10 - cgroup2 cgroup2 rw\n"
    "32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
)
UNIFIED = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"


@pytest.mark.parametrize("text, want", [(HYBRID, "/sys/fs/cgroup/unified"), (UNIFIED, "/sys/fs/cgroup"),
                                        ("32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", None)])
def test_cgroup2_mount(text, want):
    assert cgroup2_mount(text) == want


@pytest.mark.parametrize("link, want", [("net:[4026531840]", 4026531840), ("mnt:[1]", None), ("garbage", None)])
def test_netns_inode(link, want):
    assert netns_inode(link) == want


def test_cgroup_index_maps_directory_inodes_to_paths(tmp_path: Path):
    (tmp_path / "system.slice/foo.service").mkdir(parents=True)
    (tmp_path / "user.slice").mkdir()
    index = cgroup_index(tmp_path)
    assert index[os.stat(tmp_path).st_ino] == "/"
    assert index[os.stat(tmp_path / "system.slice/foo.service").st_ino] == "/system.slice/foo.service"
    assert index[os.stat(tmp_path / "user.slice").st_ino] == "/user.slice"
    assert len(index) == 4


def test_ifindex_index(tmp_path: Path):
    for name, idx in (("lo", "1"), ("eth0", "2\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ifindex").write_text(idx)
    (tmp_path / "broken").mkdir()  # no ifindex file: skipped
    assert ifindex_index(tmp_path) == {1: "lo", 2: "eth0"}


@pytest.fixture()
def host(tmp_path: Path) -> Path:
    """A fake host_root: mountinfo, a cgroup2 tree, /sys/class/net, /sys/dev/block, ns links."""
    cg = tmp_path / "sys/fs/cgroup/unified"
    (cg / "app").mkdir(parents=True)
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(HYBRID)
    (tmp_path / "proc/1/ns").mkdir(parents=True)
    os.symlink("net:[4026531840]", tmp_path / "proc/1/ns/net")
    (tmp_path / "sys/class/net/eth0").mkdir(parents=True)
    (tmp_path / "sys/class/net/eth0/ifindex").write_text("2\n")
    (tmp_path / "sys/dev/block").mkdir(parents=True)
    os.symlink("../../devices/pci0000:00/virtio2/block/vda", tmp_path / "sys/dev/block/254:0")
    os.symlink("../../devices/pci0000:00/virtio2/block/vda/vda1", tmp_path / "sys/dev/block/254:1")
    return tmp_path


@pytest.mark.parametrize("decode, key, want", [
    ("disk", 254 << 20, "vda"),
    ("disk", (254 << 20) | 1, "vda1"),
    ("disk", 8 << 20, "8:0"),                       # not on this host
    ("ifindex", (4026531840, 2), "eth0"),           # host netns
    ("ifindex", (4026531840, 9), "if9"),            # interface gone
    ("ifindex", (4026532999, 2), "netns:4026532999:2"),  # another netns: ifindex alone is ambiguous
    ("ifindex", (0, 0), "unknown"),
    ("syscall", 39, "getpid"),
    ("none", 5, "5"),
    ("cgroup", 123456789, "cgroup:123456789"),      # gone
])
def test_labels(host: Path, decode, key, want):
    assert Decoders(host, machine="x86_64").label(decode, key) == want


def test_cgroup_label_and_refresh_once_per_round(host: Path):
    d = Decoders(host, machine="x86_64")
    app = host / "sys/fs/cgroup/unified/app"
    assert d.label("cgroup", os.stat(app).st_ino) == "/app"
    assert d.label("cgroup", os.stat(app.parent).st_ino) == "/"
    (app.parent / "late").mkdir()
    late = os.stat(app.parent / "late").st_ino
    d.new_round()
    assert d.label("cgroup", late) == "/late"  # a miss re-walks the tree once per round
