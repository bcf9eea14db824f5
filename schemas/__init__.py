"""The wire contract: JSON Schemas per record type and version, the topic table,
and the DSSE signing helpers. Ground floor: imports nothing else of hmtel.

    from schemas import validate, SchemaError
    validate("hm.usage.v1", record)      # raises SchemaError(path=..., message=...)

Each ``schemas/<name>.json`` is compiled once, on first use, with fastjsonschema
(the faster of fastjsonschema and jsonschema-rs here; see bench/schema_validators.py).
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import fastjsonschema

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
def _compiled(name: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(schema(name))


def validate(name: str, obj: Any) -> None:
    """Raise SchemaError (with the JSON path of the first failure) unless ``obj`` matches schema ``name``."""
    try:
        _compiled(name)(obj)
    except fastjsonschema.JsonSchemaValueException as err:
        # fastjsonschema names the failing value "data.a.b" or "data[0]"; report it as a JSON path.
        path = "$" + (err.name or "data")[len("data"):]
        message = err.message.replace(err.name or "data", path, 1) if err.name else err.message
        raise SchemaError(name, path, message) from None


def is_valid(name: str, obj: Any) -> bool:
    try:
        validate(name, obj)
    except SchemaError:
        return False
    return True
