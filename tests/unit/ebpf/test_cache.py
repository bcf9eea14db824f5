"""The attach cache: failures and offsets survive a restart on the same boot, not a reboot."""
from __future__ import annotations

from pathlib import Path

from collector.ebpf.cache import AttachCache


def test_roundtrip_same_boot(tmp_path: Path):
    path = tmp_path / "state/ebpf-attach-cache.json"
    first = AttachCache(path, "6.18/boot-a")
    first.record_failure("mm", "fentry", "Need super-user privileges to run")
    first.store_offsets("sched", "raw_tracepoint", {"TASK_PID": 1264})
    again = AttachCache(path, "6.18/boot-a")
    assert again.failed("mm") == {"fentry": "Need super-user privileges to run"}
    assert again.offsets("sched", "raw_tracepoint") == {"TASK_PID": 1264}
    assert again.failed("sched") == {} and again.offsets("net", "tracepoint") is None


def test_reboot_or_new_kernel_starts_clean(tmp_path: Path):
    path = tmp_path / "cache.json"
    AttachCache(path, "6.18/boot-a").record_failure("mm", "fentry", "x")
    assert AttachCache(path, "6.18/boot-b").failed("mm") == {}
    assert AttachCache(path, "6.19/boot-a").failed("mm") == {}


def test_unwritable_or_garbled_is_no_cache(tmp_path: Path):
    cache = AttachCache(None, "k")
    cache.record_failure("mm", "fentry", "x")  # no path: kept in memory only
    assert cache.failed("mm") == {"fentry": "x"}
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    assert AttachCache(garbled, "k").failed("mm") == {}


def test_for_host_keys_by_release_and_boot(tmp_path: Path):
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.18.44\n")
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("b0\n")
    cache = AttachCache.for_host(tmp_path / "state", tmp_path)
    assert cache.key == "6.18.44/b0" and cache.path == tmp_path / "state/ebpf-attach-cache.json"
