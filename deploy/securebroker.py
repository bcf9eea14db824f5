"""The local broker in secure mode: TLS, SASL/SCRAM-SHA-512 and the StandardAuthorizer.

``hmtel broker start --secure`` runs the same single-node KRaft Kafka as
``deploy.localbroker`` (same cached jars), but with its own data under
``<state_dir>/kafka-secure`` and these listeners, all on 127.0.0.1:

* ``SASL_SSL`` on ``broker_port``: clients log in with SCRAM-SHA-512, one user per role
  (``hmconfig.acls.ROLES``) plus ``admin``; the server is authenticated by TLS.
* ``SSL`` on ``broker_tls_port`` (default broker_port + 2): mutual TLS; the client
  certificate's CN is the principal (``CN=collector`` -> ``User:collector``), so the same
  ACLs apply. The broker talks to itself over this listener as ``User:broker``.
* ``CONTROLLER`` (mutual TLS) on ``broker_controller_port``: only the broker's certificate.

``User:broker`` and ``User:admin`` are super users; every other principal gets only what
``hmtel topics ensure --acls`` grants. What is made, under ``<state_dir>/kafka-secure/``:

    tls/ca.pem, ca.key             the local CA (key 0600)
    tls/broker.pem                 broker key + certificate chain (0600), SAN IP:127.0.0.1, DNS:localhost
    tls/<role>.pem, <role>.key     a client certificate per role (key 0600)
    users/<role>.password          the SCRAM password per role (0600, 32 random bytes, urlsafe base64)

Passwords are created once and reused; they reach Kafka only at format time
(``StorageTool format --add-scram``), which stores salted SCRAM hashes, never the password.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.localbroker import BrokerPaths, LocalBroker, NODE_ID, _kafka_uuid, _refuse_busy_port, _resource
from hmconfig.acls import ADMIN, ROLES
from hmconfig.errors import HmtelError
from hmconfig.settings import Settings

BROKER_PRINCIPAL = "broker"
SCRAM_MECHANISM = "SCRAM-SHA-512"
CERT_DAYS = 365


@dataclass(frozen=True)
class SecurePaths(BrokerPaths):
    """Like BrokerPaths but rooted at kafka-secure; the jars are shared with the plaintext broker."""

    jars: Path = Path()

    @classmethod
    def of(cls, settings: Settings) -> "SecurePaths":
        return cls(settings.state_dir / "kafka-secure", jars=settings.state_dir / "kafka" / "libs")

    @property
    def libs(self) -> Path:
        return self.jars

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.pem"

    def password_file(self, user: str) -> Path:
        return self.users / f"{user}.password"

    def cert(self, name: str) -> Path:
        return self.tls / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.tls / f"{name}.key"


def tls_port(settings: Settings) -> int:
    return settings.broker_tls_port or settings.broker_port + 2


def client_env(settings: Settings, user: str) -> dict[str, str]:
    """The HMTEL_* variables a component running as ``user`` needs against the secure broker."""
    paths = SecurePaths.of(settings)
    return {
        "HMTEL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HMTEL_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "HMTEL_KAFKA_SASL_USERNAME": user,
        "HMTEL_KAFKA_SASL_PASSWORD_FILE": str(paths.password_file(user)),
        "HMTEL_KAFKA_SSL_CAFILE": str(paths.ca),
    }


def client_settings(settings: Settings, user: str) -> Settings:
    """``settings`` as ``user`` on the secure broker's SASL_SSL listener."""
    paths = SecurePaths.of(settings)
    return settings.model_copy(update={
        "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": SCRAM_MECHANISM,
        "kafka_sasl_username": user, "kafka_sasl_password": None,
        "kafka_sasl_password_file": paths.password_file(user), "kafka_ssl_cafile": paths.ca,
    })


class SecureLocalBroker(LocalBroker):
    """``LocalBroker`` with TLS + SCRAM listeners and the StandardAuthorizer. Same lifecycle."""

    def __init__(self, settings: Settings, progress=lambda msg: None):
        super().__init__(settings, progress)
        self.paths = SecurePaths.of(settings)

    @property
    def users(self) -> tuple[str, ...]:
        return (*ROLES, ADMIN)

    # -- material --------------------------------------------------------
    def ensure_material(self) -> None:
        """CA, broker and per-role client certificates and SCRAM passwords; kept once made."""
        p = self.paths
        p.jars.parent.mkdir(parents=True, exist_ok=True)
        for d in (p.root, p.tls, p.users):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        for user in self.users:
            if not p.password_file(user).exists():
                _write_secret(p.password_file(user), secrets.token_urlsafe(32) + "\n")
        if p.ca.exists() and p.key("ca").exists() and p.cert("broker").exists():
            return
        self.progress(f"creating a local CA and certificates in {p.tls}")
        ca_key, ca_cert = _make_ca()
        _write_secret(p.key("ca"), _key_pem(ca_key))
        p.ca.write_bytes(_cert_pem(ca_cert))
        key, cert = _make_leaf(ca_key, ca_cert, BROKER_PRINCIPAL, server=True)
        # Kafka's PEM keystore: the private key then the certificate chain, one file.
        _write_secret(p.cert("broker"), _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))
        for user in self.users:
            key, cert = _make_leaf(ca_key, ca_cert, user, server=False)
            _write_secret(p.key(user), _key_pem(key))
            p.cert(user).write_bytes(_cert_pem(cert))

    # -- config ----------------------------------------------------------
    def server_properties(self) -> str:
        s, p = self.settings, self.paths
        base = dict(line.split("=", 1) for line in super().server_properties().splitlines() if line)
        sasl, tls, ctl = s.broker_port, tls_port(s), s.broker_controller_port
        base.update({
            "listeners": f"SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{tls},CONTROLLER://127.0.0.1:{ctl}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{sasl},SSL://127.0.0.1:{tls}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SSL",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(p.cert("broker")),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(p.ca),
            "listener.name.ssl.ssl.client.auth": "required",
            "listener.name.controller.ssl.client.auth": "required",
            # CN=collector -> User:collector, so certificate and SCRAM logins share the ACLs.
            "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{BROKER_PRINCIPAL};User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        })
        return "".join(f"{k}={v}\n" for k, v in base.items())

    def _format_if_needed(self, java: str, classpath: str) -> None:
        if (self.paths.data / "meta.properties").exists():
            return
        self.paths.data.mkdir(parents=True, exist_ok=True)
        passwords = {u: self.paths.password_file(u).read_text().strip() for u in self.users}
        scram: list[str] = []
        for user, password in passwords.items():
            scram += ["--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]"]
        self.progress(f"formatting KRaft storage in {self.paths.data} with SCRAM users {', '.join(self.users)}")
        # The passwords pass through this one short-lived command line; Kafka stores salted hashes.
        proc = subprocess.run(
            [java, "-Xmx256m", "-cp", classpath, f"-Dlog4j2.configurationFile={_resource('log4j2.yaml')}",
             "kafka.tools.StorageTool", "format", "-t", _kafka_uuid(), "-c", str(self.paths.config), *scram],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            out = proc.stdout + proc.stderr
            for password in passwords.values():
                out = out.replace(password, "**********")
            raise HmtelError(f"formatting secure Kafka storage failed: {out.strip()[-400:]}")

    # -- lifecycle -------------------------------------------------------
    def start(self) -> str:
        self.ensure_material()
        if self.pid() is None:
            _refuse_busy_port(tls_port(self.settings))
        return super().start()

    def is_ready(self, timeout_s: float = 3.0) -> bool:
        import asyncio

        return asyncio.run(_admin_answers(client_settings(self.settings, ADMIN), timeout_s))


async def _admin_answers(settings: Settings, timeout_s: float) -> bool:
    import asyncio
    import logging

    from aiokafka.client import AIOKafkaClient

    from hmconfig.kafka_clients import security_config

    # Refusals while Kafka boots are expected; aiokafka logs them (and each CA load) loudly.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=int(timeout_s * 1000),
                            **security_config(settings))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return bool(client.cluster.brokers())
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        await client.close()
        quiet.setLevel(level)


# -- certificates (cryptography) ---------------------------------------------
def _write_secret(path: Path, data: str | bytes) -> None:
    """Create ``path`` at mode 0600 from the start (no window where it is world-readable)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    os.replace(tmp, path)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_ca():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = _name("hmtel local CA")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_leaf(ca_key, ca_cert, cn: str, *, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    # The broker's certificate serves TLS and is its client certificate on the controller
    # and inter-broker listeners, so it carries both purposes.
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


__all__ = ["SecureLocalBroker", "SecurePaths", "client_env", "client_settings", "tls_port", "NODE_ID"]
