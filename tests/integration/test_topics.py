"""`hmtel topics ensure` makes the broker match schemas.topics.TOPICS, idempotently."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from hmconfig.kafka_clients import make_admin, start_with_retry
from hmconfig.settings import Settings
from hmconfig.topic_admin import describe_topics, ensure_topics
from schemas.topics import TOPICS, USAGE, Topic

HMTEL = Path(sys.executable).with_name("hmtel")
NAMES = [t.name for t in TOPICS]


def ensure_via_cli(settings: Settings) -> dict[str, tuple[str, str]]:
    """Run the real `hmtel topics ensure`; {topic: (action, detail)} from its output."""
    env = dict(os.environ, HMTEL_KAFKA_BOOTSTRAP=settings.bootstrap)
    cmd = [str(HMTEL)] if HMTEL.exists() else [sys.executable, "-m", "hmtel"]
    proc = subprocess.run(cmd + ["topics", "ensure"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = {}
    for line in proc.stdout.splitlines():
        name, action, *detail = line.split(None, 2)
        report[name] = (action, detail[0] if detail else "")
    return report


def wanted_partitions(settings: Settings, topic: Topic) -> int:
    return settings.topic_partitions or topic.partitions


def assert_matches_table(settings: Settings, states: dict) -> None:  # type: ignore[type-arg]
    assert set(states) == set(NAMES)
    for topic in TOPICS:
        state = states[topic.name]
        assert state.partitions == wanted_partitions(settings, topic), topic.name
        for key, value in topic.config().items():
            assert state.config.get(key) == value, f"{topic.name} {key}"


def test_ensure_twice_leaves_the_same_topics_and_configs(kafka_settings: Settings) -> None:
    first = ensure_via_cli(kafka_settings)
    assert set(first) == set(NAMES)
    before = asyncio.run(describe_topics(kafka_settings, NAMES))
    assert_matches_table(kafka_settings, before)
    assert before["hm.inventory.v1"].config["cleanup.policy"] == "compact"

    second = ensure_via_cli(kafka_settings)
    assert second == {name: ("unchanged", "") for name in NAMES}
    after = asyncio.run(describe_topics(kafka_settings, NAMES))
    assert after == before


async def set_topic_config(settings: Settings, name: str, configs: dict[str, str]) -> None:
    admin = await start_with_retry(lambda: make_admin(settings), settings, what="test admin")
    try:
        for response in await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]):
            assert all(code == 0 for code, *_ in response.resources), response.resources
    finally:
        await admin.close()


def test_ensure_resets_a_drifted_config(kafka_settings: Settings) -> None:
    ensure_via_cli(kafka_settings)
    drifted = {**USAGE.config(), "retention.ms": "12345"}
    asyncio.run(set_topic_config(kafka_settings, USAGE.name, drifted))
    assert asyncio.run(describe_topics(kafka_settings, [USAGE.name]))[USAGE.name].config["retention.ms"] == "12345"

    report = ensure_via_cli(kafka_settings)
    action, detail = report[USAGE.name]
    assert action == "altered" and f"retention.ms: 12345 -> {USAGE.retention_ms}" in detail
    assert all(a == "unchanged" for name, (a, _d) in report.items() if name != USAGE.name)
    states = asyncio.run(describe_topics(kafka_settings, NAMES))
    assert_matches_table(kafka_settings, states)


@pytest.fixture
def scratch_topic(kafka_settings: Settings):  # type: ignore[no-untyped-def]
    name = f"test.topics.{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await start_with_retry(lambda: make_admin(kafka_settings), kafka_settings, what="test admin")
        try:
            await admin.create_topics([NewTopic(name, 1, 1)])
        finally:
            await admin.close()

    async def delete() -> None:
        admin = await start_with_retry(lambda: make_admin(kafka_settings), kafka_settings, what="test admin")
        try:
            await admin.delete_topics([name])
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(delete())


def actions(changes) -> dict[str, list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for change in changes:
        by_topic.setdefault(change.name, []).append((change.action, change.detail))
    return by_topic


def test_ensure_raises_too_few_partitions_and_reports_too_many(kafka_settings: Settings, scratch_topic: str) -> None:
    wider = Topic(scratch_topic, 3, 60_000)
    done = actions(asyncio.run(ensure_topics(kafka_settings, (wider,))))[scratch_topic]
    assert ("partitions-raised", "1 -> 3") in done
    assert [a for a, _d in done] == ["partitions-raised", "altered"]  # and its retention set
    state = asyncio.run(describe_topics(kafka_settings, [scratch_topic]))[scratch_topic]
    assert state.partitions == 3 and state.config["retention.ms"] == "60000"

    # Kafka cannot lower a partition count: reported, not attempted.
    narrower = Topic(scratch_topic, 2, 60_000)
    done = actions(asyncio.run(ensure_topics(kafka_settings, (narrower,))))[scratch_topic]
    assert [a for a, _d in done] == ["partitions-too-many"]
    assert asyncio.run(describe_topics(kafka_settings, [scratch_topic]))[scratch_topic].partitions == 3
