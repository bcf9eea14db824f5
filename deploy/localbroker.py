"""The local broker: real Apache Kafka, single node, KRaft combined mode, on 127.0.0.1.

For development, CI and the README's first command. Kafka's jars come from Maven
Central through ``deploy/kafka/pom.xml`` and are copied into
``<state_dir>/kafka/libs`` once; after that no network (and no Maven) is needed.
Data, config, pid file and log live under ``<state_dir>/kafka``.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hmconfig.errors import BrokerToolMissing, BrokerUnavailable, HmtelError
from hmconfig.settings import Settings

log = logging.getLogger(__name__)

NODE_ID = 1


def _resource(name: str) -> Path:
    return Path(str(resources.files("deploy") / "kafka" / name))


@dataclass(frozen=True)
class BrokerPaths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> "BrokerPaths":
        return cls(settings.state_dir / "kafka")

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def libs_stamp(self) -> Path:
        return self.libs / ".pom-sha256"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"


class LocalBroker:
    """Start, stop and query the local broker. Every method is idempotent."""

    def __init__(self, settings: Settings, progress=lambda msg: None):
        self.settings = settings
        self.paths = BrokerPaths.of(settings)
        self.progress = progress

    # -- jars ------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Fetch Kafka's jars through Maven unless the cached copy matches the pom."""
        pom = _resource("pom.xml")
        want = hashlib.sha256(pom.read_bytes()).hexdigest()
        stamp = self.paths.libs_stamp
        if stamp.is_file() and stamp.read_text().strip() == want and any(self.paths.libs.glob("kafka_*.jar")):
            return self.paths.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerToolMissing(
                "Maven (mvn) is missing: it fetches Kafka's jars once; install it with `apt-get install maven`"
            )
        self.progress(f"fetching Apache Kafka jars with Maven into {self.paths.libs} (once) ...")
        tmp = self.paths.root / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise BrokerToolMissing(
                "Maven could not fetch Kafka's jars (is Maven Central reachable?): " + " | ".join(tail)
            )
        (tmp / ".pom-sha256").write_text(want + "\n")
        shutil.rmtree(self.paths.libs, ignore_errors=True)
        tmp.rename(self.paths.libs)
        return self.paths.libs

    @staticmethod
    def java() -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin/java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise BrokerToolMissing(
                "Java 17+ is missing: Kafka needs it; install it with `apt-get install openjdk-17-jre-headless`"
            )
        return java

    # -- config ----------------------------------------------------------
    def server_properties(self) -> str:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{s.broker_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.broker_port},CONTROLLER://127.0.0.1:{s.broker_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.paths.data),
            # Single node: internal topics cannot have more replicas than brokers.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests and the dev loop create consumer groups constantly; don't wait 3 s each.
            "group.initial.rebalance.delay.ms": "0",
            # A misspelt topic should fail loudly, not appear silently.
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format_if_needed(self, java: str, classpath: str) -> None:
        if (self.paths.data / "meta.properties").exists():
            return
        self.paths.data.mkdir(parents=True, exist_ok=True)
        cluster_id = _kafka_uuid()
        self.progress(f"formatting KRaft storage in {self.paths.data}")
        proc = subprocess.run(
            [java, "-Xmx256m", "-cp", classpath, f"-Dlog4j2.configurationFile={_resource('log4j2.yaml')}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.paths.config)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise HmtelError(f"formatting Kafka storage failed: {(proc.stdout + proc.stderr).strip()[-400:]}")

    # -- lifecycle -------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.paths.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        # Guard against a recycled pid belonging to something else. Right after exec
        # /proc/<pid>/cmdline is briefly empty, so empty means "ours, still starting".
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if not cmdline or b"kafka.Kafka" in cmdline else None

    def is_ready(self, timeout_s: float = 3.0) -> bool:
        return asyncio.run(_metadata_answers(self.settings.bootstrap, timeout_s))

    def start(self) -> str:
        """Start the broker and return its bootstrap address once it answers metadata."""
        if not self.settings.uses_local_broker:
            raise HmtelError(
                f"kafka_bootstrap is set to {self.settings.kafka_bootstrap}; `hmtel broker` manages only "
                "the local broker. Unset HMTEL_KAFKA_BOOTSTRAP/KAFKA_BOOTSTRAP_SERVERS to use it"
            )
        if self.pid() is not None and self.is_ready():
            return self.settings.bootstrap
        java = self.java()
        libs = self.ensure_jars()
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(self.server_properties())
        classpath = str(libs / "*")
        self._format_if_needed(java, classpath)
        proc: subprocess.Popen[bytes] | None = None
        if self.pid() is None:
            _refuse_busy_port(self.settings.broker_port)
            _refuse_busy_port(self.settings.broker_controller_port)
            heap = self.settings.broker_heap_mb
            cmd = [
                java, f"-Xmx{heap}m", f"-Xms{min(heap, 256)}m",
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
                # Fewer compiler/GC threads: this shares 2 cores with the tests.
                "-XX:CICompilerCount=2", "-XX:ParallelGCThreads=2", "-XX:ConcGCThreads=1",
                "-Xshare:auto", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={_resource('log4j2.yaml')}",
                "-cp", classpath, "kafka.Kafka", str(self.paths.config),
            ]
            logf = open(self.paths.log, "ab")
            logf.write(f"\n=== hmtel broker start {time.strftime('%Y-%m-%dT%H:%M:%S')} ===\n".encode())
            logf.flush()
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, close_fds=True)
            logf.close()
            self.paths.pid.write_text(f"{proc.pid}\n")
            self.progress(f"started Kafka (pid {proc.pid}); waiting for it to answer on {self.settings.bootstrap}")
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        while time.monotonic() < deadline:
            exited = proc.poll() is not None if proc is not None else self.pid() is None
            if exited:
                raise HmtelError(f"Kafka exited during start; see {self.paths.log}: {_tail(self.paths.log)}")
            if self.is_ready(timeout_s=2.0):
                return self.settings.bootstrap
            time.sleep(0.3)
        raise BrokerUnavailable(
            f"Kafka did not answer within {self.settings.broker_start_timeout_s:.0f}s; see {self.paths.log}"
        )

    def stop(self) -> bool:
        """SIGTERM, then SIGKILL after broker_stop_timeout_s. Returns False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.paths.pid.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, self.settings.broker_stop_timeout_s):
            self.progress(f"Kafka (pid {pid}) ignored SIGTERM for {self.settings.broker_stop_timeout_s:.0f}s; killing")
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        self.paths.pid.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL, for crash tests."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)
        self.paths.pid.unlink(missing_ok=True)
        return True


def _kafka_uuid() -> str:
    # Kafka cluster ids are 16 random bytes, URL-safe base64 without padding. Like Kafka's own
    # Uuid.randomUuid(), never one starting with "-": StorageTool would read it as an option
    # (1 in 64 ids; the broker then failed to format its storage).
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: it still answers kill(0), but
    once the CLI that started Kafka has exited, only init reaps it, whenever it likes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces, so split after ")".
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child (it is not once the CLI that started it has exited).
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _refuse_busy_port(port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise HmtelError(
                f"port {port} on 127.0.0.1 is taken by another process; stop it or choose another with "
                f"HMTEL_BROKER_PORT / HMTEL_BROKER_CONTROLLER_PORT"
            ) from err


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _metadata_answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a broker answers a Metadata request and lists itself."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    # "Connection refused" is the expected answer while Kafka boots; aiokafka logs it at ERROR.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return bool(client.cluster.brokers())
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        await client.close()
        quiet.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `hmtel broker start|stop|status`")
