"""The Pipeline object and its two runners (docker via testcontainers, local processes)."""
from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from hmconfig.errors import HmtelError
from schemas import dsse
from schemas.topics import TOPICS

Mode = Literal["auto", "docker", "local"]
MODE_ENV = "HMTEL_TESTING_MODE"
DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"

# Role -> topic name, from the topic table: "hm.usage.agg.10s.v1" -> "usage_agg_10s".
TOPIC_ROLES: dict[str, str] = {
    t.name.removeprefix("hm.").removesuffix(".v1").replace(".", "_"): t.name for t in TOPICS
}


class PipelineError(HmtelError):
    """The pipeline could not start, or stopped giving what a test waits for."""


@dataclass(frozen=True)
class VerifiedProof:
    """A resource proof whose DSSE signature verified with the processor key."""

    envelope: dict[str, Any]
    payload: dict[str, Any]
    key_id: str


@dataclass
class _Started:
    bootstrap: str
    processor_public_key: bytes
    host_id: str
    detail: str
    logs: dict[str, Path] = field(default_factory=dict)


class _Runner(Protocol):
    def start(self) -> _Started: ...
    def check(self) -> None: ...
    def stop(self) -> None: ...


class Pipeline:
    """Kafka with the v1 topics, the stream processors and one collector, for a test.

    ``proof_window_s`` is short by default so a proof comes within a test's patience; the
    processors then issue one proof per window once a window is covered by samples.
    ``ebpf`` is off by default: tests rarely run as root, and procfs is enough for a proof.
    """

    def __init__(self, *, mode: Mode | None = None, workdir: Path | str | None = None,
                 proof_window_s: float = 10.0, usage_interval_s: float = 1.0, ebpf: bool = False,
                 start_timeout_s: float = 180.0, env: dict[str, str] | None = None):
        self.mode: Mode = mode or os.environ.get(MODE_ENV, "auto")  # type: ignore[assignment]
        if self.mode not in ("auto", "docker", "local"):
            raise PipelineError(f"unknown pipeline mode {self.mode!r}; use auto, docker or local ({MODE_ENV})")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="hmtel-testing-"))
        self.proof_window_s = proof_window_s
        self.usage_interval_s = usage_interval_s
        self.ebpf = ebpf
        self.start_timeout_s = start_timeout_s
        self.extra_env = dict(env or {})
        self.app_id = f"hm-processors-test-{secrets.token_hex(4)}"
        self._runner: _Runner | None = None
        self._started: _Started | None = None

    # --- what a test reads ---------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return self._need().bootstrap

    @property
    def topics(self) -> dict[str, str]:
        """Role -> topic name: inventory, usage, ebpf, usage_agg_10s, usage_agg_1m, proofs, rejected."""
        return dict(TOPIC_ROLES)

    @property
    def processor_public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key that signs every proof."""
        return self._need().processor_public_key

    @property
    def processor_public_key_b64(self) -> str:
        return base64.b64encode(self.processor_public_key).decode()

    @property
    def processor_key_id(self) -> str:
        return dsse.key_id(self.processor_public_key)

    @property
    def host_id(self) -> str:
        """host_id of the collector this pipeline runs."""
        return self._need().host_id

    @property
    def detail(self) -> str:
        return self._need().detail

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        if self._started is not None:
            return self
        mode = self.mode = self.resolve_mode()
        self.workdir.mkdir(parents=True, exist_ok=True)
        runner: _Runner = _DockerRunner(self) if mode == "docker" else _LocalRunner(self)
        self._runner = runner
        try:
            self._started = runner.start()
        except BaseException:
            runner.stop()
            raise
        return self

    def resolve_mode(self) -> Mode:
        """docker or local: auto means docker only where a Docker engine answers a ping."""
        if self.mode != "auto":
            return self.mode
        from deploy.broker_choice import docker_engine_answers

        return "docker" if docker_engine_answers() else "local"

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        self._runner = None
        self._started = None

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- proofs ----------------------------------------------------------------------------
    def verify(self, envelope: dict[str, Any]) -> VerifiedProof:
        """Check a proof envelope's signature against the processor key; PipelineError if it fails."""
        kid = self.processor_key_id
        if kid not in dsse.verify_envelope_signatures(envelope, {kid: self.processor_public_key}):
            raise PipelineError("proof envelope is not signed by this pipeline's processor key")
        if envelope.get("payloadType") != dsse.PROOF_PAYLOAD_TYPE:
            raise PipelineError(f"unexpected payloadType {envelope.get('payloadType')!r}")
        payload = orjson.loads(base64.b64decode(envelope["payload"]))
        return VerifiedProof(envelope, payload, kid)

    def _signed_by_us(self, envelope: Any) -> bool:
        sigs = envelope.get("signatures") if isinstance(envelope, dict) else None
        return any(isinstance(e, dict) and e.get("keyid") == self.processor_key_id for e in sigs or ())

    def wait_for_proof(self, timeout_s: float = 150.0, host_id: str | None = None) -> VerifiedProof:
        """The first proof for ``host_id`` (default: this pipeline's collector), verified."""
        return asyncio.run(self._wait_for_proof(timeout_s, host_id or self.host_id))

    async def _wait_for_proof(self, timeout_s: float, host_id: str) -> VerifiedProof:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(TOPIC_ROLES["proofs"], bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        deadline = time.monotonic() + timeout_s
        await consumer.start()
        try:
            while time.monotonic() < deadline:
                assert self._runner is not None
                self._runner.check()
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        if record.key is not None and record.key.decode(errors="replace") != host_id:
                            continue
                        envelope = orjson.loads(record.value)
                        if not self._signed_by_us(envelope):
                            continue  # another pipeline's processor on a shared cluster
                        proof = self.verify(envelope)
                        if proof.payload.get("host_id") == host_id:
                            return proof
        finally:
            await consumer.stop()
        logs = ", ".join(str(p) for p in self._need().logs.values())
        raise PipelineError(f"no proof for {host_id} within {timeout_s:.0f}s; see {logs or 'the container logs'}")

    def _need(self) -> _Started:
        if self._started is None:
            raise PipelineError("the pipeline is not started; call start() or use it as a context manager")
        return self._started

    def component_env(self) -> dict[str, str]:
        """Settings both runners hand to the processors and the collector."""
        return {
            # Its own consumer group and changelogs: never share partitions with other
            # processors on the same broker.
            "HMTEL_PROCESSOR_APP_ID": self.app_id,
            "HMTEL_PROOF_WINDOW_S": str(self.proof_window_s),
            "HMTEL_PROOF_GRACE_S": str(min(5.0, self.proof_window_s / 2)),
            "HMTEL_USAGE_INTERVAL_S": str(self.usage_interval_s),
            "HMTEL_EBPF_ENABLED": "true" if self.ebpf else "false",
            "HMTEL_LOG_LEVEL": os.environ.get("HMTEL_LOG_LEVEL", "INFO"),
            **self.extra_env,
        }


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class _LocalRunner:
    """No Docker: the local broker (or HMTEL_KAFKA_BOOTSTRAP's) and the components as processes."""

    COMPONENTS = (("processors", ["process"]), ("collector", ["collect"]))
    GRACE_S = 15.0

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.broker_to_stop: Any = None

    def start(self) -> _Started:
        from deploy.broker_choice import choose_broker
        from deploy.localbroker import LocalBroker
        from hmconfig.settings import load_settings
        from hmconfig.topic_admin import ensure_topics
        from schemas.keys import HOST_KEY_FILE, PROCESSOR_KEY_FILE, SigningKey

        settings = load_settings()
        was_running = settings.uses_local_broker and LocalBroker(settings).pid() is not None
        choice = choose_broker(settings, allow_containers=False)
        if settings.uses_local_broker and not was_running:
            self.broker_to_stop = LocalBroker(settings)
        bootstrap = choice.bootstrap
        asyncio.run(ensure_topics(load_settings(kafka_bootstrap=bootstrap)))

        work = self.p.workdir
        # Keys made here, before the processes start, so the test knows them up front;
        # the processes load the same files (O_EXCL creation: no race).
        processor_key = SigningKey.load_or_create(work / "processors", PROCESSOR_KEY_FILE)
        host_key = SigningKey.load_or_create(work / "collector", HOST_KEY_FILE)
        empty_config = work / "empty.toml"
        empty_config.write_text("# isolates the pipeline from the user's hmtel.toml\n")
        logs: dict[str, Path] = {}
        for name, argv in self.COMPONENTS:
            env = {
                **os.environ,
                **self.p.component_env(),
                "HMTEL_CONFIG": str(empty_config),
                "HMTEL_KAFKA_BOOTSTRAP": bootstrap,
                "HMTEL_STATE_DIR": str(work / name),
                "HMTEL_METRICS_LISTEN": "127.0.0.1:0",
                "PYTHONUNBUFFERED": "1",
            }
            env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
            log = work / f"{name}.log"
            logs[name] = log
            with open(log, "ab") as out:
                proc = subprocess.Popen([sys.executable, "-m", "hmtel", *argv], env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            self.procs.append((name, proc, log))
        self.check()
        return _Started(bootstrap, processor_key.public_key_raw, host_key.host_id,
                        f"local: {choice.detail}; processes in {work}", logs)

    def check(self) -> None:
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                raise PipelineError(f"`hmtel {name}` exited with {proc.returncode}: {_tail(log)}")

    def stop(self) -> None:
        for _name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.GRACE_S
        for _name, proc, _log in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.broker_to_stop is not None:
            self.broker_to_stop.stop()
            self.broker_to_stop = None


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (all bound at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def compose_override(pipeline: Pipeline) -> dict[str, Any]:
    """What the docker path lays over deploy/docker-compose.yml: a private project name (so
    parallel runs do not collide) and the test's settings for the two components."""
    env = pipeline.component_env()
    return {
        "name": f"hmtel-test-{secrets.token_hex(4)}",
        "services": {
            "processors": {"environment": env},
            # host network: a fixed metrics port could clash with the machine's own collector
            "collector": {"environment": {**env, "HMTEL_METRICS_LISTEN": "127.0.0.1:0"}},
        },
    }


class _DockerRunner:
    """A Docker engine answers: testcontainers runs deploy/docker-compose.yml, with an override
    that names a private project, a free Kafka port and the test's short windows."""

    SERVICES = ["kafka-1", "topics", "processors", "collector"]

    def __init__(self, pipeline: Pipeline):
        self.p = pipeline
        self.compose: Any = None

    def start(self) -> _Started:
        from testcontainers.compose import DockerCompose

        from deploy.localbroker import _metadata_answers

        (port,) = free_ports(1)
        work = self.p.workdir
        env_file = work / "compose.env"
        env_file.write_text(f"HMTEL_KAFKA_HOST_PORT={port}\n")
        override = compose_override(self.p)
        override_file = work / "compose.override.json"  # JSON is YAML; compose reads it
        override_file.write_bytes(orjson.dumps(override))
        self.compose = DockerCompose(DEPLOY_DIR, compose_file_name=["docker-compose.yml", str(override_file)],
                                     build=True, wait=False, env_file=str(env_file), services=self.SERVICES)
        self.compose.start()
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + self.p.start_timeout_s
        while not asyncio.run(_metadata_answers(bootstrap, 2.0)):
            if time.monotonic() > deadline:
                raise PipelineError(f"Kafka in compose did not answer on {bootstrap}")
            time.sleep(1)
        processor_key = self._key("processors", ["hmtel", "keys", "show", "--processor", "--json"], deadline)
        host_key = self._key("collector", ["hmtel", "keys", "show", "--json"], deadline)
        return _Started(bootstrap, base64.b64decode(processor_key["public_key"]), host_key["host_id"],
                        f"docker: compose project {override['name']}")

    def _key(self, service: str, cmd: list[str], deadline: float) -> dict[str, Any]:
        while True:
            try:
                stdout, stderr, code = self.compose.exec_in_container(cmd, service_name=service)
                if code == 0:
                    return orjson.loads(stdout)
            except Exception as err:  # noqa: BLE001 - container still starting
                stderr = str(err)
            if time.monotonic() > deadline:
                raise PipelineError(f"cannot read the {service} key: {stderr.strip()[-200:]}")
            time.sleep(2)

    def check(self) -> None:
        return None  # containers restart themselves (restart: unless-stopped)

    def stop(self) -> None:
        if self.compose is not None:
            self.compose.stop()
            self.compose = None
