"""`hmtel inventory --json` (the real CLI, on this machine) against the system's own tools:
lscpu (CPU model and counts), lsblk (each disk's size and rotational flag), free (total
memory within 1%), ip link (interface names, MACs, MTUs). A missing tool is a skip that
names it (deploy/host-deps.sh installs util-linux, procps and iproute2)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (deploy/host-deps.sh installs it)")
    return path


def _json(*argv: str) -> object:
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    state = tmp_path_factory.mktemp("state")
    out = subprocess.run([sys.executable, "-m", "hmtel", "--host-root", "/", "--state-dir", str(state),
                          "inventory", "--json", "--no-nvml"], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _lscpu_fields(data: dict) -> dict[str, str]:
    fields: dict[str, str] = {}

    def walk(rows: list) -> None:
        for row in rows:
            fields.setdefault(row["field"].rstrip(":"), row.get("data"))
            walk(row.get("children", []))

    walk(data["lscpu"])
    return fields


def test_cpu_agrees_with_lscpu(record):
    fields = _lscpu_fields(_json(_tool("lscpu"), "-J"))
    cpu = record["cpu"]
    assert cpu["model"] == fields["Model name"]
    assert cpu["threads"] == int(fields["CPU(s)"])
    assert cpu["sockets"] == int(fields["Socket(s)"])
    assert cpu["cores"] == int(fields["Core(s) per socket"]) * int(fields["Socket(s)"])
    assert cpu["threads_per_core"] == int(fields["Thread(s) per core"])
    assert record["hypermesh"]["cpu"]["cores"] == int(fields["CPU(s)"])


def _lsblk_disks() -> dict[str, tuple[int, bool]]:
    data = _json(_tool("lsblk"), "-J", "-b", "-O")
    return {d["name"]: (int(d["size"]), bool(int(d["rota"])) if not isinstance(d["rota"], bool) else d["rota"])
            for d in data["blockdevices"] if d["type"] == "disk" and int(d["size"] or 0) > 0}


def test_disks_agree_with_lsblk(record):
    before = _lsblk_disks()
    ours = {d["name"]: (d["size_bytes"], d["rotational"]) for d in record["storage"]["block_devices"]}
    after = _lsblk_disks()
    stable = {name: value for name, value in before.items() if after.get(name) == value}
    assert stable, "lsblk listed no disk with a size"
    for name, (size, rota) in stable.items():
        assert ours.get(name) == (size, rota), f"{name}: lsblk says size={size} rota={rota}, we say {ours.get(name)}"


def test_total_memory_agrees_with_free(record):
    out = subprocess.run([_tool("free"), "-b"], capture_output=True, text=True, check=True).stdout
    total = int(next(line for line in out.splitlines() if line.startswith("Mem:")).split()[1])
    assert abs(record["memory"]["total_bytes"] - total) <= total * 0.01
    assert abs(record["hypermesh"]["memory"]["total_bytes"] - total) <= total * 0.01


def _ip_links() -> dict[str, tuple[str | None, int]]:
    return {link["ifname"]: (link.get("address"), link["mtu"]) for link in _json(_tool("ip"), "-j", "link")}


def test_interfaces_agree_with_ip_link(record):
    # Other tests may add or drop veth pairs meanwhile: compare the links that both
    # `ip` readings, taken around ours, agree on.
    before = _ip_links()
    ours = {i["name"]: (i["mac"], i["mtu"]) for i in record["network"]["interfaces"]}
    after = _ip_links()
    stable = {name: value for name, value in before.items() if after.get(name) == value}
    assert "lo" in stable
    for name, (mac, mtu) in stable.items():
        assert ours.get(name) == (mac, mtu), f"{name}: ip says mac={mac} mtu={mtu}, we say {ours.get(name)}"


def test_netlink_and_sysfs_paths_agree_here():
    """The fixture-tree path (sysfs/procfs) and the live path (netlink) on the same machine."""
    from collector.inventory import network
    from collector.inventory.hostfs import HostFS

    links = network.collect(HostFS("/"), use_netlink=True)
    files = network.collect(HostFS("/"), use_netlink=False)
    assert links["source"] == "netlink" and files["source"] == "sysfs"
    by_netlink = {i["name"]: (i["mac"], i["mtu"]) for i in links["interfaces"]}
    by_sysfs = {i["name"]: (i["mac"], i["mtu"]) for i in files["interfaces"]}
    common = set(by_netlink) & set(by_sysfs)
    assert "lo" in common and all(by_netlink[n] == by_sysfs[n] for n in common)
    v4 = lambda src: {(i["name"], a["address"]) for i in src["interfaces"] for a in i["addresses"] if a["family"] == "inet"}
    assert v4(files) <= v4(links)


async def test_inventory_from_a_running_event_loop():
    """The agent may build the inventory on its loop's thread; pyroute2's sync API must not break it."""
    from collector.inventory import build_inventory

    body = build_inventory("/", nvml=None)
    assert body["network"]["source"] == "netlink" and "network" not in body["missing"]
    assert "network.netlink" not in body["missing"]

