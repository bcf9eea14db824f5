"""Host tier: root and the real kernel. Each test loads only the program it checks."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from collector.ebpf.capabilities import check_capabilities
from collector.ebpf.runtime import Runtime


def _missing() -> str:
    if os.geteuid() != 0:
        return "root (host-tier eBPF tests create cgroups and network namespaces)"
    return check_capabilities().one_line()


@pytest.fixture(scope="session")
def ebpf_host() -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide eBPF: {missing}")
        pytest.skip(missing)


@pytest.fixture()
def load_program(ebpf_host: None) -> Iterator[Callable[[str], Runtime]]:
    runtimes: list[Runtime] = []

    def load(name: str) -> Runtime:
        runtime = Runtime(interval_s=1.0, syscalls_top_n=50)
        runtimes.append(runtime)
        runtime.load([name])
        assert name in runtime.loaded, runtime.failed
        return runtime

    yield load
    for runtime in runtimes:
        runtime.close()


def only(bodies: list[dict], program: str) -> dict:
    (body,) = [b for b in bodies if b["program"] == program]
    return body
