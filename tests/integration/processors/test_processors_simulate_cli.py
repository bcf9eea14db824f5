"""`hmtel simulate` from the command line: progress lines, a summary, and one-line errors."""
from __future__ import annotations

import subprocess
import sys

from hmconfig.topic_admin import ensure_topics

from processors_harness import ROOT, worker_env


async def test_simulate_prints_progress_and_a_summary(kafka_settings, tmp_path):
    await ensure_topics(kafka_settings)
    out = subprocess.run([sys.executable, "-m", "hmtel", "simulate", "--hosts", "2", "--rate", "2", "--duration", "2",
                          "--ebpf", "--ebpf-interval", "1", "--bad", "stale", "--seed", tmp_path.name],
                         cwd=ROOT, env=worker_env(kafka_settings, tmp_path), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "simulate: 2 hosts, tick" in out.stderr
    # 2 inventories + 2 hosts x 2 Hz x 2 s usage + eBPF snapshots + 1 bad record
    assert "(2 inventory, 8 usage," in out.stdout and "'stale': 1" in out.stdout


def test_simulate_refuses_an_unknown_bad_kind(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hmtel", "simulate", "--bad", "nonsense"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown kind 'nonsense'" in out.stderr
