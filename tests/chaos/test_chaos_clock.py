"""Clock jumps: a host whose clock jumps +10 min, then -10 min, then comes back.

Invariants: every record stamped with the jumped clock comes back on hm.rejected.v1 with
exactly ``clock_skew``; the good records around them make proofs that verify, whose
chain is contiguous and whose windows lie only where the true clock was.
"""
from __future__ import annotations

import asyncio
import base64
import time

import orjson

from hmtel_testing.chains import check_proof_chains
from chaos_harness import Procs, Tally, proofs_by_host, read_topic, wait_for
from hmconfig.kafka_clients import make_producer, start_with_retry
from processors.simulator import SimHost
from schemas.keys import SigningKey

S = 1_000_000
JUMP_S = 600
WINDOW_S = 5


async def send_host(settings, host: SimHost, plan: list[tuple[float, int]]) -> tuple[int, list[bytes], list[bytes]]:
    """Send the inventory, then one usage record per (wall offset s, clock error s); returns
    (acked count, values of the skewed records, values of all usage records)."""
    producer = await start_with_retry(lambda: make_producer(settings), settings)
    skewed, acked, sent_values = [], 0, []
    try:
        t0 = time.time()
        futs = [await producer.send(*_args(host.message("hm.inventory.v1", host.inventory(int(t0 * S)))))]
        for at, error_s in plan:
            await asyncio.sleep(max(0.0, t0 + at - time.time()))
            msg = host.message("hm.usage.v1", host.usage(int((time.time() + error_s) * S), elapsed_s=0.5))
            sent_values.append(msg[2])
            if error_s:
                skewed.append(msg[2])
            futs.append(await producer.send(*_args(msg)))
        for fut in futs:
            await fut
            acked += 1
    finally:
        await producer.stop()
    return acked, skewed, sent_values


def _args(msg):
    topic, key, value, headers = msg
    return topic, value, key, None, None, headers


def test_clock_jumps_give_clock_skew_not_bad_proofs(chaos_broker, tmp_path):
    settings = chaos_broker.settings
    procs = Procs(tmp_path)
    pstate = tmp_path / "processor"
    host = SimHost(1, seed=f"chaos-clock-{time.time_ns()}", interval_s=0.5)
    # 0.5 s samples for 30 s: +10 min from 10 s to 13 s, -10 min from 13 s to 16 s.
    plan = [(i * 0.5, JUMP_S if 20 <= i < 26 else -JUMP_S if 26 <= i < 32 else 0) for i in range(60)]
    try:
        procs.spawn("process", ["process"], procs.env(
            settings, pstate, HMTEL_PROCESSOR_APP_ID=f"chaos-clock-{time.time_ns()}", HMTEL_PROOF_WINDOW_S=str(WINDOW_S),
            HMTEL_PROOF_GRACE_S="5", HMTEL_PROCESSOR_TICK_S="0.5", HMTEL_UNKNOWN_HOST_GRACE_S="10",
            HMTEL_PROCESSOR_OFFSET_RESET="latest", HMTEL_LOG_LEVEL="WARNING"))
        wait_for(lambda: "ready:" in procs.log("process"), 90, "the processor to be ready")
        acked, skewed, sent_values = asyncio.run(send_host(settings, host, plan))
        key = SigningKey.load_or_create(pstate, "processor.key")

        def rejected() -> dict[bytes, list[str]]:
            out: dict[bytes, list[str]] = {}
            for msg in read_topic(settings, "hm.rejected.v1"):
                rej = orjson.loads(msg.value)
                if rej.get("host_id") == host.host_id:
                    out.setdefault(base64.b64decode(rej["original_b64"]), []).append(rej["reason"])
            return out

        wait_for(lambda: len(rejected()) >= len(skewed), 60, "the skewed records' rejections", poll_s=2)
        # The last good window closes after the grace period by processor time.
        wait_for(lambda: len(proofs_by_host(settings, key.key_id, key.public_key_raw).get(host.host_id, {})) >= 2,
                 60, "proofs for the host", poll_s=2)
    finally:
        procs.stop_all()

    reasons = rejected()
    proofs = proofs_by_host(settings, key.key_id, key.public_key_raw)
    distinct, dup, problems = check_proof_chains({host.host_id: proofs.get(host.host_id, {})})
    wrong = [r for v, r in reasons.items() if v in skewed and r != ["clock_skew"]]
    missing = [v for v in skewed if v not in reasons]
    # Window-level verdicts (insufficient_evidence for the windows the jump emptied) are not records.
    good_rejected = [r for v, r in reasons.items() if v in sent_values and v not in skewed]
    tally = Tally("clock-jump", sent=len(plan) + 1, acked=acked, delivered=len(plan) + 1 - len(skewed),
                  duplicated=dup, lost=len(missing) + len(good_rejected),
                  notes=[f"{len(skewed)} skewed records -> clock_skew {sum(r == ['clock_skew'] for r in reasons.values())}",
                         f"proofs={distinct}"])
    tally.report()
    assert not missing and not wrong, (missing[:2], wrong[:2])
    assert not good_rejected, good_rejected
    assert problems == [] and dup == 0, problems
    now_us = time.time() * S
    for copies in proofs[host.host_id].values():
        window = orjson.loads(copies[0])["window"]
        assert abs(window["start_us"] - now_us) < 120 * S, f"a proof window at the jumped clock: {window}"
