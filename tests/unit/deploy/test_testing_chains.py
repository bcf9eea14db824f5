"""hmtel_testing.chains.check_proof_chains: what it accepts and each fault it names."""
from __future__ import annotations

import hashlib

import orjson

from hmtel_testing.chains import check_proof_chains


def chain(host: str, n: int) -> list[bytes]:
    out, prev = [], None
    for seq in range(n):
        data = orjson.dumps({"host_id": host, "proof_id": f"{host}-{seq}", "seq": seq, "prev_proof_hash": prev})
        out.append(data)
        prev = hashlib.sha256(data).hexdigest()
    return out


def by_id(payloads: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for data in payloads:
        out.setdefault(orjson.loads(data)["proof_id"], []).append(data)
    return out


def test_contiguous_linked_chains_pass_and_identical_copies_are_counted():
    a, b = chain("h-a", 4), chain("h-b", 2)
    assert check_proof_chains({"h-a": by_id(a + [a[2]]), "h-b": by_id(b)}) == (6, 1, [])


def test_a_gap_a_broken_link_and_differing_copies_are_each_named():
    gap = chain("h-gap", 4)
    del gap[1]
    link = chain("h-link", 3)
    bad = orjson.loads(link[2])
    bad["prev_proof_hash"] = "00" * 32
    link[2] = orjson.dumps(bad)
    copy = chain("h-copy", 2)
    other = orjson.loads(copy[1])
    other["extra"] = 1
    _distinct, _copies, problems = check_proof_chains(
        {"h-gap": by_id(gap), "h-link": by_id(link), "h-copy": by_id(copy + [orjson.dumps(other)])})
    assert any(p.startswith("h-gap: proof seqs [0, 2, 3]") for p in problems), problems
    assert "h-link: proof 2 prev_proof_hash does not link" in problems
    assert any(p.startswith("h-copy: proof_id h-copy-1 has 2 different payloads") for p in problems), problems
