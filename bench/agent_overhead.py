"""Agent overhead beside Debian's prometheus-node-exporter, in the same run.

    apt-get install prometheus-node-exporter     # once
    HMTEL_KAFKA_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python bench/agent_overhead.py [--seconds 120]

Runs `python -m hmtel collect` (1 s usage interval, publishing to the broker,
own state dir, no eBPF stream sources unless they are registered and allowed)
and `prometheus-node-exporter` on a spare port, scraped once a second (it
collects on scrape, so that is its 1 s sampling). The agent's own metrics
endpoint is scraped every 15 s, as a Prometheus server would. After a warm-up
(start-up import cost is printed apart), CPU time (user+system, from
/proc/<pid>/stat) is measured over the window; peak RSS is the kernel's
VmHWM. Targets: agent CPU <= half node_exporter's and <= 1 % of a core; RSS
<= 80 MB. The machine has 2 cores shared with other jobs: rerun to compare.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return len(resp.read())


def wait_http(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on 127.0.0.1:{port} in {timeout_s} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--ebpf", action="store_true", help="leave the eBPF stream source on (default off: the "
                    "RSS target is without eBPF; bcc's LLVM alone is ~150 MB)")
    ap.add_argument("--node-exporter", default=shutil.which("prometheus-node-exporter") or "")
    args = ap.parse_args()
    if not args.node_exporter:
        raise SystemExit("prometheus-node-exporter not found; `apt-get install prometheus-node-exporter`")

    state = Path(tempfile.mkdtemp(prefix="hm-overhead-"))
    agent_port, ne_port = free_port(), free_port()
    env = {**os.environ, "HMTEL_STATE_DIR": str(state), "HMTEL_METRICS_LISTEN": f"127.0.0.1:{agent_port}",
           "HMTEL_USAGE_INTERVAL_S": "1", "HMTEL_LOG_LEVEL": "WARNING",
           "HMTEL_EBPF_ENABLED": "true" if args.ebpf else "false"}
    if not os.environ.get("HMTEL_KAFKA_BOOTSTRAP"):
        env["HMTEL_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ.get('HMTEL_BROKER_PORT', '9092')}"
    t_start = time.monotonic()
    agent = subprocess.Popen([sys.executable, "-m", "hmtel", "collect"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=open(state / "agent.log", "wb"))
    ne = subprocess.Popen([args.node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(agent_port)
        wait_http(ne_port)
        time.sleep(args.warmup)
        agent_cpu0, ne_cpu0 = cpu_s(agent.pid), cpu_s(ne.pid)
        startup_cpu = agent_cpu0
        t0 = time.monotonic()
        scrapes = 0
        next_at = t0
        while time.monotonic() - t0 < args.seconds:
            scrape(ne_port)
            scrapes += 1
            if scrapes % 15 == 0:
                scrape(agent_port)
            next_at += 1.0
            time.sleep(max(0.0, next_at - time.monotonic()))
        window = time.monotonic() - t0
        agent_cpu, ne_cpu = cpu_s(agent.pid) - agent_cpu0, cpu_s(ne.pid) - ne_cpu0
        agent_rss, ne_rss = hwm_mb(agent.pid), hwm_mb(ne.pid)
        samples = _metric(agent_port, 'hm_agent_samples_total{schema="hm.usage.v1"}')
        published = _metric(agent_port, "hm_agent_published_records_total")
    finally:
        agent.send_signal(signal.SIGTERM)
        ne.terminate()
        agent.wait(15)
        ne.wait(15)
        shutil.rmtree(state, ignore_errors=True)

    def row(name: str, cpu: float, rss: float, per: str) -> str:
        return f"{name:<34} {cpu:>8.2f} {cpu / window * 100:>8.2f}% {cpu / window * 1000:>8.2f} {rss:>9.1f}  {per}"

    print(f"\nagent overhead: {window:.0f} s window after {args.warmup:.0f} s warm-up, 1 s interval, "
          f"eBPF {'on' if args.ebpf else 'off'}, {os.cpu_count()} CPUs\n")
    print(f"{'process':<34} {'CPU s':>8} {'of 1 core':>9} {'ms/s':>8} {'peak RSS':>9}  notes")
    print(row("hmtel collect (agent)", agent_cpu, agent_rss,
              f"{samples:.0f} samples, {published:.0f} published; start-up {startup_cpu:.2f} CPU s"))
    print(row("prometheus-node-exporter 1 Hz", ne_cpu, ne_rss, f"{scrapes} scrapes"))
    ratio = agent_cpu / ne_cpu if ne_cpu else float("inf")
    print(f"\nagent / node_exporter CPU: {ratio:.2f} (target <= 0.50)  "
          f"agent {agent_cpu / window * 100:.2f}% of a core (target <= 1%)  "
          f"agent peak RSS {agent_rss:.1f} MB (target <= 80 MB)")
    ok = ratio <= 0.5 and agent_cpu / window <= 0.01 and agent_rss <= 80
    print("targets:", "met" if ok else "MISSED")
    print(f"(total run {time.monotonic() - t_start:.0f} s; 2-core machine shared with other jobs: rerun to compare)")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


if __name__ == "__main__":
    main()
