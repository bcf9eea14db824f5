"""Kafka cluster ids made for `StorageTool format -t <id>`."""
from __future__ import annotations

import base64

from deploy.localbroker import _kafka_uuid


def test_cluster_ids_are_16_bytes_and_never_look_like_an_option():
    ids = {_kafka_uuid() for _ in range(5000)}  # ~78 of 5,000 would start with "-" unguarded
    assert len(ids) == 5000
    for cid in ids:
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
