"""Sources and UsageSampler against fixture trees (full, partial, garbled) as host_root."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

import schemas
from collector.sources import DuplicateSourceError, SourceError, load_polling_sources, register_polling, POLLING
from collector.usage import UsageSampler
from hmconfig.settings import load_settings
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

TREES = FIXTURES / "usage"
FULL = TREES / "vm-2core-6.18"
PARTIAL = TREES / "partial-old-kernel"
GARBLED = TREES / "garbled"
COMMON = {"schema": "hm.usage.v1", "host_id": "h-" + "ab" * 16, "boot_id": "6c1e4f2a-1b2c-4d3e-8f90-0a1b2c3d4e5f",
          "seq": 0, "ts": 1_764_000_000_000_000}


def settings_for(root: Path, **more: Any):
    return load_settings(host_root=root, **more)


async def two_samples(root: Path, **more: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    async with UsageSampler(settings_for(root, **more)) as sampler:
        return await sampler.sample(), await sampler.sample()


async def test_full_tree_values_by_hand() -> None:
    first, body = await two_samples(FULL)
    schemas.validate("hm.usage.v1", {**body, **COMMON})
    assert first["elapsed_s"] == 0 and first["cpu"]["utilisation"] is None
    assert body["missing"] == ["filesystem:/mnt/nfs"]  # no such directory under the fixture root
    assert body["sources"] == ["procfs", "statvfs"]  # not "/" as host_root: /proc/net/dev, not netlink
    cpu = body["cpu"]
    assert cpu["cores"] == 2 and cpu["user_s"] == 331.47 and cpu["busy_s"] == pytest.approx(420.04)
    assert cpu["utilisation"] is None  # the same file twice: no ticks passed
    mem = body["memory"]
    assert mem["total_bytes"] == 24684084 * 1024 and mem["used_bytes"] == (24684084 - 22814696) * 1024
    assert mem["cached_bytes"] == (1056768 + 284300) * 1024 and mem["swap_used_bytes"] == 0
    assert body["load"]["load1"] == 2.4 and body["load"]["psi"]["cpu"]["some_avg10"] == 39.0
    assert body["processes"] == {"processes": 2, "threads": 517, "running": 3, "blocked": 0}
    disk = body["disk"]
    assert set(disk["devices"]) == {"vda", "dm-0"}  # loop0, zram0 and the partition vda1 are left out
    assert disk["devices"]["vda"]["physical"] and not disk["devices"]["dm-0"]["physical"]
    assert disk["read_bytes"] == 5457746 * 512 and disk["read_bytes_per_s"] == 0.0
    net = body["network"]
    assert net["rx_bytes"] == 321807473 and net["interfaces"]["lo"]["rx_bytes"] == 41042579
    assert [(f["mount"], f["fstype"]) for f in body["filesystem"]] == [("/", "ext4"), ("/data disk", "xfs")]
    assert body["filesystem"][0]["total_bytes"] > 0
    assert "gpu" not in body


async def test_partial_tree_nulls_and_missing() -> None:
    _, body = await two_samples(PARTIAL)
    schemas.validate("hm.usage.v1", {**body, **COMMON})
    assert set(body["missing"]) == {"memory.used_bytes", "memory.available_bytes", "load.psi", "network",
                                    "filesystem"}
    assert "network" not in body and "filesystem" not in body
    assert body["cpu"]["steal_s"] is None and body["cpu"]["user_s"] == 10.0
    assert body["load"]["psi"] is None
    assert body["memory"]["swap_used_bytes"] == 24000 * 1024
    # no /sys: names decide. sda and nvme0n1 are physical, md0 is reported apart, partitions and loop not at all
    devices = body["disk"]["devices"]
    assert {n: d["physical"] for n, d in devices.items()} == {"sda": True, "md0": False, "nvme0n1": True}
    assert body["disk"]["read_bytes"] == (20000 + 6000) * 512
    assert body["processes"] == {"processes": 1, "threads": 150, "running": 3, "blocked": 1}


async def test_garbled_tree_never_raises() -> None:
    _, body = await two_samples(GARBLED)
    schemas.validate("hm.usage.v1", {**body, **COMMON})
    for section in ("cpu", "memory", "load", "disk", "network"):
        assert section not in body and section in body["missing"]


async def test_missing_root_lists_every_section() -> None:
    sampler = UsageSampler(settings_for(Path("/nonexistent-root")))
    body = await sampler.sample()
    sampler.close()
    assert set(body["missing"]) == {"cpu", "load", "memory", "disk", "filesystem", "network", "processes"}
    assert sampler.errors["cpu"] == 1
    schemas.validate("hm.usage.v1", {**body, **COMMON})


async def test_rates_over_a_changed_tree_and_slow_filesystem_cache(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FULL, root)
    async with UsageSampler(settings_for(root)) as sampler:
        await sampler.sample()
        stat = root / "proc/stat"
        # +50 user ticks on cpu0, +50 idle on cpu1 → Δbusy 0.5 core-s of Δtotal 1.0: utilisation 0.5
        stat.write_text(stat.read_text()
                        .replace("cpu  33147 0 8499 172326", "cpu  33197 0 8499 172376")
                        .replace("cpu0 14070", "cpu0 14120").replace("cpu1 19076 0 4902 82742", "cpu1 19076 0 4902 82792"))
        (root / "proc/self/mounts").write_text("/dev/vda / ext4 rw 0 0\n")  # every 30 s: the last reading is kept
        body = await sampler.sample()
    assert body["cpu"]["busy_core_s"] == pytest.approx(0.5) and body["cpu"]["utilisation"] == pytest.approx(0.5)
    assert body["cpu"]["per_core"][0]["utilisation"] == pytest.approx(1.0)
    assert body["elapsed_s"] > 0
    assert [f["mount"] for f in body["filesystem"]] == ["/", "/data disk"] and "filesystem" not in body["missing"]


async def test_filesystem_at_usage_pace_reads_every_time(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FULL, root)
    async with UsageSampler(settings_for(root, filesystem_interval_s=0.5)) as sampler:
        await sampler.sample()
        (root / "proc/self/mounts").write_text("/dev/vda / ext4 rw 0 0\n")
        body = await sampler.sample()
    assert [f["mount"] for f in body["filesystem"]] == ["/"]


def test_registry_rejects_a_duplicate_name() -> None:
    load_polling_sources(settings_for(FULL), names=["cpu"])  # imports the built-ins
    with pytest.raises(DuplicateSourceError, match="'cpu' registered twice"):
        register_polling("cpu")(lambda settings: None)
    assert POLLING["cpu"].__name__ == "CpuSource"  # the original stays


def test_registry_names_unknown_sources() -> None:
    with pytest.raises(SourceError, match="unknown usage source.*nosuch"):
        load_polling_sources(settings_for(FULL), names=["cpu", "nosuch"])


def test_sources_come_in_record_order() -> None:
    sources = load_polling_sources(settings_for(FULL))
    try:
        assert [s.name for s in sources][:7] == ["cpu", "load", "memory", "disk", "filesystem", "network", "processes"]
        assert {s.name: s.interval_s for s in sources}["filesystem"] == 30.0
    finally:
        for s in sources:
            s.close()


async def test_hung_statvfs_is_skipped_and_not_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    from collector.sources import filesystem

    root = tmp_path / "root"
    (root / "proc/self").mkdir(parents=True)
    (root / "mnt/nfs").mkdir(parents=True)
    (root / "proc/self/mounts").write_text("/dev/vda / ext4 rw 0 0\nsrv:/x /mnt/nfs nfs4 rw 0 0\n")
    release, calls, real = threading.Event(), [], os.statvfs

    def statvfs(path: str) -> os.statvfs_result:  # the NFS server is gone: the call blocks
        calls.append(path)
        if path.endswith("mnt/nfs"):
            release.wait(10)
        return real(path)

    monkeypatch.setattr(filesystem.os, "statvfs", statvfs)
    monkeypatch.setattr(filesystem, "STATVFS_TIMEOUT_S", 0.1)
    source = filesystem.FilesystemSource(settings_for(root))
    try:
        first = await source.collect()
        assert [f["mount"] for f in first] == ["/"] and source.missing == ["filesystem:/mnt/nfs"]
        await source.collect()
        assert sum(p.endswith("mnt/nfs") for p in calls) == 1  # still waiting on the first call
        release.set()
        await asyncio.sleep(0.05)
        third = await source.collect()
        assert [f["mount"] for f in third] == ["/", "/mnt/nfs"] and source.missing == []
    finally:
        release.set()
        source.close()
