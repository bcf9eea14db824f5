"""pytest plugin: the pipeline as session fixtures (entry point ``pytest11: hmtel``).

    def test_validator_accepts_a_real_proof(hmtel_proof, hmtel_processor_public_key):
        assert my_validator.check(hmtel_proof.envelope, trusted=[hmtel_processor_public_key])

Fixtures start nothing until a test asks for one. ``--hmtel-mode`` (or HMTEL_TESTING_MODE)
picks docker or local; the default, auto, uses Docker only where an engine answers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from hmtel_testing.pipeline import Pipeline, VerifiedProof


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hmtel", "HyperMesh telemetry pipeline fixtures")
    group.addoption("--hmtel-mode", choices=["auto", "docker", "local"], default=None,
                    help="How hmtel_pipeline runs: docker (testcontainers + compose), local (processes "
                         "and the local broker) or auto [env HMTEL_TESTING_MODE; default auto].")
    group.addoption("--hmtel-proof-window", type=float, default=10.0, metavar="SECONDS",
                    help="Proof window of the test pipeline's processors [default 10].")


@pytest.fixture(scope="session")
def hmtel_pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator["Pipeline"]:
    """Kafka with the v1 topics, the processors and one collector, for the whole session."""
    from hmtel_testing.pipeline import Pipeline

    pipeline = Pipeline(mode=request.config.getoption("--hmtel-mode"),
                        workdir=tmp_path_factory.mktemp("hmtel-pipeline"),
                        proof_window_s=request.config.getoption("--hmtel-proof-window"))
    with pipeline:
        yield pipeline


@pytest.fixture(scope="session")
def hmtel_bootstrap(hmtel_pipeline: "Pipeline") -> str:
    """Kafka bootstrap address (host:port) of the pipeline."""
    return hmtel_pipeline.bootstrap


@pytest.fixture(scope="session")
def hmtel_topics(hmtel_pipeline: "Pipeline") -> dict[str, str]:
    """Role -> topic name (inventory, usage, ebpf, usage_agg_10s, usage_agg_1m, proofs, rejected)."""
    return hmtel_pipeline.topics


@pytest.fixture(scope="session")
def hmtel_processor_public_key(hmtel_pipeline: "Pipeline") -> bytes:
    """Raw 32-byte Ed25519 public key the processors sign proofs with."""
    return hmtel_pipeline.processor_public_key


@pytest.fixture(scope="session")
def hmtel_proof(hmtel_pipeline: "Pipeline") -> "VerifiedProof":
    """The first resource proof for the pipeline's collector, its signature already verified."""
    return hmtel_pipeline.wait_for_proof()
