"""A secure local broker (TLS + SCRAM + ACLs) for this directory, on its own ports and state dir.

It shares the plaintext broker's cached jars (a symlink), so it starts without Maven, and
is stopped at the end of the module that used it.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from deploy.securebroker import SecureLocalBroker, client_settings
from hmconfig.acls import ADMIN, ensure_acls
from hmconfig.settings import Settings
from hmtel_testing.pipeline import free_ports
from hmconfig.topic_admin import ensure_topics


class Secure:
    def __init__(self, settings: Settings, broker: SecureLocalBroker):
        self.settings, self.broker = settings, broker

    def as_user(self, user: str, **update) -> Settings:
        return client_settings(self.settings, user).model_copy(update=update)

    def password(self, user: str) -> str:
        return self.broker.paths.password_file(user).read_text().strip()

    @property
    def paths(self):
        return self.broker.paths


@pytest.fixture(scope="package")
def secure(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> Secure:
    state = tmp_path_factory.mktemp("secure-broker")
    jars = base_settings.state_dir / "kafka" / "libs"
    if jars.is_dir():
        (state / "kafka").mkdir()
        (state / "kafka" / "libs").symlink_to(jars)
    port, controller, tls = free_ports(3)
    settings = base_settings.model_copy(update={
        "kafka_bootstrap": None, "state_dir": state, "broker_port": port, "broker_controller_port": controller,
        "broker_tls_port": tls, "broker_heap_mb": 384, "kafka_security_protocol": "PLAINTEXT"})
    # Everything this package logs in-process, at DEBUG, goes to a file the leak test greps.
    handler = logging.FileHandler(state / "in-process.log")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    broker = SecureLocalBroker(settings)
    broker.start()
    try:
        admin = client_settings(settings, ADMIN)
        asyncio.run(ensure_topics(admin))
        asyncio.run(ensure_acls(admin))
        yield Secure(settings, broker)
    finally:
        broker.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def logs_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and p.suffix in (".log", ".txt", ".out")]


def secret_needles(*key_files: Path, passwords: list[str]) -> dict[str, str]:
    """Strings that must never appear in a log: each password and each base64 line of each private key."""
    needles = {f"password #{i}": pw for i, pw in enumerate(passwords)}
    for path in key_files:
        text = path.read_text()
        inside = False
        for line in text.splitlines():
            if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
                inside = True
            elif line.startswith("-----END"):
                inside = False
            elif inside and len(line) >= 16:
                needles[f"{path.name} key line"] = line
    return needles


async def topic_partitions(consumer, topic: str) -> list:
    """The partitions of ``topic`` as the consumer's user sees them (empty when it may not describe it)."""
    from aiokafka.structs import TopicPartition

    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
