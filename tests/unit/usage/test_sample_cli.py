"""`hmtel sample` against a fixture tree and against a bad host root."""
from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

import schemas
from hmtel.cli import cli

FULL = Path(__file__).resolve().parents[2] / "fixtures/usage/vm-2core-6.18"
COMMON = {"schema": "hm.usage.v1", "host_id": "h-" + "0" * 32, "boot_id": "6c1e4f2a-1b2c-4d3e-8f90-0a1b2c3d4e5f",
          "seq": 0, "ts": 1}


def test_sample_json_is_a_usage_body() -> None:
    result = CliRunner().invoke(cli, ["--host-root", str(FULL), "sample", "--json", "--warmup", "0.05"])
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.output)
    schemas.validate("hm.usage.v1", {**body, **COMMON})
    assert body["memory"]["total_bytes"] == 24684084 * 1024


def test_sample_table_names_each_section() -> None:
    result = CliRunner().invoke(cli, ["--host-root", str(FULL), "sample", "--warmup", "0.05"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for heading in ("cpu", "load", "memory", "processes", "filesystem (used / total)"):
        assert heading in lines
    assert any(line.split()[:1] == ["eth0"] for line in lines)
    assert "missing: filesystem:/mnt/nfs" in lines


def test_sample_bad_host_root_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--host-root", str(tmp_path / "nope"), "sample"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "has no proc/ directory" in result.output and "HMTEL_HOST_ROOT" in result.output
