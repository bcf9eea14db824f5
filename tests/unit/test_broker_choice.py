"""Choosing the session's broker: explicit bootstrap, else a Docker engine (testcontainers), else local.

Nothing here starts a broker. The Docker engine is faked at the I/O edge only: a
unix socket in a temp dir that answers ``GET /_ping`` the way dockerd does.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.broker_choice import choose_broker, describe_choice, docker_engine_answers
from hmconfig.settings import Settings, load_settings

# A hang guard, not a speed assertion: the probe must give up, not wait for a socket forever.
pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("HMTEL_") or name.upper() in ("KAFKA_BOOTSTRAP_SERVERS", "DOCKER_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.setenv("HMTEL_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="hmdock", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class FakeEngine:
    """A unix-socket server answering every request with one fixed HTTP status line."""

    def __init__(self, path: Path, reply: bytes | None):
        self.path = path
        self.reply = reply
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(1024))
                if self.reply is None:  # a hung engine: read, never answer
                    conn.recv(1024)
                    continue
                conn.sendall(self.reply)

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def engine(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEngine]:
    fake = FakeEngine(short_dir / "docker.sock", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{fake.path}")
    yield fake
    fake.close()


def settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


def test_explicit_bootstrap_wins_without_probing_or_starting(engine: FakeEngine, tmp_path: Path) -> None:
    explicit = settings(kafka_bootstrap="kafka-1.example:9092")
    source, detail = describe_choice(explicit)
    assert source == "explicit" and "kafka-1.example:9092" in detail
    choice = choose_broker(explicit)
    assert (choice.source, choice.bootstrap) == ("explicit", "kafka-1.example:9092")
    choice.close()
    assert engine.requests == []  # the Docker engine was not even asked
    assert not (tmp_path / "state" / "kafka").exists()  # and no local broker was prepared


def test_explicit_bootstrap_from_kafka_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    assert describe_choice(settings())[0] == "explicit"


def test_missing_docker_socket_means_local(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{short_dir}/missing.sock")
    assert docker_engine_answers() is False
    source, detail = describe_choice(settings())
    assert source == "local"
    assert "no Docker engine answered" in detail and "127.0.0.1:" in detail


def test_this_machine_has_no_docker_engine() -> None:
    if os.path.exists("/var/run/docker.sock") and docker_engine_answers():
        pytest.skip("a Docker engine answers on /var/run/docker.sock here; this checks the engine-less case")
    assert docker_engine_answers() is False
    assert describe_choice(settings())[0] == "local"


def test_stale_socket_file_is_no_engine(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    stale = short_dir / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # the file stays, nobody listens: connection refused
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")
    assert stale.exists()
    assert docker_engine_answers() is False


def test_engine_that_never_answers_is_no_engine(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    hung = FakeEngine(short_dir / "docker.sock", reply=None)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{hung.path}")
    try:
        assert docker_engine_answers(timeout_s=0.3) is False
        assert hung.requests and hung.requests[0].startswith(b"GET /_ping ")
    finally:
        hung.close()


def test_engine_answering_an_error_is_no_engine(monkeypatch: pytest.MonkeyPatch, short_dir: Path) -> None:
    sick = FakeEngine(short_dir / "docker.sock", b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sick.path}")
    try:
        assert docker_engine_answers() is False
    finally:
        sick.close()


def test_closed_tcp_docker_host_is_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    assert docker_engine_answers() is False


def test_unsupported_docker_host_scheme_is_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://user@remote")
    assert docker_engine_answers() is False


def test_answering_engine_means_testcontainers(engine: FakeEngine) -> None:
    assert docker_engine_answers() is True
    assert engine.requests[0].startswith(b"GET /_ping ")
    assert describe_choice(settings())[0] == "testcontainers"
    # Outside tests (allow_containers=False) an engine never changes the choice.
    assert describe_choice(settings(), allow_containers=False)[0] == "local"
