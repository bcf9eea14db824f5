"""`hmtel ebpf`: capability report, one round of snapshots, or the final C of a program."""
from __future__ import annotations

import sys
import time

import click

from hmconfig.errors import HmtelError
from hmtel.cli import Context, pass_ctx


class EbpfUnavailable(HmtelError):
    """This host cannot run the eBPF programs (privileges, BTF, headers, tracefs or bcc missing)."""

    retriable = False


@click.command()
@click.option("--check", "mode", flag_value="check", help="Print the capability report; exit 1 if eBPF cannot run here.")
@click.option("--once", "mode", flag_value="once",
              help="Load the programs, wait one interval, print one snapshot per program.")
@click.option("--dump-bpf", "dump", metavar="NAME", help="Print the final C of program NAME and its cflags per attach variant.")
@click.option("--json", "as_json", is_flag=True, help="JSON output (--check, --once).")
@click.option("--programs", metavar="A,B", help="Programs to load for --once [default: setting ebpf_programs].")
@click.option("--interval", type=float, metavar="S", help="Seconds to wait for --once [default: setting ebpf_interval_s].")
@pass_ctx
def ebpf(ctx: Context, mode: str | None, dump: str | None, as_json: bool, programs: str | None,
         interval: float | None) -> None:
    """eBPF programs (bpf/*.c, loaded with the distribution's bcc).

    \b
    hmtel ebpf --check              what this host offers (root/CAP_BPF+CAP_PERFMON, BTF, headers, tracefs, bcc)
    hmtel ebpf --once --json        one round of hm.ebpf.v1 bodies
    hmtel ebpf --dump-bpf sched     the C handed to bcc, and the -D cflags
    """
    import orjson

    settings = ctx.settings()
    if dump:
        _dump(dump, settings.host_root)
        return
    from collector.ebpf.capabilities import check_capabilities

    report = check_capabilities(settings.host_root)
    if mode == "check" or mode is None:
        if as_json:
            click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        else:
            for c in report.checks:
                click.echo(f"{'ok ' if c.ok else 'MISSING'} {c.name:15} {c.detail}" + ("" if c.ok else f"  (fix: {c.fix})"))
            click.echo("eBPF: ready" if report.ok else report.one_line())
        sys.exit(0 if report.ok else 1)

    if not report.ok:
        raise EbpfUnavailable(report.one_line())
    from collector.ebpf.runtime import Runtime

    names = [p.strip() for p in programs.split(",") if p.strip()] if programs else list(settings.ebpf_programs)
    wait_s = interval if interval is not None else settings.ebpf_interval_s
    runtime = Runtime(host_root=settings.host_root, interval_s=wait_s, syscalls_top_n=settings.ebpf_syscalls_top_n,
                      state_dir=settings.state_dir)
    try:
        runtime.load(names)
        if not runtime.loaded:
            raise EbpfUnavailable("no eBPF program loaded: " + "; ".join(f"{k}: {v}" for k, v in runtime.failed.items()))
        time.sleep(wait_s)
        bodies = runtime.snapshot()
    finally:
        runtime.close()
    if as_json:
        out = {"load_s": round(runtime.load_s, 3), "failed": runtime.failed, "snapshots": bodies}
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"loaded in {runtime.load_s:.2f}s; failed: {runtime.failed or 'none'}")
    for body in bodies:
        click.echo(f"[{body['program']}] attach {body['attach']} elapsed {body['elapsed_s']}s overflow {body['overflow']}")
        for name, m in body["maps"].items():
            click.echo(f"  {name} ({m['type']}, {m['unit']}): {orjson.dumps(m['values']).decode()[:300]}")
        if "cpu_agreement" in body:
            click.echo(f"  cpu_agreement: {body['cpu_agreement']}")


def _dump(name: str, host_root: object) -> None:
    from pathlib import Path

    from collector.ebpf.btf import BtfError
    from collector.ebpf.loader import final_source, variant_cflags
    from collector.ebpf.spec import load_spec

    spec = load_spec(name)
    click.echo(f"// program {spec.name}: {spec.source}")
    for variant in spec.variants:
        try:
            flags = " ".join(variant_cflags(spec, variant, Path(str(host_root))))
        except BtfError as err:
            flags = f"(unavailable: {err})"
        click.echo(f"// variant {variant.name} ({', '.join(f'{p}={k}' for p, k in variant.probes.items())}): cflags {flags}")
    click.echo(final_source(spec))
