"""The privileges deploy/ grants the collector are enough, and needed: as uid 0 with only
CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE in the bounding set and no_new_privs set (what the
systemd unit and the Kubernetes DaemonSet give it), every eBPF program loads and snapshots;
without CAP_BPF the collector reports eBPF as unavailable instead."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.ebpf.capabilities import check_capabilities
from collector.ebpf.spec import BPF_DIR

HMTEL = str(Path(sys.executable).parent / "hmtel")
EBPF_CAPS = "+bpf,+perfmon,+sys_resource"


@pytest.fixture(scope="module")
def setpriv() -> str:
    missing = None
    if os.geteuid() != 0:
        missing = "root (the test drops capabilities from a root shell)"
    elif not shutil.which("setpriv"):
        missing = "setpriv (Debian package util-linux)"
    elif check_capabilities().one_line():
        missing = f"eBPF on this host: {check_capabilities().one_line()}"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {missing}")
        pytest.skip(missing)
    return shutil.which("setpriv")


def run_limited(setpriv: str, caps: str, state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HMTEL_STATE_DIR": str(state)}
    return subprocess.run([setpriv, f"--bounding-set=-all,{caps}", "--inh-caps=-all", "--no-new-privs", "--",
                           HMTEL, "ebpf", *args], env=env, capture_output=True, text=True, timeout=240)


def test_ebpf_capabilities_are_enough_for_every_program(setpriv, tmp_path):
    proc = run_limited(setpriv, EBPF_CAPS, tmp_path, "--once", "--json", "--interval", "1")
    assert proc.returncode == 0, proc.stderr[-1500:]
    out = json.loads(proc.stdout)
    assert out["failed"] == {}, out["failed"]
    programs = {s["program"] for s in out["snapshots"]}
    assert programs == {p.stem for p in BPF_DIR.glob("*.c")}


def test_without_cap_bpf_the_collector_says_ebpf_is_missing(setpriv, tmp_path):
    proc = run_limited(setpriv, "+perfmon,+sys_resource", tmp_path, "--check")
    assert proc.returncode != 0
    assert "CAP_BPF" in proc.stdout + proc.stderr
