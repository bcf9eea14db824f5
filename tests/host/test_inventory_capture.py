"""Capturing this machine (tests/fixtures/capture_host.py) gives a tree whose inventory is
this machine's, except the values that move between two readings and the machine-id
that the capture replaces."""
from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from fixtures import capture_host  # noqa: E402

from collector.inventory import build_inventory, hashing  # noqa: E402


def test_capture_of_this_machine_reproduces_its_inventory(tmp_path):
    tree = tmp_path / "root"
    for rel in sorted(capture_host.record_paths("/")):
        capture_host.copy_path("/", rel, str(tree))
    kwargs = dict(platform="linux", statvfs=None, nvml=None, netlink=False)
    live, captured = build_inventory("/", **kwargs), build_inventory(tree, **kwargs)
    for body in (live, captured):
        body["system"].pop("machine_id_sha256")
    # The hash's canonical form leaves out readings (free memory, ...) that moved meanwhile.
    assert hashing.canonical(captured) == hashing.canonical(live)
    assert captured["cpu"] == live["cpu"] and captured["missing"] == live["missing"]
