"""build_inventory as a whole: the psutil fallback (platform faked), the content hash,
missing-file handling, the schema and its examples, and `hmtel inventory`."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil  # noqa: F401 - imported before sys.platform is faked (psutil picks its backend at import)
import pytest
from click.testing import CliRunner

from collector.inventory import build_inventory, hashing, psutil_fallback
from schemas import SchemaError, validate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MACHINES = FIXTURES / "machines"
EXAMPLES = FIXTURES / "schemas" / "hm.inventory.v1"
COMMON = {"schema": "hm.inventory.v1", "host_id": "h-" + "0" * 32, "boot_id": "3e87e3c9-21dc-42c2-acd4-204debd3cdc9",
          "seq": 0, "ts": 1, "public_key": "A" * 43 + "="}


def _expected(name: str) -> dict:
    return json.loads((MACHINES / name / "expected.json").read_text())


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_other_platforms_fall_back_to_psutil(monkeypatch, platform):
    monkeypatch.setattr(sys, "platform", platform)
    body = build_inventory(Path("/"))
    assert body["source"] == "psutil" and body["network"]["source"] == "psutil"
    assert body["cpu"]["threads"] >= 1 and body["memory"]["total_bytes"] > 0
    assert body["hypermesh"]["cpu"]["cores"] == body["cpu"]["threads"]
    assert "storage.block_devices" in body["missing"] and "cpu.sockets" in body["missing"]
    validate("hm.inventory.v1", {**COMMON, **body})


def test_psutil_fallback_with_a_stand_in_module():
    """The fallback against a psutil that knows little: every gap lands in `missing`."""
    def boom(*_a, **_k):
        raise OSError("not supported here")

    fake = SimpleNamespace(
        cpu_count=lambda logical=True: 8 if logical else 4, cpu_freq=boom,
        virtual_memory=lambda: SimpleNamespace(total=16 << 30, available=8 << 30, free=4 << 30),
        swap_memory=lambda: SimpleNamespace(total=0, free=0),
        disk_partitions=lambda all=False: [SimpleNamespace(device="/dev/disk1s1", mountpoint="/", fstype="apfs", opts="rw")],
        disk_usage=lambda p: SimpleNamespace(total=500 << 30, used=100 << 30, free=400 << 30, percent=20.0),
        net_if_addrs=lambda: {"en0": [SimpleNamespace(family=-1, address="AA-BB-CC-DD-EE-FF", netmask=None)]},
        net_if_stats=lambda: {"en0": SimpleNamespace(isup=True, mtu=1500, speed=1000)}, AF_LINK=-1)
    missing: list[str] = []
    body = psutil_fallback.collect(missing, psutil=fake)
    assert (body["cpu"]["cores"], body["cpu"]["threads"], body["cpu"]["max_freq_mhz"]) == (4, 8, None)
    assert "cpu.max_freq_mhz" in missing
    assert body["storage"]["filesystems"][0]["total_bytes"] == 500 << 30
    assert body["network"]["interfaces"][0]["mac"] == "aa:bb:cc:dd:ee:ff"


def test_hash_ignores_volatile_fields_and_sees_hardware():
    body = _expected("storage-mix")
    base = hashing.inventory_hash(body)
    assert base == body["inventory_hash"]
    moved = copy.deepcopy(body)
    moved["memory"]["available_bytes"] += 12345
    moved["storage"]["filesystems"][0]["used_bytes"] += 4096
    moved["network"]["interfaces"][1]["operstate"] = "down"
    moved["system"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    moved["hypermesh"]["memory"]["used_bytes"] = 1
    # Containers come and go: a veth and a loop device are not a new inventory.
    moved["network"]["interfaces"].append({"name": "veth1a2b", "kind": "veth", "mac": "02:42:ac:11:00:02", "index": 99})
    moved["storage"]["block_devices"].append({"name": "loop7", "type": "virtual", "size_bytes": 4096})
    for iface in moved["network"]["interfaces"]:
        iface["index"] = (iface["index"] or 0) + 100  # ifindexes are handed out per boot
    assert hashing.inventory_hash(moved) == base
    for change in (lambda b: b["memory"].__setitem__("total_bytes", 1),
                   lambda b: b["storage"]["block_devices"].pop(),
                   lambda b: b["network"]["interfaces"][1].__setitem__("mac", "02:00:00:00:00:01"),
                   lambda b: b["cpu"].__setitem__("threads", 2)):
        changed = copy.deepcopy(body)
        change(changed)
        assert hashing.inventory_hash(changed) != base
    assert hashing.canonical(body) == hashing.canonical(json.loads(json.dumps(body)[::-1][::-1]))


def test_empty_root_gives_nones_and_missing(tmp_path):
    body = build_inventory(tmp_path, platform="linux")
    assert body["gpus"] == [] and body["storage"]["block_devices"] == []
    assert body["cpu"]["model"] is None and body["memory"]["total_bytes"] is None
    assert {"cpu.cpuinfo", "cpu.model", "memory.meminfo", "system.hostname", "system.boot_id"} <= set(body["missing"])
    assert body["hypermesh"]["cpu"]["cores"] == 0


@pytest.mark.parametrize("name", sorted(p.name for p in MACHINES.iterdir() if (p / "expected.json").exists()))
def test_fixture_machines_validate(name):
    validate("hm.inventory.v1", {**COMMON, **_expected(name)})


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_examples(path):
    validate("hm.inventory.v1", json.loads(path.read_text()))


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_examples(path):
    with pytest.raises(SchemaError):
        validate("hm.inventory.v1", json.loads(path.read_text()))


def test_cli_table_and_json_on_a_fixture(tmp_path):
    from hmtel.cli import cli

    root = MACHINES / "bond-vlan-nics" / "root"
    runner = CliRunner()
    table = runner.invoke(cli, ["--host-root", str(root), "--state-dir", str(tmp_path), "inventory"])
    assert table.exit_code == 0, table.output
    assert "Intel(R) Xeon(R) CPU E5-2603 v4" in table.output and "bond0.100" in table.output
    out = runner.invoke(cli, ["--host-root", str(root), "--state-dir", str(tmp_path), "inventory", "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.output)
    validate("hm.inventory.v1", record)
    assert record["seq"] == 0 and record["boot_id"] == "0f9e8d7c-6b5a-4938-a2b1-c0d9e8f7a6b5"
    # Same tree, same edges (real statvfs under the tree): same hash as the library gives.
    assert record["inventory_hash"] == build_inventory(root)["inventory_hash"]
    assert record["cpu"] == _expected("bond-vlan-nics")["cpu"]
    assert (tmp_path / "host.key").exists()
