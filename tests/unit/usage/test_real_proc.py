"""UsageSampler against this machine's real /proc and /sys (no root, no network needed)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psutil

import schemas
from collector.sources.network import RtnetlinkStats, parse_net_dev
from collector.usage import UsageSampler, sample_once
from hmconfig.settings import load_settings

COMMON = {"schema": "hm.usage.v1", "host_id": "h-" + "0" * 32, "seq": 0, "ts": 1}


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


async def test_real_proc_sample_validates_and_agrees_with_psutil() -> None:
    body = await sample_once(load_settings(host_root=Path("/")), warmup_s=0.2)
    schemas.validate("hm.usage.v1", {**body, **COMMON, "boot_id": boot_id()})
    assert body["missing"] == [] or all("." in m or ":" in m for m in body["missing"]), body["missing"]
    assert {"cpu", "load", "memory", "disk", "filesystem", "network", "processes"} <= set(body)
    assert 0.15 < body["elapsed_s"] < 5
    cpu = body["cpu"]
    assert cpu["cores"] == os.cpu_count() == len(cpu["per_core"])
    assert cpu["utilisation"] is not None and 0 <= cpu["utilisation"] <= 1
    assert 0 <= cpu["busy_core_s"] <= cpu["cores"] * body["elapsed_s"] * 1.05 + 0.05  # tick rounding
    assert body["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert body["network"]["interfaces"]["lo"]["rx_bytes"] >= 0
    assert "netlink" in body["sources"]
    assert body["processes"]["threads"] >= body["processes"]["processes"] > 0


def test_netlink_stats_match_proc_net_dev() -> None:
    netlink = RtnetlinkStats()
    try:
        before = netlink.read()
        procfs = parse_net_dev(Path("/proc/net/dev").read_text())
        after = netlink.read()
    finally:
        netlink.close()
    assert set(before) == set(procfs) == set(after)
    for name, row in procfs.items():
        for key, value in row.items():  # the same rtnl_link_stats64 counters, read in between
            assert before[name][key] <= value <= after[name][key], (name, key)


async def test_sampler_keeps_going_at_pace() -> None:
    async with UsageSampler(load_settings(host_root=Path("/"))) as sampler:
        bodies = []
        for _ in range(3):
            bodies.append(await sampler.sample())
            await asyncio.sleep(0.05)
    assert sampler.samples == 3 and not sampler.errors
    assert bodies[0]["elapsed_s"] == 0 and all(b["elapsed_s"] > 0 for b in bodies[1:])
    # cumulative counters never go backwards within a boot
    assert bodies[0]["cpu"]["busy_s"] <= bodies[1]["cpu"]["busy_s"] <= bodies[2]["cpu"]["busy_s"]
    assert bodies[0]["disk"]["write_bytes"] <= bodies[2]["disk"]["write_bytes"]
