"""The native fast path's own cost, no broker: the Ed25519 batch check (native/hm_ed25519) and
the store's ingest of usage records (native/hm_ingest), in CPU of the calling thread.

    .venv/bin/python bench/native_path.py [--hosts 2000] [--records 30] [--rounds 3]

* ``verify_batch``: batches of 250 (the processors' VERIFY_CHUNK) of real signatures over
  records as large as the simulator's usage records, µs per signature.
* ``HostStore.ingest``: ``--hosts`` simulated hosts (inventory and first usage record through
  the Python engine, then loaded into the store) and ``--records`` more usage records each, in
  chunks of 250: µs per record, everything included (argument conversion, the signature
  batch, parse, schema, rules, windows). Every record must be taken.

Which Ed25519 backend curve25519-dalek chose at run time depends on the CPU (AVX-512 IFMA,
AVX2, portable; native/.cargo/config.toml); the first line names the CPU's flags.
"""
from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import hm_ed25519
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from processors import native, proofs  # noqa: E402
from processors.config import ProcessorConfig  # noqa: E402
from processors.engine import Engine, Signer, decode, new_state  # noqa: E402
from processors.simulator import SimHost  # noqa: E402
from processors.validation import pae  # noqa: E402
from schemas.dsse import key_id, raw_public_key  # noqa: E402

S = 1_000_000
CHUNK = 250


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f for f in ("avx2", "avx512ifma", "avx512vl", "sha_ni") if f in flags) or "none of avx2/avx512"


def verify_us(rounds: int) -> float:
    hosts = [SimHost(i, seed="bench-native") for i in range(CHUNK)]
    now = int(time.time() * S)
    items = []
    for h in hosts:
        _topic, _key, value, headers = h.message("hm.usage.v1", h.usage(now))
        sig = next(v for k, v in headers if k == "hm-sig")
        items.append((raw_public_key(h.key), pae("hm.usage.v1", value), base64.b64decode(sig)))
    assert all(hm_ed25519.verify_batch(items)), "every signature checks"
    per = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(20):
            hm_ed25519.verify_batch(items)
        per.append((time.thread_time() - t0) / (20 * CHUNK) * 1e6)
    return statistics.median(per)


def _load(store: Any, engine: Engine, hosts: list[SimHost], base: int, now: int) -> None:
    """Each host's inventory and first usage record at ``base`` through the Python engine, its state
    then loaded into the store."""
    for h in hosts:
        state = new_state(h.host_id)
        for topic, rec in (("hm.inventory.v1", h.inventory(base)), ("hm.usage.v1", h.usage(base))):
            t, _k, v, hd = h.message(topic, rec)
            record, schema = decode(t, v)
            engine.ingest(state, record, schema, v, hd, now)
        store.load(h.host_id, orjson.dumps(state), False)


def ingest_us(hosts_n: int, records: int, rounds: int) -> tuple[float, int, int]:
    cfg = ProcessorConfig()
    engine = Engine(cfg)
    per = []
    for r in range(rounds):
        store = native.make_store(cfg)
        now = int(time.time() * S)
        base = now - (records + 5) * S
        hosts = [SimHost(i, seed=f"bench-native-{r}") for i in range(hosts_n)]
        _load(store, engine, hosts, base, now)
        items = []
        for j in range(1, records + 1):
            for h in hosts:
                _t, _k, v, hd = h.message("hm.usage.v1", h.usage(base + j * S))
                items.append((h.host_id, v, hd))
        t0 = time.thread_time()
        taken = 0
        for i in range(0, len(items), CHUNK):
            taken += sum(1 for ts in store.ingest(items[i:i + CHUNK], now) if ts is not None)
        per.append((time.thread_time() - t0) / len(items) * 1e6)
        assert taken == len(items), f"the store took {taken} of {len(items)} records"
    size = sum(len(v) for _h, v, _hd in items) // len(items)
    return statistics.median(per), len(items), size


def _stored_hosts(hosts_n: int, records: int, seed: str) -> tuple[Any, int]:
    """A store holding ``hosts_n`` hosts that sent ``records`` usage records each, a proof window
    ending midway (as a backlog's drain meets it); and a processor time where it is due."""
    cfg = ProcessorConfig()
    engine = Engine(cfg)
    store = native.make_store(cfg)
    now = int(time.time() * S)
    plen = int(cfg.proof_window_s * S)
    base = now - (now % plen) - plen - records * S // 2
    hosts = [SimHost(i, seed=seed) for i in range(hosts_n)]
    _load(store, engine, hosts, base, now)
    for j in range(1, records):
        items = []
        for h in hosts:
            _t, _k, v, hd = h.message("hm.usage.v1", h.usage(base + j * S))
            items.append((h.host_id, v, hd))
        assert all(ts is not None for ts in store.ingest(items, now)), "every record taken"
    return store, now


def proof_close_us(hosts_n: int, records: int, rounds: int) -> tuple[float, float]:
    """µs per host of a tick's close when a proof window is due (its dashboard windows too, and
    the proof withheld or signed): the whole state out of the store into the Python engine and
    back (the path before, still the fallback), and the store's close with only the proof part
    through Python (native.close_proofs)."""
    cfg = ProcessorConfig()
    engine = Engine(cfg)
    key = Ed25519PrivateKey.generate()
    kid = key_id(raw_public_key(key))
    signer = Signer(kid, lambda data: proofs.sign(data, key, kid))
    whole, part = [], []
    for r in range(rounds):
        store, now = _stored_hosts(hosts_n, records, f"bench-close-{r}")
        ids = store.hosts()
        t0 = time.thread_time()
        for host_id in ids:
            raw, _changed = store.take(host_id)
            state = orjson.loads(raw)
            engine.close_due(state, now, signer)
            engine.next_look_us(state, now)
            store.load(host_id, orjson.dumps(state), True)
        whole.append((time.thread_time() - t0) / len(ids) * 1e6)
        store, now = _stored_hosts(hosts_n, records, f"bench-close-{r}")
        t0 = time.thread_time()
        closed = 0
        for host_id, aggs in zip(ids, store.close_aggs(ids, now)):
            assert aggs is not None and aggs[2], "the dashboard windows closed in the store, a proof window due"
            closed += native.close_proofs(store, engine, signer, host_id, now) is not None
        part.append((time.thread_time() - t0) / len(ids) * 1e6)
        assert closed == len(ids), f"the store took {closed} of {len(ids)} proof closes"
    return statistics.median(whole), statistics.median(part)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--records", type=int, default=30, help="usage records per host after the first")
    ap.add_argument("--rounds", type=int, default=3, help="the median is shown")
    args = ap.parse_args()
    print(f"native path, no broker ({os.cpu_count()} CPUs; flags: {cpu_flags()}); median of {args.rounds} rounds")
    print(f"  {'hm_ed25519.verify_batch, batches of 250':<58} {verify_us(args.rounds):>6.1f} us/signature")
    us, n, size = ingest_us(args.hosts, args.records, args.rounds)
    print(f"  {f'HostStore.ingest, {n:,} records of {size} B, chunks of 250':<58} {us:>6.1f} us/record")
    whole, part = proof_close_us(args.hosts // 2, args.records, args.rounds)
    print(f"  {f'a proof close, {args.hosts // 2:,} hosts: the whole state through Python':<58} {whole:>6.1f} us/host")
    print(f"  {'  the same, in the store with the proof part through Python':<58} {part:>6.1f} us/host")


if __name__ == "__main__":
    main()
