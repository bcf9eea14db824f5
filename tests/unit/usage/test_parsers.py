"""Table-driven parser tests: small texts in, expected values computed by hand."""
from __future__ import annotations

from typing import Any

import pytest

from collector.sources.cpu import parse_stat
from collector.sources.diskio import classify, parse_diskstats
from collector.sources.filesystem import parse_mounts, select_mounts
from collector.sources.load import parse_loadavg, parse_psi
from collector.sources.memory import memory_section, parse_meminfo
from collector.sources.network import parse_net_dev
from collector.sources.processes import parse_procs

N = None
STAT_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


def times(*values: int | None) -> dict[str, int | None]:
    return dict(zip(STAT_TIMES, [*values, *[None] * (10 - len(values))]))


@pytest.mark.parametrize(("text", "total", "cores", "scalars"), [
    pytest.param(
        "cpu  10 1 5 100 2 0 3 4 0 0\ncpu0 10 1 5 100 2 0 3 4 0 0\nprocs_running 2\nprocs_blocked 1\n",
        times(10, 1, 5, 100, 2, 0, 3, 4, 0, 0), {0: times(10, 1, 5, 100, 2, 0, 3, 4, 0, 0)},
        {"procs_running": 2, "procs_blocked": 1}, id="kernel-6"),
    pytest.param(  # 2.6.10: no steal, guest, guest_nice
        "cpu 7 0 3 90 0 0 0\ncpu0 4 0 1 45 0 0 0\ncpu1 3 0 2 45 0 0 0\n",
        times(7, 0, 3, 90, 0, 0, 0), {0: times(4, 0, 1, 45, 0, 0, 0), 1: times(3, 0, 2, 45, 0, 0, 0)},
        {"procs_running": N}, id="old-7-columns"),
    pytest.param("cpu 1 2\ncpu0 x y z w\nintr 5 6\n", None, {}, {"procs_running": N}, id="garbled"),
    pytest.param("", None, {}, {"procs_blocked": N, "ctxt": N}, id="empty"),
])
def test_parse_stat(text: str, total: Any, cores: Any, scalars: dict[str, Any]) -> None:
    parsed = parse_stat(text)
    assert parsed["total"] == total
    assert parsed["per_core"] == cores
    for key, value in scalars.items():
        assert parsed[key] == value


@pytest.mark.parametrize(("text", "expected"), [
    ("MemTotal:  1000 kB\nMemAvailable: 600 kB\nHugePages_Total: 3\n",
     {"MemTotal": 1024000, "MemAvailable": 614400, "HugePages_Total": 3}),
    ("MemTotal: lots kB\nbroken line\n: 5 kB\nCached:\n", {"": 5120}),
    ("", {}),
])
def test_parse_meminfo(text: str, expected: dict[str, int]) -> None:
    assert parse_meminfo(text) == expected


def test_memory_section_by_hand() -> None:
    info = {"MemTotal": 1000, "MemAvailable": 600, "MemFree": 200, "Cached": 300, "SReclaimable": 50,
            "Buffers": 10, "SwapTotal": 500, "SwapFree": 400}
    section, missing = memory_section(info)
    assert section == {"total_bytes": 1000, "used_bytes": 400, "available_bytes": 600, "free_bytes": 200,
                       "cached_bytes": 350, "buffers_bytes": 10, "swap_total_bytes": 500, "swap_used_bytes": 100}
    assert missing == []


def test_memory_without_memavailable_is_null_and_missing() -> None:  # kernels before 3.14
    section, missing = memory_section({"MemTotal": 1000, "MemFree": 200})
    assert section["available_bytes"] is None and section["used_bytes"] is None
    assert "memory.available_bytes" in missing and "memory.used_bytes" in missing


@pytest.mark.parametrize(("text", "expected"), [
    ("2.40 1.21 0.54 3/517 14953\n",
     {"load1": 2.4, "load5": 1.21, "load15": 0.54, "runnable": 3, "entities": 517, "last_pid": 14953}),
    ("0.00 nan 1e400\n", {"load1": 0.0, "load5": N, "load15": N, "runnable": N, "entities": N, "last_pid": N}),
    ("1.0 2.0 3.0 7-9 x\n", {"load1": 1.0, "load5": 2.0, "load15": 3.0, "runnable": N, "entities": N, "last_pid": N}),
    ("", {"load1": N, "load5": N, "load15": N, "runnable": N, "entities": N, "last_pid": N}),
])
def test_parse_loadavg(text: str, expected: dict[str, Any]) -> None:
    assert parse_loadavg(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("some avg10=39.00 avg60=31.15 avg300=14.27 total=76462040\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
     {"some_avg10": 39.0, "some_avg60": 31.15, "some_avg300": 14.27, "some_total_us": 76462040,
      "full_avg10": 0.0, "full_avg60": 0.0, "full_avg300": 0.0, "full_total_us": 0}),
    # cpu pressure before 5.13 has no "full" line
    ("some avg10=1.50 avg60=0.50 avg300=0.10 total=1234\n",
     {"some_avg10": 1.5, "some_avg60": 0.5, "some_avg300": 0.1, "some_total_us": 1234}),
    ("full avg10=1.00 avg60=1.00 avg300=1.00 total=1\n", None),  # no "some": unusable
    ("some avg10=x avg60=1 avg300=1 total=1\n", None),
    ("", None),
])
def test_parse_psi(text: str, expected: dict[str, Any] | None) -> None:
    assert parse_psi(text) == expected


DISKSTATS_17 = " 254       0 vda 42775 7115 3926002 28179 31366 21801 1809536 7190 0 7628 36017 5429 81 280184 376 5827 270\n"


def test_parse_diskstats_17_columns() -> None:
    row = parse_diskstats(DISKSTATS_17)["vda"]
    assert (row["major"], row["minor"], row["reads"], row["read_sectors"], row["writes"], row["write_sectors"]) == (
        254, 0, 42775, 3926002, 31366, 1809536)
    assert (row["io_time_ms"], row["discards"], row["flushes"], row["flush_ms"]) == (7628, 5429, 5827, 270)


def test_parse_diskstats_11_columns_and_garbage() -> None:
    text = "   8       0 sda 1000 10 20000 500 2000 20 40000 800 0 900 1300\n8 0 sdb 1 2\nx y sdc 1 2 3 4 5 6 7 8 9 10 11\n"
    parsed = parse_diskstats(text)
    assert list(parsed) == ["sda"]
    assert parsed["sda"]["io_time_ms"] == 900 and parsed["sda"]["weighted_io_ms"] == 1300
    assert parsed["sda"]["discards"] is None and parsed["sda"]["flush_ms"] is None


@pytest.mark.parametrize(("name", "kind"), [
    ("sda", "physical"), ("sda1", None), ("vda", "physical"), ("xvdb", "physical"), ("nvme0n1", "physical"),
    ("nvme0n1p2", None), ("mmcblk0", "physical"), ("mmcblk0p1", None), ("loop3", None), ("ram0", None),
    ("zram0", None), ("dm-0", "virtual"), ("md127", "virtual"),
])
def test_classify_by_name_without_sysfs(name: str, kind: str | None) -> None:
    assert classify(name, None) == kind


def test_parse_net_dev() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
        "    lo:  165914    1565    0    0    0     0          0         0   165914    1565    0    0    0     0       0          0\n"
        "  eth0: 321807473   10621    2    3    0     0          0         0  1190482    7469    4    5    0     0       0          0\n"
        "  bad: 1 2 3\n"
    )
    assert parse_net_dev(text) == {
        "lo": {"rx_bytes": 165914, "tx_bytes": 165914, "rx_packets": 1565, "tx_packets": 1565,
               "rx_errors": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0},
        "eth0": {"rx_bytes": 321807473, "tx_bytes": 1190482, "rx_packets": 10621, "tx_packets": 7469,
                 "rx_errors": 2, "tx_errors": 4, "rx_dropped": 3, "tx_dropped": 5},
    }


@pytest.mark.parametrize(("text", "expected"), [
    ("cpu 1 2 3 4\nprocesses 99\nprocs_running 3\nprocs_blocked 0\n", {"procs_running": 3, "procs_blocked": 0}),
    ("cpu 1\nprocs_running x\n", {"procs_running": N, "procs_blocked": N}),
    ("procs_running 3", {"procs_running": 3, "procs_blocked": N}),
    ("procs_running_total 3\nprocs_blocked 7 8\n", {"procs_running": N, "procs_blocked": N}),
])
def test_parse_procs(text: str, expected: dict[str, Any]) -> None:
    assert parse_procs(text) == expected


def test_parse_and_select_mounts() -> None:
    text = (
        "proc /proc proc rw 0 0\n"
        "/dev/vda / ext4 rw,relatime 0 0\n"
        "tmpfs /run tmpfs rw 0 0\n"
        "/dev/vda /srv ext4 rw 0 0\n"  # bind mount of the same device: counted once
        "/dev/vdb /data\\040disk xfs rw 0 0\n"
        "server:/export /mnt/nfs nfs4 rw 0 0\n"
        "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n"
        "short line\n"
    )
    mounts = parse_mounts(text)
    assert len(mounts) == 7 and mounts[4]["mount"] == "/data disk"
    assert [(m["mount"], m["fstype"]) for m in select_mounts(mounts)] == [
        ("/", "ext4"), ("/data disk", "xfs"), ("/mnt/nfs", "nfs4")]


def _nlmsg(mtype: int, payload: bytes) -> bytes:
    import struct

    body = struct.pack("=IHHII", 16 + len(payload), mtype, 2, 1, 0) + payload
    return body + b"\0" * (-len(body) % 4)


def test_parse_newstats_by_hand() -> None:
    import struct

    from collector.sources.network import NLMSG_DONE, RTM_NEWSTATS, parse_newstats

    # rx_packets tx_packets rx_bytes tx_bytes rx_errors tx_errors rx_dropped tx_dropped, then 16 more u64
    stats = struct.pack("=24Q", 10, 20, 1000, 2000, 1, 2, 3, 4, *range(16))
    pad_attr = struct.pack("=HH", 4, 0)  # IFLA_STATS_UNSPEC padding before the 64-bit attribute
    attr = struct.pack("=HH", 4 + len(stats), 1) + stats
    msg = _nlmsg(RTM_NEWSTATS, struct.pack("=BBHII", 0, 0, 0, 7, 1) + pad_attr + attr)
    out: dict[int, dict[str, int]] = {}
    assert parse_newstats(msg, out) is False  # no NLMSG_DONE yet: read on
    assert out == {7: {"rx_packets": 10, "tx_packets": 20, "rx_bytes": 1000, "tx_bytes": 2000, "rx_errors": 1,
                       "tx_errors": 2, "rx_dropped": 3, "tx_dropped": 4}}
    assert parse_newstats(_nlmsg(NLMSG_DONE, struct.pack("=i", 0)), out) is True


def test_parse_newstats_error_and_truncation() -> None:
    import errno
    import struct

    from collector.sources.network import NLMSG_ERROR, NetlinkError, parse_newstats

    with pytest.raises(NetlinkError, match="RTM_GETSTATS refused"):
        parse_newstats(_nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EOPNOTSUPP) + b"\0" * 16), {})
    with pytest.raises(NetlinkError, match="malformed"):
        parse_newstats(struct.pack("=IHHII", 400, 92, 2, 1, 0), {})  # claims 400 bytes, has 16
