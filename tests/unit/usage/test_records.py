"""The TypedDict mirror in collector.usage_records agrees with schemas/hm.usage.v1.json."""
from __future__ import annotations

import types
import typing
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest

import schemas
from collector.usage_records import UsageRecord


def _strip_none(hint: Any) -> Any:
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _pairs(cls: type, node: dict[str, Any], path: str) -> list[tuple[str, type, dict[str, Any]]]:
    """(path, TypedDict, schema object) for cls and every TypedDict nested in it."""
    out = [(path, cls, node)]
    hints = get_type_hints(cls)
    for key, hint in hints.items():
        hint = _strip_none(hint)
        sub = node["properties"][key]
        if is_typeddict(hint):
            out += _pairs(hint, sub, f"{path}.{key}")
        elif get_origin(hint) is list and is_typeddict(get_args(hint)[0]):
            out += _pairs(get_args(hint)[0], sub["items"], f"{path}.{key}[]")
        elif get_origin(hint) is dict and is_typeddict(get_args(hint)[1]):
            out += _pairs(get_args(hint)[1], sub["additionalProperties"], f"{path}.{key}{{}}")
    return out


PAIRS = _pairs(UsageRecord, schemas.schema("hm.usage.v1"), "$")


@pytest.mark.parametrize(("path", "cls", "node"), PAIRS, ids=[p[0] for p in PAIRS])
def test_typeddict_matches_schema_object(path: str, cls: type, node: dict[str, Any]) -> None:
    assert set(get_type_hints(cls)) == set(node["properties"]), path
    assert set(cls.__required_keys__) == set(node.get("required", [])), path  # type: ignore[attr-defined]


def test_every_nested_schema_object_is_mirrored() -> None:
    # cpu, per_core, load, psi (+3 resources), memory, disk, devices, filesystem, network, interfaces,
    # processes, gpu and the record itself.
    assert {p[0] for p in PAIRS} >= {"$", "$.cpu", "$.cpu.per_core[]", "$.load.psi", "$.load.psi.cpu",
                                     "$.disk.devices{}", "$.network.interfaces{}", "$.filesystem[]", "$.gpu[]"}
