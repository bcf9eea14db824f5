"""Builds aiokafka producers, consumers and admin clients from Settings.

Every component gets its Kafka clients here, so delivery guarantees are set once:
``acks=all``, the idempotent producer, compression, and a client id naming the host;
and so is security: TLS (``ssl_context``) and SASL credentials from the settings.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Callable, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (AuthenticationFailedError, ClusterAuthorizationFailedError, GroupAuthorizationFailedError,
                             KafkaError, SaslAuthenticationFailed, TopicAuthorizationFailedError)
from aiokafka.helpers import create_ssl_context

from hmconfig.errors import BrokerAuthFailed, BrokerUnavailable
from hmconfig.settings import Settings, SettingsError

log = logging.getLogger(__name__)


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...  # noqa: E704


C = TypeVar("C", bound=_Startable)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL/SASL_SSL (CA and optional client certificate), else None."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SettingsError(f"{name}={path} does not exist; fix {settings.env_name(name)}")
    try:
        return create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
        )
    except (ssl.SSLError, OSError) as err:
        # str(err) names the file and the OpenSSL reason, never the key material.
        raise SettingsError(f"cannot load the Kafka TLS files ({type(err).__name__}: {err}); "
                            "check kafka_ssl_cafile/certfile/keyfile") from None


def sasl_password(settings: Settings) -> str | None:
    """The SASL password: kafka_sasl_password, else the first line of kafka_sasl_password_file."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_password_file is not None:
        try:
            return settings.kafka_sasl_password_file.read_text().splitlines()[0].strip()
        except (OSError, IndexError) as err:
            raise SettingsError(f"cannot read kafka_sasl_password_file={settings.kafka_sasl_password_file} "
                                f"({type(err).__name__}); fix HMTEL_KAFKA_SASL_PASSWORD_FILE") from None
    return None


def security_config(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security protocol (empty for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    cfg: dict[str, Any] = {"security_protocol": protocol}
    ctx = ssl_context(settings)
    if ctx is not None:
        cfg["ssl_context"] = ctx
    if protocol.startswith("SASL_"):
        password = sasl_password(settings)
        if not settings.kafka_sasl_username or password is None:
            raise SettingsError(f"kafka_security_protocol={protocol} needs kafka_sasl_username and a password; set "
                                "HMTEL_KAFKA_SASL_USERNAME and HMTEL_KAFKA_SASL_PASSWORD(_FILE)")
        cfg.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                   sasl_plain_username=settings.kafka_sasl_username, sasl_plain_password=password)
    return cfg


def faust_credentials(settings: Settings) -> Any:
    """The same security settings as a faust ``broker_credentials`` value (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust  # lazy: only the processors use faust

    cfg = security_config(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(cfg["ssl_context"])
    return faust.SASLCredentials(username=cfg["sasl_plain_username"], password=cfg["sasl_plain_password"],
                                 mechanism=cfg["sasl_mechanism"], ssl_context=cfg.get("ssl_context"))


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        **security_config(settings),
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
        **security_config(settings),
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"{settings.kafka_client_id}-consumer",
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
    }
    cfg.update(overrides)
    return AIOKafkaConsumer(*topics, **cfg)


async def read_topic(settings: Settings, topic: str, idle_s: float = 2.0) -> list[Any]:
    """Every record of ``topic`` from the start, read until nothing comes for ``idle_s`` (tests,
    benches, one-off checks; not for a live consumer)."""
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=int(idle_s * 1000)):
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    cfg: dict[str, Any] = {
        **security_config(settings),
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
            refused = _auth_refusal(err)
            if refused is None and settings.kafka_security_protocol != "PLAINTEXT":
                # aiokafka logs the TLS/SASL cause of a failed bootstrap and raises a bare
                # KafkaConnectionError; one direct connection recovers the cause.
                refused = await _probe_refusal(settings)
            if refused:
                await _quiet_stop(client)
                raise BrokerAuthFailed(f"{what}: {settings.bootstrap} refused us: {refused}") from None
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


def _auth_refusal(err: BaseException) -> str | None:
    """One line when ``err`` (or its cause) is a TLS or SASL refusal, which no retry fixes."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (AuthenticationFailedError, SaslAuthenticationFailed)):
            return ("SASL authentication failed; check kafka_sasl_username and the password "
                    "(the broker does not say which one is wrong)")
        if isinstance(seen, (ClusterAuthorizationFailedError, TopicAuthorizationFailedError,
                             GroupAuthorizationFailedError)):
            return (f"not authorised ({type(seen).__name__}); this user's ACLs do not allow it "
                    "(see hmconfig/acls.py; `hmtel topics ensure --acls` creates them)")
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({seen.verify_message}); set kafka_ssl_cafile to the broker's CA"
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed ({seen.reason}); check kafka_security_protocol and the kafka_ssl_* files"
        seen = seen.__cause__ or seen.__context__
    return None


async def _probe_refusal(settings: Settings) -> str | None:
    from aiokafka.conn import create_conn

    host, _, port = settings.bootstrap.split(",")[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=5000, **security_config(settings)), 10)
    except (KafkaError, OSError, asyncio.TimeoutError) as err:
        return _auth_refusal(err)
    conn.close()
    return None


async def _quiet_stop(client: Any) -> None:
    try:
        await client.stop()
    except Exception:  # noqa: BLE001 - best-effort cleanup of a client that never started
        pass
