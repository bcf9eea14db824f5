"""A worker that stops promptly on SIGTERM without losing anything.

On stop, faust waits until every event taken from Kafka is acked
(``App._stop_consumer`` -> ``consumer.wait_empty()``). The processors ack only at a
checkpoint, once the state an event changed is in the changelog (processors/app.py),
and checkpoints come from the stream loop and the close-windows timer. After
SIGTERM no new event reaches the stream loop and faust's timers exit as soon as
the app should stop, so the wait never ended: a worker stopped under traffic hung
for more than 10 minutes, and `hmtel up` had to SIGKILL it.

So when (and only when) the app is stopping, checkpoint first, then give faust's
wait a bound. Anything still unacked after that is re-read by the next owner of
the partition, which at-least-once delivery and the input dedupe allow.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


def bound_shutdown(processor: Any, timeout_s: float) -> None:
    app = processor.app
    wait_empty = app._consumer_wait_empty  # faust-streaming 0.11+: also used on rebalance

    async def checkpoint_then_wait(consumer: Any, logger: Any) -> None:
        if not app.should_stop:  # a rebalance: faust's own behaviour, unchanged
            await wait_empty(consumer, logger)
            return
        await processor._checkpoint()
        try:
            await asyncio.wait_for(wait_empty(consumer, logger), timeout_s)
        except asyncio.TimeoutError:
            log.warning("stopping: events still unacked after %.0fs; the next worker re-reads them", timeout_s)

    app._consumer_wait_empty = checkpoint_then_wait
