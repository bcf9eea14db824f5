"""The native fast path for hm.usage.v1 (native/hm_ingest): host states held natively, batches
applied with the GIL released.

Why: the per-record work of a usage record (parse, JSON Schema, the rules, the window updates)
is most of a worker's interpreter time; ``hm_ingest.HostStore.ingest`` does it for a batch in
another thread, off the interpreter's. Python stays the authority: the store accepts only the
common case (the next seq of a known boot, every rule passing) and declines the rest with the
state untouched; a declined record, and every later one of its host in the batch, goes to
``Engine.ingest`` (the state taken out of the store first). The identity rules are checked here,
in Python, before a record is sent (``identity_ok``).
"""
from __future__ import annotations

from typing import Any

import hm_ingest
import orjson

import schemas
from schemas.dsse import HEADER_KEYID, HEADER_SIG

from . import aggregation, proofs
from .config import ProcessorConfig
from .validation import Verified, _key_facts, header, verify

USAGE = "hm.usage.v1"


def make_store(cfg: ProcessorConfig) -> hm_ingest.HostStore:
    """A store whose windows and limits are the engine's (processors.engine.Engine.__init__)."""
    return hm_ingest.HostStore(
        orjson.dumps(schemas.schema(USAGE)).decode(), int(cfg.proof_window_s * 1e6),
        [(name, int(s * 1e6)) for name, s in cfg.agg_windows_s.items()],
        cfg.stale_after_s, cfg.clock_skew_s, cfg.over_capacity_factor,
        orjson.dumps(proofs.new_acc()), orjson.dumps(aggregation.new_acc()))


def identity_ok(host_id: str, key_b64: str | None, value: bytes | None, headers: Any, cfg: ProcessorConfig,
                verified: Verified | None) -> bool:
    """Would validation.check_identity pass this usage record of ``host_id``, whose pinned key is
    ``key_b64``? False sends it to the Python engine, which then says why not."""
    if key_b64 is None or value is None:
        return False  # no key pinned yet, or a tombstone
    if cfg.enrolled is not None and host_id not in cfg.enrolled:
        return False
    sig, kid = header(headers, HEADER_SIG), header(headers, HEADER_KEYID)
    if not sig or not kid:
        return False
    pub, pub_kid = _key_facts(key_b64)
    if kid != pub_kid:
        return False
    ok = verified.get((pub, USAGE, value, sig)) if verified else None
    return verify(pub, USAGE, value, sig) if ok is None else ok
