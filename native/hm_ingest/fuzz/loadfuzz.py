import orjson, random, sys, json
sys.path.insert(0, "/tmp/nat")
exec(open("/tmp/natbench.py").read().split("t0=time.perf_counter(); d=store.dump_dirty()")[0])
d = store.dump_dirty()
states = [b for _, b in d[:50]]
rnd = random.Random(7)
def mutate(b: bytes) -> bytes:
    s = bytearray(b)
    k = rnd.random()
    if k < 0.2:   # insert whitespace somewhere
        i = rnd.randrange(len(s)); s[i:i] = b" "
    elif k < 0.4:  # flip a byte
        i = rnd.randrange(len(s)); s[i] = rnd.choice(b'{}[],:"\\0123456789.eE-+ ntrufalsx')
    elif k < 0.6:  # semantic mutation through python
        st = orjson.loads(b)
        path = []
        def pick(o):
            if isinstance(o, dict) and o:
                key = rnd.choice(list(o)); path.append(key); return pick(o[key]) if rnd.random() < 0.8 else (o, key)
            return None
        r = pick(st)
        if r:
            o, key = r
            o[key] = rnd.choice([None, 1, 1.0, -0.0, 2**63, 2**64 - 1, "x\"y", "é", "\\", [], {}, True, 1e16, 1e-7, 123456789.123])
            if rnd.random() < 0.3:
                v = o.pop(key); o[key + "\u2028" if rnd.random() < 0.5 else key] = v
        s = bytearray(orjson.dumps(st))
    elif k < 0.8:  # reorder keys of a random object via json round trip with sort
        st = orjson.loads(b)
        s = bytearray(orjson.dumps(st, option=orjson.OPT_SORT_KEYS))
    else:  # json.dumps forms (escapes, spacing)
        st = orjson.loads(b)
        s = bytearray(json.dumps(st, ensure_ascii=rnd.random() < 0.5, separators=(",", ":")).encode())
    return bytes(s)
n_ok = n_err = n_typed_like = 0
for it in range(20000):
    b = mutate(rnd.choice(states))
    try:
        valid = isinstance(orjson.loads(b), dict)
    except orjson.JSONDecodeError:
        valid = False
    try:
        store.load("fz", b, False)
    except ValueError:
        assert not valid or True  # serde_json may reject what orjson accepts (e.g. big numbers): fine if consistent
        n_err += 1
        continue
    except BaseException as e:
        print("LOAD RAISED", type(e), e, b[:200]); raise
    out, dirty = store.take("fz")
    if out != b:
        print("MISMATCH", b[:300], out[:300]); raise SystemExit(1)
    n_ok += 1
print("ok", n_ok, "errors", n_err)
