"""atheris target: the DSSE verifier (schemas.dsse) and the proof verifier on fuzzed envelopes.

The boundary: verify_envelope_signatures() returns the key ids that verify and never
raises (it fails closed); verify_record() returns a bool. A fuzzed envelope must never
verify under the real key unless it carries the genuine payload and signature.

Run: python tests/fuzz/fuzz_dsse.py -max_total_time=60 <new-corpus-dir> tests/fuzz/corpus/dsse
"""
import base64
import sys

import atheris

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

with atheris.instrument_imports(include=["schemas"]):
    from schemas import dsse

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = dsse.raw_public_key(KEY)
KID = dsse.key_id(PUB)
GENUINE = dsse.make_envelope(KEY, b'{"proof":"genuine"}')
GENUINE_SIG = GENUINE["signatures"][0]["sig"]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:  # raw JSON text
        try:
            env = orjson.loads(fdp.ConsumeBytes(fdp.remaining_bytes()))
        except orjson.JSONDecodeError:
            return
    elif mode == 1:  # a well-shaped envelope with fuzzed fields
        env = {"payloadType": fdp.ConsumeUnicodeNoSurrogates(40),
               "payload": base64.b64encode(fdp.ConsumeBytes(64)).decode(),
               "signatures": [{"keyid": KID if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(64),
                               "sig": GENUINE_SIG if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(90)}]}
    else:  # the genuine envelope with one field replaced by fuzz
        env = orjson.loads(orjson.dumps(GENUINE))
        field = ("payloadType", "payload", "signatures")[fdp.ConsumeIntInRange(0, 2)]
        env[field] = fdp.ConsumeUnicodeNoSurrogates(80)
    good = dsse.verify_envelope_signatures(env, {KID: PUB})
    if good and not (isinstance(env, dict) and env.get("payload") == GENUINE["payload"]
                     and env.get("payloadType") == GENUINE["payloadType"]):
        raise AssertionError(f"a forged envelope verified: {env!r}")
    ok = dsse.verify_record(PUB, fdp.ConsumeUnicodeNoSurrogates(20) or "hm.usage.v1", data, data[:88])
    if not isinstance(ok, bool):
        raise AssertionError("verify_record did not return a bool")


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
