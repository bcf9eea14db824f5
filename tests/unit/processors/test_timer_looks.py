"""The timer's work list (processors.app.Processor: due, _look_after, _look_again): a host is looked
at only when a window could close, and every window still closes at the same tick as when the
timer looks at every host at every tick."""
from __future__ import annotations

import pytest

from hmconfig.settings import load_settings
from processors import proofs
from processors.app import Processor
from processors.config import ProcessorConfig
from processors.engine import Signer, decode, new_state
from processors.simulator import SimHost
from schemas.keys import SigningKey

S = 1_000_000
T0 = 1_800_000_000 * S  # aligned to every window
CFG = ProcessorConfig(proof_window_s=10, proof_grace_s=5, agg_windows_s={"10s": 2, "1m": 10}, agg_grace_s=1)
TICK = S // 2


@pytest.fixture
def signer(tmp_path):
    key = SigningKey.load_or_create(tmp_path, "processor.key")
    return Signer(key.key_id, lambda data: proofs.sign(data, key.private_key, key.key_id))


def live(host):
    """1 Hz usage and eBPF for 30 s, each record 0.3 s after its ts; eBPF stops after 5 s."""
    events = [(T0, host.message("hm.inventory.v1", host.inventory(T0)))]
    for i in range(30):
        t = T0 + i * S
        events.append((t + 3 * S // 10, host.message("hm.usage.v1", host.usage(t, elapsed_s=1.0))))
        if i < 5:
            events.append((t + 3 * S // 10, host.message("hm.ebpf.v1", host.ebpf_sched(t, procfs_busy_s=0.5,
                                                                                          elapsed_s=1.0))))
    return events


def backlog(host):
    """A minute behind: 25 s of usage drained at 10 records per processor second."""
    now = T0 + 60 * S
    events = [(now, host.message("hm.inventory.v1", host.inventory(T0)))]
    for i in range(25):
        events.append((now + i * S // 10, host.message("hm.usage.v1", host.usage(T0 + i * S, elapsed_s=1.0))))
    return events


def run(tmp_path, signer, events, every_tick: bool):
    """Feed the records at their processor times with the timer ticking every 0.5 s until 30 s after
    the last; returns [(tick, topic, key)] of what each close put in the outbox, and the looks."""
    settings = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    proc = Processor(settings, CFG, signer, topic_partitions={"hm.usage.v1": 6})
    engine = proc.engine
    host_id = events[0][1][1].decode()
    state = new_state(host_id)
    closed, looks = [], 0
    now = events[0][0]
    pending = list(events)
    while pending or now <= events[-1][0] + 30 * S:
        while pending and pending[0][0] <= now:
            at, (topic, _key, value, headers) = pending.pop(0)
            record, schema = decode(topic, value)
            engine.ingest(state, record, schema, value, headers, at)
            if schema != "hm.inventory.v1":
                proc._look_after(host_id, record["ts"], at)
        if every_tick or proc.due.get(host_id, now + 1) <= now:
            looks += 1
            before = len(state["outbox"])
            engine.close_due(state, now, signer)
            closed += [(now, topic, key) for topic, key, _value, _host in state["outbox"][before:]]
            proc._look_again(host_id, state, now)
        now += TICK
    return closed, looks


@pytest.mark.parametrize("scenario", [live, backlog])
def test_windows_close_at_the_same_tick_with_far_fewer_looks(tmp_path, signer, scenario):
    host = SimHost(3)
    events = scenario(host)
    every, every_looks = run(tmp_path / "a", signer, events, every_tick=True)
    listed, listed_looks = run(tmp_path / "b", signer, events, every_tick=False)
    assert len(every) >= 10, "the scenario closes windows"
    assert listed == every
    assert listed_looks * 2 < every_looks, (listed_looks, every_looks)


@pytest.mark.parametrize("windows", [dict(proof_window_s=60, agg_windows_s={"10s": 10, "1m": 60}),
                                     dict(proof_window_s=10, agg_windows_s={"a": 7, "b": 3})])
def test_record_due_us_kept_for_a_span_is_the_earliest_end_of_the_record_s_windows(windows):
    """Engine.record_due_us keeps its answer for the span where it holds: the same as working it out
    for every ts, over ts moving forward, back, across ends, and with window lengths that do not
    divide each other."""
    import random

    from processors.engine import Engine

    cfg = ProcessorConfig(proof_grace_s=5, agg_grace_s=1, **windows)
    engine = Engine(cfg)
    lengths = [int(s * S) for s in [*cfg.agg_windows_s.values(), cfg.proof_window_s]]
    rng = random.Random(7)
    ts = T0 - 1
    for _ in range(5000):
        ts += rng.choice([1, S // 3, S, -S, 7 * S, -40 * S, 1 - S % 7])
        assert engine.record_due_us(ts) == min(t - t % n + n for t, n in ((ts, n) for n in lengths)), ts
