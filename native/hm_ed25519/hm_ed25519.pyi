"""Batch Ed25519 verification (ed25519-zebra, ZIP-215 rules): see src/lib.rs."""

def verify_batch(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """One answer per (public key 32 B, message, signature 64 B), in order; wrong lengths are False."""

def verify(key: bytes, msg: bytes, sig: bytes) -> bool:
    """One signature, by the same rules as verify_batch."""

def key_is_usable(key: bytes) -> bool:
    """32 bytes that decode to a curve point of large order (small-order keys are forgeable)."""
