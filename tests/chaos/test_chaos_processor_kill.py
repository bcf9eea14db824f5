"""Processor SIGKILL during a window close and during a rebalance, under `hmtel simulate`.

Kills: just after a window boundary; exactly between sending a window's outputs and clearing
its outbox (the worker's `after_output_send` failpoint); and a second worker during a rebalance.
Invariants afterwards: every proof verifies; no proof_id is written twice (the restarted
worker reads back what landed before it re-sends: processors/delivered.py, and it must
have found some); each host's chain is
contiguous from 0 and linked; and every simulated host keeps getting proofs.
"""
from __future__ import annotations

import re
import signal
import time

from hmtel_testing.chains import check_proof_chains
from chaos_harness import Procs, Tally, proofs_by_host, wait_for
from schemas.keys import SigningKey

HOSTS = 50
LOAD_S = 40
WINDOW_S = 5


def test_processor_sigkill_at_window_close_and_in_a_rebalance(chaos_broker, tmp_path):
    settings = chaos_broker.settings
    procs = Procs(tmp_path)
    pstate = tmp_path / "processor"
    app_id = f"chaos-pkill-{time.time_ns()}"
    env = procs.env(settings, pstate, HMTEL_PROCESSOR_APP_ID=app_id, HMTEL_PROOF_WINDOW_S=str(WINDOW_S),
                    HMTEL_PROOF_GRACE_S="5", HMTEL_AGG_GRACE_S="5", HMTEL_PROCESSOR_TICK_S="0.5",
                    HMTEL_UNKNOWN_HOST_GRACE_S="20", HMTEL_PROCESSOR_OFFSET_RESET="latest",
                    HMTEL_LOG_LEVEL="WARNING")
    kills: list[str] = []
    try:
        procs.spawn("worker-a", ["process", "--worker-name", "a"], env)
        wait_for(lambda: "ready:" in procs.log("worker-a"), 90, "worker a to be ready")
        sim = procs.spawn("simulate", ["simulate", "--hosts", str(HOSTS), "--rate", "2", "--duration", str(LOAD_S)],
                          procs.env(settings, tmp_path / "simulate"))
        # 1. During a window close: just after a window boundary (by the wall clock the hosts stamp).
        key = SigningKey.load_or_create(pstate, "processor.key")  # worker a made it
        wait_for(lambda: len(proofs_by_host(settings, key.key_id, key.public_key_raw)) > 0, 60,
                 "this run's first proofs", poll_s=1)
        boundary = (time.time() // WINDOW_S + 1) * WINDOW_S
        time.sleep(boundary - time.time() + 0.6)
        procs.procs["worker-a"].send_signal(signal.SIGKILL)
        procs.procs["worker-a"].wait(10)
        kills.append("a at window close")
        # 1b. Between sending a window's outputs and clearing its outbox, exactly: the restarted
        # worker kills itself there (failpoint), and the next start must not send them again.
        procs.spawn("worker-a", ["process", "--worker-name", "a"], {**env, "HMTEL_FAILPOINTS": "after_output_send"})
        assert procs.procs["worker-a"].wait(120) == -signal.SIGKILL, procs.log("worker-a")[-3000:]
        kills.append("a after sending outputs")
        procs.spawn("worker-a", ["process", "--worker-name", "a"], env)
        # 2. During a rebalance: a second worker joins; kill it while the group rebalances.
        time.sleep(4)
        procs.spawn("worker-b", ["process", "--worker-name", "b"], env)
        wait_for(lambda: "ready:" in procs.log("worker-b") or "assigned" in procs.log("worker-b"), 90,
                 "worker b to join", poll_s=0.2)
        procs.procs["worker-b"].send_signal(signal.SIGKILL)
        procs.procs["worker-b"].wait(10)
        kills.append("b in rebalance")
        sim.wait(LOAD_S + 60)
        # Every host's last full window closes within the grace after the load stops.
        time.sleep(WINDOW_S + 6)
        procs.stop("worker-a", 20)
    finally:
        procs.stop_all()

    proofs = proofs_by_host(settings, key.key_id, key.public_key_raw)
    distinct, dup, problems = check_proof_chains(proofs)
    # outputs a restarted worker found already on their topics (processors/delivered.py), not re-sent
    retried = [int(n) for n in re.findall(r"(\d+) outputs were already on their topics",
                                          procs.log("worker-a") + procs.log("worker-b"))]
    tally = Tally("processor-sigkill", sent=HOSTS * (LOAD_S * 2 + 1), acked=HOSTS * (LOAD_S * 2 + 1),
                  delivered=distinct, duplicated=dup, lost=len(problems),
                  notes=[f"kills: {', '.join(kills)}", f"{len(proofs)} hosts proved",
                         f"outbox retries {len(retried)}, outputs found already sent {sum(retried)}",
                         "sent/acked = simulated records, delivered = distinct proofs"])
    tally.report()
    assert problems == [], problems[:5]
    assert dup == 0, f"{dup} proof_ids written more than once"
    assert sum(retried) > 0, "the worker restarted after the failpoint found none of its outputs already sent"
    assert len(proofs) >= HOSTS, f"{len(proofs)} of {HOSTS} hosts got proofs"
    # (The chaos broker is shared with other scenarios; count the hosts with a real history.)
    assert sum(len(v) >= 2 for v in proofs.values()) >= HOSTS, {h[:10]: len(v) for h, v in proofs.items()}
