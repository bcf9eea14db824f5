"""`hmtel verify` and `hmtel dashboard` refuse bad input with one line and exit 2, before any
broker is contacted (the real console script, in a subprocess)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def hmtel(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_")}
    env.update(HMTEL_STATE_DIR=str(tmp_path / "state"), HMTEL_CONFIG=str(tmp_path / "none.toml"),
               HMTEL_KAFKA_BOOTSTRAP="127.0.0.1:1")  # nothing listens: a broker contact would fail differently
    (tmp_path / "none.toml").write_text("")
    return subprocess.run([sys.executable, "-m", "hmtel", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_verify_without_any_key_refuses(tmp_path):
    out = hmtel(tmp_path, "verify")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("hmtel: error: no processor key given and none at")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_verify_with_an_unusable_key(tmp_path):
    out = hmtel(tmp_path, "verify", "--key", "not-a-key")
    assert out.returncode == 2 and "neither a base64 Ed25519 public key nor a readable file" in out.stderr
    (tmp_path / "k.txt").write_text("c2hvcnQ=\n")  # base64 of 5 bytes
    out = hmtel(tmp_path, "verify", "--key", str(tmp_path / "k.txt"))
    assert out.returncode == 2 and "k.txt:1" in out.stderr


def test_dashboard_bad_listen(tmp_path):
    out = hmtel(tmp_path, "dashboard", "--listen", "nowhere")
    assert out.returncode == 2 and "dashboard_listen" in out.stderr and "Traceback" not in out.stderr
