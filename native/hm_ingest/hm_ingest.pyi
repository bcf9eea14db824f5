"""Native host-state store with a GIL-free batch fast path for hm.usage.v1: see src/lib.rs."""

from typing import Any

class HostStore:
    """Host states (the JSON of processors.engine.new_state) by host_id, each with a dirty flag.
    Thread-safe: ``ingest`` and ``dump_dirty`` run with the GIL released; the other calls take the
    store's lock with it held, waiting for at most one record of an ingest in another thread."""

    def __init__(self, usage_schema_json: str, proof_len_us: int, agg: list[tuple[str, int]],
                 stale_after_s: float, clock_skew_s: float, over_capacity_factor: float,
                 new_proof_acc_json: bytes, new_agg_acc_json: bytes, agg_topics: list[str], agg_grace_s: float,
                 proof_grace_s: float) -> None:
        """``agg``: (window name, length in us) in the engine's order; the templates are
        orjson.dumps(proofs.new_acc()) and orjson.dumps(aggregation.new_acc()); ``agg_topics``: each
        family's output topic, in ``agg``'s order. ValueError if the schema uses a keyword (or
        pattern syntax) that the store's validator does not implement."""

    def load(self, host_id: str, state_json: bytes, dirty: bool) -> None:
        """Insert or replace a host's state (ValueError unless a JSON object). One the store does not
        write back byte for byte as loaded (not orjson's compact form, or a shape the engine never
        makes) is kept as these bytes, and every record of its host declines."""

    def take(self, host_id: str) -> tuple[bytes, bool] | None:
        """Remove a host's state: (its JSON, its dirty flag), or None if not stored."""

    def dump_dirty(self) -> list[tuple[str, bytes]]:
        """(host_id, state JSON) of every dirty state; clears their flags, the states stay."""

    def key(self, host_id: str) -> str | None:
        """The state's pinned key (None if absent, null, or the host is not stored)."""

    def hosts(self) -> list[str]: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, host_id: str) -> bool: ...

    def ingest(self, batch: list[tuple[str, bytes, Any]], now_us: int) -> list[int | None]:
        """Per (host_id, value, Kafka headers), in order and with the GIL released: the record's ts
        when the fast path accepted it into the host's stored state (now dirty), else None with that
        state untouched. A decline blocks the host: its later records decline, in this batch and in
        later ones, until ``unblock``. The store checks the identity rules (hm-keyid, hm-sig against
        the pinned key, as one batch check); strict mode's enrollment is the caller's."""

    def unblock(self, host_ids: list[str]) -> None:
        """The caller has replayed these hosts' declined records: their records may be taken again."""

    def blocked(self) -> list[str]: ...

    def close_aggs(self, host_ids: list[str], now_us: int
                   ) -> list[tuple[list[tuple[str, str, str]], tuple[int, int] | None, bool] | None]:
        """Engine.close_due's dashboard windows per host whose outbox is empty and unmarked: (the
        (topic, key, value) entries appended to its outbox, Engine.next_look_us after, whether a
        proof window is due: close it with proof_part and close_proofs), the state dirty if an
        entry was; else None, the state untouched (a window with eBPF snapshots, a retry, a host
        not stored typed): close it in Python."""

    def proof_part(self, host_id: str) -> bytes | None:
        """The part of the host's state that Engine.close_proofs reads and writes, as JSON; None if
        the host is not stored typed or its outbox is marked (a retry)."""

    def close_proofs(self, host_id: str, part: bytes, kept: list[int], closed_proof: int, chain_json: str,
                     entries: list[tuple[str, str, str]], now_us: int) -> tuple[bool, tuple[int, int] | None]:
        """Engine.close_proofs' results on ``part`` written into the state: the proof windows but
        those ``kept`` dropped, closed["proof"], the chain, the (topic, key, value) entries appended
        to the outbox; (True, Engine.next_look_us after), the state dirty. (False, None), the state
        untouched, if its part is no longer ``part`` (a record applied meanwhile) or the host is not
        stored typed."""

    def mark(self, host_id: str, marks_json: str) -> bytes | None:
        """``state["outbox_mark"] = marks``; the state's JSON to write to the table (the state is
        clean then), or None if the host is not stored typed."""

    def trim(self, host_id: str, n: int) -> bool:
        """The first ``n`` outbox entries sent: dropped, with the mark if none is left; the state
        dirty. False (untouched) if the host is not stored typed or its outbox has fewer."""
