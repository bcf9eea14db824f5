"""consumers.dashboard.state: the Board folds real-shaped records (the schema fixtures) into
the per-host model the page draws."""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consumers.dashboard.state import POINT_FIELDS, Board, agg_point, hist_p99, inventory_summary, percentile_log2
from consumers.verify import proof_id
from schemas import dsse

FIX = Path(__file__).resolve().parents[2] / "fixtures/schemas"
AGG_1M = orjson.loads((FIX / "hm.usage.agg.v1/valid/1m-with-ebpf.json").read_bytes())
AGG_10S = orjson.loads((FIX / "hm.usage.agg.v1/valid/10s.json").read_bytes())
INVENTORY = orjson.loads((FIX / "hm.inventory.v1/valid/arm64-server.json").read_bytes())
PROOF = orjson.loads((FIX / "hm.proof.v1/valid/flagged-source-disagreement.json").read_bytes())
F = {name: i for i, name in enumerate(POINT_FIELDS)}
NOW_S = AGG_1M["window"]["end_us"] / 1e6 + 30


def test_agg_point_takes_every_chart_field_from_the_record():
    p = agg_point(AGG_1M)
    assert p[F["t"]] == AGG_1M["window"]["end_us"] / 1e6
    assert p[F["cpu_utilisation"]] == AGG_1M["cpu"]["utilisation_avg"]
    assert p[F["memory_used_bytes"]] == AGG_1M["memory"]["used_bytes_avg"]
    assert p[F["memory_total_bytes"]] == 17179869184
    assert p[F["disk_write_bytes_per_s"]] == AGG_1M["disk"]["write_bytes_per_s"]
    assert p[F["net_rx_bytes_per_s"]] == AGG_1M["network"]["rx_bytes_per_s"]
    assert p[F["runq_latency_p99_us"]] == 256
    assert p[F["blockio_latency_p99_us"]] is None  # no blockio histogram in this record
    assert p[F["coverage"]] == 1.0


def test_blockio_p99_merges_every_disk():
    agg = {"ebpf": {"histograms": {"latency_us": {
        "nvme0n1": {"buckets": {"3": 98}, "p99": 16},
        "sda": {"buckets": {"10": 2}, "p99": 2048}}}}}
    # 100 I/Os, rank 99 falls in bucket 10 (the slow disk): the fleet p99 is 2^11 us.
    assert hist_p99(agg, "latency_us") == 2048
    assert percentile_log2({"0": 1, "3": 2, "5": 1}, 0.5) == 16  # the processors' documented example


def test_inventory_summary_totals_storage_by_type():
    inv = inventory_summary(INVENTORY)
    hm = INVENTORY["hypermesh"]
    assert inv["cpu_cores"] == hm["cpu"]["cores"]
    assert inv["memory_total_bytes"] == hm["memory"]["total_bytes"]
    want: dict[str, int] = {}
    for dev in hm["storage"]:
        want[dev["storage_type"]] = want.get(dev["storage_type"], 0) + dev["total_bytes"]
    assert {k: v["total_bytes"] for k, v in inv["storage"].items()} == want
    assert len(inv["gpus"]) == len(hm["gpus"])


def test_series_replace_resent_windows_and_trim_to_history():
    board = Board(history_s=3600)
    host = AGG_10S["host_id"]
    for i in range(5):
        rec = copy.deepcopy(AGG_10S)
        rec["window"] = {"start_us": AGG_10S["window"]["start_us"] + i * 10_000_000,
                         "end_us": AGG_10S["window"]["end_us"] + i * 10_000_000, "length_s": 10.0}
        delta = board.apply("hm.usage.agg.10s.v1", host.encode(), orjson.dumps(rec), now_s=NOW_S)
        assert delta and delta["t"] == "point" and delta["series"] == "10s"
    resent = copy.deepcopy(AGG_10S)
    resent["cpu"]["utilisation_avg"] = 0.99
    board.apply("hm.usage.agg.10s.v1", host.encode(), orjson.dumps(resent), now_s=NOW_S)
    series = board.hosts[host]["series"]["10s"]
    assert len(series) == 5 and series[0][F["cpu_utilisation"]] == 0.99
    # An hour later the old windows fall out of the history.
    board.apply("hm.usage.agg.10s.v1", host.encode(), orjson.dumps(dict(resent, window={
        "start_us": resent["window"]["start_us"] + 3_600_000_000, "end_us": resent["window"]["end_us"] + 3_600_000_000,
        "length_s": 10.0})), now_s=NOW_S + 3700)
    assert len(board.hosts[host]["series"]["10s"]) == 1


def test_inventory_rejected_and_garbage():
    board = Board()
    d = board.apply("hm.inventory.v1", None, orjson.dumps(INVENTORY))
    assert d["t"] == "inventory" and board.hosts[INVENTORY["host_id"]]["inventory"]["cpu_cores"]
    for reason in ("clock_skew", "clock_skew", "bad_signature"):
        board.apply("hm.rejected.v1", b"h-" + b"a" * 32, orjson.dumps(
            {"schema": "hm.rejected.v1", "host_id": "h-" + "a" * 32, "reason": reason, "detail": "x"}))
    assert board.hosts["h-" + "a" * 32]["rejected"] == {"clock_skew": 2, "bad_signature": 1}
    assert board.apply("hm.usage.agg.1m.v1", None, b"\xff not json") is None


@pytest.mark.parametrize("with_key", [True, False])
def test_proofs_verified_counted_and_chained(with_key):
    key = Ed25519PrivateKey.generate()
    board = Board(keys=[dsse.raw_public_key(key)] if with_key else [])
    host, prev = PROOF["host_id"], None
    start = PROOF["window"]["start_us"]
    for seq in range(3):
        p = dict(PROOF, seq=seq, prev_proof_hash=prev, proof_id=proof_id(host, start + seq * 10_000_000, 10_000_000),
                 window={"start_us": start + seq * 10_000_000, "end_us": start + (seq + 1) * 10_000_000, "length_s": 10.0})
        data = orjson.dumps(p, option=orjson.OPT_SORT_KEYS)
        prev = hashlib.sha256(data).hexdigest()
        value = orjson.dumps(dsse.make_envelope(key, data))
        delta = board.apply("hm.proofs.v1", host.encode(), value, now_s=NOW_S + 30)
    board.apply("hm.proofs.v1", host.encode(), value, now_s=NOW_S + 30)  # redelivered
    h = board.hosts[host]
    assert h["proof"]["seq"] == 2 and h["proof"]["flags"] == ["source_disagreement"]
    if with_key:
        assert h["proofs"] == {"valid": 3, "invalid": 0, "duplicates": 1}
        assert h["chain_intact"] is True
        assert delta["proof"]["key_id"] == dsse.key_id(dsse.raw_public_key(key))
    else:  # fails closed: without the processor key nothing is valid (nor deduped), the chain is not judged
        assert h["proofs"]["invalid"] == 4 and h["proofs"]["valid"] == 0 and h["chain_intact"] is None
        assert "unknown_key" in [r["code"] for r in h["proof"]["reasons"]]


def test_inventory_os_and_kernel_objects_become_text():
    rec = dict(INVENTORY, system={**INVENTORY["system"],
                                  "os": {"id": "debian", "name": "Debian GNU/Linux", "pretty_name": "Debian GNU/Linux 12"},
                                  "kernel": {"name": "Linux", "release": "6.1.0-18-amd64"}})
    inv = inventory_summary(rec)
    assert inv["os"] == "Debian GNU/Linux 12" and inv["kernel"] == "6.1.0-18-amd64"
    assert inventory_summary(dict(INVENTORY, system={"os": None, "kernel": "6.8"}))["kernel"] == "6.8"
