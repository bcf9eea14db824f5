"""System: hostname, kernel, OS release, boot id, machine-id hash, virtualisation,
container and DMI identity."""
from __future__ import annotations

import hashlib
import shlex
from typing import Any

from collector.inventory.hostfs import HostFS

DMI = "sys/class/dmi/id"
DMI_FIELDS = ("sys_vendor", "product_name", "product_version", "board_vendor", "board_name",
              "bios_vendor", "bios_version", "bios_date", "chassis_type", "chassis_vendor")
# DMI vendor/product substrings to hypervisor names, as systemd-detect-virt's
# src/basic/virt.c dmi_vendor_table.
DMI_HYPERVISORS = (
    ("KVM", "kvm"), ("OpenStack", "kvm"), ("KubeVirt", "kvm"), ("Amazon EC2", "amazon"),
    ("QEMU", "qemu"), ("VMware", "vmware"), ("VMW", "vmware"), ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"), ("Oracle Corporation", "oracle"), ("Xen", "xen"), ("Bochs", "bochs"),
    ("Parallels", "parallels"), ("BHYVE", "bhyve"), ("Hyper-V", "microsoft"), ("Apple Virtualization", "apple"),
    ("Google Compute Engine", "google"), ("Firecracker", "firecracker"),
)
CLOCKSOURCE_HYPERVISORS = {"kvm-clock": "kvm", "xen": "xen", "hyperv_clocksource_tsc_page": "microsoft",
                           "hyperv_clocksource_msr": "microsoft"}
CGROUP_CONTAINERS = (("/kubepods", "kubernetes"), ("/docker/", "docker"), ("docker-", "docker"),
                     ("/libpod-", "podman"), ("/lxc/", "lxc"), ("/lxc.payload", "lxc"),
                     ("/containerd", "containerd"), ("/crio-", "cri-o"))


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): shell-style KEY=value lines, values possibly quoted."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        out[key.strip()] = parts[0] if parts else ""
    return out


def hypervisor_from_dmi(dmi: dict[str, str | None]) -> str | None:
    for field in ("sys_vendor", "product_name", "board_vendor", "bios_vendor"):
        value = dmi.get(field) or ""
        if field == "sys_vendor" and value == "Microsoft Corporation" and dmi.get("product_name") == "Virtual Machine":
            return "microsoft"
        for needle, name in DMI_HYPERVISORS:
            if needle in value:
                return name
    return None


def container_from_cgroup(text: str) -> str | None:
    for line in text.splitlines():
        for needle, name in CGROUP_CONTAINERS:
            if needle in line:
                return name
    return None


def collect(fs: HostFS) -> dict[str, Any]:
    osr = parse_os_release(fs.read("etc/os-release") or fs.read("usr/lib/os-release", "system.os") or "")
    dmi = {field: fs.read_line(f"{DMI}/{field}") for field in DMI_FIELDS}
    if not any(dmi.values()):
        fs.note("system.dmi")  # absent on VMs without SMBIOS (e.g. Firecracker) and most arm64 boards
    machine_id = fs.read_line("etc/machine-id", "system.machine_id_sha256")
    system = {
        "hostname": fs.read_line("proc/sys/kernel/hostname", "system.hostname"),
        "kernel": {
            "name": fs.read_line("proc/sys/kernel/ostype") or "Linux",
            "release": fs.read_line("proc/sys/kernel/osrelease", "system.kernel.release"),
            "version": fs.read_line("proc/sys/kernel/version"),
        },
        "os": {
            "id": osr.get("ID"), "name": osr.get("NAME"), "version_id": osr.get("VERSION_ID"),
            "pretty_name": osr.get("PRETTY_NAME"),
        } if osr else None,
        "boot_id": fs.read_line("proc/sys/kernel/random/boot_id", "system.boot_id"),
        # Hashed, not sent: machine-id is a secret-ish stable identifier (machine-id(5)).
        "machine_id_sha256": hashlib.sha256(machine_id.encode()).hexdigest() if machine_id else None,
        "virtualization": _virtualization(fs, dmi),
        "container": _container(fs),
        "dmi": dmi,
    }
    return system


def _virtualization(fs: HostFS, dmi: dict[str, str | None]) -> str | None:
    """Hypervisor name, or None on bare metal. Order as systemd-detect-virt: DMI first."""
    found = hypervisor_from_dmi(dmi)
    if found:
        return found
    xen = fs.read_line("sys/hypervisor/type")
    if xen:
        return xen
    # A paravirtual clock the kernel registered names the hypervisor even when it runs on
    # the TSC (KVM guests with a stable TSC pick "tsc" but still list "kvm-clock").
    clocks = (fs.read_line("sys/devices/system/clocksource/clocksource0/current_clocksource") or "").split()
    clocks += (fs.read_line("sys/devices/system/clocksource/clocksource0/available_clocksource") or "").split()
    for clock in clocks:
        if clock in CLOCKSOURCE_HYPERVISORS:
            return CLOCKSOURCE_HYPERVISORS[clock]
    compatible = fs.read_line("proc/device-tree/hypervisor/compatible")
    if compatible:
        return compatible.split(",")[0]
    cpuinfo = fs.read("proc/cpuinfo") or ""
    if " hypervisor" in cpuinfo:
        return "unknown"  # the CPUID hypervisor bit is set but nothing names it
    return None


def _container(fs: HostFS) -> str | None:
    """Container manager the host root runs in, or None. /run/systemd/container is
    written by systemd-nspawn and others (systemd's CONTAINER_INTERFACE)."""
    marker = fs.read_line("run/systemd/container")
    if marker:
        return marker
    if fs.exists(".dockerenv"):
        return "docker"
    if fs.exists("run/.containerenv"):
        return "podman"
    return container_from_cgroup(fs.read("proc/1/cgroup") or "")
