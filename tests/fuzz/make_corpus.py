"""Writes the seed corpora under tests/fuzz/corpus/ (committed; rerun after a schema change).

    python tests/fuzz/make_corpus.py
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.argv = sys.argv[:1]

import orjson  # noqa: E402

import fuzz_record_decoder as rd  # noqa: E402
from fuzz_dsse import GENUINE  # noqa: E402


def main() -> None:
    out = HERE / "corpus" / "record_decoder"
    out.mkdir(parents=True, exist_ok=True)
    now = rd.T0 + rd.S
    records = {"hm.inventory.v1": rd.HOST.inventory(now), "hm.usage.v1": rd.HOST.usage(now),
               "hm.ebpf.v1": rd.HOST.ebpf_sched(now, procfs_busy_s=1.0, elapsed_s=1.0)}
    for topic, record in records.items():
        _t, _k, value, headers = rd.HOST.message(topic, record)
        sig = dict(headers)["hm-sig"]
        (out / f"{topic}.signed").write_bytes(rd.join(topic, sig, value))
        (out / f"{topic}.badsig").write_bytes(rd.join(topic, sig[:-4] + b"AAA=", value))
    dsse_dir = HERE / "corpus" / "dsse"
    dsse_dir.mkdir(parents=True, exist_ok=True)
    (dsse_dir / "genuine.json").write_bytes(b"\x00" + orjson.dumps(GENUINE))


if __name__ == "__main__":
    main()
