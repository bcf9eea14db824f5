"""The inventory's content hash: sha256 over a canonical form without volatile fields.

Canonical form: JSON with keys sorted, no whitespace, UTF-8, integers as integers
(orjson with OPT_SORT_KEYS). Left out, because they change while the hardware and
its configuration do not:

- readings: memory available/free/swap free; filesystem used/available/usage;
- link state: network operstate, speed and duplex (renegotiated), addresses
  (DHCP renewals, IPv6 temporary addresses);
- memory per NUMA node (memory.numa_nodes[].total_bytes): on this project's CI VMs it
  grows after boot while MemTotal stays put (measured: node0 6.8 GB, later 16.2 GB);
  the node count and CPU lists stay in;
- per-boot values: system.boot_id (the record carries boot_id anyway) and interface
  indexes;
- things containers create and destroy all day: veth, tun/tap and other unnamed
  virtual links (network.interfaces[] of kind veth/tun/tap/virtual) and loop devices
  (storage.block_devices[] named loop*), so a container start is not a new inventory;
- derived parts: ``hypermesh`` (a projection of the native sections plus readings)
  and ``missing`` (a field that goes missing already changes to None).

So the hash moves when a disk, NIC, GPU, CPU, memory size, mount, kernel or OS
changes, which is when the collector republishes the inventory.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any

import orjson

SECTIONS = ("source", "cpu", "memory", "gpus", "storage", "network", "system")
EPHEMERAL_LINK_KINDS = {"veth", "tun", "tap", "virtual"}
VOLATILE = {
    "memory": ("available_bytes", "free_bytes", "swap_free_bytes"),
    "memory.numa_nodes[]": ("total_bytes",),
    "storage.filesystems[]": ("used_bytes", "available_bytes", "usage_percent"),
    "network.interfaces[]": ("operstate", "speed_mbps", "duplex", "addresses", "index"),
    "system": ("boot_id",),
}


def canonical(body: dict[str, Any]) -> bytes:
    """The bytes the hash is taken over (useful to diff two hosts' inventories)."""
    stable = copy.deepcopy({k: body.get(k) for k in SECTIONS})
    network = stable.get("network")
    if isinstance(network, dict) and isinstance(network.get("interfaces"), list):
        network["interfaces"] = [i for i in network["interfaces"]
                                 if not (isinstance(i, dict) and i.get("kind") in EPHEMERAL_LINK_KINDS)]
    storage = stable.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("block_devices"), list):
        storage["block_devices"] = [d for d in storage["block_devices"]
                                    if not (isinstance(d, dict) and str(d.get("name", "")).startswith("loop"))]
    for path, fields in VOLATILE.items():
        for obj in _select(stable, path):
            for field in fields:
                obj.pop(field, None)
    return orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)


def inventory_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def _select(obj: Any, path: str) -> list[dict[str, Any]]:
    """Objects at a dotted path; "name[]" steps into every element of a list."""
    current = [obj]
    for step in path.split("."):
        many = step.endswith("[]")
        key = step[:-2] if many else step
        nxt = []
        for item in current:
            value = item.get(key) if isinstance(item, dict) else None
            if many and isinstance(value, list):
                nxt.extend(value)
            elif not many and value is not None:
                nxt.append(value)
        current = nxt
    return [o for o in current if isinstance(o, dict)]
