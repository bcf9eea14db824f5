"""Stream processor throughput, latency and memory, driven by the `hmtel simulate` generator.

    .venv/bin/python bench/processors.py [--hosts 2000] [--backfill 60] [--workers 1]
                                         [--latency-hosts 300] [--latency-s 40]

Needs a broker (the HMTEL_* settings as for every command; e.g. a private one with
HMTEL_STATE_DIR=/tmp/x HMTEL_BROKER_PORT=49092 HMTEL_BROKER_CONTROLLER_PORT=49093
.venv/bin/hmtel broker start).

1. Throughput. A fresh consumer group is positioned at the current end of the input
   topics, then --hosts simulated hosts send --backfill seconds of 1 Hz samples (a
   backlog: H x B usage records + H inventory records), timed so that a proof window ends
   in its middle (--proof-close mid: the drain closes one per host, as a worker in service
   does every proof window; a host's first one is partial, so it is withheld as
   insufficient_evidence rather than signed). --workers `hmtel process`
   processes are started and timed from "ready" until the group's committed offsets
   reach the end. records/s = backlog / drain time: the highest input rate at which lag
   stays flat. Offsets are committed at checkpoints (every processor_checkpoint_s), so the
   drain time ends with a wait for the last one; the processing rate leaves that out
   (records committed at the last checkpoint before the end / time to it). CPU/record = the
   workers' CPU time (process + threads) / records. Worker 0's event-loop thread and its other
   threads (verify, faust's consumer) are also shown apart, as shares of one core: the GIL keeps
   the processing on the loop thread, so that share says how close one worker is to its limit.
2. Memory. Worker RSS when ready (0 hosts) and after the drain; the difference per 1,000 hosts.
3. Latency. One worker, --latency-hosts hosts at 1 Hz in real time for --latency-s
   seconds: for each sample, the Kafka timestamp of its 10 s aggregate minus the
   sample's ts; p50 / p99. Also the window close delay (aggregate time - window end).

The machine is shared (2 cores, other test suites, the broker itself): figures are noisy;
rerun before relying on them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import TopicPartition  # noqa: E402

from hmconfig.kafka_clients import make_consumer, read_topic  # noqa: E402
from hmconfig.settings import load_settings  # noqa: E402
from hmconfig.topic_admin import commit_for_group, end_offsets, ensure_topics  # noqa: E402
from processors import simulator  # noqa: E402

INPUTS = ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1")
REJECTED = "hm.rejected.v1"
PROOFS = "hm.proofs.v1"


async def reasons_between(settings, start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> dict[str, int]:
    """How many rejections of each reason hm.rejected.v1 got between the two offset snapshots."""
    counts: dict[str, int] = {}
    todo = {tp: end[tp] for tp in end if end[tp] > start.get(tp, 0)}
    if not todo:
        return counts
    c = make_consumer(settings, group_id=None)
    await c.start()
    try:
        c.assign(list(todo))
        for tp in todo:
            c.seek(tp, start.get(tp, 0))
        while todo:
            for tp, msgs in (await c.getmany(timeout_ms=2000)).items():
                for m in msgs:
                    if m.offset < todo.get(tp, 0):
                        reason = orjson.loads(m.value).get("reason", "?")
                        counts[reason] = counts.get(reason, 0) + 1
                if msgs and msgs[-1].offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
        return counts
    finally:
        await c.stop()


async def committed(settings, group: str, tps) -> dict[TopicPartition, int]:
    c = make_consumer(settings, group_id=group)
    await c.start()
    try:
        return {tp: (await c.committed(tp)) or 0 for tp in tps}
    finally:
        await c.stop()


def start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hmtel", "process", "--worker-name", name], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))


async def wait_ready(logs: list[Path], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not all("ready:" in log.read_text(errors="replace") for log in logs):
        if time.monotonic() > deadline:
            raise SystemExit("workers not ready:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
        await asyncio.sleep(0.2)


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def thread_cpu_s(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def cpu_probe_us() -> float:
    """CPU time (this thread's) of a fixed piece of Python work, about 10 ms. Its median over
    the drain, against the idle figure, shows whether the machine itself got slower per
    instruction (cache and core sharing with the broker, the workers or other VMs): a run
    whose worker needs more CPU per record while this figure also rises was slowed by the
    machine, not by the code."""
    t0 = time.thread_time_ns()
    doc = {"host_id": "probe", "seq": 0, "cpu": [0.5] * 8, "mem": {"used": 1, "total": 2}}
    for i in range(2000):
        doc["seq"] = i
        orjson.loads(orjson.dumps(doc))
        sum(j * j for j in range(100))
    return (time.thread_time_ns() - t0) / 1000


def faults_and_switches(proc: psutil.Process) -> tuple[int, int, int]:
    """Minor page faults (from /proc/<pid>/stat), voluntary and involuntary context switches."""
    minflt = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    ctx = proc.num_ctx_switches()
    return minflt, ctx.voluntary, ctx.involuntary


def machine_shares(before: Any, after: Any) -> dict[str, float]:
    """Shares of the machine's CPU time between two psutil.cpu_times(): busy, idle (iowait included)
    and steal (time the hypervisor gave this VM's CPUs to others: where this VM's speed goes)."""
    d = {k: getattr(after, k) - getattr(before, k) for k in after._fields}
    total = sum(v for k, v in d.items() if k not in ("guest", "guest_nice")) or 1e-9
    idle = d.get("idle", 0.0) + d.get("iowait", 0.0)
    steal = d.get("steal", 0.0)
    return {"busy": (total - idle - steal) / total, "idle": idle / total, "steal": steal / total}


def broker_process(bootstrap: str) -> psutil.Process | None:
    """The local broker listening on the bootstrap port, if it runs on this machine: its CPU
    shares the cores with the workers, so it bounds what they can reach."""
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


async def throughput(settings, args, tmp: Path) -> dict[str, Any]:
    group = f"hm-bench-{uuid.uuid4().hex[:8]}"
    start = await end_offsets(settings, INPUTS)
    rejected0 = await end_offsets(settings, [REJECTED])
    await commit_for_group(settings, group, start)
    if args.proof_close == "mid":
        # The backlog's samples span [start - backfill, start): wait until a proof window ends at its
        # middle, so that every run closes one proof window per host in the drain (in Python, as at
        # every proof window in service). Left to the clock, about 2 runs in 3 did, and the rates
        # of runs with and without it could not be compared.
        wait = (args.backfill / 2 - time.time()) % settings.proof_window_s
        print(f"  waiting {wait:.0f} s so that a proof window ends mid-backlog (--proof-close mid)", file=sys.stderr)
        await asyncio.sleep(wait)
    proofs0 = await end_offsets(settings, [PROOFS])
    t0 = time.monotonic()
    stats = await simulator.run(settings, hosts=args.hosts, rate=1, duration_s=0, backfill_s=args.backfill,
                                seed=f"bench-{group}", progress=lambda line: print("  " + line, file=sys.stderr))
    produce_s = time.monotonic() - t0
    end = await end_offsets(settings, INPUTS)
    backlog = sum(end[tp] - start.get(tp, 0) for tp in end)
    env = {**os.environ, "HMTEL_STATE_DIR": str(tmp / group), "HMTEL_PROCESSOR_APP_ID": group,
           "HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap, "HMTEL_LOG_LEVEL": "INFO" if args.worker_log else "WARNING"}
    logs = [tmp / f"{group}-{i}.log" for i in range(args.workers)]
    workers = [start_worker(env, str(i), logs[i]) for i in range(args.workers)]
    try:
        await wait_ready(logs)
        procs = [psutil.Process(w.pid) for w in workers]
        if args.profile:  # py-spy on worker 0 while it drains (collapsed stacks, see --profile)
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the venv's
            subprocess.Popen([py_spy, "record", "-p", str(workers[0].pid), "-d", str(args.profile_s), "-f", "raw",
                              "-o", args.profile, "--nonblocking", "--threads"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss0 = sum(p.memory_info().rss for p in procs)
        probe_idle = statistics.median(cpu_probe_us() for _ in range(5))
        probes = []
        times0 = procs[0].cpu_times()
        counters0 = faults_and_switches(procs[0])
        cpu0 = sum(cpu_s(p) for p in procs)
        threads0 = thread_cpu_s(procs[0])
        broker = broker_process(settings.bootstrap)
        broker0 = cpu_s(broker) if broker else 0.0
        machine0 = psutil.cpu_times()
        t_ready = time.monotonic()
        lag_trace = []
        while True:
            done = await committed(settings, group, list(end))
            lag = sum(end[tp] - done[tp] for tp in end)
            lag_trace.append((time.monotonic() - t_ready, lag))
            if lag <= 0:
                break
            if time.monotonic() - t_ready > 600:
                raise SystemExit(f"not drained after 600 s (lag {lag})")
            if len(lag_trace) % 4 == 0:
                probes.append(cpu_probe_us())
            await asyncio.sleep(0.5)
        drain_s = time.monotonic() - t_ready
        cpu = sum(cpu_s(p) for p in procs) - cpu0
        threads = {tid: t - threads0.get(tid, 0.0) for tid, t in thread_cpu_s(procs[0]).items()}
        times1 = procs[0].cpu_times()
        counters = [b - a for a, b in zip(counters0, faults_and_switches(procs[0]))]
        broker_cpu = cpu_s(broker) - broker0 if broker else None
        machine = machine_shares(machine0, psutil.cpu_times())
        rss1 = sum(p.memory_info().rss for p in procs)
        rejected1 = await end_offsets(settings, [REJECTED])
        proofs1 = await end_offsets(settings, [PROOFS])
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        if args.worker_log:
            shutil.copyfile(logs[0], args.worker_log)
    lean = await lean_probe(settings, start, end) if args.lean_probe else None
    rejected = await reasons_between(settings, rejected0, rejected1)
    # The commits come at checkpoints (processor_checkpoint_s), so "drained" includes the wait for the
    # last one. The processing rate excludes it: the records committed by the last checkpoint before
    # the end, over the time to the first poll that saw them.
    first_seen: dict[int, float] = {}
    for t, lag in lag_trace:
        if 0 < lag < backlog:
            first_seen.setdefault(backlog - lag, t)
    proc_rate = max(first_seen) / first_seen[max(first_seen)] if first_seen else None
    return {"lean": lean, "records": backlog, "proc_rate": proc_rate, "usage": stats.usage, "produce_s": produce_s,
            "drain_s": drain_s, "rate": backlog / drain_s, "cpu_us": cpu / backlog * 1e6,
            "broker_cpu_us": None if broker_cpu is None else broker_cpu / backlog * 1e6, "rss0_mb": rss0 / 2**20,
            "rss1_mb": rss1 / 2**20, "rss_per_1k_mb": (rss1 - rss0) / 2**20 / (args.hosts / 1000),
            "sim_rate": stats.sent / produce_s, "rejected": rejected,
            "proofs": sum(proofs1[tp] - proofs0.get(tp, 0) for tp in proofs1),
            # worker 0's own (event loop) thread, whose id is the pid, and its other threads, as busy shares
            "main_busy": threads.get(workers[0].pid, 0.0) / drain_s,
            "others_busy": sum(t for tid, t in threads.items() if tid != workers[0].pid) / drain_s,
            "user_s": times1.user - times0.user, "system_s": times1.system - times0.system,
            "machine": machine,
            "minflt": counters[0], "ctx_voluntary": counters[1], "ctx_involuntary": counters[2],
            "probe_idle_us": probe_idle, "probe_drain_us": statistics.median(probes) if probes else None}


def engine_only(hosts: int = 200, samples: int = 30) -> float:
    """CPU us per record of the pure engine (parse, schema, signature, rules, windows): no Kafka, no faust."""
    from processors.config import ProcessorConfig
    from processors.engine import Engine, decode, new_state

    engine = Engine(ProcessorConfig())
    sims = [simulator.SimHost(i, seed="engine-only") for i in range(hosts)]
    t = int(time.time() * 1e6) - samples * 1_000_000
    msgs = [h.message("hm.inventory.v1", h.inventory(t)) for h in sims]
    msgs += [h.message("hm.usage.v1", h.usage(t + i * 1_000_000)) for i in range(samples) for h in sims]
    states = {h.host_id: new_state(h.host_id) for h in sims}
    now = int(time.time() * 1e6)
    t0 = time.process_time()
    for topic, _key, value, headers in msgs:
        record, schema = decode(topic, value)
        engine.ingest(states[record["host_id"]], record, schema, value, headers, now)
    return (time.process_time() - t0) / len(msgs) * 1e6


async def lean_probe(settings, start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> tuple[float, float]:
    """The same backlog through a plain aiokafka getmany() loop and the engine, with no outputs and
    no changelog: what the processing costs without faust's per-event path (records/s, us CPU/record)."""
    from processors.config import ProcessorConfig
    from processors.engine import Engine, decode, new_state
    from processors.validation import Rejection

    engine = Engine(ProcessorConfig())
    states: dict[str, dict] = {}
    rejected: dict[str, int] = {}
    c = make_consumer(settings, group_id=None, max_partition_fetch_bytes=8 << 20)
    await c.start()
    try:
        total, cpu, wall = 0, 0.0, 0.0
        # inventories first (they pin the keys), as the app's inventory agent would have by then
        for topics in (("hm.inventory.v1",), ("hm.usage.v1", "hm.ebpf.v1")):
            tps = [tp for tp in end if tp.topic in topics and end[tp] > start.get(tp, 0)]
            if not tps:
                continue
            c.assign(tps)
            for tp in tps:
                c.seek(tp, start.get(tp, 0))
            want, done = sum(end[tp] - start.get(tp, 0) for tp in tps), 0
            t0, c0 = time.monotonic(), time.process_time()
            while done < want:
                batch = await c.getmany(timeout_ms=1000, max_records=5000)
                now = int(time.time() * 1e6)
                for msgs in batch.values():
                    for m in msgs:
                        done += 1
                        try:
                            record, schema = decode(m.topic, m.value)
                            state = states.setdefault(record["host_id"], new_state(record["host_id"]))
                            engine.ingest(state, record, schema, m.value, m.headers, now)
                        except Rejection as rej:
                            rejected[rej.code] = rejected.get(rej.code, 0) + 1
            wall += time.monotonic() - t0
            cpu += time.process_time() - c0
            total += done
        if rejected:
            print(f"  lean probe rejections: {rejected}", file=sys.stderr)
        return total / wall, cpu / total * 1e6
    finally:
        await c.stop()


async def latency(settings, args, tmp: Path) -> dict[str, float]:
    group = f"hm-bench-lat-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "HMTEL_STATE_DIR": str(tmp / group), "HMTEL_PROCESSOR_APP_ID": group,
           "HMTEL_KAFKA_BOOTSTRAP": settings.bootstrap, "HMTEL_LOG_LEVEL": "WARNING",
           "HMTEL_PROCESSOR_OFFSET_RESET": "latest"}
    log = tmp / f"{group}.log"
    worker = start_worker(env, "0", log)
    seed = f"lat-{group}"
    hosts = {simulator.SimHost(i, seed=seed).host_id for i in range(args.latency_hosts)}
    try:
        await wait_ready([log])
        await simulator.run(settings, hosts=args.latency_hosts, rate=1, duration_s=args.latency_s, seed=seed,
                            progress=lambda line: None)
        await asyncio.sleep(5)
    finally:
        worker.terminate()
        worker.wait(30)
    sample_ts: dict[tuple[str, int], list[int]] = {}
    length = 10_000_000
    for m in await read_topic(settings, "hm.usage.v1"):
        if m.key and m.key.decode(errors="replace") in hosts:
            rec = orjson.loads(m.value)
            sample_ts.setdefault((rec["host_id"], rec["ts"] - rec["ts"] % length), []).append(rec["ts"])
    lat, close = [], []
    for m in await read_topic(settings, "hm.usage.agg.10s.v1"):
        agg = orjson.loads(m.value)
        if agg["host_id"] not in hosts:
            continue
        emitted_us = m.timestamp * 1000
        close.append((emitted_us - agg["window"]["end_us"]) / 1e6)
        lat += [(emitted_us - ts) / 1e6 for ts in sample_ts.get((agg["host_id"], agg["window"]["start_us"]), ())]
    if not lat:
        raise SystemExit(f"no aggregates seen; worker log:\n{log.read_text()[-2000:]}")
    q = statistics.quantiles(lat, n=100)
    cq = statistics.quantiles(close, n=100) if len(close) > 1 else [close[0]] * 99
    return {"samples": len(lat), "p50": q[49], "p99": q[98], "close_p50": cq[49], "close_p99": cq[98]}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=2000)
    ap.add_argument("--backfill", type=float, default=60, help="seconds of 1 Hz samples per host in the backlog")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--latency-hosts", type=int, default=300)
    ap.add_argument("--latency-s", type=float, default=40)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--lean-probe", action="store_true",
                    help="also drain the backlog with plain aiokafka getmany() + the engine (no faust, no outputs)")
    ap.add_argument("--profile", metavar="FILE", help="py-spy collapsed stacks of worker 0 during the drain")
    ap.add_argument("--profile-s", type=int, default=20)
    ap.add_argument("--proof-close", choices=("mid", "any"), default="mid",
                    help="mid (default): wait (up to a proof window) until a proof window ends mid-backlog, so "
                         "the drain closes one per host; any: start at once, wherever the windows end")
    ap.add_argument("--worker-log", metavar="FILE", help="worker 0's log, at INFO (its progress lines every 10 s)")
    args = ap.parse_args()
    settings = load_settings()
    await ensure_topics(settings)
    with tempfile.TemporaryDirectory(prefix="hm-bench-") as d:
        tmp = Path(d)
        t = await throughput(settings, args, tmp)
        rows = [
            ("usage fast path (processor_native_ingest)",
             "native (native/hm_ingest)" if settings.processor_native_ingest else "off: the Python engine"),
            ("engine alone, no Kafka (incl. Ed25519 verify)", f"{engine_only():.0f} us CPU/record"),
            ("backlog records (usage + inventory)", f"{t['records']:,}"),
            ("simulator send rate (signing incl.)", f"{t['sim_rate']:,.0f} records/s"),
            (f"drain rate, {args.workers} worker(s)", f"{t['rate']:,.0f} records/s  ({t['drain_s']:.1f} s until committed)"),
            ("processing rate (to the last checkpoint before the end)",
             "n/a (one checkpoint)" if t["proc_rate"] is None else f"{t['proc_rate']:,.0f} records/s"),
            # every backlog record is valid: a record-level rejection is a bug or a wait that ran out;
            # a host's first proof window is partial (insufficient_evidence) when it closes in the drain
            ("proofs emitted in the drain", f"{t['proofs']:,}"),
            ("rejections in the drain, by reason",
             ", ".join(f"{k} {v:,}" for k, v in sorted(t["rejected"].items())) or "none"),
            ("worker CPU per record", f"{t['cpu_us']:.0f} us"),
            ("worker 0 busy over the drain: event-loop thread / others",
             f"{t['main_busy']:.0%} / {t['others_busy']:.0%} of a core (the drain's last checkpoint wait included)"),
            ("worker 0 CPU user / system; minor faults; context switches vol / invol",
             f"{t['user_s']:.1f} s / {t['system_s']:.1f} s; {t['minflt']:,}; {t['ctx_voluntary']:,} / {t['ctx_involuntary']:,}"),
            ("CPU probe (fixed Python work) idle / median over the drain",
             f"{t['probe_idle_us'] / 1000:.1f} ms / "
             + ("n/a" if t["probe_drain_us"] is None else f"{t['probe_drain_us'] / 1000:.1f} ms")),
            ("the machine over the drain: busy / idle / stolen by the hypervisor",
             " / ".join(f"{t['machine'][k]:.0%}" for k in ("busy", "idle", "steal"))
             + f" of {os.cpu_count()} CPUs"),
            ("broker CPU per record (same cores)",
             "not local" if t["broker_cpu_us"] is None else f"{t['broker_cpu_us']:.0f} us"),
            ("worker RSS ready / drained", f"{t['rss0_mb']:.0f} MB / {t['rss1_mb']:.0f} MB"),
            ("RSS per 1,000 hosts", f"{t['rss_per_1k_mb']:.1f} MB"),
        ]
        if t["lean"]:
            rows.append(("probe: aiokafka getmany() + engine, no faust/outputs",
                         f"{t['lean'][0]:,.0f} records/s, {t['lean'][1]:.0f} us CPU/record"))
        if not args.skip_latency:
            lat = await latency(settings, args, tmp)
            rows += [
                (f"sample ts -> 10 s aggregate, {args.latency_hosts} hosts @1 Hz",
                 f"p50 {lat['p50']:.2f} s, p99 {lat['p99']:.2f} s ({lat['samples']} samples)"),
                ("window end -> aggregate emitted", f"p50 {lat['close_p50']:.2f} s, p99 {lat['close_p99']:.2f} s"),
            ]
    width = max(len(k) for k, _ in rows)
    print(f"\nprocessors bench: {args.hosts} hosts x {args.backfill:g} s backlog, {os.cpu_count()} CPUs (shared)")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


if __name__ == "__main__":
    asyncio.run(main())
