"""Spool faults: a corrupted segment (flipped bytes and a truncated tail) and a full disk
(a small tmpfs as the agent's state directory).

Invariants: the agent reports what it lost, keeps everything else, never crash-loops, and
every record its spool acknowledged is on its topic.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from chaos_harness import Procs, Tally, check_collector_delivery, host_records, left_in_spool, spool_state, wait_for
from schemas.keys import SigningKey

DEAD = "127.0.0.1:9"  # discard port: nothing listens, so the agent spools


def _collector(procs: Procs, name: str, settings, state, bootstrap: str | None = None):
    env = procs.env(settings, state, HMTEL_SPOOL_FSYNC_INTERVAL_MS="0")
    if bootstrap:
        env["HMTEL_KAFKA_BOOTSTRAP"] = bootstrap
    return procs.spawn(name, ["collect", "--metrics-listen", "", "--usage-interval", "0.1"], env)


def test_corrupted_spool_segment_is_reported_and_the_rest_delivered(chaos_broker, tmp_path):
    settings = chaos_broker.settings
    procs = Procs(tmp_path)
    state = tmp_path / "collector"
    try:
        offline = _collector(procs, "offline", settings, state, bootstrap=DEAD)
        wait_for(lambda: sum(p.stat().st_size for p in (state / "spool").glob("seg-*.log")) > 40_000, 60,
                 "the offline agent to spool 40 kB")
        offline.send_signal(signal.SIGKILL)
        offline.wait(10)
        seg = max((state / "spool").glob("seg-*.log"), key=lambda p: p.stat().st_size)
        data = bytearray(seg.read_bytes())
        at = len(data) * 2 // 5
        for i in range(at, at + 24):  # flip bytes in the middle of a frame run
            data[i] ^= 0xFF
        seg.write_bytes(bytes(data[:-37]))  # and tear the tail mid-frame
        online = _collector(procs, "online", settings, state)
        time.sleep(6)
        assert online.poll() is None, procs.log("online")[-3000:]
        assert procs.stop("online", 30) == 0, procs.log("online")[-3000:]
    finally:
        procs.stop_all()

    log = procs.log("online")
    st = spool_state(state)
    host = SigningKey.load_or_create(state, "host.key").host_id
    seqs = host_records(settings, host)
    tally = Tally("spool-corrupt")
    check_collector_delivery(tally, seqs, -1, 0)  # holes only; acked loss below
    holes, tally.lost = tally.lost, 0
    distinct = tally.delivered
    tally.sent = st["acked"] + 1 + left_in_spool(log)
    tally.acked = st["acked"] + 1
    # The corrupted records never reached Kafka and are reported; every other acked one is there.
    tally.lost = max(0, tally.acked - st["corrupt_records_total"] - distinct)
    tally.notes += [f"reported corrupt: {st['corrupt_records_total']} records, {st['corrupt_bytes_total']} bytes",
                    f"seq holes on the topics: {holes}"]
    tally.report()
    assert "corrupt bytes" in log, log[-2000:]
    assert st["corrupt_records_total"] >= 1 and st["corrupt_bytes_total"] >= 24
    assert holes <= st["corrupt_records_total"], "more records missing than the agent reported lost"
    assert tally.lost == 0, tally.line()
    assert "restarting" not in log, "a source crash-looped"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_full_disk_is_survived_and_reported(chaos_broker, tmp_path):
    settings = chaos_broker.settings
    procs = Procs(tmp_path)
    state = tmp_path / "collector"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        agent = _collector(procs, "agent", settings, state)
        wait_for(lambda: (state / "host.key").exists() and (state / "spool").exists(), 60, "the agent to start")
        time.sleep(2)
        free = shutil.disk_usage(state).free
        filler = state / "filler"
        with open(filler, "wb") as f:  # leave ~8 kB: a few records, then ENOSPC
            f.write(b"\0" * max(0, free - 8192))
        time.sleep(6)
        assert agent.poll() is None, "the agent died on a full disk:\n" + procs.log("agent")[-3000:]
        filler.unlink()
        time.sleep(4)
        assert agent.poll() is None, procs.log("agent")[-3000:]
        assert procs.stop("agent", 30) == 0, procs.log("agent")[-3000:]
        st = spool_state(state)
        host = SigningKey.load_or_create(state, "host.key").host_id
    finally:
        procs.stop_all()
        subprocess.run(["umount", "-l", str(state)], check=False)

    log = procs.log("agent")
    seqs = host_records(settings, host)
    tally = Tally("spool-full-disk")
    check_collector_delivery(tally, seqs, st["acked"], 0)
    holes_or_short = tally.lost
    distinct = tally.delivered
    tally.sent = st["acked"] + 1 + left_in_spool(log)
    tally.lost = max(0, st["acked"] + 1 - distinct)  # acknowledged but not on the topic
    enospc = log.count("No space left on device")
    tally.notes += [f"ENOSPC reports in the log: {enospc}", f"seq holes: {holes_or_short}"]
    tally.report()
    assert enospc >= 1, "the full disk was not reported:\n" + log[-2000:]
    assert tally.lost == 0, tally.line()
    assert holes_or_short == 0, f"a record that could not be spooled took a seq: {tally.line()}"
    # After space came back the agent kept publishing: the newest usage seq is past the fill.
    assert max(max(v) for (schema, _b), v in seqs.items() if schema == "hm.usage.v1") > 20
