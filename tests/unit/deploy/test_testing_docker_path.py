"""hmtel_testing's docker path, checked without an engine: the override it lays over the
compose file is valid compose and names services that exist; auto mode falls back to local."""
from __future__ import annotations

import jsonschema_rs
import pytest

from deploy_manifests import DEPLOY, load_all
from hmtel_testing.pipeline import TOPIC_ROLES, Pipeline, PipelineError, compose_override
from schemas.topics import TOPICS


def test_override_is_valid_compose_for_existing_services(compose_schema, tmp_path):
    pipeline = Pipeline(workdir=tmp_path, proof_window_s=7)
    override = compose_override(pipeline)
    assert jsonschema_rs.validator_for(compose_schema).is_valid(override)
    (base,) = load_all(DEPLOY / "docker-compose.yml")
    assert set(override["services"]) <= set(base["services"])
    assert override["name"] != base["name"] and override["name"] != compose_override(pipeline)["name"]
    for service in override["services"].values():
        assert service["environment"]["HMTEL_PROOF_WINDOW_S"] == "7"
        assert service["environment"]["HMTEL_PROCESSOR_APP_ID"] == pipeline.app_id


def test_topic_roles_cover_the_table():
    assert sorted(TOPIC_ROLES.values()) == sorted(t.name for t in TOPICS)
    assert TOPIC_ROLES["usage_agg_10s"] == "hm.usage.agg.10s.v1"


def test_unknown_mode_and_unstarted_pipeline_fail_with_one_line(tmp_path, monkeypatch):
    with pytest.raises(PipelineError, match="unknown pipeline mode"):
        Pipeline(mode="kubernetes", workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="not started"):
        _ = Pipeline(workdir=tmp_path).bootstrap


def test_auto_mode_is_local_without_an_engine_and_forced_modes_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    monkeypatch.delenv("HMTEL_TESTING_MODE", raising=False)
    assert Pipeline(workdir=tmp_path).resolve_mode() == "local"
    assert Pipeline(mode="docker", workdir=tmp_path).resolve_mode() == "docker"
    monkeypatch.setenv("HMTEL_TESTING_MODE", "local")
    assert Pipeline(workdir=tmp_path).resolve_mode() == "local"
