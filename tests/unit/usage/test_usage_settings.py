"""The usage interval settings: defaults, HMTEL_* variables, and one-line errors."""
from __future__ import annotations

import pytest

from hmconfig.settings import SettingsError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HMTEL_USAGE_INTERVAL_S", raising=False)
    monkeypatch.delenv("HMTEL_FILESYSTEM_INTERVAL_S", raising=False)
    settings = load_settings()
    assert settings.usage_interval_s == 1.0 and settings.filesystem_interval_s == 30.0


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HMTEL_USAGE_INTERVAL_S", "0.25")
    monkeypatch.setenv("HMTEL_FILESYSTEM_INTERVAL_S", "60")
    settings = load_settings()
    assert settings.usage_interval_s == 0.25 and settings.filesystem_interval_s == 60.0


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_interval_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HMTEL_USAGE_INTERVAL_S", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "\n" not in str(err.value)
    assert "usage_interval_s" in str(err.value) and "HMTEL_USAGE_INTERVAL_S" in str(err.value)
