"""`hmtel sample`: one usage sample, printed; no Kafka."""
from __future__ import annotations

import asyncio
from typing import Any

import click

from hmtel.cli import Context, pass_ctx


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024
    return "-"  # pragma: no cover


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def render(body: dict[str, Any]) -> list[str]:
    """The readable table of one usage body."""
    lines = [f"usage sample over {body['elapsed_s']:.2f} s (sources: {', '.join(body['sources'])})"]
    row = "  {:<27} {}".format
    if cpu := body.get("cpu"):
        cores = " ".join(f"cpu{c['cpu']}={_pct(c['utilisation'])}" for c in cpu["per_core"])
        lines += ["cpu", row("cores", cpu["cores"]), row("utilisation", f"{_pct(cpu['utilisation'])}  ({cores})"),
                  row("busy core-seconds", _num(cpu["busy_core_s"], "{:.3f}")),
                  row("iowait / steal (total s)", f"{_num(cpu['iowait_s'])} / {_num(cpu['steal_s'])}")]
    if load := body.get("load"):
        lines += ["load", row("load 1/5/15", f"{load['load1']} {load['load5']} {load['load15']}")]
        for res, psi in (load.get("psi") or {}).items():
            if psi:
                lines.append(row(f"pressure {res} some/full", f"{psi['some_avg10']}% / {psi.get('full_avg10', '-')}% (avg10)"))
    if mem := body.get("memory"):
        lines += ["memory", row("used / total", f"{_fmt_bytes(mem['used_bytes'])} / {_fmt_bytes(mem['total_bytes'])}"),
                  row("available", _fmt_bytes(mem["available_bytes"])),
                  row("cached / buffers", f"{_fmt_bytes(mem['cached_bytes'])} / {_fmt_bytes(mem['buffers_bytes'])}"),
                  row("swap used / total", f"{_fmt_bytes(mem['swap_used_bytes'])} / {_fmt_bytes(mem['swap_total_bytes'])}")]
    if disk := body.get("disk"):
        lines += ["disk (read/s, write/s; * = not in totals)",
                  row("all physical disks", f"{_fmt_bytes(disk['read_bytes_per_s'])}/s, {_fmt_bytes(disk['write_bytes_per_s'])}/s")]
        for name, dev in disk["devices"].items():
            mark = "" if dev.get("physical", True) else " *"
            lines.append(row(name + mark, f"{_fmt_bytes(dev['read_bytes_per_s'])}/s, {_fmt_bytes(dev['write_bytes_per_s'])}/s"))
    for fs in body.get("filesystem", []):
        if fs is body["filesystem"][0]:
            lines.append("filesystem (used / total)")
        lines.append(row(fs["mount"], f"{_fmt_bytes(fs['used_bytes'])} / {_fmt_bytes(fs['total_bytes'])} ({fs['fstype']})"))
    if net := body.get("network"):
        lines += ["network (rx/s, tx/s)",
                  row("all but lo", f"{_fmt_bytes(net['rx_bytes_per_s'])}/s, {_fmt_bytes(net['tx_bytes_per_s'])}/s")]
        for name, iface in net["interfaces"].items():
            lines.append(row(name, f"{_fmt_bytes(iface['rx_bytes_per_s'])}/s, {_fmt_bytes(iface['tx_bytes_per_s'])}/s"))
    if procs := body.get("processes"):
        lines += ["processes", row("processes / threads", f"{_num(procs['processes'])} / {_num(procs['threads'])}"),
                  row("running / blocked", f"{_num(procs['running'])} / {_num(procs['blocked'])}")]
    for gpu in body.get("gpu", []):
        lines.append(row(f"gpu{gpu['index']}", f"{_pct(gpu['utilisation'])}, memory {_fmt_bytes(gpu['memory_used_bytes'])}"
                                               f" / {_fmt_bytes(gpu['memory_total_bytes'])}"))
    if body["missing"]:
        lines.append(f"missing: {', '.join(body['missing'])}")
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the hm.usage.v1 body as JSON instead of a table.")
@click.option("--warmup", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="Seconds between the priming reading and the sample; rates are over this span.")
@pass_ctx
def sample(ctx: Context, as_json: bool, warmup: float) -> None:
    """Print one usage sample (no Kafka).

    Reads every usage source under --host-root twice, WARMUP seconds apart, and
    prints counters and the rates between the two readings. The JSON form is
    the hm.usage.v1 record body without the common fields (schema, host_id,
    boot_id, seq, ts) the agent adds.
    """
    from collector.usage import sample_once  # lazy: keeps `hmtel --help` light

    from collector.sources import SourceError

    settings = ctx.settings()
    if not (settings.host_root / "proc").is_dir():
        raise SourceError(f"host root {settings.host_root} has no proc/ directory; set --host-root or HMTEL_HOST_ROOT")
    body = asyncio.run(sample_once(settings, warmup_s=warmup))
    if as_json:
        import orjson

        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo("\n".join(render(body)))
