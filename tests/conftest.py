"""Test tiers and the session's Kafka broker.

Tiers are by directory: tests/unit (no root, no network), tests/integration
(a real Kafka broker), tests/host (root and eBPF). Each test gets its tier's
marker automatically. A missing prerequisite is a skip that names it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.broker_choice import BrokerChoice, choose_broker, describe_choice
from hmconfig.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TIERS = ("unit", "integration", "host", "fuzz", "chaos")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        settings = load_settings()
    except SettingsError as err:  # say it in one line; the fixtures then fail with the same message
        return [f"kafka broker: unknown, the settings are unusable: {err}"]
    _source, detail = describe_choice(settings)
    return [f"kafka broker: {detail}"]


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def kafka_broker(base_settings: Settings) -> BrokerChoice:
    """The session's broker: explicit bootstrap, else testcontainers, else the local broker."""
    try:
        choice = choose_broker(base_settings)
    except Exception as err:  # noqa: BLE001 - turned into a skip that names what is missing
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Kafka broker: {err}")
    yield choice
    choice.close()


@pytest.fixture(scope="session")
def kafka_settings(kafka_broker: BrokerChoice, base_settings: Settings) -> Settings:
    """Settings pointing at the session's broker."""
    if kafka_broker.source == "local":
        return base_settings
    return load_settings(kafka_bootstrap=kafka_broker.bootstrap)
