"""`hmtel process`: run the stream processors (one faust worker process)."""
from __future__ import annotations

import asyncio
import logging
import sys

import click

from hmtel.cli import Context, pass_ctx


@click.command()
@click.option("--worker-name", default="0", show_default=True,
              help="Names this worker's faust data dir (<state_dir>/processors/<app_id>-<name>); give each "
                   "worker process on one machine its own.")
@click.option("--proof-window-s", type=float, help="Proof window length [env HMTEL_PROOF_WINDOW_S; default 60].")
@click.option("--agg-window-10s-s", type=float, help="Short dashboard window [env HMTEL_AGG_WINDOW_10S_S; default 10].")
@click.option("--agg-window-1m-s", type=float, help="Long dashboard window [env HMTEL_AGG_WINDOW_1M_S; default 60].")
@click.option("--enrollment-file", type=click.Path(exists=True, dir_okay=False),
              help="Strict mode: only these hosts [env HMTEL_ENROLLMENT_FILE].")
@pass_ctx
def process(ctx: Context, worker_name: str, **overrides: object) -> None:
    """Validate host records, aggregate them per window and issue signed, hash-chained resource proofs.

    \b
    Reads   hm.inventory.v1, hm.usage.v1, hm.ebpf.v1
    Writes  hm.usage.agg.10s.v1, hm.usage.agg.1m.v1  (dashboards)
            hm.proofs.v1     (DSSE envelopes signed with <state_dir>/processor.key;
                              `hmtel keys show --processor` prints the public key)
            hm.rejected.v1   (every refused record, with its reason code)

    Run more worker processes with the same settings (and distinct --worker-name) to
    spread the partitions; a killed worker's hosts resume from the changelog.
    """
    settings = ctx.settings(**{k: v for k, v in overrides.items() if v is not None})
    from hmconfig.topic_admin import describe_topics, ensure_topics
    from processors.config import ProcessorConfig
    from processors.engine import Signer
    from processors import proofs
    from schemas.keys import PROCESSOR_KEY_FILE, SigningKey
    from schemas.topics import TOPICS

    cfg = ProcessorConfig.from_settings(settings)
    key = SigningKey.load_or_create(settings.state_dir, PROCESSOR_KEY_FILE)
    signer = Signer(key.key_id, lambda data: proofs.sign(data, key.private_key, key.key_id))

    async def topic_partitions() -> dict[str, int]:
        await ensure_topics(settings)
        states = await describe_topics(settings, [t.name for t in TOPICS])
        return {name: s.partitions for name, s in states.items()}

    partitions = asyncio.run(topic_partitions())
    from processors.app import Processor

    proc = Processor(settings, cfg, signer, topic_partitions=partitions, worker_name=worker_name)
    from processors.shutdown import checkpoint_on_stop

    checkpoint_on_stop(proc)
    click.echo(f"hmtel process: worker {worker_name} of {settings.processor_app_id} on {settings.bootstrap}; "
               f"proof window {cfg.proof_window_s:g} s, processor key {key.key_id[:16]}...", err=True)
    run_worker(proc, settings.log_level)


def run_worker(proc: object, log_level: str) -> None:
    """Run the faust worker until SIGTERM/SIGINT (faust's own handlers stop it cleanly)."""
    import faust

    from processors.app import tune_gc

    faust_level = "debug" if log_level == "DEBUG" else "warning"
    plog = logging.getLogger("processors")
    plog.setLevel(log_level)
    if log_level in ("DEBUG", "INFO"):
        # faust's handlers sit at WARNING (its INFO chatter is noise); the worker's own progress
        # lines (every 30 s) are INFO, so they get a handler of their own, in faust's format
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
        plog.addHandler(handler)
        plog.propagate = False
        # faust's services defined in processors/faust_transport.py log under processors.*: keep
        # them at faust's level
        logging.getLogger("processors.faust_transport").setLevel(faust_level.upper())
    tune_gc()
    worker = faust.Worker(proc.app, loglevel=faust_level, quiet=True, redirect_stdouts=False,  # type: ignore[attr-defined]
                          stdout=sys.stderr)
    if not sys.stderr.isatty():
        worker.spinner = None  # faust's startup spinner writes cursor codes even into a log file
    worker.execute_from_commandline()
