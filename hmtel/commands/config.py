"""`hmtel config show`: the settings in force and where each can be set."""
from __future__ import annotations

import click
import orjson

from hmconfig.settings import Settings, default_config_path
from hmtel.cli import Context, pass_ctx


@click.group()
def config() -> None:
    """Inspect configuration: the settings in force, their env variables and meaning."""


@config.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def show(ctx: Context, as_json: bool) -> None:
    """Print every setting's value, its environment variable and its meaning."""
    settings = ctx.settings()
    values = settings.model_dump(mode="json")
    if as_json:
        click.echo(orjson.dumps(values, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return
    path = ctx.config or default_config_path()
    click.echo(f"# config file: {path or '(none)'}")
    for name, field in Settings.model_fields.items():
        click.echo(f"{name} = {values[name]!r}")
        click.echo(f"    env {settings.env_name(name)}: {field.description or ''}")
