"""Network interfaces: MAC, MTU, state, speed/duplex, driver, kind (bond/VLAN/bridge...), addresses.

When we share the host's network namespace (host root "/", or a host mounted at
/host by a pod with hostNetwork and hostPID), links and addresses come from netlink
(pyroute2), which knows every rtnetlink link kind. Otherwise (a fixture tree, or a
container in its own network namespace) the same fields are read from sysfs and
procfs under the host root. Speed, duplex and driver come from sysfs on both paths.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import os
from typing import Any

from collector.inventory.hostfs import HostFS, parse_int

SYS_NET = "sys/class/net"
ARPHRD_LOOPBACK = 772  # include/uapi/linux/if_arp.h
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
# /proc/net/if_inet6 scope column is IPV6_ADDR_SCOPE_* << 4 (net/ipv6/addrconf.c).
INET6_SCOPES = {0x00: "global", 0x10: "host", 0x20: "link", 0x40: "site"}
IFA_F_TEMPORARY = 0x01


# --- parsers ------------------------------------------------------------------------

def parse_if_inet6(text: str) -> list[dict[str, Any]]:
    """/proc/net/if_inet6 rows: address, ifindex, prefix length, scope, flags, name (hex fields)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or len(parts[0]) != 32:
            continue
        try:
            address = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
            prefix, scope, flags = int(parts[2], 16), int(parts[3], 16), int(parts[4], 16)
        except ValueError:
            continue
        out.append({"interface": parts[5], "family": "inet6", "address": address, "prefixlen": prefix,
                    "scope": INET6_SCOPES.get(scope, str(scope)), "temporary": bool(flags & IFA_F_TEMPORARY)})
    return out


def parse_fib_trie_local(text: str) -> list[str]:
    """Local IPv4 addresses from /proc/net/fib_trie: leaves followed by "/32 host LOCAL"."""
    out: list[str] = []
    last = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped.startswith("/32 host LOCAL") and last and last not in out:
            out.append(last)
    return out


def parse_route(text: str) -> list[tuple[str, int, int]]:
    """/proc/net/route to (interface, destination, mask) with host-order integers."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            dest = int.from_bytes(bytes.fromhex(parts[1]), "little")
            mask = int.from_bytes(bytes.fromhex(parts[7]), "little")
        except ValueError:
            continue
        out.append((parts[0], dest, mask))
    return out


def ipv4_by_interface(local: list[str], routes: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Assign each local address to the interface of its longest matching connected route."""
    out = []
    for text in local:
        try:
            addr = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if addr.is_loopback:
            out.append({"interface": "lo", "family": "inet", "address": text, "prefixlen": 8, "scope": "host"})
            continue
        best = None
        for iface, dest, mask in routes:
            if mask and int(addr) & mask == dest and (best is None or mask > best[1]):
                best = (iface, mask)
        if best:
            out.append({"interface": best[0], "family": "inet", "address": text,
                        "prefixlen": bin(best[1]).count("1"), "scope": "global"})
    return out


def parse_vlan_config(text: str) -> dict[str, tuple[int, str]]:
    """/proc/net/vlan/config: VLAN device -> (VLAN id, base device)."""
    out = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            out[parts[0]] = (int(parts[1]), parts[2])
    return out


def parse_uevent(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, sep, v in (line.partition("=") for line in text.splitlines()) if sep}


# --- collection ---------------------------------------------------------------------

def collect(fs: HostFS, use_netlink: bool | None = None) -> dict[str, Any]:
    if use_netlink is None:
        use_netlink = fs.is_live or shares_host_netns(fs)
    interfaces = None
    source = "sysfs"
    if use_netlink:
        try:
            interfaces = _netlink_off_loop(fs)
            source = "netlink"
        except (ImportError, OSError, RuntimeError):
            fs.note("network.netlink")
    if interfaces is None:
        interfaces = _from_sysfs(fs)
    for iface in interfaces:
        iface.update(_sysfs_link_details(fs, iface["name"]))
    interfaces.sort(key=lambda i: (i["index"] if i["index"] is not None else 1 << 30, i["name"]))
    return {"source": source, "interfaces": interfaces}


def shares_host_netns(fs: HostFS) -> bool:
    """True when our network namespace is the host's init's. Both links are read under
    the host root: with the host's /proc there (hostPID), proc/self is this process."""
    try:
        ours = os.readlink(fs.path("proc/self/ns/net"))
        hosts = os.readlink(fs.path("proc/1/ns/net"))
    except OSError:
        return False  # a fixture tree, or no permission to look at init's namespace
    return ours == hosts


def _interface(name: str) -> dict[str, Any]:
    return {"name": name, "index": None, "mac": None, "permanent_mac": None, "mtu": None, "operstate": None,
            "kind": None, "master": None, "parent": None, "vlan_id": None, "addresses": []}


def _sysfs_kind(fs: HostFS, name: str) -> str:
    d = f"{SYS_NET}/{name}"
    devtype = parse_uevent(fs.read(f"{d}/uevent") or "").get("DEVTYPE")
    if devtype in ("bond", "bridge", "vlan", "wlan", "wwan", "vxlan", "geneve", "wireguard"):
        return "bond" if devtype == "bond" else devtype
    if fs.read_int(f"{d}/type") == ARPHRD_LOOPBACK:
        return "loopback"
    if fs.exists(f"{d}/device"):
        return "physical"
    return "virtual"


def _from_sysfs(fs: HostFS) -> list[dict[str, Any]]:
    vlans = parse_vlan_config(fs.read("proc/net/vlan/config") or "")
    out = []
    for name in fs.listdir(SYS_NET):
        d = f"{SYS_NET}/{name}"
        if not fs.exists(f"{d}/ifindex"):
            continue  # e.g. bonding_masters, a file not an interface
        iface = _interface(name)
        iface["index"] = fs.read_int(f"{d}/ifindex")
        iface["mac"] = fs.read_line(f"{d}/address")
        iface["mtu"] = fs.read_int(f"{d}/mtu", f"network.{name}.mtu")
        iface["operstate"] = fs.read_line(f"{d}/operstate")
        iface["kind"] = _sysfs_kind(fs, name)
        iface["master"] = fs.link_name(f"{d}/master")
        if name in vlans:
            iface["vlan_id"], iface["parent"] = vlans[name]
        out.append(iface)
    _sysfs_addresses(fs, out)
    return out


def _sysfs_addresses(fs: HostFS, interfaces: list[dict[str, Any]]) -> None:
    by_name = {i["name"]: i for i in interfaces}
    rows = ipv4_by_interface(parse_fib_trie_local(fs.read("proc/net/fib_trie") or ""),
                             parse_route(fs.read("proc/net/route") or ""))
    rows += parse_if_inet6(fs.read("proc/net/if_inet6") or "")
    for row in rows:
        iface = by_name.get(row.pop("interface"))
        if iface is not None:
            iface["addresses"].append(row)


def _netlink_off_loop(fs: HostFS) -> list[dict[str, Any]]:
    """pyroute2 0.9's synchronous IPRoute drives its own asyncio loop, which fails with
    "This event loop is already running" on a thread that runs one; there, the netlink
    read goes to a short-lived worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _from_netlink(fs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-netlink") as pool:
        return pool.submit(_from_netlink, fs).result()


def _from_netlink(fs: HostFS) -> list[dict[str, Any]]:
    from pyroute2 import IPRoute  # imported here: ~0.13 s, and only the live path needs it

    with IPRoute() as ipr:
        links = list(ipr.get_links())
        addrs = list(ipr.get_addr())
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    by_index = {}
    out = []
    for link in links:
        name = link.get_attr("IFLA_IFNAME")
        iface = _interface(name)
        iface["index"] = link["index"]
        iface["mac"] = link.get_attr("IFLA_ADDRESS")
        iface["permanent_mac"] = link.get_attr("IFLA_PERM_ADDRESS")
        iface["mtu"] = link.get_attr("IFLA_MTU")
        iface["operstate"] = (link.get_attr("IFLA_OPERSTATE") or "").lower() or None
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        if kind == "vlan":
            data = info.get_attr("IFLA_INFO_DATA")
            iface["vlan_id"] = data.get_attr("IFLA_VLAN_ID") if data is not None else None
            iface["parent"] = names.get(link.get_attr("IFLA_LINK"))
        if link["ifi_type"] == ARPHRD_LOOPBACK:
            kind = "loopback"
        iface["kind"] = kind or _sysfs_kind(fs, name)
        iface["master"] = names.get(link.get_attr("IFLA_MASTER"))
        by_index[link["index"]] = iface
        out.append(iface)
    for addr in addrs:
        owner = by_index.get(addr["index"])
        if owner is None:
            continue
        iface = owner
        family = "inet" if addr["family"] == 2 else "inet6"
        flags = addr.get_attr("IFA_FLAGS") or addr["flags"]
        iface["addresses"].append({
            "family": family,
            "address": addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS"),
            "prefixlen": addr["prefixlen"],
            "scope": SCOPES.get(addr["scope"], str(addr["scope"])),
            **({"temporary": bool(flags & IFA_F_TEMPORARY)} if family == "inet6" else {}),
        })
    return out


def _sysfs_link_details(fs: HostFS, name: str) -> dict[str, Any]:
    """Speed, duplex and driver (sysfs on both paths), plus bond and bridge membership."""
    d = f"{SYS_NET}/{name}"
    speed = parse_int(fs.read_line(f"{d}/speed"))  # EINVAL when the link is down
    duplex = fs.read_line(f"{d}/duplex")
    out: dict[str, Any] = {
        "speed_mbps": speed if speed is not None and speed > 0 else None,
        "duplex": duplex if duplex in ("full", "half") else None,
        "driver": fs.link_name(f"{d}/device/driver"),
        "pci_address": None,
        "bond": None,
        "bridge_ports": None,
    }
    device = fs.realpath(f"{d}/device")
    if device and fs.link_name(f"{d}/device/subsystem") == "pci":
        out["pci_address"] = device.rsplit("/", 1)[-1]
    perm = fs.read_line(f"{d}/bonding_slave/perm_hwaddr")
    if perm:
        out["permanent_mac"] = perm
    if fs.exists(f"{d}/bonding"):
        mode = fs.read_line(f"{d}/bonding/mode")  # "802.3ad 4"
        slaves = fs.read_line(f"{d}/bonding/slaves")
        out["bond"] = {"mode": mode.split()[0] if mode else None, "slaves": sorted(slaves.split()) if slaves else []}
    if fs.exists(f"{d}/bridge"):
        out["bridge_ports"] = fs.listdir(f"{d}/brif")
    return out
