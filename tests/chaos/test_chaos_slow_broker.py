"""Slow broker: the collector runs in a network namespace whose only way to the broker is a
veth pair; the namespace holds the broker's listener (a forwarder on the advertised
address). Delay and loss go on the veth with `tc netem`. On a kernel without sch_netem
(this VM) the loss is still in the kernel: the TC classifier bpf/lossy_link.c sits on
clsact egress of both veth ends and drops LOSS_PCT % of the packets while "slow" (a map
value, so it turns on and off without detaching); the delay comes from the forwarder,
which holds every chunk. If that program cannot load, the test fails naming what is
missing (bcc, headers, clsact, cls_bpf); it does not fall back to "no loss".

Invariants: lag (now - ts of the newest record on the topic) grows under the delay and
comes back after it; the loss really happened (packets dropped while slow, none after);
every record the spool acknowledged is on its topic.
Addresses are link-local (169.254.77.0/30) on our own veth pair: nothing leaves the machine.
Rerun: .venv/bin/python -m pytest -q -s tests/chaos/test_chaos_slow_broker.py
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
from lossy_link import Counts, LossyLink, LossyLinkError
from schemas.keys import SigningKey

HERE = Path(__file__).resolve().parent
HOST_IP, NS_IP = "169.254.77.1", "169.254.77.2"
DELAY_MS, LOSS_PCT, SLOW_S = 800, 5, 12
# Under the delay the link carries only ~5 packets/s (one produce round trip per 0.8 s), so
# 12 s at 5 % drops nothing about 4 % of the time: the slow phase then lasts until the
# classifier has dropped a packet, at most this much longer.
SLOW_EXTRA_S = 30

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"),
                                reason="needs root and iproute2 (ip, tc) for a veth pair into a network namespace")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


@pytest.fixture
def netns():
    n = os.getpid() % 100000
    ns, host_if, ns_if = f"hmchaos{n}", f"hmc{n}a", f"hmc{n}b"
    lossy = None
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
        else:  # no netem: loss from the TC classifier on both egresses, off (0 %) until set_slow
            try:
                lossy = LossyLink()
                lossy.attach(host_if)
                lossy.attach(ns_if, netns=ns)
            except LossyLinkError as err:
                pytest.fail(f"no sch_netem, and the tc-bpf loss fallback is unavailable: {err}", pytrace=False)
        yield {"ns": ns, "host_if": host_if, "ns_if": ns_if, "netem": netem, "lossy": lossy}
    finally:
        sh("ip", "link", "del", host_if, check=False)  # takes its peer, and the clsact qdiscs, with it
        sh("ip", "netns", "del", ns, check=False)
        if lossy is not None:
            lossy.close()


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
        net["lossy"].set_loss(LOSS_PCT if on else 0)


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
    lossy: LossyLink | None = netns["lossy"]
    marks: dict[str, Counts] = {}
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
        if lossy:
            marks["on"] = lossy.counts()
        set_slow(netns, True, delay_file)
        slow_from = time.monotonic()
        time.sleep(SLOW_S)
        if lossy:  # dropped nothing yet (a few % of runs): stay slow until it has
            extra = time.monotonic() + SLOW_EXTRA_S
            while (lossy.counts() - marks["on"]).dropped == 0 and time.monotonic() < extra:
                time.sleep(0.5)
        lags["slow"] = newest_lag_s(settings, host)
        set_slow(netns, False, delay_file)
        slow_s = time.monotonic() - slow_from
        if lossy:
            marks["off"] = lossy.counts()
        wait_for(lambda: newest_lag_s(settings, host) < max(1.0, lags["before"] * 3), 60, "the lag to recover")
        lags["after"] = newest_lag_s(settings, host)
        if lossy:
            marks["end"] = lossy.counts()
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
    if netns["netem"]:
        how = [f"netem delay {DELAY_MS}ms loss {LOSS_PCT}% on both veth ends for {slow_s:.0f}s"]
    else:
        slow, after = marks["off"] - marks["on"], marks["end"] - marks["off"]
        how = [f"no sch_netem: forwarder delay {DELAY_MS}ms per round trip for {slow_s:.0f}s",
               f"tc-bpf loss {LOSS_PCT}% on both veth egresses: {slow.dropped} of {slow.seen_lossy} packets dropped "
               f"({100 * slow.dropped / max(slow.seen_lossy, 1):.1f}%), {after.dropped} of {after.seen} after"]
    tally.notes += [*how, "lag s: " + ", ".join(f"{k} {v:.1f}" for k, v in lags.items())]
    tally.report()
    assert tally.lost == 0, tally.line()
    # the delay: the newest record on the topic is at least one one-way delay old while slow
    assert lags["slow"] > lags["before"] and lags["slow"] >= DELAY_MS / 2000, (lags, tally.line())
    assert lags["after"] < lags["slow"], (lags, tally.line())
    if not netns["netem"]:  # the loss: really dropped while slow, and off again after
        assert slow.dropped > 0 and slow.seen_lossy > 0, tally.line()
        assert after.dropped == 0 and after.seen > 0, tally.line()
