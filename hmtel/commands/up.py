"""`hmtel up`: the whole pipeline on the embedded default, in one command.

Starts the local broker (unless kafka_bootstrap points elsewhere), ensures the
topics, then runs each pipeline component as a child process until Ctrl-C,
which stops them all cleanly (SIGTERM, then SIGKILL after a grace period).
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import click

from hmtel.cli import Context, pass_ctx

# (name, argv after `hmtel`) of each long-running component, in start order.
# Components are added here as they land (collector, processors, dashboard).
COMPONENTS: list[tuple[str, list[str]]] = [
    ("collector", ["collect"]),
    ("processors", ["process"]),
    ("dashboard", ["dashboard"]),
]
GRACE_S = 15.0


@click.command()
@click.option("--no-broker", is_flag=True, help="Do not start the local broker (use kafka_bootstrap as set).")
@pass_ctx
def up(ctx: Context, no_broker: bool) -> None:
    """Start the broker, ensure topics, and run the pipeline until Ctrl-C."""
    from hmconfig.topic_admin import ensure_topics

    settings = ctx.settings()
    if settings.uses_local_broker and not no_broker:
        from deploy.localbroker import LocalBroker

        address = LocalBroker(settings, progress=lambda m: click.echo(f"hmtel up: {m}", err=True)).start()
        click.echo(f"hmtel up: broker ready at {address}", err=True)
    changes = asyncio.run(ensure_topics(settings))
    created = [c.name for c in changes if c.action == "created"]
    click.echo(f"hmtel up: topics ensured ({len(changes)} topics, {len(created)} created)", err=True)
    if not COMPONENTS:
        click.echo(f"hmtel up: broker {settings.bootstrap} is running with the v1 topics; "
                   "stop it with `hmtel broker stop`")
        return
    _run_components(ctx)


def _run_components(ctx: Context) -> None:
    base = [sys.executable, "-m", "hmtel"]
    if ctx.config:
        base += ["--config", str(ctx.config)]
    for flag, value in ctx.overrides.items():
        if value is not None:
            base += [f"--{flag.replace('_', '-')}", str(value)]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    for name, argv in COMPONENTS:
        procs.append((name, subprocess.Popen(base + argv)))
        click.echo(f"hmtel up: started {name} (pid {procs[-1][1].pid})", err=True)
    if any(name == "dashboard" for name, _ in COMPONENTS):
        click.echo(f"hmtel up: dashboard at http://{ctx.settings().dashboard_listen}/ (Ctrl-C stops everything)")
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        for name, proc in procs:
            if proc.poll() is not None:
                click.echo(f"hmtel up: {name} exited with {proc.returncode}; stopping the rest", err=True)
                stopping = True
        time.sleep(0.2)
    for _name, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for name, proc in reversed(procs):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"hmtel up: {name} ignored SIGTERM; killing", err=True)
            proc.kill()
            proc.wait()
    click.echo("hmtel up: stopped (the broker keeps running; `hmtel broker stop` stops it)", err=True)
    os._exit(0)
