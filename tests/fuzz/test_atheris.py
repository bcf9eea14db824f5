"""Coverage-guided fuzzing (atheris/libFuzzer) for a bounded time: the record decoder and
validator, and the DSSE verifier. A crash (an exception past the documented boundary, or
a failed invariant in the target) fails the test and leaves the input in tmp_path.

HMTEL_FUZZ_SECONDS sets the time per target (default 60, as CI runs it). The committed seeds in
tests/fuzz/corpus/<target>/ are read only; new inputs go to a temporary directory.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("HMTEL_FUZZ_SECONDS", "60"))
TARGETS = {"record_decoder": HERE / "fuzz_record_decoder.py", "dsse": HERE / "fuzz_dsse.py"}

pytest.importorskip("atheris", reason="atheris (pip install atheris) runs the coverage-guided fuzzers")


@pytest.mark.timeout(SECONDS + 240)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_finds_no_crash(name, tmp_path):
    seeds = HERE / "corpus" / name
    assert any(seeds.iterdir()), f"seed corpus {seeds} is empty; run tests/fuzz/make_corpus.py"
    new = tmp_path / "corpus"
    new.mkdir()
    cmd = [sys.executable, str(TARGETS[name]), f"-max_total_time={SECONDS}", "-rss_limit_mb=1024",
           "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(new), str(seeds)]
    proc = subprocess.run(cmd, cwd=HERE.parents[1], capture_output=True, text=True, timeout=SECONDS + 200)
    log = proc.stderr
    (tmp_path / "fuzz.log").write_text(log)
    runs = next((ln for ln in log.splitlines() if ln.startswith("stat::number_of_executed_units")), "?")
    print(f"{name}: {runs.split(':')[-1].strip()} runs in {SECONDS}s, rc={proc.returncode}")
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert proc.returncode == 0 and not crashes, f"{name}: {crashes}\n{log[-3000:]}"
    assert "DONE" in log, log[-2000:]
