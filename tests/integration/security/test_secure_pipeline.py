"""The whole pipeline in secure mode: collector + 3 simulated hosts (user collector) ->
processors (user processor) -> proofs read back by the validator user and verified.
Then every log the package produced is grepped for passwords and private keys.
"""
from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from deploy.securebroker import client_env
from hmconfig.kafka_clients import make_consumer, start_with_retry
from schemas import dsse
from schemas.keys import SigningKey

from .conftest import logs_under, secret_needles, topic_partitions

ROOT = Path(__file__).resolve().parents[3]
WINDOW_S = 5
WANT_PROOFS = 2  # per host
DEADLINE_S = 90


def env_as(secure, user: str, state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMTEL_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(client_env(secure.settings, user))
    env.update({"HMTEL_BROKER_PORT": str(secure.settings.broker_port), "HMTEL_STATE_DIR": str(state),
                "HMTEL_LOG_LEVEL": "DEBUG", "HMTEL_EBPF_ENABLED": "false", **extra})
    return env


async def read_all(settings, topic: str) -> list:
    consumer = await start_with_retry(lambda: make_consumer(settings, group_id=None), settings)
    try:
        parts = await topic_partitions(consumer, topic)
        assert parts, f"{topic} has no partitions visible to {settings.kafka_sasl_username}"
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def pipeline_run(secure, tmp_path_factory):
    base = tmp_path_factory.mktemp("secure-pipeline")
    pstate, cstate, sstate = base / "processor", base / "collector", base / "simulate"
    for d in (pstate, cstate, sstate, base / "validator"):
        d.mkdir()
    procs: list[subprocess.Popen] = []

    def spawn(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "hmtel", *args], cwd=ROOT, env=env,
                             stdout=open(base / f"{log}.out", "ab"), stderr=open(base / f"{log}.log", "ab"))
        procs.append(p)
        return p

    proc_env = env_as(secure, "processor", pstate, HMTEL_PROOF_WINDOW_S=str(WINDOW_S), HMTEL_PROOF_GRACE_S="20",
                      HMTEL_AGG_WINDOW_10S_S="2", HMTEL_AGG_WINDOW_1M_S="5", HMTEL_AGG_GRACE_S="20",
                      HMTEL_PROCESSOR_TICK_S="0.5", HMTEL_UNKNOWN_HOST_GRACE_S="5",
                      HMTEL_PROCESSOR_OFFSET_RESET="earliest")
    try:
        processor = spawn(["process"], proc_env, "process")
        collector = spawn(["collect", "--metrics-listen", ""], env_as(secure, "collector", cstate), "collect")
        simulate = spawn(["simulate", "--hosts", "3", "--duration", str(DEADLINE_S)],
                         env_as(secure, "collector", sstate), "simulate")
        # `hmtel config show` with a password in the environment, for the leak check.
        subprocess.run([sys.executable, "-m", "hmtel", "config", "show"], cwd=ROOT, check=True,
                       env=env_as(secure, "collector", cstate,
                                  HMTEL_KAFKA_SASL_PASSWORD=secure.password("collector")),
                       stdout=open(base / "config-show.out", "wb"), stderr=subprocess.STDOUT)
        validator = secure.as_user("validator")
        deadline = time.monotonic() + DEADLINE_S
        proofs: dict[str, list[dict]] = {}
        pkey = None
        while time.monotonic() < deadline:
            for p, name in ((processor, "process"), (collector, "collect")):
                assert p.poll() is None, f"{name} exited {p.returncode}: {(base / f'{name}.log').read_text()[-2000:]}"
            time.sleep(3)
            if pkey is None and (pstate / "processor.key").exists():
                pkey = SigningKey.load_or_create(pstate, "processor.key")
            if pkey is None:
                continue
            proofs = {}
            for msg in asyncio.run(read_all(validator, "hm.proofs.v1")):
                env = orjson.loads(msg.value)
                if dsse.verify_envelope_signatures(env, {pkey.key_id: pkey.public_key_raw}) == [pkey.key_id]:
                    payload = orjson.loads(base64.b64decode(env["payload"]))
                    proofs.setdefault(payload["host_id"], []).append(payload)
            collector_host = SigningKey.load_or_create(cstate, "host.key").host_id
            if collector_host in proofs and len(proofs) >= 4 and all(len(v) >= WANT_PROOFS for v in proofs.values()):
                break
        # The reference validator, as the validator user.
        verify = subprocess.run([sys.executable, "-m", "hmtel", "verify", "--json", "--key", str(pstate / "processor.key")],
                                cwd=ROOT, env=env_as(secure, "validator", base / "validator"), capture_output=True,
                                text=True, timeout=120)
        (base / "verify.log").write_text(verify.stderr)
        yield {"base": base, "verify": verify, "pkey": pkey, "proofs": proofs, "collector_host": SigningKey.load_or_create(cstate, "host.key").host_id,
               "pstate": pstate, "cstate": cstate, "sstate": sstate}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_proofs_verify_end_to_end_in_secure_mode(pipeline_run):
    proofs = pipeline_run["proofs"]
    assert pipeline_run["collector_host"] in proofs, f"no proof for the real collector; got {list(proofs)}"
    assert len(proofs) >= 4, f"want the collector and 3 simulated hosts, got {len(proofs)}"
    for host, items in proofs.items():
        assert len(items) >= WANT_PROOFS, (host, len(items))
        assert len({p["proof_id"] for p in items}) == len({(p["proof_id"], p["seq"]) for p in items})


def test_hmtel_verify_as_validator_accepts_the_proofs(pipeline_run):
    verify = pipeline_run["verify"]
    assert verify.returncode in (0, 1), verify.stderr[-2000:]  # 2 = usage or broker error
    verdicts = [orjson.loads(line) for line in verify.stdout.splitlines() if line.startswith("{")]
    assert verdicts, verify.stderr[-2000:]
    assert all(v["key_id"] == pipeline_run["pkey"].key_id for v in verdicts)
    assert not [v for v in verdicts if "bad_signature" in {r["code"] for r in v["reasons"]}]
    ok_hosts = {v["host_id"] for v in verdicts if v["ok"]}
    assert set(pipeline_run["proofs"]) <= ok_hosts, [v for v in verdicts if not v["ok"]][:3]


def test_no_log_holds_a_password_or_private_key(secure, pipeline_run):
    paths = secure.paths
    from hmconfig.acls import ADMIN, ROLES

    keys = [paths.key(u) for u in (*ROLES, ADMIN)] + [paths.key("ca"), paths.cert("broker")]
    keys += [pipeline_run["pstate"] / "processor.key", pipeline_run["cstate"] / "host.key"]
    needles = secret_needles(*keys, passwords=[secure.password(u) for u in (*ROLES, ADMIN)])
    logs = logs_under(pipeline_run["base"], paths.root, secure.settings.state_dir)
    names = {p.name for p in logs}
    assert {"broker.log", "process.log", "collect.log", "simulate.log", "config-show.out", "in-process.log"} <= names
    assert sum(p.stat().st_size for p in logs) > 10_000, "the logs are suspiciously empty"
    leaks = [(p.name, what) for p in logs for what, needle in needles.items()
             if needle in p.read_text(errors="replace")]
    assert leaks == []
    # The one place a password is handed over on purpose is masked in `config show`.
    assert "kafka_sasl_password = '**********'" in (pipeline_run["base"] / "config-show.out").read_text()
