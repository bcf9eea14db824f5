"""`hmtel verify`: the reference validator over hm.proofs.v1 (library: consumers.verify)."""
from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import click

from hmtel.cli import Context, pass_ctx


@dataclass
class HostTally:
    proofs: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    last_seq: int | None = None
    last_window_end_us: int | None = None
    reasons: Counter[str] = field(default_factory=Counter)


@click.command()
@click.option("--key", "keys", multiple=True, metavar="KEY|FILE",
              help="Processor public key: standard base64 of the raw Ed25519 key, or a file (base64 keys one a "
                   "line, PEM public key, or the processor's PEM private key). Repeat for several. "
                   "Default: <state_dir>/processor.key when present.")
@click.option("--group", metavar="GROUP_ID",
              help="Read with this consumer group (resumes from its committed offsets) instead of the whole topic "
                   "from the beginning.")
@click.option("--follow", "-f", is_flag=True, help="Keep reading new proofs; without it, stop at the end of the topic.")
@click.option("--json", "as_json", is_flag=True, help="One JSON verdict per proof on stdout instead of the table.")
@click.option("--host", "hosts", multiple=True, metavar="HOST_ID",
              help="Judge only these hosts' proofs (by Kafka key); repeat for several. Default: every host.")
@click.option("--topic", default="hm.proofs.v1", show_default=True, help="Topic holding the proof envelopes.")
@click.option("--min-storage-bytes", type=int, help="Minimum storage offered [env HMTEL_VERIFY_MIN_STORAGE_BYTES; default 1 GiB].")
@click.option("--min-compute-cores", type=float, help="Minimum CPU capacity [env HMTEL_VERIFY_MIN_COMPUTE_CORES; default 1].")
@click.option("--max-clock-skew-ms", type=float, help="Maximum host clock skew [env HMTEL_VERIFY_MAX_CLOCK_SKEW_MS; default 300000].")
@click.option("--max-age-s", type=float, help="Maximum proof age [env HMTEL_VERIFY_MAX_AGE_S; default 86400].")
@pass_ctx
def verify(ctx: Context, keys: tuple[str, ...], group: str | None, follow: bool, as_json: bool,
           hosts: tuple[str, ...], topic: str, **thresholds: Any) -> None:
    """Verify resource proofs as a consensus validator would.

    \b
    For each proof on hm.proofs.v1:
      signature   DSSE signature by one of the given processor keys (fails closed)
      identity    proof_id = sha256(host_id, window start, window length); Kafka key = host_id
      chain       per host: seq advances by one, prev_proof_hash = sha256 of the previous payload
      thresholds  min storage, min compute, max clock skew, max age (24 h), coverage, capacity

    Prints a table per host (or JSON lines with --json). Exit status: 0 when every proof is
    valid, 1 when any is invalid, 2 on a usage or broker error.
    """
    settings = ctx.settings(**{f"verify_{k}": v for k, v in thresholds.items() if v is not None})
    if settings.log_level != "DEBUG":  # aiokafka's INFO lines would bury the verdicts
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    from consumers.verify import ChainChecker, Thresholds, parse_key

    raw_keys = [k for value in keys for k in parse_key(value)] if keys else _local_processor_key(settings)
    limits = Thresholds.from_settings(settings)
    tallies: dict[str, HostTally] = {}
    chain = ChainChecker()
    try:
        asyncio.run(_run(settings, topic, group, follow, as_json, raw_keys, limits, chain, tallies,
                         {h.encode() for h in hosts}))
    except KeyboardInterrupt:
        pass
    if not as_json:
        _print_table(tallies, chain)
    sys.exit(1 if any(t.invalid for t in tallies.values()) else 0)


def _local_processor_key(settings: Any) -> list[bytes]:
    from consumers.verify import KeyArgError
    from schemas.keys import PROCESSOR_KEY_FILE, SigningKey

    path = settings.state_dir / PROCESSOR_KEY_FILE
    if not path.exists():
        raise KeyArgError(f"no processor key given and none at {path}; pass --key with the processor's public key "
                          f"(`hmtel keys show --processor` prints it)")
    return [SigningKey.load(path).public_key_raw]


async def _run(settings: Any, topic: str, group: str | None, follow: bool, as_json: bool, keys: list[bytes],
               limits: Any, chain: Any, tallies: dict[str, HostTally], only: set[bytes]) -> None:
    import orjson

    from consumers.stream import TopicReader
    from consumers.verify import verify_envelope

    async with TopicReader(settings, [topic], group_id=group, follow=follow, what="verify") as reader:
        async for batch in reader.batches():
            for record in batch:
                if only and record.key not in only:
                    continue
                v = verify_envelope(record.value or b"", keys, thresholds=limits, chain=chain, kafka_key=record.key)
                host = v.host_id or (record.key or b"unknown").decode(errors="replace")
                t = tallies.setdefault(host, HostTally())
                t.proofs += 1
                if v.duplicate and v.ok:
                    t.duplicates += 1
                elif v.ok:
                    t.valid += 1
                else:
                    t.invalid += 1
                    t.reasons.update(v.codes)
                if v.seq is not None and v.key_id and (t.last_seq is None or v.seq >= t.last_seq):
                    t.last_seq = v.seq
                    t.last_window_end_us = (v.payload or {}).get("window", {}).get("end_us")
                if as_json:
                    out = v.to_json() | {"partition": record.partition, "offset": record.offset}
                    sys.stdout.write(orjson.dumps(out).decode() + "\n")
                    sys.stdout.flush()
                elif not v.ok:
                    why = "; ".join(f"{r.code}: {r.detail}" for r in v.reasons)
                    click.echo(f"INVALID {host} seq={v.seq} offset={record.partition}:{record.offset}  {why}")
                elif follow:  # a live validator shows each verdict as it comes; the table follows on Ctrl-C
                    click.echo(f"valid   {host} seq={v.seq}{' (duplicate)' if v.duplicate else ''}")


def _print_table(tallies: dict[str, HostTally], chain: Any) -> None:
    import datetime

    if not tallies:
        click.echo("no proofs read")
        return
    rows = [("HOST", "PROOFS", "VALID", "INVALID", "DUP", "LAST SEQ", "LAST WINDOW END", "CHAIN", "REASONS")]
    for host in sorted(tallies):
        t = tallies[host]
        end = (datetime.datetime.fromtimestamp(t.last_window_end_us / 1e6, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
               if isinstance(t.last_window_end_us, int) else "-")
        rows.append((host, str(t.proofs), str(t.valid), str(t.invalid), str(t.duplicates),
                     "-" if t.last_seq is None else str(t.last_seq), end,
                     "intact" if chain.intact(host) else "broken",
                     ", ".join(f"{c}x{n}" for c, n in sorted(t.reasons.items())) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    bad = sum(t.invalid for t in tallies.values())
    total = sum(t.proofs for t in tallies.values())
    click.echo(f"{total} proofs from {len(tallies)} hosts: {bad} invalid")
