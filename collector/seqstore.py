"""Sequence numbers per (host_id, boot_id, schema): contiguous from 0, resumed after a restart.

The numbers persist in the spool itself: each new spool segment opens with a
checkpoint of this store (``snapshot()``), and on start the store is rebuilt
from the newest checkpoint plus every record spooled after it (``observe``).
The newest segment is never deleted, so the state survives acks and overflow.

Why this never reuses a seq for a different record, even after ``kill -9``:
a seq is handed out, the record is signed and written to the kernel in one
``write(2)``; if the process dies before that write, no record carries the seq
and the next start hands it out again. If the write happened, the restart sees
the record in the spool and continues after it. A power loss can lose
unsynced records, but then the kernel's boot id changes and every sequence
starts again under the new boot.
"""
from __future__ import annotations

from typing import Iterable

import orjson


class SeqStore:
    def __init__(self, boot_id: str):
        self.boot_id = boot_id
        self._next: dict[tuple[str, str], int] = {}  # (host_id, schema) -> next seq, this boot only

    def next(self, host_id: str, schema: str) -> int:
        key = (host_id, schema)
        seq = self._next.get(key, 0)
        self._next[key] = seq + 1
        return seq

    def peek(self, host_id: str, schema: str) -> int:
        return self._next.get((host_id, schema), 0)

    def snapshot(self) -> bytes:
        return orjson.dumps({"boot_id": self.boot_id,
                             "next": [[h, s, n] for (h, s), n in sorted(self._next.items())]})

    def restore(self, blob: bytes | None) -> None:
        """Load a checkpoint; one from an earlier boot is ignored (sequences restart at 0)."""
        if not blob:
            return
        try:
            state = orjson.loads(blob)
        except orjson.JSONDecodeError:
            return
        if not isinstance(state, dict) or state.get("boot_id") != self.boot_id:
            return
        for host_id, schema, nxt in state.get("next", []):
            key = (host_id, schema)
            self._next[key] = max(self._next.get(key, 0), int(nxt))

    def observe(self, value: bytes) -> None:
        """Advance past a record found in the spool (its value is the JSON record)."""
        try:
            rec = orjson.loads(value)
            if rec.get("boot_id") != self.boot_id:
                return
            key = (rec["host_id"], rec["schema"])
            seq = int(rec["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return
        self._next[key] = max(self._next.get(key, 0), seq + 1)

    def observe_all(self, values: Iterable[bytes]) -> None:
        for v in values:
            self.observe(v)
