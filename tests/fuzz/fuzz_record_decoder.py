"""atheris target: the processors' record decoder and validator on fuzzed Kafka messages.

One input = topic choice + value bytes + header bytes. The boundary under test: decode()
and Engine.ingest() accept or raise validation.Rejection with a code from REASONS, and a
rejection leaves the host state unchanged. Anything else escaping is a crash.

Run: python tests/fuzz/fuzz_record_decoder.py -max_total_time=60 <new-corpus-dir> tests/fuzz/corpus/record_decoder
"""
import copy
import sys

import atheris

# Instrument only our code: instrumenting pydantic, cryptography & co. costs ~15 s of start-up.
with atheris.instrument_imports(include=["processors", "schemas"]):
    from processors.config import ProcessorConfig
    from processors.engine import Engine, decode, new_state
    from processors.simulator import SimHost
    from processors.validation import REASONS, Rejection

S = 1_000_000
T0 = 1_800_000_000 * S
TOPICS = ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1")
ENGINE = Engine(ProcessorConfig(proof_window_s=10, proof_grace_s=5, agg_windows_s={"10s": 2, "1m": 10}, agg_grace_s=1))
HOST = SimHost(3, seed="atheris")
STATE = new_state(HOST.host_id)
_t, _k, _v, _h = HOST.message("hm.inventory.v1", HOST.inventory(T0))
_r, _s = decode(_t, _v)
ENGINE.ingest(STATE, _r, _s, _v, _h, T0)
KEYID = _h[0][1]


def split(data: bytes) -> tuple[str, bytes, bytes]:
    """Input layout (tests/fuzz/make_corpus.py writes seeds in it): topic index byte,
    signature length byte, the hm-sig header, then the record value."""
    if len(data) < 2:
        return TOPICS[0], b"", data
    n = data[1]
    return TOPICS[data[0] % 3], data[2:2 + n], data[2 + n:]


def join(topic: str, sig: bytes, value: bytes) -> bytes:
    return bytes([TOPICS.index(topic), len(sig)]) + sig + value


def TestOneInput(data: bytes) -> None:
    topic, sig, value = split(data)
    headers = [("hm-keyid", KEYID), ("hm-sig", sig)]
    state = copy.deepcopy(STATE)
    try:
        record, schema = decode(topic, value)
        ENGINE.ingest(state, record, schema, value, headers, T0 + S)
    except Rejection as rejection:
        if rejection.code not in REASONS:
            raise AssertionError(f"unknown code {rejection.code}") from None
        if state != STATE:
            raise AssertionError(f"{rejection.code} changed the state") from None
        return
    if state == STATE:
        raise AssertionError("accepted without changing the state")


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
