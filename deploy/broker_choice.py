"""Which Kafka a test session talks to, decided in one place.

Order: an explicit bootstrap setting (HMTEL_KAFKA_BOOTSTRAP / KAFKA_BOOTSTRAP_SERVERS);
then, only for tests, testcontainers' KafkaContainer when a Docker engine answers;
then the local broker (`hmtel broker start`). The Docker probe is fast: no socket,
no engine; a socket that does not answer a ping within a second, no engine.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Callable

from hmconfig.settings import Settings


@dataclass
class BrokerChoice:
    source: str  # "explicit" | "testcontainers" | "local"
    bootstrap: str
    detail: str = ""
    close: Callable[[], None] = field(default=lambda: None, repr=False)


def docker_engine_answers(timeout_s: float = 1.0) -> bool:
    """True only when a Docker engine answers ``GET /_ping`` on its socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            path = host[len("unix://"):]
            if not os.path.exists(path):
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(path)
        elif host.startswith("tcp://"):
            hostport = host[len("tcp://"):].rstrip("/")
            h, _, p = hostport.rpartition(":")
            sock = socket.create_connection((h, int(p)), timeout=timeout_s)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return _read_status(sock) == 200
    except (OSError, ValueError):
        return False


def _read_status(sock: socket.socket) -> int:
    head = sock.recv(64)
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def describe_choice(settings: Settings, *, allow_containers: bool = True) -> tuple[str, str]:
    """(source, detail) that choose_broker would pick, without starting anything."""
    if not settings.uses_local_broker:
        return "explicit", f"explicit bootstrap {settings.bootstrap}"
    if allow_containers and docker_engine_answers():
        return "testcontainers", "testcontainers KafkaContainer (Docker engine answered)"
    return "local", (f"local Apache Kafka broker at {settings.bootstrap} "
                     f"(state {settings.state_dir / 'kafka'}; no Docker engine answered)")


def choose_broker(settings: Settings, *, allow_containers: bool = True, progress=lambda m: None) -> BrokerChoice:
    source, detail = describe_choice(settings, allow_containers=allow_containers)
    if source == "explicit":
        return BrokerChoice(source, settings.bootstrap, detail)
    if source == "testcontainers":
        from testcontainers.kafka import KafkaContainer  # only imported where an engine exists

        container = KafkaContainer().with_kraft()
        container.start()
        return BrokerChoice(source, container.get_bootstrap_server(), detail, close=container.stop)
    from deploy.localbroker import LocalBroker

    address = LocalBroker(settings, progress=progress).start()
    return BrokerChoice(source, address, detail)
