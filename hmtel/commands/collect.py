"""`hmtel collect`: run the per-host collector agent until SIGTERM or SIGINT."""
from __future__ import annotations

import os
import sys

import click

from hmtel.cli import Context, pass_ctx


@click.command()
@click.option("--usage-interval", "usage_interval_s", type=float, metavar="SECONDS",
              help="Seconds between usage samples [env HMTEL_USAGE_INTERVAL_S; default 1].")
@click.option("--spool-max-bytes", type=int, metavar="BYTES",
              help="Bound of the disk spool; the oldest records are dropped beyond it "
                   "[env HMTEL_SPOOL_MAX_BYTES; default 268435456 (256 MiB)].")
@click.option("--spool-fsync-interval-ms", type=int, metavar="MS",
              help="fsync the spool this often; 0 after every record [env HMTEL_SPOOL_FSYNC_INTERVAL_MS; default 1000].")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Prometheus endpoint; port 0 picks a free one, '' turns it off "
                   "[env HMTEL_METRICS_LISTEN; default 127.0.0.1:9464].")
@click.option("--inventory-interval", "inventory_interval_s", type=float, metavar="SECONDS",
              help="Republish the inventory this often when unchanged [env HMTEL_INVENTORY_INTERVAL_S; default 3600].")
@click.option("--inventory-check", "inventory_check_s", type=float, metavar="SECONDS",
              help="Rebuild the inventory this often to detect changes [env HMTEL_INVENTORY_CHECK_S; default 60].")
@click.option("--shutdown-timeout", "shutdown_timeout_s", type=float, metavar="SECONDS",
              help="Exit within this after SIGTERM/SIGINT [env HMTEL_SHUTDOWN_TIMEOUT_S; default 10].")
@pass_ctx
def collect(ctx: Context, **flags: object) -> None:
    """Run the collector agent: sample usage, publish inventory and usage, signed, to Kafka.

    \b
    Every record goes through a durable spool under <state_dir>/spool first, so
    nothing is lost while Kafka is down: records wait there (bounded by
    --spool-max-bytes; the oldest are dropped, counted and reported beyond it)
    and are replayed in order when Kafka is back. The host key is created on
    first start (<state_dir>/host.key, mode 0600; `hmtel keys show`).
    SIGTERM/SIGINT: stop sampling, flush what Kafka takes, fsync, exit 0.
    Self-metrics: http://127.0.0.1:9464/metrics by default.
    """
    settings = ctx.settings(**flags)
    import logging

    if settings.log_level != "DEBUG":
        # aiokafka logs every failed reconnect; the publisher says "Kafka is down" once instead.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from collector.agent import run_agent

    code = run_agent(settings)
    # The spool is closed and fsynced; do not wait for worker threads (an eBPF compile in
    # progress) at interpreter exit: exiting within shutdown_timeout_s is the promise.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)
