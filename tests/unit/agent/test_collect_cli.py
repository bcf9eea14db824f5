"""`hmtel collect` and `hmtel keys show` through the real CLI process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _hmtel(*args: str, env: dict[str, str] | None = None, tmp: Path) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HMTEL_STATE_DIR": str(tmp), **(env or {})}
    return subprocess.run([sys.executable, "-m", "hmtel", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("how, args, env, name", [
    ("flag", ["collect", "--spool-max-bytes", "12"], {}, "spool_max_bytes"),
    ("env", ["collect"], {"HMTEL_METRICS_LISTEN": "localhost"}, "metrics_listen"),
    ("env", ["collect"], {"HMTEL_SHUTDOWN_TIMEOUT_S": "-1"}, "shutdown_timeout_s"),
    ("file", ["collect"], {}, "spool_fsync_interval_ms"),
])
def test_bad_setting_gives_one_line_naming_it_and_no_traceback(tmp_path, how, args, env, name):
    if how == "file":
        cfg = tmp_path / "hmtel.toml"
        cfg.write_text("spool_fsync_interval_ms = -5\n")
        env = {"HMTEL_CONFIG": str(cfg)}
    res = _hmtel(*args, env=env, tmp=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("hmtel: error: invalid setting " + name)
    assert "fix it in" in lines[0] and "Traceback" not in res.stderr


def test_keys_show_prints_the_public_identity_never_the_private_key(tmp_path):
    res = _hmtel("keys", "show", "--json", tmp=tmp_path)
    assert res.returncode == 0, res.stderr
    import json

    info = json.loads(res.stdout)
    pem = (tmp_path / "host.key").read_text()
    assert info["host_id"].startswith("h-") and len(info["key_id"]) == 64
    body = "".join(pem.splitlines()[1:-1])
    assert body not in res.stdout and "PRIVATE" not in res.stdout
    assert (tmp_path / "host.key").stat().st_mode & 0o777 == 0o600
    again = _hmtel("keys", "show", "--json", tmp=tmp_path)
    assert json.loads(again.stdout) == info, "the same identity on every call"
