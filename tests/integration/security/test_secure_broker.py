"""The secure broker (TLS + SCRAM-SHA-512 + StandardAuthorizer + the role ACLs) on a real Kafka.

Each role is tried against what it must not do, with a positive control beside it, so a
test cannot pass because nothing works at all.
"""
from __future__ import annotations

import asyncio
import os
import stat

import pytest
from pydantic import SecretStr
from aiokafka.errors import TopicAuthorizationFailedError

from hmconfig.acls import ACL_TABLE, ADMIN, ROLES, bindings, ensure_acls
from hmconfig.errors import BrokerAuthFailed
from hmconfig.kafka_clients import make_admin, make_consumer, make_producer, start_with_retry
from schemas.topics import TOPICS

from .conftest import topic_partitions

ALL_TOPICS = [t.name for t in TOPICS]


async def end_offsets(settings, topic: str) -> int:
    consumer = await start_with_retry(lambda: make_consumer(settings, group_id=None), settings)
    try:
        parts = await topic_partitions(consumer, topic)
        assert parts, f"{topic} has no partitions visible to {settings.kafka_sasl_username}"
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def try_send(settings, topic: str, **over) -> BaseException | None:
    producer = await start_with_retry(lambda: make_producer(settings, request_timeout_ms=10_000, **over), settings)
    try:
        await producer.send_and_wait(topic, b'{"probe": true}', key=b"h-probe")
        return None
    except Exception as err:  # noqa: BLE001 - the error is what is asserted
        return err
    finally:
        await producer.stop()


def test_secret_files_are_0600(secure):
    paths = secure.paths
    secrets_ = [paths.password_file(u) for u in (*ROLES, ADMIN)]
    secrets_ += [paths.key(u) for u in (*ROLES, ADMIN)] + [paths.key("ca"), paths.cert("broker")]
    for path in secrets_:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    props = paths.config.read_text()
    assert "StandardAuthorizer" in props and "allow.everyone.if.no.acl.found=false" in props
    for user in (*ROLES, ADMIN):
        assert secure.password(user) not in props


def test_ensure_acls_is_idempotent_and_matches_the_table(secure):
    again = asyncio.run(ensure_acls(secure.as_user(ADMIN)))
    assert {a for a, _ in again} == {"present"}
    assert [b for _, b in again] == bindings(secure.settings.processor_app_id)
    assert set(ACL_TABLE) == set(ROLES)


def test_collector_cannot_write_proofs_and_nothing_lands(secure):
    collector, admin = secure.as_user("collector"), secure.as_user(ADMIN)
    before = asyncio.run(end_offsets(admin, "hm.proofs.v1"))
    err = asyncio.run(try_send(collector, "hm.proofs.v1"))
    assert isinstance(err, TopicAuthorizationFailedError), err
    # Positive control: the same credential may write its own topic.
    assert asyncio.run(try_send(collector, "hm.usage.v1")) is None
    assert asyncio.run(end_offsets(admin, "hm.proofs.v1")) == before


@pytest.mark.parametrize("topic", ALL_TOPICS + ["hm-processors-hm-processors-hosts-changelog"])
def test_validator_cannot_write_anywhere(secure, topic):
    validator = secure.as_user("validator")
    # Non-idempotent producer, so the refusal is the topic's; the idempotent one is refused even earlier.
    err = asyncio.run(try_send(validator, topic, enable_idempotence=False, acks=1))
    assert isinstance(err, TopicAuthorizationFailedError), (topic, err)


def test_validator_idempotent_producer_is_refused_and_it_can_read_proofs(secure):
    validator = secure.as_user("validator")
    with pytest.raises(BrokerAuthFailed, match="not authorised"):
        asyncio.run(start_with_retry(lambda: make_producer(validator), validator, timeout_s=5))
    assert asyncio.run(end_offsets(validator, "hm.proofs.v1")) >= 0  # read (ListOffsets) is allowed


def test_dashboard_reads_aggregates_not_raw_usage(secure):
    dashboard = secure.as_user("dashboard")

    async def probe(topic: str, group: str):
        try:
            consumer = await start_with_retry(lambda: make_consumer(dashboard, topic, group_id=group), dashboard,
                                              timeout_s=10)
        except BrokerAuthFailed as err:
            return err
        try:
            await consumer.getmany(timeout_ms=3000)
            return None
        except Exception as err:  # noqa: BLE001
            return err
        finally:
            await consumer.stop()

    assert asyncio.run(probe("hm.usage.agg.1m.v1", "hm-dashboard-test")) is None
    err = asyncio.run(probe("hm.usage.v1", "hm-dashboard-test"))
    assert isinstance(err, (TopicAuthorizationFailedError, BrokerAuthFailed)), err
    assert "TopicAuthorizationFailed" in str(err) or isinstance(err, TopicAuthorizationFailedError)
    # Another role's group is refused too.
    err = asyncio.run(probe("hm.usage.agg.1m.v1", "hm-validator"))
    assert err is not None and "GroupAuthorizationFailed" in f"{type(err).__name__} {err}", err


def test_wrong_password_is_refused(secure):
    wrong = secure.as_user("collector", kafka_sasl_password_file=None,
                           kafka_sasl_password=SecretStr(secure.password("validator")))
    with pytest.raises(BrokerAuthFailed, match="SASL authentication failed") as info:
        asyncio.run(start_with_retry(lambda: make_admin(wrong), wrong, timeout_s=10))
    assert secure.password("validator") not in str(info.value)


def test_client_that_does_not_trust_the_ca_is_refused(secure):
    # The system bundle does not hold the local CA.
    system = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.exists(system):
        pytest.skip(f"needs the system CA bundle {system}")
    untrusting = secure.as_user("admin", kafka_ssl_cafile=__import__("pathlib").Path(system))
    with pytest.raises(BrokerAuthFailed, match="TLS certificate not trusted"):
        asyncio.run(start_with_retry(lambda: make_admin(untrusting), untrusting, timeout_s=10))


def test_plaintext_client_gets_nothing(secure):
    plain = secure.settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    with pytest.raises(Exception):
        asyncio.run(start_with_retry(lambda: make_admin(plain), plain, timeout_s=4))


def test_mutual_tls_listener_maps_the_certificate_cn_to_the_role(secure):
    from deploy.securebroker import tls_port

    paths = secure.paths
    as_collector = secure.settings.model_copy(update={
        "kafka_bootstrap": f"127.0.0.1:{tls_port(secure.settings)}", "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": paths.ca, "kafka_ssl_certfile": paths.cert("collector"),
        "kafka_ssl_keyfile": paths.key("collector")})
    assert asyncio.run(try_send(as_collector, "hm.usage.v1")) is None
    assert isinstance(asyncio.run(try_send(as_collector, "hm.proofs.v1")), TopicAuthorizationFailedError)
    no_cert = as_collector.model_copy(update={"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None})
    with pytest.raises(Exception):
        asyncio.run(start_with_retry(lambda: make_admin(no_cert), no_cert, timeout_s=4))
