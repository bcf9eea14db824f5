"""One typed settings object for every ``hmtel`` component.

Precedence, lowest to highest: built-in defaults, the TOML file, ``HMTEL_*``
environment variables, then command-line flags. ``KAFKA_BOOTSTRAP_SERVERS`` is
honoured as a fallback for ``HMTEL_KAFKA_BOOTSTRAP`` because it is what most
Kafka tooling (and testcontainers users) already export.

The TOML file is flat, one key per setting, named like the field
(``kafka_bootstrap = "broker:9092"``); the environment variable is the field
name upper-cased with the ``HMTEL_`` prefix.
"""
from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hmconfig.errors import HmtelError

ENV_PREFIX = "HMTEL_"
CONFIG_ENV = "HMTEL_CONFIG"
SYSTEM_CONFIG = Path("/etc/hmtel/hmtel.toml")


class SettingsError(HmtelError):
    """A configuration value is unusable. ``str()`` is one line naming the value and the fix."""


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/hmtel")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base) / "hmtel"


def default_config_path() -> Path | None:
    """The config file in force when none is named: ``$HMTEL_CONFIG``, then the
    per-user file, then ``/etc/hmtel/hmtel.toml``; None when none exists."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "hmtel/hmtel.toml"
    for candidate in (user, SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the flat TOML file; unknown keys are an error, not silently ignored."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ is overridden

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = tomllib.loads(self.path.read_text())
        except FileNotFoundError as err:
            raise SettingsError(f"config file {self.path} does not exist; create it or unset {CONFIG_ENV}") from err
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"config file {self.path} is not valid TOML: {err}") from err
        unknown = sorted(set(data) - set(self.settings_cls.model_fields))
        if unknown:
            raise SettingsError(
                f"config file {self.path}: unknown setting(s) {', '.join(unknown)}; "
                f"see `hmtel config show` for the valid names"
            )
        return {_input_key(k): v for k, v in data.items()}


class Settings(BaseSettings):
    """Every setting, its default and its environment variable (``HMTEL_<NAME>``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
    )

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        # Env names only: the field name itself still works for the TOML file and flags
        # (populate_by_name); listing it here would also honour a bare KAFKA_BOOTSTRAP env var.
        validation_alias=AliasChoices("HMTEL_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Comma-separated host:port of the Kafka brokers. Unset: the local broker "
        "(`hmtel broker start`) on 127.0.0.1:broker_port.",
    )
    kafka_compression: Literal["zstd", "lz4", "gzip", "none"] = Field(
        default="zstd", description="Producer compression codec."
    )
    kafka_client_id: str = Field(
        default_factory=lambda: f"hmtel-{socket.gethostname()}",
        description="Client id sent to the brokers; names the host in broker logs and quotas.",
    )
    kafka_connect_timeout_s: float = Field(
        default=30.0, gt=0, description="How long client start() retries, with backoff, before giving up."
    )

    # --- Kafka security (hmconfig/kafka_clients.py, hmtel broker start --secure) ----
    # The password is a SecretStr: model_dump, repr, `hmtel config show` and error
    # messages print "**********"; only kafka_clients reads the real value.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when kafka_security_protocol is SASL_*.")
    kafka_sasl_username: str | None = Field(default=None, description="SASL user (one per role: collector, processor, validator, dashboard, admin).")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never printed). `hmtel broker start --secure` writes one per role "
        "to <state_dir>/kafka-secure/users/<role>.password (mode 0600).")
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="Read the SASL password from this file instead (its first line); keeps it out of env and config.")
    kafka_ssl_cafile: Path | None = Field(default=None, description="PEM CA bundle that signs the brokers' certificates (SSL and SASL_SSL).")
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate, for brokers that require client TLS auth.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM private key of kafka_ssl_certfile.")
    broker_tls_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="`hmtel broker start --secure`: port of the mutual-TLS listener (default broker_port + 2); "
        "the SASL_SSL listener takes broker_port.")

    # --- local broker (development and CI) -------------------------------
    broker_port: int = Field(default=9092, ge=1, le=65535, description="Port of the local broker's client listener.")
    broker_controller_port: int = Field(
        default=9093, ge=1, le=65535, description="Port of the local broker's KRaft controller listener."
    )
    broker_heap_mb: int = Field(
        default=512, ge=128, description="JVM heap cap of the local broker, sized for a 2-core machine beside the tests."
    )
    broker_start_timeout_s: float = Field(default=90.0, gt=0, description="How long `broker start` waits for ready.")
    broker_stop_timeout_s: float = Field(
        default=30.0, gt=0, description="How long `broker stop` waits after SIGTERM before SIGKILL."
    )
    topic_partitions: int | None = Field(
        default=None, ge=1, description="Override the partition count of every topic (default: the topic table's)."
    )
    topic_replication: int = Field(default=1, ge=1, description="Replication factor for `topics ensure`.")

    # --- host ------------------------------------------------------------
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Keys, spool, sequence numbers and the local broker's data and logs live here.",
    )
    host_root: Path = Field(
        default=Path("/"),
        description="Root of the host's /proc and /sys; `/host` in a container that mounts the host there.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")

    # --- usage sampling (collector/usage.py, collector/sources/) ----------
    usage_interval_s: float = Field(
        default=1.0, gt=0, le=3600,
        description="Seconds between usage samples (hm.usage.v1); every polling source but filesystem runs at this pace.",
    )
    filesystem_interval_s: float = Field(
        default=30.0, gt=0, le=86400,
        description="Seconds between filesystem (statvfs) readings; each usage record carries the latest one.",
    )

    # --- collector agent (collector/agent.py, spool.py, publisher.py, metrics.py) ----
    spool_max_bytes: int = Field(
        default=256 << 20, ge=65536,
        description="Bound of the on-disk spool (<state_dir>/spool) in bytes; beyond it the oldest "
        "records are dropped, counted and reported.",
    )
    spool_fsync_interval_ms: int = Field(
        default=1000, ge=0, le=60000,
        description="How often the spool is fsynced (0: after every record). kill -9 loses nothing "
        "appended; a power loss can lose this much.",
    )
    metrics_listen: str = Field(
        default="127.0.0.1:9464",
        description="host:port of the agent's Prometheus endpoint (port 0: any free port, logged); "
        "empty to turn it off.",
    )
    inventory_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between inventory republishes when nothing changed."
    )
    inventory_check_s: float = Field(
        default=60.0, gt=0, description="Seconds between inventory rebuilds to detect a change of inventory_hash."
    )
    shutdown_timeout_s: float = Field(
        default=10.0, gt=0, le=300,
        description="On SIGTERM/SIGINT the agent flushes what it can, fsyncs the spool and exits within this.",
    )

    # --- eBPF (collector/ebpf/, bpf/, collector/sources/ebpf.py) ---------
    ebpf_enabled: bool = Field(
        default=True,
        description="Load the eBPF programs and publish hm.ebpf.v1; without root/BTF/headers the agent "
        "logs one line and keeps running on procfs sources.",
    )
    ebpf_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between eBPF map snapshots (one hm.ebpf.v1 record per program)."
    )
    ebpf_programs: list[Literal["sched", "blockio", "net", "syscalls", "mm"]] = Field(
        default=["sched", "blockio", "net", "syscalls", "mm"],
        description="eBPF programs to load (bpf/<name>.c); env as JSON, e.g. HMTEL_EBPF_PROGRAMS='[\"sched\"]'.",
    )
    ebpf_syscalls_top_n: int = Field(
        default=20, ge=1, le=1024, description="The syscalls snapshot carries this many syscalls by count, plus \"total\"."
    )

    # --- stream processors (processors/, hmtel process) -------------------
    proof_window_s: float = Field(default=60.0, gt=0, description="Length of a resource proof window (one proof per host per window).")
    proof_grace_s: float = Field(
        default=30.0, ge=0, description="A proof window closes once the host's records pass its end; a topic the "
        "host stopped sending on (nothing accepted for this long by processor time) is waited for until this long "
        "after the end.")
    agg_window_10s_s: float = Field(default=10.0, gt=0, description="Length of the short dashboard window (topic hm.usage.agg.10s.v1).")
    agg_window_1m_s: float = Field(default=60.0, gt=0, description="Length of the long dashboard window (topic hm.usage.agg.1m.v1).")
    agg_grace_s: float = Field(default=30.0, ge=0, description="Like proof_grace_s, for the dashboard windows.")
    coverage_threshold: float = Field(
        default=0.8, ge=0, le=1, description="A proof window with samples/expected below this yields insufficient_evidence, not a proof.")
    clock_skew_s: float = Field(default=300.0, gt=0, description="Records whose ts is further than this from processor time are clock_skew.")
    stale_after_s: float = Field(default=86_400.0, gt=0, description="Records older than this are stale.")
    over_capacity_factor: float = Field(
        default=1.05, ge=1, description="Usage may exceed the inventory's capacity by this factor before over_capacity.")
    source_disagreement_tolerance: float = Field(
        default=0.2, ge=0, le=1, description="eBPF on-CPU vs procfs busy agreement below 1 - this flags the proof source_disagreement.")
    enrollment_file: Path | None = Field(
        default=None, description="Strict mode: accept only the hosts listed here (`host_id [public_key_base64]` per line).")
    operator_id: str | None = Field(default=None, description="The proofs' stake.entity_id (default: each host's key fingerprint).")
    processor_app_id: str = Field(default="hm-processors", description="Faust app id: the consumer group and the prefix of its changelog topics.")
    processor_tick_s: float = Field(default=1.0, gt=0, description="How often the processor checks for windows to close.")
    unknown_host_grace_s: float = Field(
        default=10.0, ge=0, description="How long a record from a host with no pinned key waits for its inventory before key_mismatch.")
    processor_checkpoint_s: float = Field(
        default=10.0, gt=0, description="How often the processor writes changed host state to its changelog and acks "
        "the records behind it (longer: fewer writes, more replay after a crash; Kafka Streams commits every 30 s).")
    processor_verify_threads: int | None = Field(
        default=None, ge=0, le=64, description="Threads that check a fetched batch's Ed25519 signatures (as batches, "
        "with the GIL released) while the worker's own thread decodes it; unset: one fewer than the CPUs, 0: none "
        "(the worker's thread checks the batch itself).")
    processor_native_ingest: bool = Field(
        default=True, description="Take the common hm.usage.v1 record (a known host's next sample, every rule passing) "
        "on the native fast path (native/hm_ingest: host states kept natively, batches applied off the interpreter's "
        "thread); false: the Python engine for every record, the reference the fast path is tested against.")
    processor_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a processor group with no committed offsets starts reading its inputs.")

    # --- consumers (consumers/, hmtel verify, hmtel dashboard) -----------
    dashboard_listen: str = Field(
        default="127.0.0.1:8080", description="host:port the dashboard (`hmtel dashboard`) serves on (port 0: any free port).")
    dashboard_history_s: float = Field(
        default=3600.0, gt=0, le=7 * 86_400, description="How far back the dashboard reads the aggregate topics at start and keeps in memory.")
    verify_min_storage_bytes: int = Field(
        default=1 << 30, ge=0, description="`hmtel verify`: a proof offering less storage (all types) is invalid (min_storage).")
    verify_min_compute_cores: float = Field(
        default=1.0, ge=0, description="`hmtel verify`: a proof with less CPU capacity (core-seconds / window) is invalid (min_compute).")
    verify_max_clock_skew_ms: float = Field(
        default=300_000.0, gt=0, description="`hmtel verify`: a proof whose window saw a larger host clock skew is invalid (clock_skew).")
    verify_max_age_s: float = Field(
        default=86_400.0, gt=0, description="`hmtel verify`: a proof whose window ended longer ago is invalid (stale).")

    @field_validator("metrics_listen", "dashboard_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ValueError(f"expected host:port (e.g. 127.0.0.1:9464) or empty, got {value!r}")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for part in value.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return ",".join(p.strip() for p in value.split(","))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, _CONFIG_PATH.get("path")))

    # --- derived ---------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """The brokers clients connect to: the explicit setting, else the local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka_bootstrap is None

    def env_name(self, field: str) -> str:
        return ENV_PREFIX + field.upper()


# Fields whose value is never echoed, not even in a validation error.
SECRET_FIELDS = frozenset({"kafka_sasl_password"})


# pydantic-settings builds sources from a classmethod, so the chosen file path
# is handed over here for the duration of one load_settings() call.
_CONFIG_PATH: dict[str, Path | None] = {}


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings: file (``config`` or the default path), env, then ``overrides``.

    ``overrides`` whose value is None are ignored, so CLI flags that were not given
    do not mask the file or the environment. Raises SettingsError with a one-line message.
    """
    path = Path(config) if config is not None else default_config_path()
    given = {k: v for k, v in overrides.items() if v is not None}
    _CONFIG_PATH["path"] = path
    try:
        return Settings(**{_input_key(k): v for k, v in given.items()})
    except ValidationError as err:
        raise SettingsError(_one_line(err, path, given)) from None
    finally:
        _CONFIG_PATH.pop("path", None)


def _input_key(field: str) -> str:
    """The key a field's value goes under when handed to Settings.

    The env source files an aliased field (kafka_bootstrap) under its first alias;
    the file and the flags must use that same key, or pydantic sees two inputs for
    one field and the source precedence is lost.
    """
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field


def _env_names(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [ENV_PREFIX + field.upper()]


def _where(field: str, path: Path | None, given: dict[str, Any]) -> str:
    """Where the bad value came from (highest precedence first), so the message names what to fix."""
    flag = f"--{field.replace('_', '-')}"
    if field in given:
        return f"the flag {flag}"
    environ = {k.upper(): k for k in os.environ}  # pydantic-settings matches env names case-insensitively
    for name in _env_names(field):
        if name.upper() in environ:
            return f"the environment variable {environ[name.upper()]}"
    if path is not None:
        return f"`{field}` in {path}"
    return f"{_env_names(field)[0]} or {flag}"


def _one_line(err: ValidationError, path: Path | None, given: dict[str, Any]) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # An error raised through an alias (KAFKA_BOOTSTRAP_SERVERS) is located by the alias.
    field = next((f for f in Settings.model_fields if loc and loc[0] in (f, *_env_names(f))), ".".join(loc) or "?")
    value = first.get("input")
    if field in SECRET_FIELDS:  # a mistyped secret is still a secret
        value = "**********"
    where = _where(field, path, given) if field in Settings.model_fields else "the config"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid setting {field}={value!r}: {first['msg']}; fix it in {where}{more}"
