"""Capability report over a fake host_root; CapEff and uid are passed in."""
from __future__ import annotations

from pathlib import Path

import pytest

from collector.ebpf.capabilities import check_capabilities, parse_cap_eff

ROOT_CAPS = "CapEff:\t000001ffffffffff\n"
BPF_PERFMON = f"CapEff:\t{(1 << 39) | (1 << 38):016x}\n"
NO_CAPS = "CapEff:\t0000000000000000\n"


def make_host(root: Path, *, btf=True, headers=True, tracefs=True, release="6.1.0-test") -> Path:
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/osrelease").write_text(release + "\n")
    if btf:
        (root / "sys/kernel/btf").mkdir(parents=True)
        (root / "sys/kernel/btf/vmlinux").write_bytes(b"\x9f\xeb")
    if headers:
        (root / f"lib/modules/{release}/build").mkdir(parents=True)
    if tracefs:
        (root / "sys/kernel/tracing/events").mkdir(parents=True)
    return root


@pytest.mark.parametrize("text, want", [(ROOT_CAPS, 0x1FFFFFFFFFF), (NO_CAPS, 0), ("Name: x\n", None)])
def test_parse_cap_eff(text, want):
    assert parse_cap_eff("Name:\tpython\n" + text) == want


@pytest.mark.parametrize("status, uid, ok, detail", [
    (ROOT_CAPS, 0, True, "CAP_SYS_ADMIN"),
    (BPF_PERFMON, 1000, True, "CAP_BPF+CAP_PERFMON"),
    (f"CapEff:\t{1 << 39:016x}\n", 1000, False, "lacks CAP_BPF+CAP_PERFMON"),  # CAP_BPF alone is not enough
    (NO_CAPS, 65534, False, "uid 65534 lacks"),
])
def test_privileges(tmp_path, status, uid, ok, detail):
    report = check_capabilities(make_host(tmp_path), proc_self_status=status, uid=uid, bcc_available=True)
    check = report.checks[0]
    assert check.name == "privileges" and check.ok is ok and detail in check.detail
    assert report.ok is ok


def test_everything_present(tmp_path):
    report = check_capabilities(make_host(tmp_path), proc_self_status=ROOT_CAPS, uid=0, bcc_available=True)
    assert report.ok and report.one_line() == ""
    assert [c.name for c in report.checks] == ["privileges", "btf", "kernel_headers", "tracefs", "bcc"]


def test_kheaders_counts_as_headers(tmp_path):
    host = make_host(tmp_path, headers=False)
    (host / "sys/kernel/kheaders.tar.xz").write_bytes(b"")
    report = check_capabilities(host, proc_self_status=ROOT_CAPS, uid=0, bcc_available=True)
    assert report.ok


@pytest.mark.parametrize("missing, kwargs, needle, fix", [
    ("btf", {"btf": False}, "sys/kernel/btf/vmlinux missing", "CONFIG_DEBUG_INFO_BTF"),
    ("kernel_headers", {"headers": False}, "lib/modules/6.1.0-test/build missing", "linux-headers-6.1.0-test"),
    ("tracefs", {"tracefs": False}, "events missing", "mount -t tracefs"),
])
def test_one_missing_piece(tmp_path, missing, kwargs, needle, fix):
    report = check_capabilities(make_host(tmp_path, **kwargs), proc_self_status=ROOT_CAPS, uid=0,
                                bcc_available=True)
    assert [c.name for c in report.missing] == [missing]
    line = report.one_line()
    assert needle in line and fix in line and "\n" not in line
    assert line.startswith("eBPF disabled (") and line.endswith("continuing with procfs sources only")


def test_unprivileged_without_bcc_names_both(tmp_path):
    report = check_capabilities(make_host(tmp_path), proc_self_status=NO_CAPS, uid=65534, bcc_available=False)
    assert [c.name for c in report.missing] == ["privileges", "bcc"]
    assert "never pip install bcc" in report.one_line()
    assert report.as_dict()["ok"] is False
