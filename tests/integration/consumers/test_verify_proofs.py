"""`hmtel verify` and an independent DSSE implementation on proofs the pipeline produced,
and a proof with one byte changed."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(240)


def payload_bytes(value: bytes) -> bytes:
    return base64.b64decode(orjson.loads(value)["payload"])


def hmtel_verify(run, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmtel", "verify", "--key", run.key.public_key_b64, *args],
                          cwd=ROOT, env=run.env, capture_output=True, text=True, timeout=120)


def test_hmtel_verify_on_the_proof_topic(consumer_run):
    hosts = [a for h in consumer_run.hosts for a in ("--host", h)]
    out = hmtel_verify(consumer_run, "--json", *hosts)
    verdicts = [orjson.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    ours = [v for v in verdicts if v["key_id"] == consumer_run.key.key_id]
    assert {v["host_id"] for v in ours} == set(consumer_run.hosts)
    assert all(v["ok"] for v in ours), [v for v in ours if not v["ok"]]
    for host in consumer_run.hosts:
        seqs = [v["seq"] for v in ours if v["host_id"] == host and not v["duplicate"]]
        assert seqs == list(range(len(seqs))) and len(seqs) >= 3
    # Another processor on a shared broker signs with a key we were not given: fail closed.
    foreign = [v for v in verdicts if v["key_id"] != consumer_run.key.key_id]
    assert all([r["code"] for r in v["reasons"]] == ["unknown_key"] for v in foreign)
    assert out.returncode == (1 if foreign else 0), out.stderr[-2000:]


def test_exit_zero_and_the_table_when_every_proof_is_valid(consumer_run, kafka_settings):
    topic = f"it.consumers.proofs.{uuid.uuid4().hex[:8]}"
    asyncio.run(publish(kafka_settings, topic, [(h.encode(), v) for h, vs in consumer_run.proofs.items() for v in vs]))
    table = hmtel_verify(consumer_run, "--topic", topic)
    assert table.returncode == 0, table.stdout + table.stderr
    for host in consumer_run.hosts:
        row = next(line for line in table.stdout.splitlines() if line.startswith(host)).split()
        proofs, valid, invalid, chain = row[1], row[2], row[3], row[7]
        assert proofs == valid == str(len(consumer_run.proofs[host])) and invalid == "0" and chain == "intact"


def test_fails_closed_with_another_key(consumer_run):
    stranger = base64.b64encode(b"\x01" * 32).decode()
    out = subprocess.run([sys.executable, "-m", "hmtel", "verify", "--key", stranger, "--json",
                          "--host", consumer_run.hosts[0]], cwd=ROOT, env=consumer_run.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    verdicts = [orjson.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert verdicts and all(not v["ok"] and v["reasons"][0]["code"] in ("unknown_key", "bad_signature")
                            for v in verdicts)


def test_securesystemslib_verifies_the_same_envelopes(consumer_run):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    key = SSlibKey(consumer_run.key.key_id, "ed25519", "ed25519",
                   {"public": consumer_run.key.public_key_raw.hex()})
    checked = 0
    for host, values in consumer_run.proofs.items():
        prev = None
        for value in values:
            env = Envelope.from_dict(orjson.loads(value))
            assert env.payload_type == "application/vnd.hypermesh.resource-proof.v1+json"
            accepted = env.verify([key], 1)
            assert list(accepted) == [consumer_run.key.key_id]
            payload = orjson.loads(env.payload)
            assert payload["host_id"] == host
            assert payload["proof_id"] == hashlib.sha256(
                f"{host}:{payload['window']['start_us']}:{payload['window']['end_us'] - payload['window']['start_us']}"
                .encode()).hexdigest()
            if prev is not None and payload["seq"] == prev[0] + 1:
                assert payload["prev_proof_hash"] == prev[1]
            prev = (payload["seq"], hashlib.sha256(env.payload).hexdigest())
            checked += 1
    assert checked >= 6


def one_byte_changed(value: bytes) -> bytes:
    """The envelope with a single byte of its base64 payload changed (still valid base64)."""
    env = orjson.loads(value)
    start = value.index(env["payload"].encode())
    i = start + len(env["payload"]) // 2
    out = bytearray(value)
    out[i] = ord("B") if out[i] != ord("B") else ord("C")
    assert sum(a != b for a, b in zip(out, value)) == 1
    return bytes(out)


async def publish(settings, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from aiokafka.admin import NewTopic

    from hmconfig.kafka_clients import make_admin, make_producer

    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = make_producer(settings)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def test_one_byte_changed_is_rejected_with_the_reason(consumer_run, kafka_settings):
    host = consumer_run.hosts[0]
    values = consumer_run.proofs[host]
    tampered = one_byte_changed(values[1])
    assert payload_bytes(tampered) != payload_bytes(values[1])
    topic = f"it.consumers.tamper.{uuid.uuid4().hex[:8]}"
    asyncio.run(publish(kafka_settings, topic, [(host.encode(), v) for v in [values[0], tampered, *values[2:]]]))

    out = hmtel_verify(consumer_run, "--topic", topic)
    assert out.returncode == 1, out.stdout + out.stderr
    invalid = [line for line in out.stdout.splitlines() if line.startswith("INVALID")]
    assert len(invalid) == 2, out.stdout  # the altered proof, and the next one whose prev no longer chains
    assert "bad_signature" in invalid[0] and f"{host} seq=" in invalid[0]
    assert "chain_gap" in invalid[1]  # the forgery did not move the chain: seq 2 follows seq 0

    js = hmtel_verify(consumer_run, "--topic", topic, "--json")
    verdicts = [orjson.loads(line) for line in js.stdout.splitlines() if line.startswith("{")]
    assert js.returncode == 1
    assert verdicts[0]["ok"] and not verdicts[1]["ok"]
    assert [r["code"] for r in verdicts[1]["reasons"]][0] == "bad_signature"
