"""Hypothesis: no parser raises on random or truncated text; the netlink decoder raises only NetlinkError."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.sources.cpu import cpu_section, parse_stat
from collector.sources.diskio import classify, disk_section, parse_diskstats
from collector.sources.filesystem import parse_mounts, select_mounts
from collector.sources.load import parse_loadavg, parse_psi
from collector.sources.memory import parse_meminfo
from collector.sources.network import NetlinkError, network_section, parse_net_dev, parse_newstats
from collector.sources.processes import parse_procs
from collector.sources import SourceError

PROC = Path(__file__).resolve().parents[2] / "fixtures/usage/vm-2core-6.18/proc"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARSERS: list[tuple[str, Callable[[str], Any]]] = [
    ("stat", parse_stat), ("meminfo", parse_meminfo), ("loadavg", parse_loadavg), ("pressure/io", parse_psi),
    ("diskstats", parse_diskstats), ("net/dev", parse_net_dev), ("self/mounts", parse_mounts),
    ("stat", parse_procs),
]
# Text that looks like procfs: digits, spaces, newlines, the separators procfs uses, and some noise.
procfs_text = st.text(alphabet=st.sampled_from(list("0123456789 \n\t:/=.-kBcpuavgsomefultdnxy\x00\ufffd")), max_size=400)


@pytest.mark.parametrize(("file", "parse"), PARSERS, ids=[f"{p.__name__}" for _, p in PARSERS])
@FUZZ
@given(data=st.data())
def test_parser_never_raises(file: str, parse: Callable[[str], Any], data: st.DataObject) -> None:
    real = (PROC / file).read_text()
    text = data.draw(st.one_of(
        st.text(max_size=300),
        procfs_text,
        st.integers(0, len(real)).map(lambda n: real[:n]),  # truncated mid-line
        st.tuples(st.integers(0, len(real)), procfs_text).map(lambda t: real[: t[0]] + t[1] + real[t[0]:]),
    ))
    parse(text)


@FUZZ
@given(a=procfs_text, b=procfs_text)
def test_cpu_section_from_any_two_texts(a: str, b: str) -> None:
    try:
        section = cpu_section(parse_stat(a), parse_stat(b), hz=100)
    except SourceError:
        return  # no aggregate cpu line: the source reports the section missing
    assert section["utilisation"] is None or 0 <= section["utilisation"] <= 1


@FUZZ
@given(a=procfs_text, b=procfs_text, elapsed=st.floats(0, 10))
def test_disk_and_network_sections_from_any_two_texts(a: str, b: str, elapsed: float) -> None:
    prev, cur = parse_diskstats(a), parse_diskstats(b)
    section = disk_section(prev, cur, {n: classify(n, None) for n in cur}, elapsed)
    assert section["read_bytes_per_s"] is None or section["read_bytes_per_s"] >= 0
    net = network_section(parse_net_dev(a), parse_net_dev(b), elapsed)
    assert net["rx_bytes_per_s"] is None or net["rx_bytes_per_s"] >= 0
    select_mounts(parse_mounts(a))


@FUZZ
@given(data=st.binary(max_size=300))
def test_netlink_decoder_raises_only_netlink_error(data: bytes) -> None:
    out: dict[int, dict[str, int]] = {}
    try:
        parse_newstats(data, out)
    except NetlinkError:
        pass
