"""`hmtel keys show`: this host's (or this processor's) identity; never the private key."""
from __future__ import annotations

import json

import click

from hmtel.cli import Context, pass_ctx


@click.group()
def keys() -> None:
    """Ed25519 identity keys kept in the state directory."""


@keys.command()
@click.option("--processor", is_flag=True, help="Show the stream processors' key (processor.key) instead of the host key.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def show(ctx: Context, processor: bool, as_json: bool) -> None:
    """Print the host_id, key id and public key (created on first use, mode 0600).

    The private key is never printed. The public key is standard base64 of the
    raw 32-byte Ed25519 key, as carried in hm.inventory.v1's `public_key`.
    """
    from schemas.keys import HOST_KEY_FILE, PROCESSOR_KEY_FILE, SigningKey

    settings = ctx.settings()
    key = SigningKey.load_or_create(settings.state_dir, PROCESSOR_KEY_FILE if processor else HOST_KEY_FILE)
    info = {"key_id": key.key_id, "public_key": key.public_key_b64, "key_file": str(key.path)}
    if not processor:
        info = {"host_id": key.host_id, **info}
    if as_json:
        click.echo(json.dumps(info))
        return
    for name, value in info.items():
        click.echo(f"{name:<11} {value}")
