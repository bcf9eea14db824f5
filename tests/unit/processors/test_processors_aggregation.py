"""Aggregation arithmetic against values computed by hand."""
import pytest

from processors import aggregation as agg


def usage(util, used, rate, elapsed=1.0, psi=None, interval=1.0):
    return {"interval_s": interval, "elapsed_s": elapsed, "boot_id": "b", "sources": ["procfs"],
            "cpu": {"cores": 4, "utilisation": util}, "memory": {"total_bytes": 100, "used_bytes": used},
            "disk": {"read_bytes_per_s": rate, "write_bytes_per_s": 2 * rate},
            "network": {"rx_bytes_per_s": 10.0, "tx_bytes_per_s": None},
            "load": {"psi": {"cpu": {"some_avg10": psi}} if psi is not None else None}}


@pytest.mark.parametrize("buckets,q,want", [
    ({"0": 1, "3": 2, "5": 1}, 0.5, 16),    # N=4, rank 2 -> bucket 3 -> 2^4
    ({"0": 1, "3": 2, "5": 1}, 0.99, 64),   # rank ceil(3.96)=4 -> bucket 5 -> 2^6
    ({"0": 1, "3": 2, "5": 1}, 0.25, 2),    # rank 1 -> bucket 0 -> 2^1
    ({"10": 100}, 0.99, 2048),
    ({"2": 99, "20": 1}, 0.99, 8),          # rank 99 is still in bucket 2
    ({"2": 98, "20": 2}, 0.99, 2 ** 21),    # rank 99 falls in bucket 20
    ({"12": 1, "3": 1}, 0.5, 16),           # keys sort numerically, not as strings
])
def test_percentile_log2_by_hand(buckets, q, want):
    assert agg.percentile_log2(buckets, q) == want


def test_percentile_of_empty_histogram_is_none():
    assert agg.percentile_log2({}, 0.5) is None


def test_window_start_and_key():
    assert agg.window_start(1_000_012_345_678, 10_000_000) == 1_000_010_000_000
    assert agg.agg_id("h-" + "a" * 32, "10s", 5, 10) == "h-" + "a" * 32 + "/10s/5/10"


def test_aggregate_by_hand():
    acc = agg.new_acc()
    agg.add_usage(acc, usage(None, 10, 100.0, psi=1.0))     # first sample: no utilisation yet
    agg.add_usage(acc, usage(0.5, 20, 300.0, psi=3.0))
    agg.add_usage(acc, usage(0.25, 60, 0.0, elapsed=2.0))  # 2 s elapsed weighs double in rates
    out = agg.finish(acc, host_id="h-" + "0" * 32, name="10s", start_us=0, length_us=10_000_000, seq=7)
    assert out["samples"] == 3 and out["expected_samples"] == 10 and out["coverage"] == pytest.approx(0.3)
    assert out["cpu"]["utilisation_avg"] == pytest.approx(0.375) and out["cpu"]["utilisation_max"] == 0.5
    assert out["memory"]["used_bytes_avg"] == pytest.approx(30) and out["memory"]["used_bytes_max"] == 60
    # (100*1 + 300*1 + 0*2) / 4 s
    assert out["disk"]["read_bytes_per_s"] == pytest.approx(100.0)
    assert out["disk"]["write_bytes_per_s"] == pytest.approx(200.0)
    assert out["network"]["rx_bytes_per_s"] == pytest.approx(10.0) and out["network"]["tx_bytes_per_s"] is None
    assert out["psi"]["cpu_some_avg10"] == pytest.approx(2.0) and out["psi"]["io_some_avg10"] is None
    assert out["ts"] == 10_000_000 and out["seq"] == 7 and "ebpf" not in out


def test_ebpf_histograms_merge_and_percentiles():
    acc = agg.new_acc()
    snap = {"maps": {"runq_latency_us": {"type": "histogram", "unit": "us", "values": {"all": {"1": 3, "4": 1}}},
                     "rx_bytes": {"type": "counter", "unit": "bytes", "values": {"eth0": 10}}}}
    agg.add_ebpf(acc, snap)
    agg.add_ebpf(acc, {"maps": {"runq_latency_us": {"type": "histogram", "unit": "us",
                                                    "values": {"all": {"4": 5, "9": 1}}},
                                "rx_bytes": {"type": "counter", "unit": "bytes", "values": {"eth0": 5}}}})
    out = agg.finish(acc, host_id="h-" + "0" * 32, name="10s", start_us=0, length_us=10_000_000, seq=0)
    h = out["ebpf"]["histograms"]["runq_latency_us"]["all"]
    assert h["buckets"] == {"1": 3, "4": 6, "9": 1} and h["count"] == 10
    assert h["p50"] == 32 and h["p99"] == 1024   # rank 5 -> bucket 4; rank 10 -> bucket 9
    assert out["ebpf"]["counters"]["rx_bytes"]["eth0"] == 15
    assert "ebpf" in out["sources"]


def test_coverage_caps_at_one():
    assert agg.coverage(12, 10.0, 1.0) == (10, 1.0)
    assert agg.coverage(5, 60.0, 0.5) == (120, pytest.approx(5 / 120))
