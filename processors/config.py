"""The processors' knobs as one frozen value, so the pure modules never read Settings.

Built from hmconfig.settings.Settings by ``ProcessorConfig.from_settings``; unit
tests build it directly with short windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmconfig.errors import HmtelError

# Aggregation window names -> output topic. The names stay "10s"/"1m" even when a
# test shortens the lengths, so the topic a window goes to never changes.
AGG_TOPICS = {"10s": "hm.usage.agg.10s.v1", "1m": "hm.usage.agg.1m.v1"}


class EnrollmentError(HmtelError):
    retriable = False


@dataclass(frozen=True)
class ProcessorConfig:
    proof_window_s: float = 60.0
    proof_grace_s: float = 10.0
    agg_windows_s: dict[str, float] = field(default_factory=lambda: {"10s": 10.0, "1m": 60.0})
    agg_grace_s: float = 5.0
    coverage_threshold: float = 0.8
    clock_skew_s: float = 300.0
    stale_after_s: float = 86_400.0
    over_capacity_factor: float = 1.05
    source_disagreement_tolerance: float = 0.2
    # host_id -> pinned public key (standard base64) or None (any key, pinned on first sight).
    # None as a whole: not strict, every host may enrol itself with its first inventory.
    enrolled: dict[str, str | None] | None = None
    operator_id: str | None = None
    unknown_host_grace_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> "ProcessorConfig":
        enrolled = None
        if settings.enrollment_file is not None:
            enrolled = parse_enrollment(_read(settings.enrollment_file), str(settings.enrollment_file))
        return cls(
            proof_window_s=settings.proof_window_s,
            proof_grace_s=settings.proof_grace_s,
            agg_windows_s={"10s": settings.agg_window_10s_s, "1m": settings.agg_window_1m_s},
            agg_grace_s=settings.agg_grace_s,
            coverage_threshold=settings.coverage_threshold,
            clock_skew_s=settings.clock_skew_s,
            stale_after_s=settings.stale_after_s,
            over_capacity_factor=settings.over_capacity_factor,
            source_disagreement_tolerance=settings.source_disagreement_tolerance,
            enrolled=enrolled,
            operator_id=settings.operator_id,
            unknown_host_grace_s=settings.unknown_host_grace_s,
        )


def _read(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise EnrollmentError(f"cannot read the enrollment file {path} ({err.strerror}); "
                              f"fix HMTEL_ENROLLMENT_FILE or unset it to leave strict mode") from None


def parse_enrollment(text: str, where: str = "enrollment file") -> dict[str, str | None]:
    """Strict-mode allowlist: one host per line, ``host_id [public_key_base64]``; ``#`` starts a comment.

    A host listed with a key accepts only that key; without one, its first inventory pins it.
    """
    import base64
    import binascii
    import re

    from schemas.dsse import host_id_for

    hosts: dict[str, str | None] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) > 2 or not re.fullmatch(r"h-[0-9a-f]{32}", parts[0]):
            raise EnrollmentError(f"{where}:{n}: expected `host_id [public_key_base64]`, got {line.strip()!r}")
        key = parts[1] if len(parts) == 2 else None
        if key is not None:
            try:
                raw = base64.b64decode(key, validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32 or host_id_for(raw) != parts[0]:
                raise EnrollmentError(f"{where}:{n}: the key is not a base64 Ed25519 key of {parts[0]}")
        hosts[parts[0]] = key
    return hosts
