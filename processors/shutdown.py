"""A worker that stops promptly on SIGTERM or SIGINT without losing anything.

On stop, faust waits until every event taken from Kafka is acked
(``App._stop_consumer`` -> ``consumer.wait_empty()``). The processors ack only at a
checkpoint, once the state an event changed is in the changelog (processors/app.py),
and checkpoints come from the stream loop and the close-windows timer. After a stop
signal no new event reaches the stream loop and faust's timers exit as soon as the app
should stop, so the wait never ended: a worker stopped under traffic hung for more than
10 minutes, and `hmtel up` had to SIGKILL it.

So when (and only when) the app is stopping, checkpoint first. faust has stopped its
fetcher by then, so what is still unacked after the checkpoint can no longer be acked:
records parked for an inventory that has not come, and the rest of a fetched batch the
stop interrupted. Those are dropped from faust's wait (not acked, so their offsets are
not committed) and the next owner of the partition re-reads them, which at-least-once
delivery and the input dedupe allow.

Why not ``asyncio.wait_for(wait_empty(), timeout)``, as this module first did: faust's
wait swallows the cancellation (``Consumer._wait_for_ack`` catches CancelledError) and
loops on, so wait_for never returned. A worker stopped on a backlog, with records parked,
hung on SIGTERM and on Ctrl-C.

A rebalance waits the same way, and is done the same way: checkpoint, and leave the parked
records unacked for the partition's next owner (Processor.release_parked); the rest of a
batch being handled is acked by the checkpoints that follow.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def checkpoint_on_stop(processor: Any) -> None:
    app = processor.app
    wait_empty = app._consumer_wait_empty  # faust-streaming 0.11+: also used on rebalance

    async def checkpoint_then_wait(consumer: Any, logger: Any) -> None:
        await processor._settle()  # the chunks queued for the ingest thread (Processor._on_batch)
        await processor._checkpoint()
        if not app.should_stop:  # a rebalance: parked records are left to the next owner, the rest acked
            processor.release_parked()
            await wait_empty(consumer, logger)
            return
        left = consumer.unacked  # faust's own set of taken, unacked events its wait loops on (not a copy)
        if left:
            log.warning("stopping: %d events taken but not processed (parked for an inventory, or the rest of a "
                        "batch); not acked, so the next worker re-reads them", len(left))
            left.clear()
        await wait_empty(consumer, logger)  # nothing to wait for now: commits the acked offsets

    app._consumer_wait_empty = checkpoint_then_wait
