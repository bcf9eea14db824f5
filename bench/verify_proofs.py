"""How fast the reference validator judges proofs: consumers.verify.verify_envelope with a
ChainChecker, on chains of signed proofs built from the hm.proof.v1 fixture.

    .venv/bin/python bench/verify_proofs.py [--hosts 100] [--proofs 50]

Prints proofs/s for: the full check (signature, schema, identity, thresholds, chain), the
same without the chain, and Ed25519 verification alone (the floor). Single thread, wall
clock on a shared machine: rerun and compare.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import time
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consumers.verify import ChainChecker, proof_id, verify_envelope
from schemas import dsse

FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/schemas/hm.proof.v1/valid/flagged-source-disagreement.json"


def build(hosts: int, proofs: int, key: Ed25519PrivateKey) -> list[tuple[bytes, bytes]]:
    template = orjson.loads(FIXTURE.read_bytes())
    out = []
    for h in range(hosts):
        host = "h-" + hashlib.sha256(str(h).encode()).hexdigest()[:32]
        prev = None
        for seq in range(proofs):
            p = copy.deepcopy(template)
            start = 1_800_000_000_000_000 + seq * 10_000_000
            p.update(host_id=host, seq=seq, prev_proof_hash=prev, proof_id=proof_id(host, start, 10_000_000),
                     window={"start_us": start, "end_us": start + 10_000_000, "length_s": 10.0})
            data = orjson.dumps(p, option=orjson.OPT_SORT_KEYS)
            prev = hashlib.sha256(data).hexdigest()
            out.append((host.encode(), orjson.dumps(dsse.make_envelope(key, data))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--proofs", type=int, default=50, help="proofs per host")
    args = ap.parse_args()
    key = Ed25519PrivateKey.generate()
    keys = [dsse.raw_public_key(key)]
    records = build(args.hosts, args.proofs, key)
    now_us = 1_800_000_000_000_000 + args.proofs * 10_000_000 + 10_000_000
    rows = []

    chain = ChainChecker()
    t = time.perf_counter()
    bad = sum(not verify_envelope(v, keys, chain=chain, kafka_key=k, now_us=now_us).ok for k, v in records)
    rows.append(("full check + chain", len(records) / (time.perf_counter() - t), bad))

    t = time.perf_counter()
    bad = sum(not verify_envelope(v, keys, kafka_key=k, now_us=now_us).ok for k, v in records)
    rows.append(("full check, no chain", len(records) / (time.perf_counter() - t), bad))

    import base64

    pub = key.public_key()
    envs = [orjson.loads(v) for _, v in records]
    t = time.perf_counter()
    for env in envs:
        pub.verify(base64.b64decode(env["signatures"][0]["sig"]),
                   dsse.pae(env["payloadType"], base64.b64decode(env["payload"])))
    rows.append(("Ed25519 verify only", len(envs) / (time.perf_counter() - t), 0))

    print(f"{len(records)} proofs ({args.hosts} hosts x {args.proofs})")
    print(f"{'what':<24}{'proofs/s':>12}{'invalid':>10}")
    for name, rate, bad in rows:
        print(f"{name:<24}{rate:>12,.0f}{bad:>10}")


if __name__ == "__main__":
    main()
