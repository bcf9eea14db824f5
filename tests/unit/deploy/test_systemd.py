"""deploy/systemd: the unit passes `systemd-analyze verify`, keeps only the eBPF capabilities,
scores as hardened in `systemd-analyze security --offline`, and the sample config loads."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_manifests import DEPLOY, missing
from hmconfig.settings import load_settings

UNIT = DEPLOY / "systemd" / "hmtel-collector.service"
EBPF_CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_RESOURCE"}


def unit_options() -> dict[str, list[str]]:
    """section.Key -> every value given (systemd adds repeated keys up, configparser would not)."""
    options: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            options.setdefault(f"{section}.{key}", []).append(value)
    return options


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's hmtel (verify checks it exists)."""
    if not shutil.which("systemd-analyze"):
        missing("systemd-analyze (Debian package systemd) is not installed")
    hmtel = Path(sys.executable).parent / "hmtel"
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace("/opt/hmtel/bin/hmtel", str(hmtel)))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_unit_verifies_cleanly(runnable_unit):
    proc = analyze("verify", str(runnable_unit))
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_verify_notices_a_bad_key(runnable_unit):
    runnable_unit.write_text(runnable_unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    assert "NoNewPrivilege" in analyze("verify", str(runnable_unit)).stderr


def test_unit_exposure_is_ok(runnable_unit):
    """systemd's own exposure score (0 safest, 10 unprotected); 3.0 is its "OK" band."""
    proc = analyze("security", "--offline=yes", "--threshold=30", str(runnable_unit))
    assert proc.returncode == 0, proc.stdout[-600:]


def test_capabilities_are_the_ebpf_ones_and_state_dir_is_managed():
    opts = unit_options()
    assert set(opts["Service.CapabilityBoundingSet"][0].split()) == EBPF_CAPS
    assert set(opts["Service.AmbientCapabilities"][0].split()) == EBPF_CAPS
    assert opts["Service.NoNewPrivileges"] == ["yes"]
    assert opts["Service.ProtectSystem"] == ["strict"]
    assert opts["Service.StateDirectory"] == ["hmtel"]
    assert "HMTEL_STATE_DIR=/var/lib/hmtel" in opts["Service.Environment"]
    assert opts["Service.ExecStart"] == ["/opt/hmtel/bin/hmtel collect"]


def test_sample_config_loads_with_every_key_known(monkeypatch):
    for name in [n for n in os.environ if n.startswith("HMTEL_") or n == "KAFKA_BOOTSTRAP_SERVERS"]:
        monkeypatch.delenv(name)  # the file alone, as the unit's environment leaves it
    settings = load_settings(DEPLOY / "systemd" / "hmtel.toml")
    assert settings.state_dir == Path("/var/lib/hmtel")
    assert settings.host_root == Path("/")
    assert len(settings.bootstrap.split(",")) == 3
