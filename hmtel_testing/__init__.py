"""Run the HyperMesh telemetry pipeline inside another project's tests.

    from hmtel_testing import Pipeline

    with Pipeline() as pipeline:                 # Kafka + topics + processors + one collector
        pipeline.bootstrap                       # "127.0.0.1:9092"
        pipeline.topics["proofs"]                # "hm.proofs.v1"
        pipeline.processor_public_key            # raw 32-byte Ed25519 key that signs proofs
        proof = pipeline.wait_for_proof()        # a DSSE envelope, verified with that key

Two ways to run it, behind the same API:

- ``docker``: testcontainers runs deploy/docker-compose.yml (apache/kafka in KRaft mode, the
  topic setup, the processors and the collector images) where a Docker engine answers;
- ``local``: no Docker. The local Apache Kafka broker (`hmtel broker`, or the brokers in
  HMTEL_KAFKA_BOOTSTRAP), then `hmtel process` and `hmtel collect` as child processes.

``mode="auto"`` (the default) picks docker when an engine answers, else local; the
environment variable HMTEL_TESTING_MODE or pytest's ``--hmtel-mode`` forces one.

As a pytest plugin (registered through the ``pytest11`` entry point, so installing the
distribution is enough) it provides the session fixtures ``hmtel_pipeline``,
``hmtel_bootstrap``, ``hmtel_topics``, ``hmtel_processor_public_key`` and ``hmtel_proof``.

``hmtel_testing.chains.check_proof_chains`` checks the proof chains read back from
``hm.proofs.v1``: no proof written with two payloads, seqs contiguous from 0, each
``prev_proof_hash`` the hash of the payload before.
"""
from hmtel_testing.pipeline import Pipeline, PipelineError, VerifiedProof

__all__ = ["Pipeline", "PipelineError", "VerifiedProof"]
