"""The native fast path for hm.usage.v1 (native/hm_ingest): host states held natively, batches
applied with the GIL released.

Why: the per-record work of a usage record (parse, JSON Schema, the rules, the window updates)
is most of a worker's interpreter time; ``hm_ingest.HostStore.ingest`` does it for a batch in
another thread, off the interpreter's. Python stays the authority: the store accepts only the
common case (the next seq of a known boot, every rule passing) and declines the rest with the
state untouched; a declined record, and every later one of its host in the batch, goes to
``Engine.ingest`` (the state taken out of the store first). The store checks the identity rules
itself (hm-keyid and hm-sig against the pinned key, the chunk's signatures as one batch), so
the worker's thread does no per-record work for a record the store takes but route and ack it.

The store also closes the dashboard windows of the hosts it holds (``HostStore.close_aggs``),
marks and trims their outboxes (``mark``, ``trim``): a host's state crosses to Python only when
a proof window is due (once per proof window) or a record declines.
"""
from __future__ import annotations

import hm_ingest
import orjson

import schemas

from . import aggregation, proofs
from .config import AGG_TOPICS, ProcessorConfig

USAGE = "hm.usage.v1"


def make_store(cfg: ProcessorConfig) -> hm_ingest.HostStore:
    """A store whose windows and limits are the engine's (processors.engine.Engine.__init__)."""
    return hm_ingest.HostStore(
        orjson.dumps(schemas.schema(USAGE)).decode(), int(cfg.proof_window_s * 1e6),
        [(name, int(s * 1e6)) for name, s in cfg.agg_windows_s.items()],
        cfg.stale_after_s, cfg.clock_skew_s, cfg.over_capacity_factor,
        orjson.dumps(proofs.new_acc()), orjson.dumps(aggregation.new_acc()),
        [AGG_TOPICS[name] for name in cfg.agg_windows_s], cfg.agg_grace_s, cfg.proof_grace_s)
