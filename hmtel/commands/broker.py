"""`hmtel broker start|stop|status`: the local Apache Kafka broker."""
from __future__ import annotations

import sys
import time

import click

from deploy.localbroker import LocalBroker
from hmtel.cli import Context, pass_ctx


def _local(ctx: Context, secure: bool, progress=lambda msg: None) -> LocalBroker:
    if secure:
        from deploy.securebroker import SecureLocalBroker

        return SecureLocalBroker(ctx.settings(), progress=progress)
    return LocalBroker(ctx.settings(), progress=progress)


_SECURE = click.option(
    "--secure", is_flag=True,
    help="The secure broker (<state_dir>/kafka-secure): SASL_SSL/SCRAM-SHA-512 on the broker port, mutual TLS "
    "on HMTEL_BROKER_TLS_PORT, ACLs enforced. Certificates and one password file per role (mode 0600) are "
    "created on first start.")


def _progress(msg: str) -> None:
    click.echo(f"hmtel broker: {msg}", err=True)


@click.group()
def broker() -> None:
    """Run the local Apache Kafka broker (KRaft, single node, 127.0.0.1).

    Kafka's jars are fetched once from Maven Central with Maven, then cached in
    <state_dir>/kafka/libs. Data and the log (broker.log) live under
    <state_dir>/kafka. Port: HMTEL_BROKER_PORT (default 9092); heap:
    HMTEL_BROKER_HEAP_MB (default 512).
    """


@broker.command()
@_SECURE
@pass_ctx
def start(ctx: Context, secure: bool) -> None:
    """Start the broker; return once it answers a metadata request, and print its address.

    A no-op when it is already running. With --secure, also print the HMTEL_* variables
    a component needs (password by file, never the password itself); then run
    `hmtel topics ensure --acls` as admin to create the topics and the role ACLs.
    """
    t0 = time.monotonic()
    local = _local(ctx, secure, _progress)
    was_running = local.pid() is not None
    address = local.start()
    if not was_running:
        _progress(f"ready in {time.monotonic() - t0:.1f}s")
    click.echo(address)
    if secure:
        from deploy.securebroker import client_env

        _progress("clients: set these, with USER one of admin, collector, processor, validator, dashboard:")
        for name, value in client_env(ctx.settings(), "USER").items():
            _progress(f"  {name}={value}")


@broker.command()
@_SECURE
@pass_ctx
def stop(ctx: Context, secure: bool) -> None:
    """Stop the broker: SIGTERM, then SIGKILL after HMTEL_BROKER_STOP_TIMEOUT_S (default 30 s)."""
    if _local(ctx, secure, _progress).stop():
        _progress("stopped")
    else:
        _progress("not running")


@broker.command()
@_SECURE
@pass_ctx
def status(ctx: Context, secure: bool) -> None:
    """Exit 0 and print the address when the broker answers; exit 1 when it is down."""
    local = _local(ctx, secure)
    pid = local.pid()
    if pid is not None and local.is_ready():
        click.echo(f"up: {ctx.settings().bootstrap} (pid {pid})")
        sys.exit(0)
    click.echo("down" if pid is None else f"starting or unresponsive (pid {pid})")
    sys.exit(1)
