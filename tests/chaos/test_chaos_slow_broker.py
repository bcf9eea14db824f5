"""Slow broker: the collector runs in a network namespace whose only way to the broker is a
veth pair; the namespace holds the broker's listener (a forwarder on the advertised
address). Delay and loss go on the veth with `tc netem`; on a kernel without sch_netem the
forwarder holds every chunk instead (delay only, said in the summary).

Invariants: lag (now - ts of the newest record on the topic) grows under the delay and
comes back after it; every record the spool acknowledged is on its topic.
Addresses are link-local (169.254.77.0/30) on our own veth pair: nothing leaves the machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from chaos_harness import (Procs, Tally, check_collector_delivery, free_ports, host_records, left_in_spool,
                           read_topic, spool_state, wait_for)
from schemas.keys import SigningKey

HERE = Path(__file__).resolve().parent
HOST_IP, NS_IP = "169.254.77.1", "169.254.77.2"
DELAY_MS, LOSS_PCT, SLOW_S = 800, 5, 12

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"),
                                reason="needs root and iproute2 (ip, tc) for a veth pair into a network namespace")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    n = os.getpid() % 100000
    ns, host_if, ns_if = f"hmchaos{n}", f"hmc{n}a", f"hmc{n}b"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NS_IP}/30", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        # Does this kernel have netem? (sch_netem is a module some cloud kernels leave out.)
        netem = sh("tc", "qdisc", "add", "dev", host_if, "root", "netem", "delay", "1ms", check=False).returncode == 0
        if netem:
            sh("tc", "qdisc", "del", "dev", host_if, "root")
        yield {"ns": ns, "host_if": host_if, "ns_if": ns_if, "netem": netem}
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)


def newest_lag_s(settings, host_id: str) -> float:
    newest = 0
    for msg in read_topic(settings, "hm.usage.v1", host_id.encode()):
        if msg.key == host_id.encode():
            newest = max(newest, orjson.loads(msg.value)["ts"])
    return time.time() - newest / 1e6 if newest else float("inf")


def set_slow(net: dict, on: bool, delay_file: Path) -> None:
    if net["netem"]:
        for prefix, dev in (([], net["host_if"]), (["ip", "netns", "exec", net["ns"]], net["ns_if"])):
            if on:
                sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", f"{DELAY_MS // 2}ms",
                   "loss", f"{LOSS_PCT}%")
            else:
                sh(*prefix, "tc", "qdisc", "del", "dev", dev, "root", check=False)
    else:
        delay_file.write_text(str(DELAY_MS / 2000) if on else "0")


def test_slow_lossy_link_lag_grows_recovers_and_nothing_is_lost(chaos_broker, netns, tmp_path):
    settings = chaos_broker.settings
    procs = Procs(tmp_path)
    state = tmp_path / "collector"
    delay_file = tmp_path / "delay"
    delay_file.write_text("0")
    (relay_port,) = free_ports(1)
    fwd = [sys.executable, str(HERE / "tcp_forward.py")]
    forwarders = [
        # host side of the veth -> the broker on the host's loopback
        subprocess.Popen([*fwd, f"{HOST_IP}:{relay_port}", settings.bootstrap], stdout=subprocess.PIPE),
        # in the namespace: the broker's advertised address -> across the veth
        subprocess.Popen(["ip", "netns", "exec", netns["ns"], *fwd, settings.bootstrap, f"{HOST_IP}:{relay_port}",
                          str(delay_file)], stdout=subprocess.PIPE),
    ]
    lags: dict[str, float] = {}
    try:
        for f in forwarders:
            assert f.stdout.readline().strip() == b"listening"
        env = procs.env(settings, state)
        procs.spawn("collect", ["collect", "--metrics-listen", "", "--usage-interval", "0.1"], env,
                    prefix=["ip", "netns", "exec", netns["ns"]])
        wait_for(lambda: (state / "host.key").exists(), 60, "the collector's key")
        host = SigningKey.load_or_create(state, "host.key").host_id
        wait_for(lambda: newest_lag_s(settings, host) < 3, 60, "records through the namespace")
        time.sleep(3)
        lags["before"] = newest_lag_s(settings, host)
        set_slow(netns, True, delay_file)
        time.sleep(SLOW_S)
        lags["slow"] = newest_lag_s(settings, host)
        set_slow(netns, False, delay_file)
        wait_for(lambda: newest_lag_s(settings, host) < max(1.0, lags["before"] * 3), 60, "the lag to recover")
        lags["after"] = newest_lag_s(settings, host)
        assert procs.stop("collect", 30) == 0, procs.log("collect")[-3000:]
    finally:
        procs.stop_all()
        for f in forwarders:
            f.kill()
            f.wait(5)

    log = procs.log("collect")
    st = spool_state(state)
    tally = Tally("slow-broker")
    check_collector_delivery(tally, host_records(settings, host), st["acked"], st["acked"] + 1 + left_in_spool(log))
    how = (f"netem delay {DELAY_MS}ms loss {LOSS_PCT}%" if netns["netem"]
           else f"no sch_netem: forwarder delay {DELAY_MS}ms per round trip, no loss")
    tally.notes += [how, "lag s: " + ", ".join(f"{k} {v:.1f}" for k, v in lags.items())]
    tally.report()
    assert tally.lost == 0, tally.line()
    assert lags["slow"] > lags["before"], lags
    assert lags["after"] < lags["slow"], lags
