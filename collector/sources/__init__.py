"""The source registry: every usage source, registered by name.

Two kinds, kept apart (as Telegraf and the OTel hostmetricsreceiver do):

* a **polling source** has ``name``, ``interval_s``, ``origin`` (what it reads:
  "procfs", "netlink", "statvfs", "nvml"), ``missing`` (sub-sections it could
  not read on its last call, e.g. ``"load.psi"``), ``async def collect()``
  returning its section of the hm.usage.v1 record, and ``close()``.
  ``collect()`` raises :class:`SourceError` when it cannot produce its section
  at all; the caller then leaves the section out and names it in ``missing``.
* a **stream source** (eBPF) has ``name`` and ``async def run(emit)`` where
  ``await emit(schema, body)``; the agent adds the common fields, signs and publishes.

A factory is registered per name; registering a name twice raises
:class:`DuplicateSourceError` at import, so two modules cannot shadow each other.
A polling factory may return None: the source does not apply to this host
(no GPU), which is not an error and is not listed in ``missing``.
"""
from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from hmconfig.errors import HmtelError

if TYPE_CHECKING:
    from hmconfig.settings import Settings

__all__ = [
    "BUILTIN_POLLING",
    "POLLING",
    "STREAM",
    "DuplicateSourceError",
    "Emit",
    "PollingSource",
    "Section",
    "SourceError",
    "StreamSource",
    "load_polling_sources",
    "register_polling",
    "register_stream",
]

# A section is a JSON object (cpu, memory, ...) or a list of objects (filesystem, gpu).
Section = dict[str, Any] | list[dict[str, Any]]
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class SourceError(HmtelError):
    """A source could not produce its section this time (file missing, unreadable or garbled)."""

    retriable = True


class DuplicateSourceError(HmtelError):
    """Two sources were registered under one name."""

    retriable = False


@runtime_checkable
class PollingSource(Protocol):
    name: str
    interval_s: float
    origin: str
    missing: list[str]

    async def collect(self) -> Section: ...

    def close(self) -> None: ...


@runtime_checkable
class StreamSource(Protocol):
    name: str

    async def run(self, emit: Emit) -> None: ...


PollingFactory = Callable[["Settings"], PollingSource | None]
StreamFactory = Callable[["Settings"], StreamSource | None]

POLLING: dict[str, PollingFactory] = {}
STREAM: dict[str, StreamFactory] = {}

# Record order of the usage sections; each module registers itself on import.
BUILTIN_POLLING = ("cpu", "load", "memory", "disk", "filesystem", "network", "processes", "gpu")
_BUILTIN_MODULES = ("cpu", "load", "memory", "diskio", "filesystem", "network", "processes", "gpu")

F = TypeVar("F", bound=Callable[..., Any])


def _register(table: dict[str, Any], kind: str, name: str) -> Callable[[F], F]:
    def decorate(factory: F) -> F:
        if name in table:
            raise DuplicateSourceError(
                f"{kind} source {name!r} registered twice ({table[name].__module__} and {factory.__module__})"
            )
        table[name] = factory
        return factory

    return decorate


def register_polling(name: str) -> Callable[[F], F]:
    """Class or factory decorator: ``@register_polling("cpu")``; called as ``factory(settings)``."""
    return _register(POLLING, "polling", name)


def register_stream(name: str) -> Callable[[F], F]:
    """Class or factory decorator for stream sources (eBPF programs)."""
    return _register(STREAM, "stream", name)


# Modules (dotted paths) that register stream sources on import, e.g. the eBPF programs.
# They must import heavy or privileged things (bcc) lazily, inside the factory.
STREAM_MODULES: tuple[str, ...] = ("collector.sources.ebpf",)


def import_builtin() -> None:
    """Import the built-in source modules, which registers them (idempotent)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    for module in STREAM_MODULES:
        importlib.import_module(module)


def load_polling_sources(settings: Settings, names: list[str] | None = None) -> list[PollingSource]:
    """Instantiate the polling sources (all registered, or ``names``) that apply to this host."""
    import_builtin()
    ordered = [n for n in BUILTIN_POLLING if n in POLLING] + [n for n in POLLING if n not in BUILTIN_POLLING]
    wanted = names if names is not None else ordered
    unknown = [n for n in wanted if n not in POLLING]
    if unknown:
        raise SourceError(f"unknown usage source(s) {', '.join(unknown)}; known: {', '.join(sorted(POLLING))}")
    sources = []
    for name in wanted:
        source = POLLING[name](settings)
        if source is not None:
            sources.append(source)
    return sources
