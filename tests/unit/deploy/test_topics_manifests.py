"""deploy/k8s/kafka-topics.yaml is exactly what deploy.gen_topics prints from the topic
table, so its partitions, retention and compaction are those of `hmtel topics ensure`."""
from __future__ import annotations

import yaml

from deploy import gen_topics
from deploy_manifests import K8S, load_all
from schemas.topics import BY_NAME, TOPICS

TOPICS_YAML = K8S / "kafka-topics.yaml"


def test_committed_manifest_is_the_generated_one():
    assert TOPICS_YAML.read_text() == gen_topics.render(), (
        "deploy/k8s/kafka-topics.yaml is stale: python -m deploy.gen_topics > deploy/k8s/kafka-topics.yaml")
    assert gen_topics.main(["--check", str(TOPICS_YAML)]) == 0


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "kafka-topics.yaml"
    stale.write_text(gen_topics.render().replace("partitions: 6", "partitions: 5", 1))
    assert gen_topics.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_every_topic_with_the_settings_topics_ensure_applies():
    docs = load_all(TOPICS_YAML)
    assert [d["spec"]["topicName"] for d in docs] == [t.name for t in TOPICS]
    for doc in docs:
        topic = BY_NAME[doc["spec"]["topicName"]]
        assert doc["spec"]["partitions"] == topic.partitions
        # ensure_topics creates and alters topics with exactly Topic.config()
        assert doc["spec"]["config"] == topic.config()
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == gen_topics.DEFAULT_CLUSTER
    compacted = {d["spec"]["topicName"] for d in docs if d["spec"]["config"]["cleanup.policy"] == "compact"}
    assert compacted == {t.name for t in TOPICS if t.compacted}


def test_other_cluster_and_replication():
    first = next(d for d in yaml.safe_load_all(gen_topics.render("prod", 2)) if d)
    assert first["metadata"]["labels"]["strimzi.io/cluster"] == "prod"
    assert first["spec"]["replicas"] == 2
