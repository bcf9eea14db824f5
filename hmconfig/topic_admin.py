"""`hmtel topics ensure`: make the broker's topics match schemas.topics.TOPICS.

Idempotent: creates what is missing, raises partition counts that are too low
(Kafka cannot lower them, so that is reported, not attempted), and resets any
topic config that drifted from the table.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from hmconfig.errors import HmtelError
from hmconfig.kafka_clients import make_admin, make_consumer, start_with_retry
from hmconfig.settings import Settings
from schemas.topics import TOPICS, Topic

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicChange:
    name: str
    action: str  # created | altered | partitions-raised | unchanged | partitions-too-many
    detail: str = ""


def _wanted_partitions(topic: Topic, settings: Settings) -> int:
    return settings.topic_partitions or topic.partitions


async def describe_topics(settings: Settings, names: list[str]) -> dict[str, TopicState]:
    admin = await start_with_retry(lambda: make_admin(settings), settings, what="topics")
    try:
        meta = await admin.describe_topics(names)
        found = {t["topic"]: len(t["partitions"]) for t in meta if t["error_code"] == 0}
        if not found:
            return {}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in found]
        )
        states = {}
        for response in responses:
            for _code, _msg, _rtype, rname, entries in response.resources:
                cfg = {e[0]: e[1] for e in entries}
                states[rname] = TopicState(rname, found[rname], cfg)
        return states
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, topics: tuple[Topic, ...] = TOPICS) -> list[TopicChange]:
    admin = await start_with_retry(lambda: make_admin(settings), settings, what="topics ensure")
    changes: list[TopicChange] = []
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            resp = await admin.create_topics([
                NewTopic(t.name, _wanted_partitions(t, settings), settings.topic_replication, topic_configs=t.config())
                for t in missing
            ])
            for name, code, *rest in resp.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    msg = rest[0] if rest else ""
                    raise HmtelError(f"creating topic {name} failed: {for_code(code).__name__} {msg or ''}".strip())
            changes += [TopicChange(t.name, "created", f"{_wanted_partitions(t, settings)} partitions") for t in missing]
        present = [t for t in topics if t.name in existing]
        if present:
            meta = {m["topic"]: len(m["partitions"]) for m in await admin.describe_topics([t.name for t in present])}
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in present]
            )
            current: dict[str, dict[str, str]] = {}
            for response in responses:
                for _code, _msg, _rtype, rname, entries in response.resources:
                    current[rname] = {e[0]: e[1] for e in entries}
            to_alter = []
            for t in present:
                want = t.config()
                drift = {k: (current.get(t.name, {}).get(k), v) for k, v in want.items()
                         if current.get(t.name, {}).get(k) != v}
                have, need = meta.get(t.name, 0), _wanted_partitions(t, settings)
                if have < need:
                    await admin.create_partitions({t.name: NewPartitions(need)})
                    changes.append(TopicChange(t.name, "partitions-raised", f"{have} -> {need}"))
                elif have > need:
                    changes.append(TopicChange(t.name, "partitions-too-many",
                                               f"has {have}, table says {need}; Kafka cannot lower it"))
                if drift:
                    to_alter.append(ConfigResource(ConfigResourceType.TOPIC, t.name, configs=want))
                    changes.append(TopicChange(t.name, "altered", ", ".join(
                        f"{k}: {old} -> {new}" for k, (old, new) in sorted(drift.items()))))
                elif have == need:
                    changes.append(TopicChange(t.name, "unchanged"))
            if to_alter:
                for response in await admin.alter_configs(to_alter):
                    for code, msg, _rtype, rname in response.resources:
                        if code:
                            raise HmtelError(f"altering topic {rname} failed: {for_code(code).__name__} {msg or ''}")
        return changes
    finally:
        await admin.close()


async def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of these topics (benches and tests mark a backlog with it)."""
    states = await describe_topics(settings, list(topics))
    tps = [TopicPartition(t, p) for t, st in states.items() for p in range(st.partitions)]
    c = make_consumer(settings, group_id=None)
    await c.start()
    try:
        return dict(await c.end_offsets(tps))
    finally:
        await c.stop()


async def commit_for_group(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit these offsets for a consumer group, so that a new group starts there instead of at
    its offset reset point."""
    c = make_consumer(settings, group_id=group)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()
