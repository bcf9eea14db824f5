"""The wire contract: every JSON Schema has valid and invalid examples that behave,
errors carry a JSON path, and schemas/asyncapi.yaml matches the topic table.

Examples live in tests/fixtures/schemas/<name>/{valid,invalid}/*.json; the
helper that adds a schema adds its examples.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import schemas
from hmconfig.errors import HmtelError
from schemas.topics import TOPICS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "fixtures" / "schemas"
ASYNCAPI = ROOT / "schemas" / "asyncapi.yaml"

# $ then any of .name, [n], ['key'] or ["key"].
JSON_PATH = re.compile(r"""\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\['(?:[^'\\]|\\.)*'\]|\["(?:[^"\\]|\\.)*"\])*""")

NAMES = schemas.names()


def examples(kind: str) -> list[Any]:
    return [pytest.param(name, path, id=f"{name}/{path.stem}")
            for name in NAMES for path in sorted((EXAMPLES / name / kind).glob("*.json"))]


# --- every schema file -----------------------------------------------------

def test_the_core_host_schemas_exist() -> None:
    assert {"hm.usage.v1", "hm.ebpf.v1", "hm.inventory.v1"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_schema_has_valid_and_invalid_examples(name: str) -> None:
    valid = list((EXAMPLES / name / "valid").glob("*.json"))
    invalid = list((EXAMPLES / name / "invalid").glob("*.json"))
    assert valid, f"add at least one valid example under {EXAMPLES / name / 'valid'}"
    assert invalid, f"add at least one invalid example under {EXAMPLES / name / 'invalid'}"


@pytest.mark.parametrize("name", NAMES)
def test_schema_declares_draft_07_and_its_name(name: str) -> None:
    doc = schemas.schema(name)
    assert doc.get("$schema") == "http://json-schema.org/draft-07/schema#"
    const = doc.get("properties", {}).get("schema", {}).get("const")
    assert const in (None, name), f"{name}: property `schema` is const {const!r}"


@pytest.mark.parametrize(("name", "path"), examples("valid"))
def test_valid_example_validates(name: str, path: Path) -> None:
    schemas.validate(name, json.loads(path.read_text()))
    assert schemas.is_valid(name, json.loads(path.read_text()))


@pytest.mark.parametrize(("name", "path"), examples("invalid"))
def test_invalid_example_fails_with_a_json_path(name: str, path: Path) -> None:
    with pytest.raises(schemas.SchemaError) as excinfo:
        schemas.validate(name, json.loads(path.read_text()))
    err = excinfo.value
    assert err.schema == name
    assert JSON_PATH.fullmatch(err.path), f"not a JSON path: {err.path!r}"
    assert err.message and "\n" not in str(err)
    assert not schemas.is_valid(name, json.loads(path.read_text()))


# --- the loader, on a schema defined here ----------------------------------

TEST_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["schema", "seq"],
    "properties": {
        "schema": {"const": "hm.test.v1"},
        "seq": {"type": "integer", "minimum": 0},
        "per_core": {"type": "array", "items": {"type": "object", "properties": {
            "utilisation": {"type": "number", "maximum": 1}}}},
        "values": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
    },
}


@pytest.fixture
def test_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "hm.test.v1.json").write_text(json.dumps(TEST_SCHEMA))
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    schemas.schema.cache_clear()
    schemas._compiled.cache_clear()
    yield "hm.test.v1"
    schemas.schema.cache_clear()
    schemas._compiled.cache_clear()


@pytest.mark.parametrize(("record", "path"), [
    ({"schema": "hm.test.v1"}, "$"),
    ({"schema": "hm.other.v1", "seq": 0}, "$.schema"),
    ({"schema": "hm.test.v1", "seq": -1}, "$.seq"),
    ({"schema": "hm.test.v1", "seq": True}, "$.seq"),  # a bool is not an integer
    ({"schema": "hm.test.v1", "seq": 0, "per_core": [{"utilisation": 0.5}, {"utilisation": 85}]},
     "$.per_core[1].utilisation"),
    ({"schema": "hm.test.v1", "seq": 0, "values": {"/": -5}}, "$.values['/']"),
    ({"schema": "hm.test.v1", "seq": 0, "values": {"eth0.100": -1}}, "$.values['eth0.100']"),
])
def test_schema_error_names_the_json_path(test_schema: str, record: dict[str, Any], path: str) -> None:
    assert schemas.names() == [test_schema]
    with pytest.raises(schemas.SchemaError) as excinfo:
        schemas.validate(test_schema, record)
    err = excinfo.value
    assert err.path == path
    assert isinstance(err, HmtelError) and not err.retriable
    assert str(err).startswith(f"{test_schema}: {path}: ")
    assert JSON_PATH.fullmatch(err.path)


def test_valid_record_passes(test_schema: str) -> None:
    record = {"schema": "hm.test.v1", "seq": 3, "per_core": [{"utilisation": 1}], "values": {"/": 0}}
    schemas.validate(test_schema, record)
    assert schemas.is_valid(test_schema, record)


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="hm.nope.v1"):
        schemas.validate("hm.nope.v1", {})


# --- the AsyncAPI document ---------------------------------------------------

@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())


def resolve(doc: dict[str, Any], node: Any) -> Any:
    """Follow an internal ``$ref`` ("#/a/b") to its target; other nodes are returned as they are."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            assert isinstance(target, dict) and part in target, f"dangling $ref {node['$ref']}"
            target = target[part]
        node = target
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in all_refs(v)]
    return []


def test_asyncapi_channels_are_the_topic_table(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"].startswith("3.")
    addresses = [channel["address"] for channel in asyncapi["channels"].values()]
    assert sorted(addresses) == sorted(t.name for t in TOPICS)
    assert len(set(addresses)) == len(addresses)


def test_asyncapi_local_server(asyncapi: dict[str, Any]) -> None:
    local = asyncapi["servers"]["local"]
    assert (local["host"], local["protocol"]) == ("127.0.0.1:9092", "kafka")


def test_asyncapi_refs_resolve(asyncapi: dict[str, Any]) -> None:
    refs = all_refs(asyncapi)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            resolve(asyncapi, {"$ref": ref})
        else:
            assert (ASYNCAPI.parent / ref).is_file(), f"{ref} in {ASYNCAPI.name} does not exist"


def test_asyncapi_bindings_match_the_topic_table(asyncapi: dict[str, Any]) -> None:
    by_address = {c["address"]: c for c in asyncapi["channels"].values()}
    for topic in TOPICS:
        kafka = by_address[topic.name].get("bindings", {}).get("kafka")
        if kafka is None:
            continue
        assert kafka.get("partitions", topic.partitions) == topic.partitions, topic.name
        cfg = kafka.get("topicConfiguration", {})
        assert cfg.get("retention.ms", topic.retention_ms) == topic.retention_ms, topic.name
        assert cfg.get("cleanup.policy", [topic.config()["cleanup.policy"]]) == [topic.config()["cleanup.policy"]]


def test_asyncapi_payload_refs_the_schema_once_it_exists(asyncapi: dict[str, Any]) -> None:
    by_address = {c["address"]: c for c in asyncapi["channels"].values()}
    for topic in TOPICS:
        messages = [resolve(asyncapi, m) for m in by_address[topic.name]["messages"].values()]
        assert messages, f"{topic.name} has no message"
        if topic.value in NAMES:
            refs = [m.get("payload", {}).get("$ref") for m in messages]
            assert f"./{topic.value}.json" in refs, (
                f"{topic.name}: schemas/{topic.value}.json exists; make its message payload "
                f"`$ref: './{topic.value}.json'` in schemas/asyncapi.yaml")
