"""`hmtel dashboard`: serve the live dashboard (consumers.dashboard)."""
from __future__ import annotations

import asyncio
import logging
import signal

import click

from hmtel.cli import Context, pass_ctx


@click.command()
@click.option("--listen", "--dashboard-listen", "listen", metavar="HOST:PORT",
              help="Where to serve [env HMTEL_DASHBOARD_LISTEN; default 127.0.0.1:8080; port 0: any free port].")
@click.option("--key", "keys", multiple=True, metavar="KEY|FILE",
              help="Processor public key to verify proofs with (as for `hmtel verify`); default "
                   "<state_dir>/processor.key when present, else proofs show as unverified.")
@click.option("--history-s", type=float, help="Seconds of history read at start and kept [env HMTEL_DASHBOARD_HISTORY_S; default 3600].")
@pass_ctx
def dashboard(ctx: Context, listen: str | None, keys: tuple[str, ...], history_s: float | None) -> None:
    """Serve a live page of every host: inventory, CPU, memory, disk and network over the
    last hour (10 s and 1 min aggregates), run-queue and block-I/O latency p99, and proof
    status (last proof, chain, rejections by reason).

    Reads hm.inventory.v1, hm.usage.agg.10s.v1, hm.usage.agg.1m.v1, hm.proofs.v1 and
    hm.rejected.v1; browsers get updates over Server-Sent Events. Ctrl-C stops it.
    """
    overrides = {k: v for k, v in {"dashboard_listen": listen, "dashboard_history_s": history_s}.items()
                 if v is not None}
    settings = ctx.settings(**overrides)
    if settings.log_level != "DEBUG":  # the feed logs one line per failed attempt itself
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from consumers.dashboard.server import Dashboard, split_listen
    from consumers.verify import Thresholds, parse_key
    from schemas.keys import PROCESSOR_KEY_FILE, SigningKey

    host, port = split_listen(settings.dashboard_listen)
    if keys:
        raw = [k for value in keys for k in parse_key(value)]
    elif (settings.state_dir / PROCESSOR_KEY_FILE).exists():
        raw = [SigningKey.load(settings.state_dir / PROCESSOR_KEY_FILE).public_key_raw]
    else:
        raw = []
        click.echo("hmtel dashboard: no processor key (--key); proofs are shown unverified", err=True)
    limits = Thresholds.from_settings(settings)
    board = Dashboard(settings, keys=raw, thresholds=limits)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await board.serve(host, port, stop, on_ready=lambda url: click.echo(
            f"hmtel dashboard: serving {url} (Kafka {settings.bootstrap}; Ctrl-C stops)", err=True))

    asyncio.run(main())
    click.echo("hmtel dashboard: stopped", err=True)
