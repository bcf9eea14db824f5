"""`hmtel simulate`: N simulated hosts sending signed records, for tests, benchmarks and capacity planning."""
from __future__ import annotations

import asyncio

import click

from hmtel.cli import Context, pass_ctx

BAD_KINDS = ("malformed", "schema", "bad_signature", "key_mismatch", "duplicate", "clock_skew", "stale",
             "counter_regression", "over_capacity")


@click.command()
@click.option("--hosts", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Simulated hosts.")
@click.option("--rate", "-r", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Usage samples per second per host (1 = the collector's default interval).")
@click.option("--duration", "-d", type=click.FloatRange(min=0), default=None,
              help="Seconds to run [default: until Ctrl-C].")
@click.option("--ebpf/--no-ebpf", default=False, show_default=True, help="Also send eBPF sched snapshots.")
@click.option("--ebpf-interval", type=float, default=5.0, show_default=True, help="Seconds between eBPF snapshots.")
@click.option("--bad", "bad", multiple=True, metavar="KIND[=N]",
              help=f"Inject N (default 1) bad records of KIND, spread over the run; repeatable. "
                   f"KIND: {', '.join(BAD_KINDS)}.")
@click.option("--drop-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of usage samples silently not sent (proof windows below coverage -> insufficient_evidence).")
@click.option("--ebpf-skew", type=float, default=1.0, show_default=True,
              help="eBPF on-CPU = procfs busy x this (far from 1 -> source_disagreement).")
@click.option("--seed", default="sim", show_default=True, help="Same seed, same host keys and host_ids.")
@click.option("--first-host", type=int, default=0, show_default=True, help="Index of the first host (run several simulators).")
@click.option("--backfill", type=float, default=0.0, show_default=True,
              help="First send this many seconds of past samples as fast as possible (a backlog).")
@pass_ctx
def simulate(ctx: Context, hosts: int, rate: float, duration: float | None, ebpf: bool, ebpf_interval: float,
             bad: tuple[str, ...], drop_share: float, ebpf_skew: float, seed: str, first_host: int,
             backfill: float) -> None:
    """Send hm.inventory.v1 (first), hm.usage.v1 and optionally hm.ebpf.v1 for N simulated hosts.

    Records are signed exactly like the collector's (per-host Ed25519 keys, hm-keyid/hm-sig
    headers). A progress line per second shows what was sent and the achieved rate, so
    `hmtel simulate --hosts 20000 --rate 1` tells you whether a broker and a processor
    deployment keep up with a 20,000-host fleet.
    """
    from processors import simulator

    plan: dict[str, int] = {}
    for item in bad:
        kind, _, n = item.partition("=")
        if kind not in BAD_KINDS:
            raise click.BadParameter(f"unknown kind {kind!r}; one of {', '.join(BAD_KINDS)}", param_hint="--bad")
        plan[kind] = plan.get(kind, 0) + (int(n) if n else 1)
    settings = ctx.settings()
    try:
        stats = asyncio.run(simulator.run(settings, hosts=hosts, rate=rate, duration_s=duration, ebpf=ebpf,
                                          ebpf_interval_s=ebpf_interval, bad=plan, seed=seed, drop_share=drop_share,
                                          ebpf_skew=ebpf_skew, backfill_s=backfill, first_host=first_host,
                                          progress=lambda line: click.echo(line, err=True)))
    except KeyboardInterrupt:
        return
    click.echo(f"simulate: done: {stats.sent} records ({stats.inventory} inventory, {stats.usage} usage, "
               f"{stats.ebpf} ebpf, bad {stats.bad or 0}, not sent {stats.dropped})")
