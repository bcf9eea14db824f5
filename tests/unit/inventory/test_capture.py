"""tests/fixtures/capture_host.py: a capture of a tree builds the same inventory as the
tree itself (symlinks recreated and followed), apart from the replaced machine-id."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))
from fixtures import capture_host  # noqa: E402

from collector.inventory import build_inventory  # noqa: E402

MACHINES = TESTS / "fixtures" / "machines"


def _capture(source: Path | str, out: Path) -> Path:
    for rel in sorted(capture_host.record_paths(str(source))):
        capture_host.copy_path(str(source), rel, str(out))
    return out


def _comparable(body: dict) -> dict:
    body = dict(body)
    body["system"] = {k: v for k, v in body["system"].items() if k != "machine_id_sha256"}
    body.pop("inventory_hash")
    return body


@pytest.mark.parametrize("name", ["storage-mix", "bond-vlan-nics", "laptop-nvidia-intel"])
def test_capture_of_a_tree_builds_the_same_inventory(tmp_path, name):
    source = MACHINES / name / "root"
    copy = _capture(source, tmp_path / "root")
    kwargs = dict(platform="linux", statvfs=None, nvml=None, netlink=False)
    original, captured = build_inventory(source, **kwargs), build_inventory(copy, **kwargs)
    assert _comparable(captured) == _comparable(original)
    blocks = list((copy / "sys/block").iterdir())
    assert blocks and all(b.is_symlink() for b in blocks)  # /sys/block/<dev> -> ../devices/...
    assert (copy / "etc/machine-id").read_text() == capture_host.FAKE_MACHINE_ID
    copied = sum(1 for p in copy.rglob("*") if p.is_file())
    assert copied < sum(1 for p in source.rglob("*") if p.is_file())  # only what the inventory reads
