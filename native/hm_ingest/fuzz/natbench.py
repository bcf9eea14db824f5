import time, orjson, gc, sys
sys.path.insert(0, ".")
from processors.simulator import SimHost
from processors.config import ProcessorConfig
from processors.engine import Engine, decode, new_state
from processors.native import make_store
N=int(sys.argv[1]) if len(sys.argv)>1 else 2000; S=10
cfg=ProcessorConfig(); engine=Engine(cfg)
sims=[SimHost(i, seed="nb") for i in range(N)]
t=int(time.time()*1e6)-(S+1)*1_000_000
now=int(time.time()*1e6)
store=make_store(cfg)
states={}
for h in sims:
    topic,k,v,hd=h.message("hm.inventory.v1", h.inventory(t))
    st=new_state(h.host_id); r,s=decode(topic,v); engine.ingest(st,r,s,v,hd,now)
    topic,k,v,hd=h.message("hm.usage.v1", h.usage(t))   # first record of the boot via python
    r,s=decode(topic,v); engine.ingest(st,r,s,v,hd,now)
    store.load(h.host_id, orjson.dumps(st), False)
batch=[]
for i in range(1,S+1):
    for h in sims:
        topic,k,v,hd=h.message("hm.usage.v1", h.usage(t+i*1_000_000))
        batch.append((h.host_id, v, hd))
gc.disable()
for lo in range(0,len(batch),2000):
    pass
t0=time.perf_counter()
res=[]
for lo in range(0,len(batch),2000):
    res+=store.ingest(batch[lo:lo+2000], now)
dt=time.perf_counter()-t0
print(f"N={N} ingest {dt/len(batch)*1e6:.2f} us/rec, accepted {sum(r is not None for r in res)}/{len(batch)}")
t0=time.perf_counter(); d=store.dump_dirty(); dt=time.perf_counter()-t0
print(f"dump_dirty {dt/len(d)*1e6:.2f} us/host ({len(d)})")
