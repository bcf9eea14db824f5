"""The `hmtel` command line: help that explains, and one-line errors without tracebacks.

Error paths run the real console script in a subprocess, so what is checked is
exactly what a user sees on stderr and as the exit code.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hmtel.cli import cli

HMTEL = Path(sys.executable).with_name("hmtel")


def hmtel_cmd() -> list[str]:
    return [str(HMTEL)] if HMTEL.exists() else [sys.executable, "-m", "hmtel"]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without HMTEL_*/Kafka settings, with a fresh state dir and no config file."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("HMTEL_") and k.upper() not in ("KAFKA_BOOTSTRAP_SERVERS", "JAVA_HOME")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    env["HMTEL_STATE_DIR"] = str(tmp_path / "state")
    env.update(extra)
    return env


def run_hmtel(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hmtel_cmd() + args, env=env, capture_output=True, text=True, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hmtel: error: ")
    return lines[0]


# --- help ------------------------------------------------------------------

def test_top_level_help_lists_commands_and_settings(tmp_path: Path) -> None:
    proc = run_hmtel(["--help"], clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for command in ("broker", "topics", "config", "up"):
        assert f"  {command} " in proc.stdout
    assert "HMTEL_" in proc.stdout and "--config" in proc.stdout


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((prefix + (name,), command))
        if isinstance(command, click.Group):
            found += all_commands(command, prefix + (name,))
    return found


COMMANDS = all_commands(cli)


def test_the_core_commands_are_registered() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"broker start", "broker stop", "broker status", "topics ensure", "topics list",
            "config show", "up"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_subcommand_help_explains(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="hmtel")
    assert result.exit_code == 0, result.output
    assert f"Usage: hmtel {' '.join(path)}" in result.output
    command = dict(COMMANDS)[path]
    # A docstring that says what the command does, not just its name.
    assert command.help and len(command.help.split()) >= 3, f"`hmtel {' '.join(path)}` has no help text"
    # Compared without whitespace: click re-wraps lines, even at hyphens.
    first_sentence = "".join(command.help.split(".")[0].split())
    assert first_sentence in "".join(result.output.split())


# --- one-line errors -------------------------------------------------------

def test_bad_env_value_is_one_line_without_traceback(tmp_path: Path) -> None:
    line = assert_one_line_error(run_hmtel(["config", "show"], clean_env(tmp_path, HMTEL_BROKER_PORT="abc")))
    assert "broker_port='abc'" in line and "HMTEL_BROKER_PORT" in line


def test_bad_flag_value_is_one_line(tmp_path: Path) -> None:
    line = assert_one_line_error(run_hmtel(["--kafka-bootstrap", "nocolon", "config", "show"], clean_env(tmp_path)))
    assert "'nocolon'" in line and "--kafka-bootstrap" in line


def test_unknown_config_key_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "hmtel.toml"
    config.write_text("kafka_bootstrapp = 'x:1'\n")
    line = assert_one_line_error(run_hmtel(["--config", str(config), "config", "show"], clean_env(tmp_path)))
    assert "kafka_bootstrapp" in line and str(config) in line


def test_config_show_reports_the_env_value(tmp_path: Path) -> None:
    proc = run_hmtel(["config", "show"], clean_env(tmp_path, HMTEL_BROKER_PORT="12345"))
    assert proc.returncode == 0, proc.stderr
    assert "broker_port = 12345" in proc.stdout
    assert "HMTEL_BROKER_PORT" in proc.stdout


def path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only links to the named tools (resolved on the real PATH)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        if real is None:
            pytest.skip(f"{tool} is not installed here, so a PATH holding only it cannot be built")
        (bindir / tool).symlink_to(real)
    return str(bindir)


def test_broker_start_without_maven_names_it(tmp_path: Path) -> None:
    # A fresh state dir has no cached jars, so Maven is needed; java is present.
    env = clean_env(tmp_path, PATH=path_with(tmp_path, "java"))
    line = assert_one_line_error(run_hmtel(["broker", "start"], env))
    assert "Maven (mvn) is missing" in line and "apt-get install maven" in line
    assert not (tmp_path / "state" / "kafka" / "broker.pid").exists()


def test_broker_start_without_java_names_it(tmp_path: Path) -> None:
    env = clean_env(tmp_path, PATH=path_with(tmp_path))
    line = assert_one_line_error(run_hmtel(["broker", "start"], env))
    assert "Java" in line and "is missing" in line and "apt-get install openjdk" in line


def test_broker_status_on_a_fresh_state_dir_exits_1(tmp_path: Path) -> None:
    proc = run_hmtel(["broker", "status"], clean_env(tmp_path))
    assert proc.returncode == 1
    assert proc.stdout.strip() == "down"


def test_broker_start_refuses_an_explicit_bootstrap(tmp_path: Path) -> None:
    line = assert_one_line_error(run_hmtel(["broker", "start"], clean_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS="remote:9092")))
    assert "remote:9092" in line and "KAFKA_BOOTSTRAP_SERVERS" in line
