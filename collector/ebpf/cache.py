"""What bcc start-up can reuse from an earlier start on the same boot.

bcc 0.26 cannot load a previously compiled object, and libbcc crashes when two
threads compile at once, so compilation itself cannot be cached or overlapped.
What can be kept is what the previous start learned:

* attach variants that failed (mm's fentry costs ~0.5 s to fail on a kernel
  without ftrace trampolines), so they are skipped, and said so, next time;
  the loader keys them by program and a digest of its final C, so an edited
  program is tried afresh;
* struct member offsets resolved from BTF (parsing BTF costs ~0.2 s).

Both are keyed by kernel release and boot id: a reboot or a new kernel starts
clean. The file is best effort: unreadable or unwritable means no cache.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class AttachCache:
    def __init__(self, path: Path | None, key: str):
        self.path = path
        self.key = key
        self._data: dict[str, Any] = {"key": key, "failed": {}, "offsets": {}}
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if data.get("key") == key:
                    self._data = data
            except (OSError, ValueError):
                pass

    @classmethod
    def for_host(cls, state_dir: Path | None, host_root: Path = Path("/")) -> AttachCache:
        def read(rel: str) -> str:
            try:
                return (host_root / rel).read_text().strip()
            except OSError:
                return "?"
        key = f"{read('proc/sys/kernel/osrelease')}/{read('proc/sys/kernel/random/boot_id')}"
        return cls(None if state_dir is None else state_dir / "ebpf-attach-cache.json", key)

    def failed(self, program: str) -> dict[str, str]:
        """variant -> why it failed on this boot."""
        return dict(self._data["failed"].get(program, {}))

    def record_failure(self, program: str, variant: str, reason: str) -> None:
        self._data["failed"].setdefault(program, {})[variant] = reason
        self._save()

    def offsets(self, program: str, variant: str) -> dict[str, int] | None:
        found = self._data["offsets"].get(f"{program}/{variant}")
        return dict(found) if found is not None else None

    def store_offsets(self, program: str, variant: str, offsets: dict[str, int]) -> None:
        self._data["offsets"][f"{program}/{variant}"] = offsets
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as err:
            log.debug("ebpf attach cache %s not written: %s", self.path, err)
            self.path = None
