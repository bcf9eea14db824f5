"""The v1 topic table: the one place topic names, keys and settings are declared.

`hmtel topics ensure`, the AsyncAPI document's test, and the deployment
manifests all read this table, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int  # -1 keeps forever (compacted topics)
    compacted: bool = False
    key: str = "host_id"
    value: str = ""  # the schema name of the value, when it has one
    description: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, str]:
        """Topic-level Kafka configs as `kafka-configs` / CreateTopics take them."""
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
        }
        cfg.update(self.extra_config)
        return cfg


INVENTORY = Topic(
    "hm.inventory.v1", 6, -1, compacted=True, value="hm.inventory.v1",
    description="Hardware inventory per host; compacted, so the latest per host is always there.",
    extra_config={"min.compaction.lag.ms": str(HOUR_MS)},
)
USAGE = Topic("hm.usage.v1", 6, 7 * DAY_MS, value="hm.usage.v1",
              description="One usage sample per host per interval.")
EBPF = Topic("hm.ebpf.v1", 6, 7 * DAY_MS, value="hm.ebpf.v1",
             description="eBPF map snapshots per host and program.")
USAGE_AGG_10S = Topic("hm.usage.agg.10s.v1", 6, 2 * DAY_MS, value="hm.usage.agg.v1",
                      description="10 s per-host usage aggregates for dashboards.")
USAGE_AGG_1M = Topic("hm.usage.agg.1m.v1", 6, 30 * DAY_MS, value="hm.usage.agg.v1",
                     description="1 min per-host usage aggregates for dashboards.")
PROOFS = Topic("hm.proofs.v1", 6, 365 * DAY_MS, value="hm.proof.v1",
               description="DSSE envelopes holding signed, hash-chained resource proofs.")
REJECTED = Topic("hm.rejected.v1", 3, 30 * DAY_MS, key="host_id or 'unknown'", value="hm.rejected.v1",
                 description="Every refused record with its reason code; nothing is dropped silently.")

TOPICS: tuple[Topic, ...] = (INVENTORY, USAGE, EBPF, USAGE_AGG_10S, USAGE_AGG_1M, PROOFS, REJECTED)
BY_NAME: dict[str, Topic] = {t.name: t for t in TOPICS}
assert len(BY_NAME) == len(TOPICS), "duplicate topic name in the table"
