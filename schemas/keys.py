"""Ed25519 key files under the state directory, for hosts and processors alike.

Created on first use with mode 0600 (the directory 0700); refused when readable
by others. For a host, ``host_id`` is derived from the public key
(schemas.dsse.host_id_for), so a host cannot claim another host's id. The
private key is never logged, printed or put in an exception.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from hmconfig.errors import HmtelError
from schemas import dsse

HOST_KEY_FILE = "host.key"
PROCESSOR_KEY_FILE = "processor.key"


class KeyFileError(HmtelError):
    retriable = False


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey = field(repr=False)
    public_key_raw: bytes
    path: Path

    @property
    def key_id(self) -> str:
        return dsse.key_id(self.public_key_raw)

    @property
    def host_id(self) -> str:
        return dsse.host_id_for(self.public_key_raw)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key_raw).decode()

    def sign(self, schema: str, value: bytes) -> list[tuple[str, bytes]]:
        """Kafka headers (hm-keyid, hm-sig) signing ``value`` as record type ``schema``."""
        return dsse.sign_record(self.private_key, schema, value, keyid=self.key_id)

    @classmethod
    def load_or_create(cls, state_dir: Path, name: str = HOST_KEY_FILE) -> "SigningKey":
        path = state_dir / name
        if path.exists():
            return cls.load(path)
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
            # O_EXCL: two processes starting at once must not each write a different key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path)
        except OSError as err:
            raise KeyFileError(
                f"cannot create the host key in {state_dir} ({err.strerror}); "
                f"set HMTEL_STATE_DIR to a writable directory"
            ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        return cls(key, dsse.raw_public_key(key), path)

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        try:
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise KeyFileError(f"key {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
            key = load_pem_private_key(path.read_bytes(), password=None)
        except KeyFileError:
            raise
        except (OSError, ValueError, TypeError) as err:
            raise KeyFileError(f"cannot read the key {path}: {type(err).__name__}; "
                                f"restore it from backup or move it away to create a new identity") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"key {path} is not an Ed25519 key")
        return cls(key, dsse.raw_public_key(key), path)
