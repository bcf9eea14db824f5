"""Paths and small helpers shared by the deployment checks (imported by name: this
directory is on sys.path under pytest's default import mode)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
VALIDATORS = Path(__file__).resolve().parent / "validators"


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def missing(what: str) -> None:
    """A missing tool is a failure in CI (which provides everything) and a named skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it)")
    pytest.skip(what)


def venv_bin(name: str) -> str:
    """A console script installed beside this interpreter (the test extra), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        missing(f"{name} is not installed; `pip install -e '.[test]'`")
    return found
