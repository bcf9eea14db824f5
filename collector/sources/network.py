"""Network traffic per interface: netlink IFLA_STATS64, or /proc/net/dev.

With host_root "/" the counters come from rtnetlink: one RTM_GETSTATS dump
(Linux >= 4.7) with filter IFLA_STATS_LINK_64, i.e. struct rtnl_link_stats64
(include/uapi/linux/if_link.h), on a NETLINK_ROUTE socket kept open between
samples, decoded with struct. That is the stats64 that pyroute2's
``get_links()`` returns as IFLA_STATS64, at ~1/100 of the CPU: pyroute2 builds
and decodes every link attribute (bench/usage_sampling.py: ~9 µs against ~1 ms).
Interface names come from if_nameindex(3), cached and refreshed when an unknown
index appears. If netlink fails (old kernel, seccomp), the source says so once
and uses /proc/net/dev from then on. Under another
host_root (a fixture tree, or /host in a container) /proc/net/dev is parsed
(Documentation/filesystems/proc.rst, "1.3 Networking info in /proc/net"); it
prints the same rtnl_link_stats64 counters (net/core/net-procfs.c).
Both show the network namespace of the reader: run the agent in the host's
network namespace (hostNetwork) to see the host's interfaces.

Totals sum every interface but lo. A counter that goes backwards (interface
deleted and re-created, driver reset) gives a null rate for that interval.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from collector.sources import SourceError, register_polling
from collector.sources.diskio import sum_rates
from collector.sources.procfs import MonotonicTotal, ProcFile, rate

log = logging.getLogger(__name__)

# The counters each interface reports; names follow rtnl_link_stats64.
COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")
# /proc/net/dev columns, in order (net/core/net-procfs.c dev_seq_printf_stats).
_NET_DEV_COLUMNS = (
    "rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "rx_fifo_errors", "rx_frame_errors", "rx_compressed",
    "multicast",
    "tx_bytes", "tx_packets", "tx_errors", "tx_dropped", "tx_fifo_errors", "collisions", "tx_carrier_errors",
    "tx_compressed",
)

Counters = dict[str, dict[str, int | None]]


def parse_net_dev(text: str) -> Counters:
    """``{iface: {rx_bytes, ..., tx_dropped}}`` from /proc/net/dev; the two header lines and
    lines that do not parse are skipped."""
    out: Counters = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name or "|" in line:
            continue
        values = rest.split()
        if len(values) < len(_NET_DEV_COLUMNS) or not all(v.isdigit() for v in values[: len(_NET_DEV_COLUMNS)]):
            continue
        row = dict(zip(_NET_DEV_COLUMNS, map(int, values)))
        out[name] = {c: row[c] for c in COUNTERS}
    return out


def stats_from_links(links: list[Any]) -> Counters:
    """``{iface: counters}`` from pyroute2 link messages (IFLA_IFNAME, IFLA_STATS64); the bench compares with it."""
    out: Counters = {}
    for msg in links:
        name = msg.get_attr("IFLA_IFNAME")
        stats = msg.get_attr("IFLA_STATS64") or msg.get_attr("IFLA_STATS")
        if not name or not stats:
            continue
        out[name] = {c: stats.get(c) for c in COUNTERS}
    return out


# rtnetlink constants: include/uapi/linux/{netlink,rtnetlink,if_link}.h
RTM_NEWSTATS = 92
RTM_GETSTATS = 94
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_STATS_LINK_64 = 1
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IF_STATS_MSG = struct.Struct("=BBHII")  # family, pad1, pad2, ifindex, filter_mask
_RTATTR = struct.Struct("=HH")  # len, type
# The first 8 u64 of rtnl_link_stats64, in kernel order.
_STATS64 = struct.Struct("=8Q")
_STATS64_ORDER = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_dropped",
                  "tx_dropped")


class NetlinkError(Exception):
    pass


def getstats_request(seq: int) -> bytes:
    body = _IF_STATS_MSG.pack(socket.AF_UNSPEC, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse_newstats(data: bytes, out: dict[int, dict[str, int]]) -> bool:
    """Add ``{ifindex: counters}`` from one recv() of an RTM_GETSTATS dump to ``out``;
    True once NLMSG_DONE is seen. Raises NetlinkError on NLMSG_ERROR or a malformed message."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            raise NetlinkError(f"malformed netlink message (length {length})")
        if mtype == NLMSG_DONE:
            return True
        if mtype == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, off + _NLMSGHDR.size)[0] if length >= 20 else 0
            raise NetlinkError(f"RTM_GETSTATS refused: {os.strerror(-code) if code < 0 else code}")
        if mtype == RTM_NEWSTATS and length >= _NLMSGHDR.size + _IF_STATS_MSG.size:
            ifindex = _IF_STATS_MSG.unpack_from(data, off + _NLMSGHDR.size)[3]
            attr, end = off + _NLMSGHDR.size + _IF_STATS_MSG.size, off + length
            while attr + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, attr)
                if alen < _RTATTR.size:
                    break
                if atype == IFLA_STATS_LINK_64 and alen >= _RTATTR.size + _STATS64.size and attr + alen <= end:
                    out[ifindex] = dict(zip(_STATS64_ORDER, _STATS64.unpack_from(data, attr + _RTATTR.size)))
                attr += (alen + 3) & ~3
        off += (length + 3) & ~3
    return False


class RtnetlinkStats:
    """A NETLINK_ROUTE socket that dumps rtnl_link_stats64 of every interface."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._sock.settimeout(1.0)
        self._seq = 0
        self._names: dict[int, str] = {}

    def read(self) -> Counters:
        self._seq += 1
        self._sock.send(getstats_request(self._seq))
        by_index: dict[int, dict[str, int]] = {}
        while not parse_newstats(self._sock.recv(65536), by_index):
            pass
        if any(i not in self._names for i in by_index):
            self._names = dict(socket.if_nameindex())
        return {self._names.get(i, f"if{i}"): {c: row[c] for c in COUNTERS} for i, row in by_index.items()}

    def close(self) -> None:
        self._sock.close()


def network_section(prev: Counters | None, cur: Counters, elapsed_s: float | None,
                    totals: dict[str, MonotonicTotal] | None = None) -> dict[str, Any]:
    """The ``network`` section from two readings (``prev`` None: first reading).

    ``totals`` (one MonotonicTotal per direction, kept by the source) keeps the host
    totals monotonic when interfaces come and go; without it they are plain sums."""
    interfaces: dict[str, Any] = {}
    for name, row in cur.items():
        before = (prev or {}).get(name)
        iface: dict[str, Any] = dict(row)
        for key in ("rx_bytes", "tx_bytes"):
            iface[f"{key}_per_s"] = rate(before[key] if before else None, row[key], elapsed_s)
        interfaces[name] = iface
    counted = {k: v for k, v in interfaces.items() if k != "lo"}
    sums = {key: (totals[key].update({k: v[key] for k, v in counted.items()}) if totals
                  else sum(v[key] or 0 for v in counted.values()))
            for key in ("rx_bytes", "tx_bytes")}
    counted_rows = list(counted.values())
    return {
        "rx_bytes": sums["rx_bytes"],
        "tx_bytes": sums["tx_bytes"],
        "rx_bytes_per_s": sum_rates(counted_rows, "rx_bytes_per_s") if prev is not None else None,
        "tx_bytes_per_s": sum_rates(counted_rows, "tx_bytes_per_s") if prev is not None else None,
        "interfaces": interfaces,
    }


@register_polling("network")
class NetworkSource:
    name = "network"

    def __init__(self, settings: Any):
        self.interval_s: float = settings.usage_interval_s
        self.missing: list[str] = []
        root = Path(settings.host_root)
        self._use_netlink = root == Path("/")
        self.origin = "netlink" if self._use_netlink else "procfs"
        self._file = ProcFile(root / "proc/net/dev")
        self._netlink: RtnetlinkStats | None = None
        self._prev: Counters | None = None
        self._prev_t = 0.0
        self._totals = {"rx_bytes": MonotonicTotal(), "tx_bytes": MonotonicTotal()}

    def _read_netlink(self) -> Counters:
        if self._netlink is None:
            self._netlink = RtnetlinkStats()
        try:
            return self._netlink.read()
        except (OSError, NetlinkError):
            self._close_netlink()
            raise

    async def collect(self) -> dict[str, Any]:
        cur: Counters | None = None
        if self._use_netlink:
            try:
                cur = self._read_netlink()
            except (OSError, NetlinkError) as err:  # old kernel, seccomp, no NETLINK_ROUTE: procfs from now on
                log.warning("netlink interface stats failed (%s); using %s from now on", err, self._file.path)
                self._use_netlink = False
                self.origin = "procfs"
                self._prev = None
        if cur is None:
            try:
                text = self._file.read()
            except OSError as err:
                raise SourceError(f"cannot read {self._file.path}: {err.strerror}") from err
            cur = parse_net_dev(text)
            if not cur and text.strip():  # every namespace has at least lo
                raise SourceError(f"{self._file.path} is not parsable: {text[:40]!r}")
        now = time.monotonic()
        section = network_section(self._prev, cur, now - self._prev_t if self._prev is not None else None,
                                  self._totals)
        self._prev, self._prev_t = cur, now
        return section

    def _close_netlink(self) -> None:
        if self._netlink is not None:
            netlink, self._netlink = self._netlink, None
            netlink.close()

    def close(self) -> None:
        self._close_netlink()
        self._file.close()
