"""The wire contract: JSON Schemas per record type and version, the topic table,
and the DSSE signing helpers. Ground floor: imports nothing else of hmtel.

    from schemas import validate, SchemaError
    validate("hm.usage.v1", record)      # raises SchemaError(path=..., message=...)

Each ``schemas/<name>.json`` is compiled once, on first use, with jsonschema-rs:
measured against fastjsonschema it validates realistic records 3-4x faster and
compiles 40-80x faster, and it reports the failing location as a list of keys
and indices, so the JSON path is exact even for keys like "/" or "eth0.100"
(bench/schema_validators.py; figures in docs/FOUNDATION.md).
"""
from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs

from hmconfig.errors import HmtelError

SCHEMA_DIR = Path(str(resources.files(__name__)))


class SchemaError(HmtelError):
    """A record does not match its schema. ``path`` is the JSON path of the failure, e.g. ``$.cpu.cores``."""

    retriable = False

    def __init__(self, schema: str, path: str, message: str):
        super().__init__(f"{schema}: {path}: {message}")
        self.schema = schema
        self.path = path
        self.message = message


def names() -> list[str]:
    """Every schema shipped, e.g. ``["hm.inventory.v1", "hm.usage.v1", ...]``."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("hm.*.json"))


@functools.cache
def schema(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no schema named {name!r}; known: {', '.join(names())}")
    return json.loads(path.read_text())


@functools.cache
def _compiled(name: str) -> Any:
    # Draft-07, as every schema file declares; formats are asserted (jsonschema-rs's
    # default for draft-07), so "format": "uuid" rejects a non-UUID boot_id.
    return jsonschema_rs.Draft7Validator(schema(name), validate_formats=True)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_path(location: list[str | int]) -> str:
    """``["cpu", "per_core", 0]`` -> ``$.cpu.per_core[0]``; other keys bracket-quoted: ``$.values['/']``."""
    out = "$"
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


def validate(name: str, obj: Any) -> None:
    """Raise SchemaError (with the JSON path of the first failure) unless ``obj`` matches schema ``name``."""
    try:
        _compiled(name).validate(obj)
    except jsonschema_rs.ValidationError as err:
        raise SchemaError(name, json_path(list(err.instance_path)), err.message) from None


def is_valid(name: str, obj: Any) -> bool:
    try:
        validate(name, obj)
    except SchemaError:
        return False
    return True
