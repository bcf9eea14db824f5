"""`hmtel`: one command, one subcommand per job.

Settings come from the TOML file, then HMTEL_* variables, then the flags here.
Errors a user can act on print one line (no traceback) and exit non-zero.
"""
from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from hmconfig.errors import HmtelError
from hmconfig.settings import Settings, load_settings

# Each entry is "module:attribute" of a click command or group; registering a
# name twice fails at start, so two areas cannot silently shadow each other.
COMMANDS = [
    "hmtel.commands.broker:broker",
    "hmtel.commands.topics:topics",
    "hmtel.commands.config:config",
    "hmtel.commands.up:up",
    "hmtel.commands.sample:sample",
    "hmtel.commands.inventory:inventory",
    "hmtel.commands.collect:collect",
    "hmtel.commands.keys:keys",
    "hmtel.commands.ebpf:ebpf",
    "hmtel.commands.verify:verify",
    "hmtel.commands.dashboard:dashboard",
    "hmtel.commands.process:process",
    "hmtel.commands.simulate:simulate",
]


class Context:
    """Carries global flags to subcommands; settings are built on first use."""

    def __init__(self, config: Path | None, overrides: dict[str, Any]):
        self.config = config
        self.overrides = overrides
        self._settings: Settings | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            self._settings = load_settings(self.config, **{**self.overrides, **more})
            logging.basicConfig(
                level=self._settings.log_level,
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                stream=sys.stderr,
            )
        return self._settings


pass_ctx = click.make_pass_decorator(Context)


class HmtelGroup(click.Group):
    """Turns HmtelError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HmtelError as err:
            click.echo(f"hmtel: error: {err}", err=True)
            sys.exit(2)


@click.group(cls=HmtelGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "-c", type=click.Path(path_type=Path), envvar="HMTEL_CONFIG",
              help="TOML settings file [env HMTEL_CONFIG; default ~/.config/hmtel/hmtel.toml, then /etc/hmtel/hmtel.toml].")
@click.option("--kafka-bootstrap", "-b", metavar="HOST:PORT[,...]",
              help="Kafka brokers [env HMTEL_KAFKA_BOOTSTRAP or KAFKA_BOOTSTRAP_SERVERS; default: the local broker].")
@click.option("--state-dir", type=click.Path(path_type=Path),
              help="Keys, spool and local-broker data [env HMTEL_STATE_DIR; default /var/lib/hmtel as root].")
@click.option("--host-root", type=click.Path(path_type=Path),
              help="Root of the host's /proc and /sys [env HMTEL_HOST_ROOT; default /].")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log level [env HMTEL_LOG_LEVEL; default INFO].")
@click.version_option(package_name="hypermesh-telemetry", prog_name="hmtel")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, **overrides: Any) -> None:
    """HyperMesh telemetry: host collectors, stream processors and signed resource proofs over Kafka.

    \b
    Quick start (local broker on 127.0.0.1:9092):
      hmtel broker start && hmtel topics ensure

    Settings: a TOML file (--config), overridden by HMTEL_* environment
    variables, overridden by flags. `hmtel config show` prints the result.
    """
    ctx.obj = Context(config, overrides)


def _register() -> None:
    for spec in COMMANDS:
        module, attr = spec.split(":")
        command = getattr(importlib.import_module(module), attr)
        if command.name in cli.commands:
            raise RuntimeError(f"hmtel: command {command.name!r} registered twice ({spec})")
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="hmtel")
