"""The engine end to end without a broker: proofs, chains, windows and every rejection code."""
import base64
import hashlib

import orjson
import pytest
from nacl.signing import VerifyKey

from processors import proofs
from processors.config import ProcessorConfig
from processors.engine import Engine, Signer, decode, new_state
from processors.simulator import RECORD_BAD_KINDS, SimHost, bad_record
from processors.validation import Rejection
from schemas.dsse import pae
from schemas.keys import SigningKey

S = 1_000_000
T0 = 1_800_000_000 * S  # aligned to 10 s windows
BOOT2 = "00000000-0000-0000-0000-0000000000b2"
CFG = ProcessorConfig(proof_window_s=10, proof_grace_s=5, agg_windows_s={"10s": 2, "1m": 10}, agg_grace_s=1)


@pytest.fixture
def key(tmp_path):
    return SigningKey.load_or_create(tmp_path, "processor.key")


@pytest.fixture
def signer(key):
    return Signer(key.key_id, lambda data: proofs.sign(data, key.private_key, key.key_id))


class Rig:
    """One host's state fed through the engine like the app does."""

    def __init__(self, cfg=CFG, host=None):
        self.engine = Engine(cfg)
        self.host = host or SimHost(1)
        self.state = new_state(self.host.host_id)

    def feed(self, msg, now_us):
        topic, _key, value, headers = msg
        record, schema = decode(topic, value)
        self.engine.ingest(self.state, record, schema, value, headers, now_us)
        return record

    def send(self, topic, record, now_us=None):
        return self.feed(self.host.message(topic, record), now_us or record["ts"])

    def outbox(self, topic):
        return [orjson.loads(v) for t, _k, v, _h in self.state["outbox"] if t == topic]


def payload_of(envelope):
    return orjson.loads(base64.b64decode(envelope["payload"]))


def test_full_window_proof_by_hand(key, signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    values = []
    for i in range(11):  # 10 samples in [T0, T0+10s) and one past the end (moves the watermark)
        rec = rig.host.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.5)
        msg = rig.host.message("hm.usage.v1", rec)
        rig.feed(msg, rec["ts"])
        if i < 10:
            values.append(msg[2])
    assert rig.engine.close_due(rig.state, T0 + 10 * S + 1, signer) >= 1
    [env] = rig.outbox("hm.proofs.v1")
    data = base64.b64decode(env["payload"])
    VerifyKey(key.public_key_raw).verify(pae(env["payloadType"], data), base64.b64decode(env["signatures"][0]["sig"]))
    p = orjson.loads(data)
    assert p["proof_id"] == hashlib.sha256(f"{rig.host.host_id}:{T0}:{10 * S}".encode()).hexdigest()
    assert p["seq"] == 0 and p["prev_proof_hash"] is None
    assert p["window"] == {"start_us": T0, "end_us": T0 + 10 * S, "length_s": 10.0}
    assert p["work"]["cpu_core_seconds_used"] == pytest.approx(10 * 0.5 * 4 * 1.0)   # 20 core-s
    assert p["work"]["cpu_core_seconds_capacity"] == 40
    ev = p["evidence"]
    assert (ev["samples"], ev["expected_samples"], ev["coverage"]) == (10, 10, 1.0)
    assert (ev["first_seq"], ev["last_seq"], ev["gaps"]) == (0, 9, 0)
    digest = b"\0" * 32
    for value in values:
        digest = hashlib.sha256(digest + hashlib.sha256(value).digest()).digest()
    assert ev["input_digest"] == digest.hex()
    assert p["inventory_hash"] == rig.host.inventory(T0)["inventory_hash"]
    assert p["space"]["storage_by_type"]["nvme"]["total_bytes"] == 512 << 30
    assert p["space"]["storage_total_bytes"] == (512 + 4096) << 30
    assert p["stake"]["entity_id"] == p["stake"]["host_key_id"] == hashlib.sha256(rig.host.public_raw).hexdigest()
    assert rig.outbox("hm.rejected.v1") == []
    # the next window links to this one by hash, with the next seq
    for i in range(11, 21):
        rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.5))
    rig.engine.close_due(rig.state, T0 + 25 * S, signer)
    first, second = rig.outbox("hm.proofs.v1")
    assert payload_of(second)["seq"] == 1
    assert payload_of(second)["prev_proof_hash"] == hashlib.sha256(base64.b64decode(first["payload"])).hexdigest()


def test_a_rebuilt_proof_is_byte_identical(signer):
    outs = []
    for _ in range(2):
        rig = Rig(host=SimHost(3))
        rig.host.boot_id = "00000000-0000-0000-0000-000000000003"
        rig.send("hm.inventory.v1", rig.host.inventory(T0))
        for i in range(10):
            rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.25), now_us=T0 + i * S)
        rig.engine.close_due(rig.state, T0 + 15 * S, signer)
        outs.append(rig.state["outbox"])
    assert outs[0] == outs[1] and any(t == "hm.proofs.v1" for t, *_ in outs[0])


def test_byte_counters_deltas_gaps_and_boot_change(signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    h = rig.host

    def sample(i, read, rate, boot=None, seq=None):
        rec = h.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.1)
        rec["disk"]["read_bytes"], rec["disk"]["read_bytes_per_s"] = read, rate
        if boot:
            rec["boot_id"] = boot
        if seq is not None:
            rec["seq"] = seq
        return rig.send("hm.usage.v1", rec)

    sample(0, 1000, 100.0)           # no baseline: rate x elapsed = 100
    sample(1, 1500, 999.0)           # delta 500
    sample(2, 1700, 999.0)           # delta 200
    sample(5, 2000, 999.0, seq=5)    # seqs 3 and 4 never arrive: a gap of 2; delta 300 still counts
    sample(6, 40, 7.0, boot=BOOT2, seq=0)  # reboot: counters restart, not a regression; 7 x 1 s
    sample(7, 50, 999.0, boot=BOOT2, seq=1)  # delta 10 on the new boot
    rig.engine.close_due(rig.state, T0 + 30 * S, signer)
    rejected = rig.outbox("hm.rejected.v1")
    assert [r["reason"] for r in rejected] == ["insufficient_evidence"]  # 6 of 10 samples
    p = orjson.loads(base64.b64decode(rejected[0]["original_b64"]))
    assert p["work"]["disk_read_bytes"] == 100 + 500 + 200 + 300 + 7 + 10
    assert p["evidence"]["gaps"] == 2 and p["evidence"]["gap_ranges"] == [[3, 4]]
    assert (p["boot_id"], p["evidence"]["first_seq"], p["evidence"]["last_seq"]) == (BOOT2, 0, 1)
    assert rig.outbox("hm.proofs.v1") == [] and rig.state["chain"]["seq"] == 0  # withheld: chain unmoved


def test_window_over_capacity_withholds(signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(10):  # each sample fits (6.0 <= 4 x 1.5 x 1.05) but the window claims 60 > 40 x 1.05
        rec = rig.host.usage(T0 + i * S, elapsed_s=1.5, utilisation=0.5)
        rec["cpu"]["busy_core_s"] = 6.0
        rig.send("hm.usage.v1", rec)
    rig.engine.close_due(rig.state, T0 + 20 * S, signer)
    assert [r["reason"] for r in rig.outbox("hm.rejected.v1")] == ["over_capacity"]
    assert rig.outbox("hm.proofs.v1") == []


def test_source_disagreement_flags_but_issues(signer):
    rig = Rig(host=SimHost(1, ebpf_skew=0.5))
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(10):
        rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.5))
    rig.send("hm.ebpf.v1", rig.host.ebpf_sched(T0 + 9 * S, procfs_busy_s=20.0, elapsed_s=10.0))
    rig.engine.close_due(rig.state, T0 + 20 * S, signer)
    [rej] = rig.outbox("hm.rejected.v1")
    assert rej["reason"] == "source_disagreement" and rej["check"] == "proof_window"
    [env] = rig.outbox("hm.proofs.v1")
    p = payload_of(env)
    assert p["flags"] == ["source_disagreement"] and p["evidence"]["ebpf_procfs_cpu_agreement"] == 0.5
    assert p["work"]["ebpf"]["oncpu_ns"] == 10 * S * 1000
    assert p["work"]["ebpf"]["runq_latency_p99_us"] == 256  # {"2": 50, "4": 30, "7": 5}: rank 85 -> bucket 7
    assert "ebpf" in p["evidence"]["sources"]


def test_aggregates_emitted_once_per_window(signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(5):
        rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0, utilisation=0.2 * (i + 1) / 2))
    rig.engine.close_due(rig.state, T0 + 5 * S, signer)   # watermark at 4 s: windows [0,2) and [2,4) close
    rig.engine.close_due(rig.state, T0 + 5 * S, signer)   # nothing new closes twice
    aggs = rig.outbox("hm.usage.agg.10s.v1")
    assert [a["window"]["start_us"] for a in aggs] == [T0, T0 + 2 * S]
    assert [a["seq"] for a in aggs] == [0, 1]
    assert aggs[0]["samples"] == 2 and aggs[0]["cpu"]["utilisation_avg"] == pytest.approx(0.15)
    assert aggs[0]["agg_id"] == f"{rig.host.host_id}/10s/{T0}/{2 * S}"
    assert [k for t, k, *_ in rig.state["outbox"] if t == "hm.usage.agg.10s.v1"][0] == aggs[0]["agg_id"]


@pytest.mark.parametrize("kind", RECORD_BAD_KINDS)
def test_each_bad_record_gets_exactly_its_code(kind):
    rig = Rig()
    now = T0
    rig.send("hm.inventory.v1", rig.host.inventory(now))
    rig.send("hm.usage.v1", rig.host.usage(now, elapsed_s=1.0))
    before = orjson.dumps(rig.state)
    with pytest.raises(Rejection) as e:
        rig.feed(bad_record(kind, rig.host, now + S), now + S)
    assert e.value.code == kind
    if kind != "duplicate":  # a refused record leaves the state as it was (duplicates are counted)
        assert orjson.dumps(rig.state) == before


def test_duplicate_is_counted_not_reaggregated(signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    msg = rig.host.message("hm.usage.v1", rig.host.usage(T0, elapsed_s=1.0))
    rig.feed(msg, T0)
    with pytest.raises(Rejection):
        rig.feed(msg, T0)
    acc = rig.state["windows"]["proof"][str(T0)]
    assert acc["n"] == 1 and rig.state["counts"]["duplicates"] == 1


def test_late_record_for_a_closed_window(signer):
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    rig.send("hm.usage.v1", rig.host.usage(T0, elapsed_s=1.0))
    rig.engine.close_due(rig.state, T0 + 16 * S, signer)
    with pytest.raises(Rejection) as e:
        rig.send("hm.usage.v1", rig.host.usage(T0 + 2 * S, elapsed_s=1.0), now_us=T0 + 16 * S)
    assert e.value.code == "late"


def test_usage_before_inventory_is_key_mismatch():
    rig = Rig()
    with pytest.raises(Rejection) as e:
        rig.send("hm.usage.v1", rig.host.usage(T0))
    assert e.value.code == "key_mismatch" and e.value.check == "key_pinning"


def test_outputs_match_their_schemas(signer):
    import schemas

    rig = Rig(host=SimHost(4, ebpf_skew=0.5))
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(11):
        rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0))
    rig.send("hm.ebpf.v1", rig.host.ebpf_sched(T0 + 9 * S, procfs_busy_s=20.0, elapsed_s=10.0))
    rig.engine.close_due(rig.state, T0 + 20 * S, signer)
    topics = set()
    for topic, _key, value, _host in rig.state["outbox"]:
        obj = orjson.loads(value)
        topics.add(topic)
        if topic == "hm.proofs.v1":
            schemas.validate("hm.proof.v1", payload_of(obj))
        else:
            schemas.validate(obj["schema"], obj)
    assert topics == {"hm.proofs.v1", "hm.rejected.v1", "hm.usage.agg.10s.v1", "hm.usage.agg.1m.v1"}


def proof_starts(rig):
    return [payload_of(e)["window"]["start_us"] for e in rig.outbox("hm.proofs.v1")]


def test_a_backlog_older_than_the_grace_closes_each_window_once_its_records_are_in(signer):
    """A worker catching up a minute behind: the windows are long past end + grace (5 s) by
    processor time, but the host's records keep coming, so each window waits for its own records
    (the watermark) instead of closing at its first record and filing the rest as late."""
    rig = Rig()
    now = T0 + 60 * S
    rig.send("hm.inventory.v1", rig.host.inventory(T0), now_us=now)
    for i in range(25):  # two full 10 s proof windows and half of a third
        now += S // 10  # the backlog drains at 10 records per processor second
        rig.send("hm.usage.v1", rig.host.usage(T0 + i * S, elapsed_s=1.0), now_us=now)
        rig.engine.close_due(rig.state, now, signer)  # the timer runs throughout
    assert rig.state["counts"]["late"] == 0
    assert proof_starts(rig) == [T0, T0 + 10 * S]
    assert [payload_of(e)["evidence"]["samples"] for e in rig.outbox("hm.proofs.v1")] == [10, 10]
    rig.engine.close_due(rig.state, now + 4 * S, signer)  # not silent for the grace (5 s) yet
    assert len(proof_starts(rig)) == 2
    rig.engine.close_due(rig.state, now + 5 * S, signer)  # silent since: the third window closes
    assert proof_starts(rig) == [T0, T0 + 10 * S]  # ... withheld, 5 of 10 samples
    assert [r["reason"] for r in rig.outbox("hm.rejected.v1")] == ["insufficient_evidence"]


def test_a_topic_that_stops_is_not_waited_for_past_the_grace(signer):
    """eBPF stops mid-window while usage goes on: the window waits for eBPF only until it has been
    silent for the grace, then closes on usage alone, and the windows behind it follow."""
    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(30):
        t = T0 + i * S
        rig.send("hm.usage.v1", rig.host.usage(t, elapsed_s=1.0))
        if i < 5:
            rig.send("hm.ebpf.v1", rig.host.ebpf_sched(t, procfs_busy_s=0.5, elapsed_s=1.0))
        rig.engine.close_due(rig.state, t, signer)
        if i == 12:  # end + 2 s: eBPF's watermark (4 s) holds the first window open
            assert proof_starts(rig) == []
    # the first window's end + grace (15 s) passed while eBPF was silent: it closed, then the second
    assert proof_starts(rig) == [T0, T0 + 10 * S]


def test_figures_no_proof_can_carry_withhold_and_never_raise(signer):
    """Signed records within every rule (each counter u64) whose byte counts over the window still
    sum past 2**64 (a counter near 2**64 in each of four boots) make the window's byte figures
    unwritable: the proof is withheld as malformed, the chain does not move, and the close does
    not raise (a timer's error stops a faust worker, at every restart)."""
    import uuid

    rig = Rig()
    rig.send("hm.inventory.v1", rig.host.inventory(T0))
    for i in range(8):
        if i % 2 == 0:
            rig.host.boot_id = str(uuid.uuid4())
        rec = rig.host.usage(T0 + i * S, elapsed_s=1.0)
        rec["network"]["rx_bytes"] = float(2**64 - 2**12) if i % 2 else 0.0
        rig.send("hm.usage.v1", rec)
    assert rig.outbox("hm.rejected.v1") == []
    rig.engine.close_due(rig.state, T0 + 20 * S, signer)
    rejected = rig.outbox("hm.rejected.v1")
    assert [(r["reason"], r["check"]) for r in rejected] == [("malformed", "proof_window")]
    assert "cannot be written" in rejected[0]["detail"]
    import schemas

    schemas.validate("hm.rejected.v1", rejected[0])
    assert rig.outbox("hm.proofs.v1") == [] and rig.state["chain"] == {"seq": 0, "prev_hash": None}
    assert rig.state["closed"]["proof"] == T0 + 10 * S
