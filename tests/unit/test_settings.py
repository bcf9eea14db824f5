"""Settings precedence (file < env < flags), the Kafka bootstrap aliases, and one-line errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hmconfig.errors import HmtelError
from hmconfig.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HMTEL_* / KAFKA_BOOTSTRAP_SERVERS from the caller, and no per-user config file."""
    for name in list(os.environ):
        if name.upper().startswith("HMTEL_") or name.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hmtel.toml"
    path.write_text(text)
    return path


def test_defaults_point_at_the_local_broker() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap is None
    assert settings.uses_local_broker
    assert settings.bootstrap == f"127.0.0.1:{settings.broker_port}"


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path, 'broker_port = 1111\nbroker_heap_mb = 300\nlog_level = "debug"\n')
    from_file = load_settings(config)
    assert (from_file.broker_port, from_file.broker_heap_mb, from_file.log_level) == (1111, 300, "DEBUG")

    monkeypatch.setenv("HMTEL_BROKER_PORT", "2222")
    from_env = load_settings(config)
    assert from_env.broker_port == 2222
    assert from_env.broker_heap_mb == 300  # not in env: the file still counts

    from_flag = load_settings(config, broker_port=3333, broker_heap_mb=None)
    assert from_flag.broker_port == 3333
    assert from_flag.broker_heap_mb == 300  # a flag not given (None) does not mask the file


def test_config_file_named_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HMTEL_CONFIG", str(write_toml(tmp_path, 'kafka_bootstrap = "file-host:9"\n')))
    assert load_settings().bootstrap == "file-host:9"


def test_kafka_bootstrap_servers_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    settings = load_settings()
    assert settings.bootstrap == "k1:9092,k2:9092"
    assert not settings.uses_local_broker


def test_hmtel_kafka_bootstrap_wins_over_kafka_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "generic:9092")
    monkeypatch.setenv("HMTEL_KAFKA_BOOTSTRAP", "ours:9092")
    assert load_settings().bootstrap == "ours:9092"


def test_bootstrap_env_beats_file_and_flag_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path, 'kafka_bootstrap = "file:1"\n')
    assert load_settings(config).bootstrap == "file:1"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "env:2")
    assert load_settings(config).bootstrap == "env:2"
    assert load_settings(config, kafka_bootstrap="flag:3").bootstrap == "flag:3"


def test_bare_kafka_bootstrap_env_is_not_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "stray:1")
    assert load_settings().kafka_bootstrap is None


def one_line_error(excinfo: pytest.ExceptionInfo[SettingsError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert isinstance(excinfo.value, HmtelError) and not excinfo.value.retriable
    return message


def test_unknown_toml_key_is_one_line_naming_it(tmp_path: Path) -> None:
    config = write_toml(tmp_path, "brokr_port = 1\n")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config)
    message = one_line_error(excinfo)
    assert "brokr_port" in message and str(config) in message
    assert "hmtel config show" in message  # where the valid names are


def test_bad_toml_value_names_value_and_where_to_fix(tmp_path: Path) -> None:
    config = write_toml(tmp_path, 'broker_port = "abc"\n')
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config)
    message = one_line_error(excinfo)
    assert "broker_port='abc'" in message
    assert f"`broker_port` in {config}" in message


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "no-port-here")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = one_line_error(excinfo)
    assert "'no-port-here'" in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message and "host:port" in message


def test_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(broker_port=70000)
    message = one_line_error(excinfo)
    assert "broker_port=70000" in message and "--broker-port" in message


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    config = write_toml(tmp_path, "broker_port = = 1\n")
    with pytest.raises(SettingsError) as excinfo:
        load_settings(config)
    assert "not valid TOML" in one_line_error(excinfo)


def test_missing_named_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load_settings(tmp_path / "absent.toml")
    assert "does not exist" in one_line_error(excinfo)
