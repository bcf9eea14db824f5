"""Shared fixtures for the deployment checks: the manifests, and validators from registries.

The Kubernetes schemas (kubernetes-validate) and hadolint come from PyPI through the test
extra. The compose-spec JSON schema (shipped in the npm package dclint) and Strimzi's CRD
validators (@kubernetes-models/strimzi-kafka-operator) come from npm: `npm ci` installs the
pinned lock file in validators/ once into .venv, like `make setup` installs the PyPI ones.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_manifests import VALIDATORS, missing


@pytest.fixture(scope="session")
def npm_validators() -> Path:
    """node_modules with the pinned npm validators, installed once per lock file."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        missing("node and npm are needed for the compose-spec schema and the Strimzi CRD validators")
    lock = (VALIDATORS / "package-lock.json").read_bytes() + (VALIDATORS / "validate-strimzi.mjs").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()[:16]
    cache = Path(sys.prefix) / "share" / "hmtel-deploy-validators" / digest
    if not (cache / "node_modules" / ".package-lock.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "validate-strimzi.mjs"):
            shutil.copy2(VALIDATORS / name, cache / name)
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=cache,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            missing(f"`npm ci` of tests/unit/deploy/validators failed: {proc.stderr.strip()[-300:]}")
    return cache


@pytest.fixture(scope="session")
def compose_schema(npm_validators: Path) -> dict:
    return json.loads((npm_validators / "node_modules/dclint/schemas/compose.schema.json").read_text())


@pytest.fixture(scope="session")
def strimzi_validate(npm_validators: Path):
    """validate(docs) -> one result dict per doc, from Strimzi's CRD schemas."""

    def validate(docs: list[dict]) -> list[dict]:
        proc = subprocess.run(["node", str(npm_validators / "validate-strimzi.mjs")], input=json.dumps(docs),
                              capture_output=True, text=True, timeout=60, check=True)
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    return validate
