"""The agent's own Prometheus metrics, served on ``metrics_listen`` (127.0.0.1:9464 by default).

Spool figures (depth, bytes, drops, corruption) are read from the spool at
scrape time; the drop and corruption totals are the spool's persisted
counters, so they survive restarts.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collector.spool import SpoolStats

log = logging.getLogger(__name__)

PREFIX = "hm_agent"


class _SpoolCollector(Collector):
    def __init__(self, stats: Callable[[], SpoolStats | None]):
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        s = self._stats()
        if s is None:
            return
        yield GaugeMetricFamily(f"{PREFIX}_spool_depth_records", "Records in the spool not yet acked by Kafka.",
                                value=s.depth_records)
        yield GaugeMetricFamily(f"{PREFIX}_spool_bytes", "Bytes of spool segment files on disk.", value=s.depth_bytes)
        yield CounterMetricFamily(f"{PREFIX}_spool_dropped_records", "Records dropped (oldest first) because "
                                  "the spool reached spool_max_bytes; persisted across restarts.",
                                  value=s.dropped_total)
        yield CounterMetricFamily(f"{PREFIX}_spool_corrupt_records", "Records lost to a corrupt or truncated "
                                  "spool segment; persisted across restarts.", value=s.corrupt_records_total)


class AgentMetrics:
    def __init__(self, spool_stats: Callable[[], SpoolStats | None] = lambda: None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter(f"{PREFIX}_samples", "Records built and spooled, by schema.", ["schema"], registry=r)
        self.published = Counter(f"{PREFIX}_published_records", "Records acked by Kafka.", registry=r)
        self.publish_errors = Counter(f"{PREFIX}_publish_errors", "Producer failures that forced a resend.",
                                      registry=r)
        self.publish_latency = Histogram(
            f"{PREFIX}_publish_latency_seconds", "Time from handing a batch to the producer to the broker's ack.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r)
        self.source_errors = Counter(f"{PREFIX}_source_errors", "Failures per source.", ["source"], registry=r)
        self.source_restarts = Counter(f"{PREFIX}_source_restarts", "Supervisor restarts per source task.",
                                       ["source"], registry=r)
        self.sample_seconds = Histogram(f"{PREFIX}_sample_seconds", "Time to build one usage record.",
                                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
                                        registry=r)
        self.kafka_up = Gauge(f"{PREFIX}_kafka_up", "1 while Kafka acks the agent's records.", registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the agent samples and spools (Kafka may still be down).",
                           registry=r)
        r.register(_SpoolCollector(spool_stats))
        self._server: Any = None
        self.address: str | None = None

    def serve(self, listen: str) -> str | None:
        """Start the HTTP endpoint (a daemon thread); returns the bound host:port."""
        if not listen:
            return None
        host, _, port = listen.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as err:
            # The agent's job is publishing, not its own metrics: carry on without them.
            log.warning("metrics: cannot listen on %s (%s); set HMTEL_METRICS_LISTEN to a free host:port",
                        listen, err.strerror)
            return None
        self._server = server
        self.address = f"{host}:{server.server_address[1]}"
        log.info("metrics: http://%s/metrics", self.address)
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
