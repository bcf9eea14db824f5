"""The host's identity: its Ed25519 key (schemas.keys) and the kernel's boot id."""
from __future__ import annotations

from pathlib import Path

from schemas.keys import HOST_KEY_FILE, KeyFileError, SigningKey

__all__ = ["HostIdentity", "load_host_identity", "read_boot_id"]

HostIdentity = SigningKey


def load_host_identity(state_dir: Path) -> SigningKey:
    """The host key under ``state_dir``, created (mode 0600) on first start."""
    return SigningKey.load_or_create(state_dir, HOST_KEY_FILE)


def read_boot_id(host_root: Path) -> str:
    """The kernel's boot id; a new value means counters restarted."""
    try:
        return (host_root / "proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError as err:
        raise KeyFileError(f"cannot read boot_id under {host_root}/proc ({err.strerror}); check HMTEL_HOST_ROOT") from None
