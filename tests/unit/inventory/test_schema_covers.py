"""The schema documents every field the inventory produces: each object key in the
fixture machines' records is a declared property (where the schema lists properties),
so hm.inventory.v1.json stays the reference for consumers."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from schemas import schema

MACHINES = Path(__file__).resolve().parents[2] / "fixtures" / "machines"


def undeclared(node: dict[str, Any], value: Any, path: str = "$") -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                out += undeclared(props[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += undeclared(extra, item, f"{path}.{key}")
            elif props is not None and extra is not True:
                out.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            out += undeclared(node["items"], item, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in MACHINES.iterdir() if (p / "expected.json").exists()))
def test_every_field_is_declared(name):
    body = json.loads((MACHINES / name / "expected.json").read_text())
    missing = sorted({re.sub(r"\[\d+\]", "[]", p) for p in undeclared(schema("hm.inventory.v1"), body)})
    assert missing == []


def test_psutil_fallback_fields_are_declared():
    from collector.inventory import build_inventory

    body = build_inventory(Path("/"), platform="darwin")
    assert sorted({re.sub(r"\[\d+\]", "[]", p) for p in undeclared(schema("hm.inventory.v1"), body)}) == []
