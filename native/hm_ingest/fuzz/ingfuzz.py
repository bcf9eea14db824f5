import time, orjson, sys, random, copy
sys.path.insert(0, "/tmp/nat")
from processors.simulator import SimHost
from processors.config import ProcessorConfig
from processors.engine import Engine, decode, new_state
from processors.native import make_store
from processors.validation import Rejection
cfg=ProcessorConfig(); engine=Engine(cfg)
N=30
sims=[SimHost(i, seed="fz") for i in range(N)]
t=int(time.time()*1e6)-5_000_000
now=int(time.time()*1e6)
store=make_store(cfg)
base={}; recs={}
for h in sims:
    topic,k,v,hd=h.message("hm.inventory.v1", h.inventory(t))
    st=new_state(h.host_id); r,s=decode(topic,v); engine.ingest(st,r,s,v,hd,now)
    for i in range(3):
        topic,k,v,hd=h.message("hm.usage.v1", h.usage(t+i*1_000_000))
        r,s=decode(topic,v); engine.ingest(st,r,s,v,hd,now)
    base[h.host_id]=st
    topic,k,v,hd=h.message("hm.usage.v1", h.usage(t+3*1_000_000))
    recs[h.host_id]=(topic,v,hd)
rnd=random.Random(11)
VALS=[None, 0, 1, 0.0, 1.0, -1, -0.0, 2**53+1, 2**62, 2**63-1, 1e16, 1e300, 5e-324, 3.5, "s", [], {}, True, False]
def leaves(o, path=()):
    if isinstance(o, dict):
        for k, v in o.items(): yield from leaves(v, path+(k,))
    elif isinstance(o, list):
        for i, v in enumerate(o): yield from leaves(v, path+(i,))
    yield path
stats={"fast":0,"declined":0,"raw_or_same":0}
for it in range(10000):
    hid=rnd.choice(list(base)); st=copy.deepcopy(base[hid])
    paths=[p for p in leaves(st) if p and p[0] in ("seqs","last","wm","windows","closed","counts","seen","inventory")]
    for _ in range(rnd.randint(1,2)):
        p=rnd.choice(paths)
        o=st
        try:
            for k in p[:-1]: o=o[k]
            cur=o[p[-1]]
            if rnd.random()<0.4 and isinstance(cur,(int,float)) and not isinstance(cur,bool): o[p[-1]]=float(cur) if isinstance(cur,int) else (int(cur) if cur==int(cur) else cur)
            elif rnd.random()<0.85: o[p[-1]]=rnd.choice(VALS)
            elif isinstance(o, dict): o.pop(p[-1])
        except (KeyError, IndexError, TypeError): pass
    try: b=orjson.dumps(st)
    except orjson.JSONEncodeError: continue
    store.load(hid, b, False)
    topic,v,hd=recs[hid]
    res=store.ingest([(hid,v,hd)], now)[0]
    out,dirty=store.take(hid)
    py=orjson.loads(b)
    try:
        r,s=decode(topic,v); engine.ingest(py,r,s,v,hd,now); pres="accepted"
    except Rejection as e: pres=e.code
    except Exception as e: pres="raised "+type(e).__name__
    if res is None:
        stats["declined"]+=1
        assert out==b and not dirty, "declined but changed"
    else:
        stats["fast"]+=1
        if pres!="accepted" or out!=orjson.dumps(py):
            print("DIVERGENCE", pres, "\nstate", b[:3000], "\nfast", out[:3000], "\npy  ", orjson.dumps(py)[:3000]); raise SystemExit(1)
print(stats)
