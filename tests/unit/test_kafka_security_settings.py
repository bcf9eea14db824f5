"""Kafka security settings: wired into every client config, and the password never printed."""
from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from hmconfig.kafka_clients import faust_credentials, make_admin, producer_config, security_config
from hmconfig.settings import SettingsError, load_settings
from hmtel.cli import cli

SECRET = "s3cr3t-Pa55word-never-printed"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("HMTEL_KAFKA_S"):
            monkeypatch.delenv(name)


def test_password_is_masked_everywhere(monkeypatch, tmp_path):
    settings = load_settings(kafka_sasl_password=SECRET, kafka_sasl_username="collector")
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in str(settings.model_dump()) and SECRET not in str(settings.model_dump(mode="json"))
    monkeypatch.setenv("HMTEL_KAFKA_SASL_PASSWORD", SECRET)
    for args in (["config", "show"], ["config", "show", "--json"], ["--help"], ["broker", "start", "--help"]):
        out = CliRunner().invoke(cli, args, prog_name="hmtel")
        assert out.exit_code == 0, out.output
        assert SECRET not in out.output, args


def test_a_bad_password_value_is_not_echoed_in_the_error(tmp_path):
    cfg = tmp_path / "hmtel.toml"
    cfg.write_text("kafka_sasl_password = 123456789\n")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    assert "123456789" not in str(info.value) and "kafka_sasl_password" in str(info.value)


def test_plaintext_adds_nothing():
    assert security_config(load_settings()) == {}
    assert faust_credentials(load_settings()) is None


def test_sasl_ssl_reaches_producer_consumer_admin_and_faust(tmp_path):
    import ssl

    import faust

    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_pem())
    settings = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="processor",
                             kafka_sasl_password=SECRET, kafka_ssl_cafile=ca)
    cfg = producer_config(settings)
    assert cfg["security_protocol"] == "SASL_SSL" and cfg["sasl_mechanism"] == "SCRAM-SHA-512"
    assert cfg["sasl_plain_username"] == "processor" and cfg["sasl_plain_password"] == SECRET
    assert isinstance(cfg["ssl_context"], ssl.SSLContext)
    from hmconfig.kafka_clients import make_consumer

    for factory in (lambda: make_admin(settings)._client, lambda: make_consumer(settings, group_id=None)._client):
        client = asyncio.run(_build(factory))
        assert client._security_protocol == "SASL_SSL" and client._sasl_plain_password == SECRET
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials) and creds.ssl_context is not None
    assert SECRET not in repr(creds)


def test_password_file_and_missing_credentials(tmp_path):
    pw = tmp_path / "collector.password"
    pw.write_text(SECRET + "\n")
    settings = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="collector",
                             kafka_sasl_password_file=pw)
    assert security_config(settings)["sasl_plain_password"] == SECRET
    with pytest.raises(SettingsError, match="needs kafka_sasl_username") as info:
        security_config(load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password=SECRET))
    assert SECRET not in str(info.value)
    with pytest.raises(SettingsError, match="does not exist"):
        security_config(load_settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nope.pem"))


async def _build(factory):
    return factory()  # aiokafka clients must be built inside a running loop


def _self_signed_pem() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()
