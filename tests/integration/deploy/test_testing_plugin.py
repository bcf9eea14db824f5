"""hmtel_testing as a downstream project uses it: a test file of its own, run by pytest with
the plugin loaded from the installed entry point, on the no-Docker path. The fixture starts
the local broker (or reuses it), `hmtel process` and `hmtel collect`, and yields a proof whose
DSSE signature verifies with the processor key, by this project's verifier and by
securesystemslib."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOWNSTREAM_TEST = '''
import base64, hashlib
import orjson
from schemas.dsse import key_id, verify_envelope_signatures


def test_pipeline_gives_a_verified_proof(hmtel_pipeline, hmtel_bootstrap, hmtel_topics,
                                         hmtel_processor_public_key, hmtel_proof):
    assert hmtel_pipeline.mode == "local"
    host, _, port = hmtel_bootstrap.rpartition(":")
    assert host and port.isdigit()
    assert hmtel_topics["proofs"] == "hm.proofs.v1" and hmtel_topics["usage"] == "hm.usage.v1"
    assert len(hmtel_processor_public_key) == 32
    kid = key_id(hmtel_processor_public_key)
    assert verify_envelope_signatures(hmtel_proof.envelope, {kid: hmtel_processor_public_key}) == [kid]
    payload = hmtel_proof.payload
    assert payload["host_id"] == hmtel_pipeline.host_id
    assert payload["evidence"]["coverage"] >= 0.8
    assert payload["work"]["cpu_core_seconds_capacity"] > 0

    # A second, independent DSSE implementation agrees.
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    key = SSlibKey(kid, "ed25519", "ed25519", {"public": hmtel_processor_public_key.hex()})
    assert list(Envelope.from_dict(hmtel_proof.envelope).verify([key], 1)) == [kid]

    # A tampered payload does not verify.
    forged = dict(hmtel_proof.envelope)
    forged["payload"] = base64.b64encode(orjson.dumps({**payload, "host_id": "h-" + "0" * 32})).decode()
    assert verify_envelope_signatures(forged, {kid: hmtel_processor_public_key}) == []
'''


def test_plugin_fixture_yields_a_verified_proof_without_docker(tmp_path: Path):
    (tmp_path / "test_downstream.py").write_text(DOWNSTREAM_TEST)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["HMTEL_TESTING_MODE"] = "local"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hmtel-proof-window", "6",
         "--rootdir", str(tmp_path), str(tmp_path / "test_downstream.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
