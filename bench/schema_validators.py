"""fastjsonschema vs jsonschema-rs: compile time, validation throughput, and error paths.

    .venv/bin/python bench/schema_validators.py [--seconds 1.0] [--schema hm.usage.v1]

For each schema in schemas/ (or a representative usage-like schema defined here
when none exists yet) it takes a realistic valid record (the first valid example
under tests/fixtures/schemas/<name>/valid/) and prints:

* compile: ms to build the validator (median of 5);
* valid/s: validations of the valid record per second, single thread;
* invalid/s: validations of an invalid example (error raised and caught);
* error path: what each library reports as the failure location.

Timing is wall clock on a shared 2-core machine: rerun and compare, the ratio
is what matters. schemas/__init__.py keeps the faster library, provided it can
report a JSON path.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema_rs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import schemas  # noqa: E402

EXAMPLES = ROOT / "tests" / "fixtures" / "schemas"

# Used only when no schema has examples yet: shaped like hm.usage.v1.
FALLBACK_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["schema", "host_id", "boot_id", "seq", "ts", "cpu", "memory"],
    "properties": {
        "schema": {"const": "hm.usage.v1"},
        "host_id": {"type": "string", "pattern": "^h-[0-9a-f]{32}$"},
        "boot_id": {"type": "string", "format": "uuid"},
        "seq": {"type": "integer", "minimum": 0},
        "ts": {"type": "integer", "minimum": 0},
        "cpu": {"type": "object", "required": ["cores", "utilisation"], "properties": {
            "cores": {"type": "integer", "minimum": 1},
            "utilisation": {"type": "number", "minimum": 0, "maximum": 1},
            "per_core": {"type": "array", "items": {"type": "object", "properties": {
                "cpu": {"type": "integer"}, "utilisation": {"type": "number", "minimum": 0, "maximum": 1}}}}}},
        "memory": {"type": "object", "additionalProperties": {"type": ["integer", "null"], "minimum": 0}},
        "network": {"type": "object", "properties": {"interfaces": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": ["number", "null"], "minimum": 0}}}}},
    },
}


def fallback_records() -> tuple[dict[str, Any], dict[str, Any]]:
    valid = {
        "schema": "hm.usage.v1", "host_id": "h-" + "0" * 32, "boot_id": "8a0d1c52-4a3c-4b8f-9b7e-3f1d2c4b5a69",
        "seq": 42, "ts": 1_764_000_000_000_000,
        "cpu": {"cores": 8, "utilisation": 0.25,
                "per_core": [{"cpu": i, "utilisation": 0.1 * (i % 10)} for i in range(8)]},
        "memory": {"total_bytes": 16 << 30, "used_bytes": 6 << 30, "available_bytes": 10 << 30},
        "network": {"interfaces": {f"eth{i}": {"rx_bytes": 10**9, "tx_bytes": 10**8, "rx_bytes_per_s": 1e5}
                                   for i in range(4)}},
    }
    invalid = json.loads(json.dumps(valid))
    invalid["network"]["interfaces"]["eth3"]["rx_bytes"] = -1
    return valid, invalid


def cases(only: str | None) -> list[tuple[str, dict[str, Any], Any, Any]]:
    found = []
    for name in schemas.names():
        if only and name != only:
            continue
        valid = sorted((EXAMPLES / name / "valid").glob("*.json"))
        invalid = sorted((EXAMPLES / name / "invalid").glob("*.json"))
        if valid and invalid:
            # The largest valid example is the most realistic load.
            big = max(valid, key=lambda p: p.stat().st_size)
            # The invalid example failing deepest shows best how each library reports a path.
            rs = jsonschema_rs.validator_for(schemas.schema(name))
            docs = [json.loads(p.read_text()) for p in invalid]
            deepest = max(docs, key=lambda d: max((len(e.instance_path) for e in rs.iter_errors(d)), default=-1))
            found.append((name, schemas.schema(name), json.loads(big.read_text()), deepest))
    if not found:
        found.append(("fallback usage-like", FALLBACK_SCHEMA, *fallback_records()))
    return found


def median_ms(build: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        build()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def rate(call: Callable[[], Any], seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(200):
            call()
        n += 200
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - t0)


def swallow(validate: Callable[[Any], Any], obj: Any, error: type[BaseException]) -> Callable[[], None]:
    def call() -> None:
        try:
            validate(obj)
        except error:
            pass
    return call


def fast_path(validate: Callable[[Any], Any], obj: Any) -> str:
    try:
        validate(obj)
    except fastjsonschema.JsonSchemaValueException as err:
        return "$" + (err.name or "data")[len("data"):]
    return "(no error)"


def rs_path(validator: Any, obj: Any) -> str:
    try:
        validator.validate(obj)
    except jsonschema_rs.ValidationError as err:
        return schemas.json_path(list(err.instance_path))
    return "(no error)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per throughput measurement")
    parser.add_argument("--schema", help="only this schema name")
    args = parser.parse_args()

    rows = []
    paths = []
    for name, schema, valid, invalid in cases(args.schema):
        fast = fastjsonschema.compile(schema)
        rs = jsonschema_rs.validator_for(schema)
        assert rs.is_valid(valid), f"{name}: jsonschema-rs rejects the valid example"
        fast(valid)
        rows.append((name, "fastjsonschema", median_ms(lambda: fastjsonschema.compile(schema)),
                     rate(lambda: fast(valid), args.seconds),
                     rate(swallow(fast, invalid, fastjsonschema.JsonSchemaValueException), args.seconds)))
        rows.append((name, "jsonschema-rs validate", median_ms(lambda: jsonschema_rs.validator_for(schema)),
                     rate(lambda: rs.validate(valid), args.seconds),
                     rate(swallow(rs.validate, invalid, jsonschema_rs.ValidationError), args.seconds)))
        rows.append((name, "jsonschema-rs is_valid", float("nan"),
                     rate(lambda: rs.is_valid(valid), args.seconds), rate(lambda: rs.is_valid(invalid), args.seconds)))
        paths.append((name, fast_path(fast, invalid), rs_path(rs, invalid)))

    print(f"{'schema':22} {'library':24} {'compile ms':>10} {'valid/s':>10} {'invalid/s':>10}")
    for name, lib, compile_ms, ok, bad in rows:
        cms = "-" if compile_ms != compile_ms else f"{compile_ms:.1f}"
        print(f"{name:22} {lib:24} {cms:>10} {ok:>10,.0f} {bad:>10,.0f}")
    print()
    print(f"{'schema':22} error path reported: fastjsonschema | jsonschema-rs")
    for name, fp, rp in paths:
        print(f"{name:22} {fp} | {rp}")


if __name__ == "__main__":
    main()
