"""The worker's progress line (processors.app.Processor._report): counts since the last line."""
from __future__ import annotations

import logging

from hmconfig.settings import load_settings
from processors.app import Processor
from processors.config import ProcessorConfig
from processors.engine import Signer


def test_progress_line_counts_what_happened_since_the_last(tmp_path, caplog):
    settings = load_settings(state_dir=tmp_path, kafka_bootstrap="127.0.0.1:1", processor_checkpoint_s=2.0)
    proc = Processor(settings, ProcessorConfig(), Signer("k", lambda data: {}),
                     topic_partitions={"hm.usage.v1": 6})
    start = proc.reported[0]
    proc.stats.update(accepted=900, rejected=100, emitted=40, native=700, routed=15, declined=20, native_closes=9,
                      writes=1200, checkpoints=3)
    proc.rejected_by_code.update(duplicate=70, clock_skew=30)
    with caplog.at_level(logging.INFO, logger="processors"):
        proc._report(start + 10)
        proc.stats["accepted"] += 50
        proc.rejected_by_code["duplicate"] += 0
        proc._report(start + 20)
        proc._report(start + 30)  # nothing happened: no line
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("last 10 s: 1000 records (100/s): 900 accepted, 100 rejected (clock_skew 30, duplicate 70); "
                        "40 outputs sent; 1200 host states written (3 checkpoints and the closes' marks); "
                        "0 hosts in memory, 0 parked; native store: 700 taken, 15 routed and 20 declined "
                        "to Python, "
                        "9 hosts' windows closed")
    assert lines[1] == ("last 10 s: 50 records (5/s): 50 accepted, 0 rejected; 0 outputs sent; 0 host states "
                        "written (0 checkpoints and the closes' marks); 0 hosts in memory, 0 parked; native store: 0 taken, 0 routed and 0 declined to Python, 0 hosts' windows closed")
    assert len(lines) == 2
