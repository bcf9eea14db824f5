"""Check the proof chains a pipeline wrote: what a consensus validator relies on.

    from hmtel_testing.chains import check_proof_chains

    distinct, copies, problems = check_proof_chains({host_id: {proof_id: [payload bytes, ...]}})
    assert copies == 0 and not problems, problems

The input is every copy of each proof's payload found on ``hm.proofs.v1`` (signatures checked
by the caller). A proof written twice must be byte-identical; each host's chain must run
from seq 0 with no gap, each ``prev_proof_hash`` the sha256 of the previous payload (null
first). Independent of consumers/verify.py on purpose: the tests check the processors'
output against the design, not against another part of the product.
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import orjson


def check_proof_chains(proofs: Mapping[str, Mapping[str, Sequence[bytes]]]) -> tuple[int, int, list[str]]:
    """(distinct proofs, extra copies, problems)."""
    problems: list[str] = []
    distinct = copies = 0
    for host, by_id in proofs.items():
        chain = []
        for pid, found in by_id.items():
            if len(set(found)) > 1:
                problems.append(f"{host}: proof_id {pid[:12]} has {len(set(found))} different payloads")
            copies += len(found) - 1
            chain.append(orjson.loads(found[0]))
        chain.sort(key=lambda p: p["seq"])
        distinct += len(chain)
        if [p["seq"] for p in chain] != list(range(len(chain))):
            problems.append(f"{host}: proof seqs {[p['seq'] for p in chain][:12]} not contiguous from 0")
            continue
        prev = None
        for p in chain:
            if p["prev_proof_hash"] != prev:
                problems.append(f"{host}: proof {p['seq']} prev_proof_hash does not link")
                break
            prev = hashlib.sha256(by_id[p["proof_id"]][0]).hexdigest()
    return distinct, copies, problems
