"""Builds aiokafka producers, consumers and admin clients from Settings.

Every component gets its Kafka clients here, so delivery guarantees are set once:
``acks=all``, the idempotent producer, compression, and a client id naming the host.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from hmconfig.errors import BrokerUnavailable
from hmconfig.settings import Settings

log = logging.getLogger(__name__)


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...  # noqa: E704


C = TypeVar("C", bound=_Startable)


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"{settings.kafka_client_id}-producer",
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if settings.kafka_compression == "none" else settings.kafka_compression,
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "request_timeout_ms": 30_000,
    }
    cfg.update(overrides)
    return cfg


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_config(settings, **overrides))


def make_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"{settings.kafka_client_id}-consumer",
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
    }
    cfg.update(overrides)
    return AIOKafkaConsumer(*topics, **cfg)


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    cfg: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"{settings.kafka_client_id}-admin",
        "request_timeout_ms": 30_000,
    }
    cfg.update(overrides)
    return AIOKafkaAdminClient(**cfg)


async def start_with_retry(factory: Callable[[], C], settings: Settings, *, what: str = "Kafka client",
                           timeout_s: float | None = None) -> C:
    """Build a client with ``factory`` and start it, retrying with exponential backoff.

    aiokafka's ``start()`` fails outright when no broker answers (one bootstrap
    attempt), so a process started alongside its broker would die. A client
    whose start() failed is closed and rebuilt, since aiokafka clients are not
    restartable. Raises BrokerUnavailable, with a one-line message, once
    ``timeout_s`` (default ``kafka_connect_timeout_s``) passes.
    """
    deadline = time.monotonic() + (settings.kafka_connect_timeout_s if timeout_s is None else timeout_s)
    delay = 0.2
    while True:
        client = factory()
        try:
            await client.start()
            return client
        except (KafkaError, OSError) as err:
            try:
                await client.stop()
            except Exception:  # noqa: BLE001 - best-effort cleanup of a client that never started
                pass
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailable(
                    f"{what}: no Kafka broker answered at {settings.bootstrap} ({type(err).__name__}); "
                    f"start one with `hmtel broker start` or set HMTEL_KAFKA_BOOTSTRAP"
                ) from err
            log.debug("%s: broker not ready (%s); retrying in %.1fs", what, err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
