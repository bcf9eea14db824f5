"""`hmtel inventory`: this host's hardware inventory, with no Kafka needed."""
from __future__ import annotations

import time
from typing import Any

import click

from hmtel.cli import Context, pass_ctx

SCHEMA = "hm.inventory.v1"


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the full hm.inventory.v1 record (body plus schema, host_id, boot_id, seq, ts, public_key).")
@click.option("--no-nvml", is_flag=True, help="Do not query NVIDIA GPUs through NVML (sysfs only).")
@pass_ctx
def inventory(ctx: Context, as_json: bool, no_nvml: bool) -> None:
    """Print the hardware inventory: CPU, memory, GPUs, storage, network and system.

    \b
    Reads /proc and /sys under --host-root (default /; /host in a container that
    mounts the host there). Fields that could not be read are null and listed
    under "missing". The --json record is what the collector publishes, except
    that seq is always 0 here: this one-off print does not take a number from the
    collector's per-boot sequence. It uses (and on first run creates) the host
    key under --state-dir for host_id and public_key.
    """
    import orjson

    from collector.inventory import build_inventory

    settings = ctx.settings()
    body = build_inventory(settings.host_root, nvml=False if no_nvml else True)
    if as_json:
        click.echo(orjson.dumps(make_record(settings, body), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_table(body))


def make_record(settings: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The wire record for a one-off print: seq 0 (see the command's help)."""
    from collector.identity import load_host_identity, read_boot_id

    identity = load_host_identity(settings.state_dir)
    return {
        "schema": SCHEMA,
        "host_id": identity.host_id,
        "boot_id": read_boot_id(settings.host_root),
        "seq": 0,
        "ts": time.time_ns() // 1000,
        "public_key": identity.public_key_b64,
        **body,
    }


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"


def _v(value: Any) -> str:
    return "?" if value is None else str(value)


def render_table(body: dict[str, Any]) -> str:
    """A readable summary, one block per section."""
    lines: list[str] = []
    cpu = body.get("cpu") or {}
    mem = body.get("memory") or {}
    system = body.get("system") or {}
    osr = system.get("os") or {}
    kernel = system.get("kernel") or {}
    lines.append(f"host       {_v(system.get('hostname'))}  ({_v(osr.get('pretty_name'))}, kernel {_v(kernel.get('release'))})")
    lines.append(f"virt       {system.get('virtualization') or 'bare metal'}"
                 f"{'  container: ' + system['container'] if system.get('container') else ''}")
    dmi = system.get("dmi") or {}
    if dmi.get("sys_vendor") or dmi.get("product_name"):
        lines.append(f"machine    {_v(dmi.get('sys_vendor'))} {_v(dmi.get('product_name'))}")
    lines.append(f"cpu        {_v(cpu.get('model'))} [{_v(cpu.get('vendor'))}, {_v(cpu.get('architecture'))}]")
    lines.append(f"           {_v(cpu.get('sockets'))} socket(s), {_v(cpu.get('cores'))} cores, {_v(cpu.get('threads'))} threads"
                 f"; base {_v(cpu.get('base_freq_mhz'))} MHz, max {_v(cpu.get('max_freq_mhz'))} MHz")
    hybrid = cpu.get("hybrid")
    if hybrid:
        parts = [f"{k[0].upper()}: {v['cores']} cores/{v['threads']} threads" for k, v in hybrid.items()]
        lines.append(f"           hybrid {', '.join(parts)}")
    cache = cpu.get("cache") or {}
    lines.append("           cache " + ", ".join(
        f"{name.upper()} {_size(c['size_bytes'])} x{c['instances']}" for name, c in cache.items() if c))
    lines.append(f"           simd {_v(cpu.get('avx_level'))}, x86-64 {_v(cpu.get('x86_64_level'))}, "
                 f"virtualisation {cpu.get('virtualization') or 'none'}")
    lines.append(f"memory     {_size(mem.get('total_bytes'))}, swap {_size(mem.get('swap_total_bytes'))}, "
                 f"{len(mem.get('numa_nodes') or [])} NUMA node(s)")
    for g in body.get("gpus") or []:
        mem = f", {_size(g['memory_bytes'])}" if g.get("memory_bytes") else ""
        lines.append(f"gpu        {g['pci_address']}  {_v(g.get('model'))} "
                     f"[{_v(g.get('vendor'))}, {g.get('gpu_type')}, driver {_v(g.get('driver'))}{mem}]")
    if not body.get("gpus"):
        lines.append("gpu        none")
    storage = body.get("storage") or {}
    for d in storage.get("block_devices") or []:
        lines.append(f"disk       {d['name']:<10} {_size(d.get('size_bytes')):>10}  {d.get('type'):<8} "
                     f"{_v(d.get('model'))}  serial {_v(d.get('serial'))}")
    for f in storage.get("filesystems") or []:
        lines.append(f"fs         {f['mount_point']:<20} {f['fstype']:<6} {_size(f.get('total_bytes')):>10}  "
                     f"used {_v(f.get('usage_percent'))}%  on {_v(f.get('device'))}")
    for i in (body.get("network") or {}).get("interfaces") or []:
        addrs = " ".join(f"{a['address']}/{a['prefixlen']}" for a in i.get("addresses") or [])
        speed = f" {i['speed_mbps']} Mb/s" if i.get("speed_mbps") else ""
        lines.append(f"nic        {i['name']:<10} {_v(i.get('mac')):<17} mtu {_v(i.get('mtu')):<5} "
                     f"{_v(i.get('kind')):<9} {_v(i.get('operstate'))}{speed}  {addrs}".rstrip())
    lines.append(f"missing    {', '.join(body.get('missing') or []) or 'none'}")
    lines.append(f"hash       {body.get('inventory_hash')}")
    return "\n".join(lines)
