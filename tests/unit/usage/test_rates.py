"""Rates from two readings with known deltas; counter resets; the first reading primes."""
from __future__ import annotations

import pytest

from collector.sources.cpu import cpu_section, parse_stat
from collector.sources.diskio import disk_section, parse_diskstats
from collector.sources.network import network_section
from collector.sources.procfs import ProcFile, delta, rate

STAT_1 = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 60 0 30 380 30 0 0 0 0 0\ncpu1 40 0 20 420 20 0 0 0 0 0\n"
# +100 ticks per cpu: cpu0 +70 user +10 system +20 idle; cpu1 +10 user +85 idle +5 steal.
STAT_2 = "cpu  180 0 60 905 50 0 0 5 0 0\ncpu0 130 0 40 400 30 0 0 0 0 0\ncpu1 50 0 20 505 20 0 0 5 0 0\n"


def test_cpu_first_reading_primes() -> None:
    section = cpu_section(None, parse_stat(STAT_1), hz=100)
    assert section["cores"] == 2
    assert section["user_s"] == 1.0 and section["idle_s"] == 8.0 and section["iowait_s"] == 0.5
    assert section["busy_s"] == 1.5  # user + system
    assert section["busy_core_s"] is None and section["utilisation"] is None
    assert [c["utilisation"] for c in section["per_core"]] == [None, None]


def test_cpu_interval_by_hand() -> None:
    section = cpu_section(parse_stat(STAT_1), parse_stat(STAT_2), hz=100)
    # Δbusy = 80 user + 10 system = 90 ticks = 0.9 core-s; Δtotal = 90 + 105 idle + 5 steal = 200 ticks.
    assert section["busy_core_s"] == pytest.approx(0.9)
    assert section["utilisation"] == pytest.approx(0.45)
    assert section["steal_s"] == 0.05 and section["busy_s"] == pytest.approx(2.4)
    cpu0, cpu1 = section["per_core"]
    assert cpu0 == {"cpu": 0, "utilisation": pytest.approx(0.8), "busy_s": pytest.approx(1.7)}
    assert cpu1["utilisation"] == pytest.approx(0.1)  # steal is not busy


def test_cpu_idle_going_backwards_counts_as_zero() -> None:
    # proc.rst: per-CPU idle/iowait can decrease; the interval stays usable.
    before = parse_stat("cpu  100 0 0 1000 50 0 0 0\ncpu0 100 0 0 1000 50 0 0 0\n")
    after = parse_stat("cpu  150 0 0 1040 40 0 0 0\ncpu0 150 0 0 1040 40 0 0 0\n")
    section = cpu_section(before, after, hz=100)
    assert section["utilisation"] == pytest.approx(50 / 90)


def test_cpu_hotplugged_core_has_null_utilisation() -> None:
    before = parse_stat("cpu  10 0 0 10\ncpu0 10 0 0 10\n")
    after = parse_stat("cpu  30 0 0 30\ncpu0 20 0 0 20\ncpu1 10 0 0 10\n")
    per_core = cpu_section(before, after, hz=100)["per_core"]
    assert per_core[0]["utilisation"] == pytest.approx(0.5) and per_core[1]["utilisation"] is None


def test_delta_and_rate() -> None:
    assert delta(10, 25) == 15 and rate(10, 25, 0.5) == 30.0
    assert delta(None, 5) is None and rate(5, 6, 0) is None and rate(5, 6, None) is None
    assert delta(100, 3) is None and rate(100, 3, 1.0) is None  # reset: unknown, never negative


DISK_1 = ("   8  0 sda 10 0 2000 0 20 0 4000 0 0 100 0\n   8 1 sda1 10 0 2000 0 20 0 4000 0 0 100 0\n"
          " 253  0 dm-0 5 0 1000 0 5 0 1000 0 0 50 0\n")
DISK_2 = ("   8  0 sda 30 0 6000 0 40 0 5000 0 0 300 0\n   8 1 sda1 30 0 6000 0 40 0 5000 0 0 300 0\n"
          " 253  0 dm-0 9 0 3000 0 5 0 1000 0 0 60 0\n")
KINDS = {"sda": "physical", "sda1": None, "dm-0": "virtual"}


def test_disk_rates_by_hand() -> None:
    first = disk_section(None, parse_diskstats(DISK_1), KINDS, None)
    assert first["read_bytes"] == 2000 * 512 and first["read_bytes_per_s"] is None
    assert set(first["devices"]) == {"sda", "dm-0"}
    second = disk_section(parse_diskstats(DISK_1), parse_diskstats(DISK_2), KINDS, 2.0)
    # sda: +4000 sectors read = 2,048,000 bytes over 2 s; +1000 written = 512,000 bytes.
    assert second["read_bytes_per_s"] == 1_024_000 and second["write_bytes_per_s"] == 256_000
    assert second["read_bytes"] == 6000 * 512  # dm-0 is not in the totals
    dm = second["devices"]["dm-0"]
    assert dm["physical"] is False and dm["read_bytes_per_s"] == 512_000
    assert second["devices"]["sda"]["io_time_ms"] == 300 and second["devices"]["sda"]["reads"] == 30


def test_disk_counter_reset_gives_null_rate() -> None:
    reset = "   8  0 sda 1 0 8 0 1 0 8 0 0 1 0\n"
    section = disk_section(parse_diskstats(DISK_1), parse_diskstats(reset), {"sda": "physical"}, 1.0)
    assert section["read_bytes_per_s"] is None and section["devices"]["sda"]["read_bytes_per_s"] is None
    assert section["read_bytes"] == 8 * 512  # the cumulative counter is still reported as read


def _iface(rx: int, tx: int) -> dict[str, int | None]:
    return {"rx_bytes": rx, "tx_bytes": tx, "rx_packets": 1, "tx_packets": 1, "rx_errors": 0, "tx_errors": 0,
            "rx_dropped": 0, "tx_dropped": 0}


def test_network_rates_exclude_lo() -> None:
    prev = {"lo": _iface(1000, 1000), "eth0": _iface(5000, 100), "eth1": _iface(0, 0)}
    cur = {"lo": _iface(9000, 9000), "eth0": _iface(7000, 400), "eth1": _iface(1000, 0)}
    section = network_section(prev, cur, 0.5)
    assert section["rx_bytes"] == 8000 and section["tx_bytes"] == 400
    assert section["rx_bytes_per_s"] == 6000 and section["tx_bytes_per_s"] == 600
    assert section["interfaces"]["lo"]["rx_bytes_per_s"] == 16000


def test_network_new_interface_makes_total_rate_unknown() -> None:
    section = network_section({"eth0": _iface(0, 0)}, {"eth0": _iface(10, 10), "veth1": _iface(5, 5)}, 1.0)
    assert section["interfaces"]["eth0"]["rx_bytes_per_s"] == 10
    assert section["rx_bytes_per_s"] is None  # veth1 has no previous reading


def test_procfile_rereads_changed_content(tmp_path) -> None:
    path = tmp_path / "stat"
    path.write_text("one\n")
    file = ProcFile(path)
    assert file.read() == "one\n"
    path.write_text("two, longer\n")  # same inode, rewritten in place
    assert file.read() == "two, longer\n"
    big = "x" * 20000
    path.write_text(big)
    assert file.read() == big  # larger than the initial buffer
    path.unlink()
    assert file.read() == big  # the open descriptor still reads the unlinked file
    file.close()
    with pytest.raises(FileNotFoundError):
        file.read()
