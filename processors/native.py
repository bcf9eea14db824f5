"""The native fast path for hm.usage.v1 (native/hm_ingest): host states held natively, batches
applied with the GIL released.

Why: the per-record work of a usage record (parse, JSON Schema, the rules, the window updates)
is most of a worker's interpreter time; ``hm_ingest.HostStore.ingest`` does it for a batch in
another thread, off the interpreter's. Python stays the authority: the store accepts only the
common case (the next seq of a known boot or the first record of a new one, every rule passing) and declines the rest with the
state untouched; a declined record, and every later one of its host in the batch, goes to
``Engine.ingest`` (the state taken out of the store first). The store checks the identity rules
itself (hm-keyid and hm-sig against the pinned key, the chunk's signatures as one batch), so
the worker's thread does no per-record work for a record the store takes but route and ack it.

The store also closes the dashboard windows of the hosts it holds (``HostStore.close_aggs``),
marks and trims their outboxes (``mark``, ``trim``). A due proof window is closed by the Python
engine on the part of the state it reads and writes (``close_proofs`` below): a host's whole
state crosses to Python only when a record declines.
"""
from __future__ import annotations

from typing import Any

import hm_ingest
import orjson

import schemas

from . import aggregation, proofs
from .config import AGG_TOPICS, ProcessorConfig
from .engine import Engine, Signer

USAGE = "hm.usage.v1"


def make_store(cfg: ProcessorConfig) -> hm_ingest.HostStore:
    """A store whose windows and limits are the engine's (processors.engine.Engine.__init__)."""
    return hm_ingest.HostStore(
        orjson.dumps(schemas.schema(USAGE)).decode(), int(cfg.proof_window_s * 1e6),
        [(name, int(s * 1e6)) for name, s in cfg.agg_windows_s.items()],
        cfg.stale_after_s, cfg.clock_skew_s, cfg.over_capacity_factor,
        orjson.dumps(proofs.new_acc()), orjson.dumps(aggregation.new_acc()),
        [AGG_TOPICS[name] for name in cfg.agg_windows_s], cfg.agg_grace_s, cfg.proof_grace_s)


def close_proofs(store: hm_ingest.HostStore, engine: Engine, signer: Signer, host_id: str, now_us: int
                 ) -> tuple[list[tuple[str, str, str]], tuple[int, int] | None] | None:
    """Close a stored host's due proof windows (after HostStore.close_aggs said one is due):
    Engine.close_proofs on the part of the state it reads and writes, the results written back
    into the store. Why: taking the whole state out as JSON and putting it back was about two
    thirds of a proof close's cost (docs/PROCESSORS.md). Returns the outbox entries appended, as
    (topic, key, value), and Engine.next_look_us after; None if the store declined (the state is
    untouched: a record applied to the host meanwhile, or a retried outbox): Python closes it on
    the whole state."""
    part_json = store.proof_part(host_id)
    if part_json is None:
        return None
    part: dict[str, Any] = orjson.loads(part_json)
    engine.close_proofs(part, now_us, signer)  # never raises on a host's figures: it withholds them
    entries = [(topic, key, value) for topic, key, value, _host in part["outbox"]]
    done, looks = store.close_proofs(host_id, part_json, [int(start) for start in part["windows"]["proof"]],
                                     part["closed"]["proof"], orjson.dumps(part["chain"]).decode(), entries,
                                     now_us)
    return (entries, looks) if done else None


def finish_close(store: hm_ingest.HostStore, engine: Engine, signer: Signer, host_id: str,
                 closed: tuple[list[tuple[str, str, str]], tuple[int, int] | None, bool], now_us: int
                 ) -> tuple[list[tuple[str, str, str]], tuple[int, int] | None] | None:
    """A stored host's close after HostStore.close_aggs (``closed``: its answer for the host, not
    None): its due proof windows too, if it says one is due (close_proofs). Returns the outbox
    entries of the whole close and the next looks; None if the proof close is Python's, on the
    whole state, whose outbox then holds the dashboard entries just closed."""
    entries, looks, proof_due = closed
    if not proof_due:
        return entries, looks
    proofs_closed = close_proofs(store, engine, signer, host_id, now_us)
    if proofs_closed is None:
        return None
    return entries + proofs_closed[0], proofs_closed[1]
