"""deploy/collector-entrypoint.sh finds the host's kernel headers through the host root,
in the order its header comment gives, against fake host trees."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deploy_manifests import DEPLOY

SCRIPT = DEPLOY / "collector-entrypoint.sh"
RELEASE = "6.1.0-99-amd64"


def run(host: Path, modules: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HMTEL_HOST_ROOT": str(host), "HMTEL_KERNEL_RELEASE": RELEASE,
           "HMTEL_MODULES_DIR": str(modules)}
    return subprocess.run(["sh", str(SCRIPT), *(cmd or ("true",))], env=env, capture_output=True,
                          text=True, timeout=30)


def headers(host: Path, name: str) -> Path:
    d = host / "usr/src" / name
    d.mkdir(parents=True)
    (d / "Makefile").write_text("# fake\n")
    return d


def test_follows_the_hosts_own_absolute_link(tmp_path):
    host, modules = tmp_path / "host", tmp_path / "modules"
    build = headers(host, f"linux-headers-{RELEASE}")
    common = headers(host, "linux-headers-6.1.0-99-common")
    (host / f"lib/modules/{RELEASE}").mkdir(parents=True)
    (host / f"lib/modules/{RELEASE}/build").symlink_to(f"/usr/src/linux-headers-{RELEASE}")
    (host / f"lib/modules/{RELEASE}/source").symlink_to("/usr/src/linux-headers-6.1.0-99-common")
    proc = run(host, modules)
    assert proc.returncode == 0, proc.stderr
    assert (modules / RELEASE / "build").resolve() == build.resolve()
    assert (modules / RELEASE / "source").resolve() == common.resolve()


def test_falls_back_to_the_newest_header_tree(tmp_path):
    host, modules = tmp_path / "host", tmp_path / "modules"
    headers(host, "linux-headers-6.1.0-9-amd64")
    newest = headers(host, "linux-headers-6.1.0-56-amd64")
    headers(host, "linux-headers-6.1.0-56-common")
    proc = run(host, modules)
    assert (modules / RELEASE / "build").resolve() == newest.resolve()
    assert "not built for" in proc.stderr


def test_keeps_headers_already_in_place(tmp_path):
    host, modules = tmp_path / "host", tmp_path / "modules"
    existing = headers(tmp_path, "mounted")
    (modules / RELEASE).mkdir(parents=True)
    (modules / RELEASE / "build").symlink_to(existing)
    headers(host, "linux-headers-6.1.0-56-amd64")
    proc = run(host, modules)
    assert (modules / RELEASE / "build").resolve() == existing.resolve()
    assert str(existing.resolve()) in proc.stderr


def test_without_headers_says_so_and_still_runs_the_command(tmp_path):
    host, modules = tmp_path / "host", tmp_path / "modules"
    host.mkdir()
    proc = run(host, modules, "sh", "-c", "echo started; exit 7")
    assert proc.returncode == 7 and proc.stdout.strip() == "started"
    assert not (modules / RELEASE / "build").exists()
    assert "eBPF" in proc.stderr or "kheaders" in proc.stderr


def test_entrypoint_passes_shellcheck():
    from deploy_manifests import venv_bin

    proc = subprocess.run([venv_bin("shellcheck"), "--shell=sh", "--severity=style", str(SCRIPT)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
