"""BTF member offsets from a synthetic blob (the format of Documentation/bpf/btf.rst)."""
from __future__ import annotations

import struct

import pytest

from collector.ebpf.btf import BtfError, parse_btf


def _blob() -> bytes:
    strings = b"\0int\0outer\0a\0inner\0b\0c\0u64\0"
    off = {s: strings.index(s.encode() + b"\0") for s in ("int", "outer", "a", "inner", "b", "c", "u64")}
    t = b""
    # 1: int (4 bytes)
    t += struct.pack("<III", off["int"], 1 << 24, 4) + struct.pack("<I", 32)
    # 2: struct inner { int b; int c; } size 8
    t += struct.pack("<III", off["inner"], (4 << 24) | 2, 8)
    t += struct.pack("<III", off["b"], 1, 0) + struct.pack("<III", off["c"], 1, 32)
    # 3: anonymous union { int a2 (named c) } -- members of anonymous unions are direct members in C
    t += struct.pack("<III", 0, (5 << 24) | 1, 4) + struct.pack("<III", off["c"], 1, 0)
    # 4: typedef u64 -> inner (modifiers are followed)
    t += struct.pack("<III", off["u64"], 8 << 24, 2)
    # 5: struct outer { int a; <anon union @ 64 bits>; u64 inner_td @ 128 bits (named "inner") } size 24
    t += struct.pack("<III", off["outer"], (4 << 24) | 3, 24)
    t += struct.pack("<III", off["a"], 1, 0)
    t += struct.pack("<III", 0, 3, 64)
    t += struct.pack("<III", off["inner"], 4, 128)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(t), len(t), len(strings))
    return hdr + t + strings


@pytest.mark.parametrize("struct_name, path, want", [
    ("outer", "a", 0),
    ("outer", "c", 8),          # through the anonymous union
    ("outer", "inner", 16),
    ("outer", "inner.c", 20),   # through a typedef
    ("inner", "c", 4),
])
def test_offsets(struct_name, path, want):
    assert parse_btf(_blob()).offset(struct_name, path) == want


@pytest.mark.parametrize("struct_name, path", [("outer", "nope"), ("missing", "a"), ("outer", "inner.zz")])
def test_missing_member(struct_name, path):
    with pytest.raises(BtfError):
        parse_btf(_blob()).offset(struct_name, path)


def test_bad_magic():
    with pytest.raises(BtfError, match="magic"):
        parse_btf(b"\0" * 32)
