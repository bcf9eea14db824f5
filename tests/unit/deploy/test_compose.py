"""deploy/docker-compose.yml: valid against the compose specification's JSON schema (as
shipped in the npm package dclint), and wired the way docs/DEPLOY.md describes."""
from __future__ import annotations

import copy

import jsonschema_rs
import pytest

from deploy_manifests import DEPLOY, load_all

COMPOSE = DEPLOY / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    (doc,) = load_all(COMPOSE)
    return doc


def test_compose_validates_against_compose_spec(compose, compose_schema):
    assert compose_schema.get("title") == "Compose Specification"
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in jsonschema_rs.validator_for(compose_schema).iter_errors(compose)]
    assert not errors, errors


def test_compose_schema_rejects_a_misspelt_key(compose, compose_schema):
    broken = copy.deepcopy(compose)
    broken["services"]["collector"]["privilegd"] = True
    assert not jsonschema_rs.validator_for(compose_schema).is_valid(broken)


def test_kafka_is_the_official_image_in_kraft_mode_with_a_three_broker_profile(compose):
    services = compose["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka:")}
    assert set(brokers) == {"kafka-1", "kafka-2", "kafka-3"}
    assert "profiles" not in brokers["kafka-1"]  # the default: one broker
    assert brokers["kafka-2"]["profiles"] == brokers["kafka-3"]["profiles"] == ["kafka-3"]
    roles = {n: s["environment"]["KAFKA_PROCESS_ROLES"] for n, s in brokers.items()}
    assert roles == {"kafka-1": "broker,controller", "kafka-2": "broker", "kafka-3": "broker"}
    ids = {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()}
    assert ids == {1, 2, 3}
    assert len({s["environment"]["CLUSTER_ID"] for s in brokers.values()}) == 1


def test_topic_setup_runs_hmtel_topics_ensure_before_the_pipeline(compose):
    services = compose["services"]
    assert services["topics"]["command"] == ["hmtel", "topics", "ensure"]
    for name in ("collector", "processors", "dashboard"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_collector_sees_the_host_read_only(compose):
    collector = compose["services"]["collector"]
    assert collector["privileged"] is True and collector["pid"] == "host"
    binds = {v["target"]: v for v in collector["volumes"] if isinstance(v, dict)}
    assert {binds[t]["source"] for t in ("/host", "/host/proc", "/host/sys")} == {"/", "/proc", "/sys"}
    assert all(binds[t]["read_only"] for t in binds)
    assert collector["environment"]["HMTEL_HOST_ROOT"] == "/host"
    assert collector["build"]["target"] == "collector"


def test_processors_and_dashboard_drop_every_capability(compose):
    for name in ("processors", "dashboard"):
        service = compose["services"][name]
        assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
        assert "privileged" not in service
