"""Program specs: ``bpf/<program>.yaml`` beside ``bpf/<program>.c``.

A spec names the attach variants in order of preference (fentry, raw
tracepoint, tracepoint, kprobe last), the BTF offsets each variant needs, and
every map with how it decodes. The map name is the record key and the metric
name all the way through.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hmconfig.errors import HmtelError

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
PROGRAMS = ("sched", "blockio", "net", "syscalls", "mm")
PROBE_KINDS = ("fentry", "raw_tracepoint", "tracepoint", "tc", "kprobe")
MAP_TYPES = ("counter", "gauge", "histogram", "internal")
UNITS = ("ns", "us", "bytes", "packets", "count")
DECODES = ("cgroup", "ifindex", "disk", "syscall", "none")


class SpecError(HmtelError):
    """A program spec is malformed. One line naming the file and the field."""

    retriable = False


@dataclass(frozen=True)
class Variant:
    name: str  # e.g. "raw_tracepoint"; the C sees -DHM_ATTACH_RAW_TRACEPOINT
    probes: dict[str, str]  # probe name -> kind actually used for it
    offsets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # NAME -> "struct.member" alternatives

    @property
    def define(self) -> str:
        return f"HM_ATTACH_{self.name.upper()}"


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: str
    unit: str = "count"
    decode: str = "none"
    max_entries: int | None = None
    label: str | None = None  # fixed label of a histogram that has no key (e.g. "all")
    top_n: bool = False  # publish only the top N labels plus "total"

    @property
    def published(self) -> bool:
        return self.type != "internal"


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    source: Path
    variants: tuple[Variant, ...]
    maps: tuple[MapSpec, ...]

    def map(self, name: str) -> MapSpec:
        for m in self.maps:
            if m.name == name:
                return m
        raise KeyError(name)


def parse_spec(text: str, *, where: str = "<spec>", bpf_dir: Path = BPF_DIR) -> ProgramSpec:
    """Parse one spec's YAML text; raise SpecError naming ``where`` and the bad field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{where}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping at the top level")

    def need(obj: dict[str, Any], key: str, kind: type, ctx: str) -> Any:
        value = obj.get(key)
        if not isinstance(value, kind):
            raise SpecError(f"{where}: {ctx}{key} must be a {kind.__name__}, got {value!r}")
        return value

    name = need(raw, "program", str, "")
    source = bpf_dir / need(raw, "source", str, "")
    variants = []
    for i, v in enumerate(need(raw, "attach", list, "")):
        ctx = f"attach[{i}]."
        if not isinstance(v, dict):
            raise SpecError(f"{where}: attach[{i}] must be a mapping")
        probes = need(v, "probes", dict, ctx)
        for probe, kind in probes.items():
            if kind not in PROBE_KINDS:
                raise SpecError(f"{where}: {ctx}probes.{probe}: unknown kind {kind!r}; one of {', '.join(PROBE_KINDS)}")
        offsets = {}
        for off_name, alternatives in (v.get("offsets") or {}).items():
            alts = [alternatives] if isinstance(alternatives, str) else alternatives
            if not alts or not all(isinstance(a, str) and "." in a for a in alts):
                raise SpecError(f"{where}: {ctx}offsets.{off_name} must list struct.member paths")
            offsets[off_name] = tuple(alts)
        variants.append(Variant(need(v, "variant", str, ctx), dict(probes), offsets))
    if not variants:
        raise SpecError(f"{where}: attach must list at least one variant")
    kinds = [max(PROBE_KINDS.index(k) for k in v.probes.values()) for v in variants]
    if all(PROBE_KINDS[k] == "kprobe" for k in kinds):
        raise SpecError(f"{where}: kprobes cannot be the only attach option (some kernels have none)")

    maps = []
    for map_name, m in need(raw, "maps", dict, "").items():
        ctx = f"maps.{map_name}."
        if not isinstance(m, dict):
            raise SpecError(f"{where}: maps.{map_name} must be a mapping")
        spec = MapSpec(
            name=map_name,
            type=m.get("type", ""),
            unit=m.get("unit", "count"),
            decode=m.get("decode", "none"),
            max_entries=m.get("max_entries"),
            label=m.get("label"),
            top_n=bool(m.get("top_n", False)),
        )
        for attr, allowed in (("type", MAP_TYPES), ("unit", UNITS), ("decode", DECODES)):
            if getattr(spec, attr) not in allowed:
                raise SpecError(f"{where}: {ctx}{attr}: {getattr(spec, attr)!r} is not one of {', '.join(allowed)}")
        if spec.max_entries is not None and (not isinstance(spec.max_entries, int) or spec.max_entries < 1):
            raise SpecError(f"{where}: {ctx}max_entries must be a positive integer")
        maps.append(spec)
    return ProgramSpec(name, source, tuple(variants), tuple(maps))


def load_spec(name: str, bpf_dir: Path = BPF_DIR) -> ProgramSpec:
    path = bpf_dir / f"{name}.yaml"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"no eBPF program named {name!r} ({path} missing); known: {', '.join(PROGRAMS)}") from None
    return parse_spec(text, where=str(path), bpf_dir=bpf_dir)
