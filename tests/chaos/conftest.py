"""The chaos scenarios run against a private single-node broker (they SIGKILL it), never the
session's shared one. It shares the cached jars, so it starts without Maven."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_harness import private_broker_settings, start_broker  # noqa: E402
from hmconfig.topic_admin import ensure_topics  # noqa: E402


@pytest.fixture(scope="package")
def chaos_broker(tmp_path_factory, base_settings):
    settings = private_broker_settings(base_settings, tmp_path_factory.mktemp("chaos-broker"))
    broker = start_broker(settings)
    try:
        asyncio.run(ensure_topics(settings))
        yield broker
    finally:
        broker.stop()
