"""The Strimzi KafkaTopic manifests describe the topics exactly as `hmtel topics ensure`
leaves them on a real broker: same partitions, cleanup policy, retention and compaction lag."""
from __future__ import annotations

from pathlib import Path

import yaml

from hmconfig.topic_admin import describe_topics, ensure_topics

TOPICS_YAML = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "kafka-topics.yaml"


async def test_manifest_topics_match_what_ensure_creates(kafka_settings):
    docs = [d for d in yaml.safe_load_all(TOPICS_YAML.read_text()) if d]
    await ensure_topics(kafka_settings)
    states = await describe_topics(kafka_settings, [d["spec"]["topicName"] for d in docs])
    assert set(states) == {d["spec"]["topicName"] for d in docs}
    for doc in docs:
        state = states[doc["spec"]["topicName"]]
        if kafka_settings.topic_partitions is None:
            assert state.partitions == doc["spec"]["partitions"], state.name
        for key, value in doc["spec"]["config"].items():
            assert state.config.get(key) == str(value), (state.name, key)
