"""Storage: block devices (model, serial, size, type, partitions) and mounted filesystems.

Type is one of nvme, ssd, hdd, virtual, network, decided by ``classify`` in this
order: network transports first (NVMe-oF, iSCSI, FC, nbd/rbd), then
paravirtual drivers and emulated disk models, then NVMe over PCIe, then the
rotational flag. statvfs is I/O on the live system, so the caller passes it in;
tests substitute it at that edge.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Callable

from collector.inventory.hostfs import HostFS

SYS_BLOCK = "sys/block"
SECTOR = 512  # sysfs "size" is in 512-byte sectors whatever the logical block size (block/genhd.c)

# Filesystems that hold no storage of their own. /proc/filesystems' "nodev" column
# is used when readable; this set covers it when not.
PSEUDO_FS = {
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
    "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc",
    "pstore", "ramfs", "rpc_pipefs", "securityfs", "sockfs", "sysfs", "tmpfs", "tracefs",
    "selinuxfs", "squashfs", "fuse.lxcfs", "fuse.portal", "fuse.gvfsd-fuse", "nfsd", "shm",
}
# nodev filesystems that do hold storage, reached over a network (or a hypervisor share).
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs",
              "lustre", "beegfs", "gpfs", "fuse.sshfs", "fuse.s3fs", "9p", "virtiofs", "afs"}
SHARED_FROM_HYPERVISOR = {"9p", "virtiofs"}
NETWORK_STATVFS_TIMEOUT_S = 2.0

VIRTUAL_DRIVERS = {"virtio_blk", "xen-blkfront", "xen_blkfront", "vbd"}
VIRTUAL_CONTROLLERS = {"virtio_scsi", "virtio-pci", "hv_storvsc", "vmw_pvscsi", "xen-scsifront"}
VIRTUAL_MODELS = re.compile(r"QEMU|VBOX|VMware|Virtual disk|Msft Virtual", re.IGNORECASE)
# Cloud block volumes are network storage whatever bus the guest sees (NVMe on AWS Nitro,
# virtio-scsi on GCE).
NETWORK_MODELS = re.compile(r"Amazon Elastic Block Store|PersistentDisk|Standard PD", re.IGNORECASE)
NETWORK_NAMES = ("nbd", "rbd", "drbd")
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$")
_OCTAL = re.compile(r"\\([0-7]{3})")


# --- parsers ------------------------------------------------------------------------

def parse_mountinfo(text: str) -> list[dict[str, Any]]:
    """/proc/<pid>/mountinfo (proc(5)) to dicts; malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        if not major.isdigit() or not minor.isdigit():
            continue
        out.append({
            "major": int(major), "minor": int(minor), "root": unescape(fields[3]),
            "mount_point": unescape(fields[4]), "options": fields[5].split(","),
            "fstype": tail[0], "source": unescape(tail[1]),
        })
    return out


def unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_filesystems(text: str) -> set[str]:
    """The "nodev" filesystem types from /proc/filesystems."""
    return {parts[1] for parts in (line.split() for line in text.splitlines()) if len(parts) == 2 and parts[0] == "nodev"}


def parse_vpd_pg80(data: bytes) -> str | None:
    """SCSI VPD page 0x80 (Unit Serial Number, SPC-4 7.8.15): 4-byte header, then ASCII."""
    if len(data) < 4 or data[1] != 0x80:
        return None
    length = data[3]
    serial = data[4:4 + length].decode("ascii", errors="replace").strip(" \x00")
    return serial or None


def transport_from_path(name: str, devpath: str) -> str | None:
    """The bus a disk hangs off, from its sysfs device path (as lsblk's TRAN does)."""
    if name.startswith(NETWORK_NAMES):
        return name.rstrip("0123456789")
    if name.startswith("mmcblk"):
        return "mmc"
    checks = (("/usb", "usb"), ("/session", "iscsi"), ("/rport-", "fc"), ("/end_device-", "sas"),
              ("/ata", "sata"), ("/virtio", "virtio"), ("/vmbus", "vmbus"), ("/VMBUS", "vmbus"),
              ("/xen", "xen"), ("/vbd-", "xen"))
    for needle, transport in checks:
        if needle in devpath:
            return transport
    return None


def classify(name: str, transport: str | None, rotational: bool | None, driver: str | None,
             controller: str | None, model: str | None, slave_types: list[str]) -> str:
    """nvme, ssd, hdd, virtual or network."""
    if transport in ("iscsi", "fc", "nbd", "rbd", "drbd", "nvme-tcp", "nvme-rdma", "nvme-fc"):
        return "network"
    if model and NETWORK_MODELS.search(model):
        return "network"
    if slave_types:  # dm/md: the kind of what it is built on, when uniform
        return slave_types[0] if len(set(slave_types)) == 1 else "virtual"
    if (transport in ("virtio", "xen", "vmbus") or driver in VIRTUAL_DRIVERS
            or controller in VIRTUAL_CONTROLLERS or (model and VIRTUAL_MODELS.search(model))
            or name.startswith(("loop", "zram", "ram", "vd", "xvd"))):
        return "virtual"
    if name.startswith("nvme") or transport == "nvme":
        return "nvme"
    if rotational is None:
        return "ssd" if name.startswith("mmcblk") else "hdd"
    return "hdd" if rotational else "ssd"


# --- collection ---------------------------------------------------------------------

def collect(fs: HostFS, statvfs: Callable[[str], Any] | None = None) -> dict[str, Any]:
    disks = {}
    for name in fs.listdir(SYS_BLOCK):
        disk = _block_device(fs, name)
        if disk is not None:
            disks[name] = disk
    owner = {p["name"]: d["name"] for d in disks.values() for p in d["partitions"]}
    for disk in disks.values():
        disk["members"] = sorted({owner.get(s, s) for s in disk.pop("_slaves")})
    for disk in sorted(disks.values(), key=lambda d: d["name"].startswith("dm-")):  # md before dm (LVM on RAID)
        kinds = [disks[m]["type"] for m in disk["members"] if m in disks]
        if kinds and disk["name"].startswith(("dm-", "md")):
            # LVM, dm-crypt, md RAID: the kind of what they are built on (slaves are often partitions).
            disk["type"] = classify(disk["name"], None, None, None, None, None, kinds)
    filesystems = _filesystems(fs, disks, statvfs)
    return {"block_devices": list(disks.values()), "filesystems": filesystems}


def _block_device(fs: HostFS, name: str) -> dict[str, Any] | None:
    d = f"{SYS_BLOCK}/{name}"
    if name.startswith(("ram", "sr", "fd")) or fs.read_int(f"{d}/hidden") == 1:
        # brd RAM disks, optical and floppy drives hold no storage to declare; hidden
        # devices are NVMe multipath paths (nvme0c0n1) of a namespace listed on its own.
        return None
    sectors = fs.read_int(f"{d}/size", f"storage.{name}.size_bytes")
    if sectors == 0:
        return None  # empty loop and zram devices
    devpath = fs.realpath(d) or ""
    rot = fs.read_int(f"{d}/queue/rotational")
    rotational = None if rot is None else rot == 1
    model = _clean(fs.read_line(f"{d}/device/model"))
    vendor = _clean(fs.read_line(f"{d}/device/vendor"))
    driver = fs.link_name(f"{d}/device/driver") or fs.link_name(f"{d}/device/device/driver")
    controller = _controller_driver(fs, devpath)
    transport = transport_from_path(name, devpath)
    if name.startswith("nvme"):
        nvme_transport = fs.read_line(f"{d}/device/transport")  # pcie, tcp, rdma, fc, loop
        transport = "nvme" if nvme_transport in (None, "pcie") else f"nvme-{nvme_transport}"
    slaves = fs.listdir(f"{d}/slaves")
    kind = classify(name, transport, rotational, driver, controller,
                    " ".join(filter(None, (vendor, model))), [])
    dev = fs.read_line(f"{d}/dev")
    return {
        "name": name,
        "dev": dev,
        "dm_name": fs.read_line(f"{d}/dm/name") if name.startswith("dm-") else None,  # e.g. vg0-root
        "model": model,
        "vendor": vendor if vendor and not vendor.startswith("0x") else None,
        "serial": _serial(fs, d, dev),
        "size_bytes": sectors * SECTOR if sectors is not None else None,
        "rotational": rotational,
        "removable": fs.read_int(f"{d}/removable") == 1,
        "read_only": fs.read_int(f"{d}/ro") == 1,
        "type": kind,
        "transport": transport,
        "driver": driver,
        "controller_driver": controller,
        "logical_block_size": fs.read_int(f"{d}/queue/logical_block_size"),
        "physical_block_size": fs.read_int(f"{d}/queue/physical_block_size"),
        "partitions": _partitions(fs, name),
        "_slaves": slaves,
    }


def _clean(text: str | None) -> str | None:
    return " ".join(text.split()) or None if text else None


def _controller_driver(fs: HostFS, devpath: str) -> str | None:
    """Driver of the deepest PCI device above the disk (ahci, nvme, virtio-pci, mpt3sas...)."""
    parts = devpath.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if _PCI_ADDRESS.match(parts[i]):
            return fs.link_name("/".join(parts[: i + 1]) + "/driver")
    return None


def _serial(fs: HostFS, d: str, dev: str | None) -> str | None:
    for rel in (f"{d}/device/serial", f"{d}/serial"):  # NVMe controller; virtio-blk
        serial = _clean(fs.read_line(rel))
        if serial:
            return serial
    data = fs.read_bytes(f"{d}/device/vpd_pg80")
    if data:
        serial = parse_vpd_pg80(data)
        if serial:
            return serial
    if dev:  # udev's database, as lsblk uses it
        text = fs.read(f"run/udev/data/b{dev}")
        for line in (text or "").splitlines():
            if line.startswith("E:ID_SERIAL_SHORT="):
                return line.split("=", 1)[1].strip() or None
    return None


def _partitions(fs: HostFS, disk: str) -> list[dict[str, Any]]:
    out = []
    for entry in fs.listdir(f"{SYS_BLOCK}/{disk}"):
        if not entry.startswith(disk) or not fs.exists(f"{SYS_BLOCK}/{disk}/{entry}/partition"):
            continue
        p = f"{SYS_BLOCK}/{disk}/{entry}"
        sectors = fs.read_int(f"{p}/size")
        out.append({
            "name": entry,
            "number": fs.read_int(f"{p}/partition"),
            "start_sector": fs.read_int(f"{p}/start"),
            "size_bytes": sectors * SECTOR if sectors is not None else None,
        })
    return out


def _filesystems(fs: HostFS, disks: dict[str, dict[str, Any]],
                 statvfs: Callable[[str], Any] | None) -> list[dict[str, Any]]:
    # The host's mount namespace is init's; our own (proc/self) is the fallback.
    text = fs.read("proc/1/mountinfo") or fs.read("proc/self/mountinfo", "storage.filesystems")
    mounts = parse_mountinfo(text) if text else []
    nodev_text = fs.read("proc/filesystems")
    nodev = parse_filesystems(nodev_text) if nodev_text else set()
    out = []
    seen: set[tuple[int, int]] = set()
    for m in mounts:
        fstype = m["fstype"]
        network = fstype in NETWORK_FS
        if not network and (fstype in PSEUDO_FS or fstype in nodev):
            continue
        if m["major"] == 0 and not network and fstype not in ("btrfs", "zfs", "bcachefs"):
            continue  # anonymous device (pseudo) unless a known multi-device fs
        key = (m["major"], m["minor"])
        if key in seen:
            continue  # bind mounts and repeat mounts of one filesystem
        seen.add(key)
        block, disk = _block_for(fs, m["major"], m["minor"], disks, m["source"])
        kind: str | None
        if network:
            kind = "virtual" if fstype in SHARED_FROM_HYPERVISOR else "network"
        else:
            kind = disks[disk]["type"] if disk in disks else None
        entry = {
            "mount_point": m["mount_point"], "device": m["source"], "block_device": block,
            "disk": disk, "fstype": fstype, "read_only": "ro" in m["options"], "type": kind,
            "total_bytes": None, "used_bytes": None, "available_bytes": None, "usage_percent": None,
        }
        entry.update(_capacity(fs, m["mount_point"], statvfs, timeout_s=NETWORK_STATVFS_TIMEOUT_S if network else None))
        out.append(entry)
    return out


def _block_for(fs: HostFS, major: int, minor: int, disks: dict[str, Any],
               source: str) -> tuple[str | None, str | None]:
    """(block device, whole disk) for a device number, via /sys/dev/block/M:m. btrfs mounts
    carry an anonymous device number (0:N), so the mount source names the device instead."""
    path = fs.realpath(f"sys/dev/block/{major}:{minor}") if major else None
    if not path:
        name = source.rsplit("/", 1)[-1] if source.startswith("/dev/") else None
        if name in disks:
            return name, name
        for disk in disks.values():
            if any(p["name"] == name for p in disk["partitions"]):
                return name, disk["name"]
        return None, None
    parts = path.split("/")
    name = parts[-1]
    if name in disks:
        return name, name
    parent = parts[-2] if len(parts) > 1 else None
    return name, parent if parent in disks else None


def _capacity(fs: HostFS, mount_point: str, statvfs: Callable[[str], Any] | None,
              timeout_s: float | None = None) -> dict[str, Any]:
    """Capacity as df(1) computes it: used = blocks - bfree; usage over used + bavail.

    statvfs on a hard-mounted NFS share whose server is gone blocks forever, so for
    network filesystems it runs in a daemon thread and is given up after ``timeout_s``.
    """
    if statvfs is None:
        return {}
    path = fs.path(mount_point)
    try:
        st = statvfs(path) if timeout_s is None else _with_timeout(statvfs, path, timeout_s)
    except (OSError, TimeoutError):
        fs.note(f"storage.filesystems.{mount_point}")
        return {}
    frsize = st.f_frsize or st.f_bsize
    total = st.f_blocks * frsize
    used = (st.f_blocks - st.f_bfree) * frsize
    avail = st.f_bavail * frsize
    percent = round(used * 100 / (used + avail), 2) if used + avail else 0.0
    return {"total_bytes": total, "used_bytes": used, "available_bytes": avail, "usage_percent": percent}


def _with_timeout(fn: Callable[[str], Any], path: str, timeout_s: float) -> Any:
    result: list[Any] = []

    def call() -> None:
        try:
            result.append(fn(path))
        except OSError as err:
            result.append(err)

    worker = threading.Thread(target=call, name=f"statvfs {path}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not result:
        raise TimeoutError(f"statvfs {path} took over {timeout_s} s")
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]
