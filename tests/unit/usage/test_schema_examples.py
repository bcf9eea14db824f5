"""The hm.usage.v1 examples: every valid/ file validates, every invalid/ file fails at the named field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import schemas

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures/schemas/hm.usage.v1"
VALID = sorted((EXAMPLES / "valid").glob("*.json"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_example(path: Path) -> None:
    schemas.validate("hm.usage.v1", json.loads(path.read_text()))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_example(path: Path) -> None:
    with pytest.raises(schemas.SchemaError):
        schemas.validate("hm.usage.v1", json.loads(path.read_text()))


def test_there_are_examples_of_both_kinds() -> None:
    assert len(VALID) >= 3 and len(INVALID) >= 8
