"""The processor's memoised partitions (processors.app.Processor._partition and friends) are the ones
the producer's default partitioner picks: a state written to another changelog partition would be
restored by the wrong worker, an output in another partition missed by the delivery check."""
from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from hmconfig.settings import load_settings
from processors.app import Processor
from processors.config import ProcessorConfig
from processors.engine import Signer


def _processor(tmp_path, partitions: dict[str, int]) -> Processor:
    settings = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    return Processor(settings, ProcessorConfig(), Signer("k", lambda data: {}), topic_partitions=partitions)


def test_changelog_and_output_partitions_are_the_default_partitioners(tmp_path):
    proc = _processor(tmp_path, {"hm.usage.v1": 6, "hm.usage.agg.10s.v1": 6, "hm.proofs.v1": 4})
    rng = random.Random(7)
    hosts = [f"host-{rng.getrandbits(64):x}" for _ in range(500)] + ["é-host", "h"]
    partitioner = DefaultPartitioner()
    for host in hosts:
        key = host.encode()
        expected6 = partitioner(key, list(range(6)), list(range(6)))
        for _ in range(2):  # computed, then from the memo
            assert proc._changelog_partition(key) == expected6
            assert proc._target(host, "hm.usage.agg.10s.v1").partition == expected6
            assert proc._target(host, "hm.proofs.v1").partition == partitioner(key, list(range(4)), list(range(4)))
    assert len({proc._changelog_partition(h.encode()) for h in hosts}) == 6


def test_the_table_asks_the_memo(tmp_path):
    proc = _processor(tmp_path, {"hm.usage.v1": 6})
    assert proc.table.partition_for_key(b"host-a") == DefaultPartitioner()(b"host-a", list(range(6)), list(range(6)))
