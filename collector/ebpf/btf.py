"""Struct member offsets read from the running kernel's BTF (/sys/kernel/btf/vmlinux).

Why: bcc compiles against the headers under /lib/modules/$(uname -r)/build,
and those can belong to another kernel (this CI runs 6.18 with Debian's 6.1
headers), so ``task->pid`` compiled from headers reads the wrong bytes. The
programs therefore never dereference kernel structs through header layouts;
the loader passes each needed offset as a ``-D`` cflag computed here.

Format: Documentation/bpf/btf.rst (kernel >= 4.18; ENUM64 since 6.0).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

BTF_MAGIC = 0xEB9F

# kind -> size in bytes of the data that follows the 12-byte type header
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = 9, 10, 11, 12, 13, 14, 15
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = 16, 17, 18, 19
_MODIFIERS = {_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG}


class BtfError(Exception):
    """The BTF blob is unreadable or lacks the member asked for."""


@dataclass
class _Type:
    kind: int
    name: str
    ref: int = 0  # pointee / aliased type for modifiers and pointers
    members: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type id, bit offset)


@dataclass
class Btf:
    types: list[_Type]
    structs: dict[str, int]  # struct/union name -> type id (first seen)

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of ``path`` (dotted, e.g. ``"nd_net.net"``) inside ``struct struct_name``.

        Members of anonymous structs/unions are found as if they were direct
        members, as C does."""
        if struct_name not in self.structs:
            raise BtfError(f"struct {struct_name} not in BTF")
        type_id, total = self.structs[struct_name], 0
        for part in path.split("."):
            found = self._find(self._resolve(type_id), part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            bits, type_id = found
            if bits % 8:
                raise BtfError(f"{struct_name}.{path} is a bitfield")
            total += bits // 8
        return total

    def _resolve(self, type_id: int) -> int:
        while self.types[type_id].kind in _MODIFIERS:
            type_id = self.types[type_id].ref
        return type_id

    def _find(self, type_id: int, name: str) -> tuple[int, int] | None:
        for member, member_type, bits in self.types[type_id].members:
            if member == name:
                return bits, member_type
            if member == "":
                inner = self._resolve(member_type)
                if self.types[inner].kind in (_STRUCT, _UNION):
                    hit = self._find(inner, name)
                    if hit is not None:
                        return bits + hit[0], hit[1]
        return None


def parse_btf(data: bytes) -> Btf:
    """Parse a raw BTF blob. Only what offset lookups need is kept."""
    if len(data) < 24:
        raise BtfError("BTF blob too short")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise BtfError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
    types_start = hdr_len + type_off
    strings = data[hdr_len + str_off: hdr_len + str_off + str_len]

    def name_at(off: int) -> str:
        end = strings.index(b"\0", off)
        return strings[off:end].decode()

    types: list[_Type] = [_Type(0, "void")]
    structs: dict[str, int] = {}
    pos, end = types_start, types_start + type_len
    unpack = struct.unpack_from
    while pos < end:
        name_off, info, size_or_type = unpack("<III", data, pos)
        pos += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        entry = _Type(kind, "")
        if kind in (_STRUCT, _UNION):
            entry.name = name_at(name_off)
            for _ in range(vlen):
                m_name, m_type, m_off = unpack("<III", data, pos)
                pos += 12
                entry.members.append((name_at(m_name), m_type, m_off & 0xFFFFFF if kflag else m_off))
            if entry.name and entry.name not in structs:
                structs[entry.name] = len(types)
        elif kind == _INT or kind == _VAR or kind == _DECL_TAG:
            pos += 4
        elif kind == _ARRAY:
            pos += 12
        elif kind == _ENUM or kind == _FUNC_PROTO:
            pos += 8 * vlen
        elif kind == _DATASEC or kind == _ENUM64:
            pos += 12 * vlen
        elif kind in _MODIFIERS or kind in (_PTR, _FWD, _FUNC, _FLOAT):
            entry.ref = size_or_type
        else:
            raise BtfError(f"unknown BTF kind {kind} at byte {pos - 12}")
        types.append(entry)
    return Btf(types, structs)
