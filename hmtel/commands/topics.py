"""`hmtel topics ensure|list`: the v1 topics from schemas.topics."""
from __future__ import annotations

import asyncio

import click

from hmconfig.topic_admin import describe_topics, ensure_topics
from hmtel.cli import Context, pass_ctx
from schemas.topics import TOPICS


@click.group()
def topics() -> None:
    """Create and inspect the v1 topics (names, partitions, retention, compaction)."""


@topics.command()
@click.option("--acls", is_flag=True,
              help="Also create the role ACLs (hmconfig/acls.py: collector, processor, validator, dashboard); "
              "run as a super user against a broker with an authorizer (`hmtel broker start --secure`, user admin).")
@pass_ctx
def ensure(ctx: Context, acls: bool) -> None:
    """Create missing topics and fix drifted configs. Safe to run any number of times."""
    changes = asyncio.run(ensure_topics(ctx.settings()))
    for change in changes:
        click.echo(f"{change.name:24} {change.action:18} {change.detail}".rstrip())
    if acls:
        from hmconfig.acls import ensure_acls

        for action, binding in asyncio.run(ensure_acls(ctx.settings())):
            click.echo(f"acl {action:8} {binding}")


@topics.command("list")
@pass_ctx
def list_(ctx: Context) -> None:
    """Show each v1 topic as the broker has it."""
    states = asyncio.run(describe_topics(ctx.settings(), [t.name for t in TOPICS]))
    click.echo(f"{'topic':24} {'partitions':>10}  {'cleanup':8} retention.ms")
    for t in TOPICS:
        s = states.get(t.name)
        if s is None:
            click.echo(f"{t.name:24} {'missing':>10}")
        else:
            click.echo(f"{t.name:24} {s.partitions:>10}  {s.config.get('cleanup.policy', '?'):8} "
                       f"{s.config.get('retention.ms', '?')}")
