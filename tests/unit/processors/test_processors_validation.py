"""The record-level rules, one by one."""
import pytest

from processors import validation as v
from processors.config import ProcessorConfig, parse_enrollment, EnrollmentError
from processors.simulator import SimHost

CFG = ProcessorConfig()
NOW = 1_800_000_000_000_000


def test_malformed():
    for bad in (b"{x", b"[1,2]", b'"s"', None):
        with pytest.raises(v.Rejection) as e:
            v.parse(bad)
        assert e.value.code == "malformed"


def test_schema_wrong_name_and_wrong_type():
    h = SimHost(1)
    rec = h.usage(NOW)
    with pytest.raises(v.Rejection) as e:
        v.check_schema({**rec, "schema": "hm.ebpf.v1"}, "hm.usage.v1")
    assert e.value.code == "schema" and e.value.check == "schema_name"
    with pytest.raises(v.Rejection) as e:
        v.check_schema({**rec, "seq": "x"}, "hm.usage.v1")
    assert e.value.code == "schema"
    assert v.check_schema(rec, "hm.usage.v1") == "hm.usage.v1"


@pytest.mark.parametrize("path", [("disk", "read_bytes"), ("network", "tx_bytes"),
                                  ("load", "psi", "io", "some_total_us"), ("memory", "used_bytes")])
def test_counters_past_u64_are_schema_rejections(path):
    """A byte count or kernel counter is u64 where a host reads it: 2**64 - 1 passes, 2**64 cannot
    come from a host (its aggregates would show absurd rates; its proof figures could not be
    written)."""
    rec = SimHost(1).usage(NOW)
    rec.setdefault("memory", {})
    *parents, leaf = path
    section = rec
    for key in parents:
        section = section[key]
    section[leaf] = 2**64 - 1
    assert v.check_schema(rec, "hm.usage.v1") == "hm.usage.v1"
    section[leaf] = 2**64
    with pytest.raises(v.Rejection) as e:
        v.check_schema(rec, "hm.usage.v1")
    assert e.value.code == "schema" and leaf in e.value.detail


def test_signature_and_key_rules():
    h, other = SimHost(1), SimHost(2)
    inv = h.inventory(NOW)
    _, _, value, headers = h.message("hm.inventory.v1", inv)
    assert v.check_identity(inv, "hm.inventory.v1", value, headers, None, CFG) == inv["public_key"]
    with pytest.raises(v.Rejection) as e:  # no headers
        v.check_identity(inv, "hm.inventory.v1", value, [], None, CFG)
    assert e.value.code == "bad_signature"
    with pytest.raises(v.Rejection) as e:  # tampered bytes
        v.check_identity(inv, "hm.inventory.v1", value.replace(b"sim-1", b"sim-9"), headers, None, CFG)
    assert e.value.code == "bad_signature"
    with pytest.raises(v.Rejection) as e:  # key is not the host_id's
        v.check_identity({**inv, "public_key": other.inventory(NOW)["public_key"]}, "hm.inventory.v1",
                         value, headers, None, CFG)
    assert e.value.code == "key_mismatch" and e.value.check == "host_id"
    with pytest.raises(v.Rejection) as e:  # differs from the pinned key
        v.check_identity(inv, "hm.inventory.v1", value, headers, other.inventory(NOW)["public_key"], CFG)
    assert e.value.code == "key_mismatch" and e.value.check == "key_pinning"
    usage = h.usage(NOW)
    _, _, uvalue, uheaders = h.message("hm.usage.v1", usage)
    with pytest.raises(v.Rejection) as e:  # unknown host: nothing pinned
        v.check_identity(usage, "hm.usage.v1", uvalue, uheaders, None, CFG)
    assert e.value.code == "key_mismatch"
    assert v.check_identity(usage, "hm.usage.v1", uvalue, uheaders, inv["public_key"], CFG) == inv["public_key"]


def test_signatures_worked_out_ahead_give_the_same_answers():
    """verify_many (run in threads for a batch) answers exactly as verify(); check_identity takes its
    answer for the exact (key, schema, value, sig) and verifies anything else itself."""
    import base64

    h = SimHost(1)
    pub_b64 = h.inventory(NOW)["public_key"]
    pub = base64.b64decode(pub_b64)
    usage = h.usage(NOW)
    _, _, value, headers = h.message("hm.usage.v1", usage)
    sig = v.header(headers, "hm-sig")
    tampered = value.replace(b'"seq":', b'"seq": ')
    jobs = [(pub, "hm.usage.v1", value, sig), (pub, "hm.usage.v1", tampered, sig),
            (pub, "hm.inventory.v1", value, sig), (pub, "hm.usage.v1", value, b"not base64!")]
    answers = v.verify_many(jobs)
    assert answers == {job: v.verify(*job) for job in jobs}
    assert list(answers.values()) == [True, False, False, False]
    verified = {jobs[0]: True}
    assert v.check_identity(usage, "hm.usage.v1", value, headers, pub_b64, CFG, verified) == pub_b64
    with pytest.raises(v.Rejection) as e:  # bytes not in the cache: verified here, and refused
        v.check_identity(usage, "hm.usage.v1", tampered, headers, pub_b64, CFG, verified)
    assert e.value.code == "bad_signature"


def test_strict_mode_enrollment():
    h, other = SimHost(1), SimHost(2)
    enrolled = parse_enrollment(f"# fleet\n{h.host_id} {h.inventory(NOW)['public_key']}\n")
    cfg = ProcessorConfig(enrolled=enrolled)
    inv = other.inventory(NOW)
    _, _, value, headers = other.message("hm.inventory.v1", inv)
    with pytest.raises(v.Rejection) as e:
        v.check_identity(inv, "hm.inventory.v1", value, headers, None, cfg)
    assert e.value.code == "key_mismatch" and e.value.check == "enrollment"
    inv = h.inventory(NOW)
    _, _, value, headers = h.message("hm.inventory.v1", inv)
    assert v.check_identity(inv, "hm.inventory.v1", value, headers, None, cfg)
    with pytest.raises(EnrollmentError):
        parse_enrollment(f"{h.host_id} {other.inventory(NOW)['public_key']}\n")


def test_duplicate_tracking_and_gaps():
    seqs: dict = {}
    assert v.seq_status(seqs, "s", "b1", 5) == "first"
    assert v.mark_seen(seqs, "s", "b1", 5) == []          # first sight: earlier seqs are not gaps
    assert v.seq_status(seqs, "s", "b1", 5) == "duplicate"
    assert v.mark_seen(seqs, "s", "b1", 6) == []
    assert v.mark_seen(seqs, "s", "b1", 10) == [[7, 9]]   # 7, 8, 9 missing
    assert v.seq_status(seqs, "s", "b1", 8) == "fill"     # a late fill is accepted once
    v.mark_seen(seqs, "s", "b1", 8)
    assert v.seq_status(seqs, "s", "b1", 8) == "duplicate"
    assert v.seq_status(seqs, "s", "b2", 0) == "first"    # a new boot restarts seqs
    v.mark_seen(seqs, "s", "b2", 0)
    v.mark_seen(seqs, "s", "b3", 0)
    assert list(seqs["s"]) == ["b2", "b3"]                # only the last two boots are kept


def test_time_rules():
    v.check_time(NOW - 299_000_000, NOW, CFG)
    for ts, code in ((NOW - 301_000_000, "clock_skew"), (NOW + 301_000_000, "clock_skew"),
                     (NOW - 25 * 3600 * 1_000_000, "stale")):
        with pytest.raises(v.Rejection) as e:
            v.check_time(ts, NOW, CFG)
        assert e.value.code == code


def test_counter_regression_within_boot():
    h = SimHost(1)
    a = h.usage(NOW)
    b = h.usage(NOW + 1_000_000)
    v.check_counters(v.counters_of(a), b)
    b["network"]["tx_bytes"] = a["network"]["tx_bytes"] - 1
    with pytest.raises(v.Rejection) as e:
        v.check_counters(v.counters_of(a), b)
    assert e.value.code == "counter_regression" and e.value.check == "network.tx_bytes"
    v.check_counters(None, b)  # no baseline (a new boot): nothing to compare


def test_over_capacity():
    h = SimHost(1)
    rec = h.usage(NOW, elapsed_s=1.0)
    rec["cpu"]["busy_core_s"] = 4 * 1.0 * 1.05  # exactly at the limit passes
    v.check_capacity(rec, None, CFG)
    rec["cpu"]["busy_core_s"] = 4.3
    with pytest.raises(v.Rejection) as e:
        v.check_capacity(rec, None, CFG)
    assert e.value.code == "over_capacity"
    rec["cpu"]["busy_core_s"] = 1.0
    rec["memory"]["used_bytes"] = rec["memory"]["total_bytes"] + 1
    with pytest.raises(v.Rejection) as e:
        v.check_capacity(rec, None, CFG)
    assert e.value.check == "memory.used_bytes"
    rec["memory"]["used_bytes"] = 1
    with pytest.raises(v.Rejection):  # the inventory's core count wins over the record's
        v.check_capacity({**rec, "cpu": {**rec["cpu"], "busy_core_s": 3.0}}, {"cores": 2}, CFG)
