"""GPUs: every PCI display controller (class 0x03xxxx) from sysfs, enriched by NVML.

sysfs gives vendor/device ids, the PCI address, the driver and (amdgpu) VRAM.
When an NVIDIA driver is loaded, NVML (nvidia-ml-py) adds name, UUID, memory,
compute capability and driver/CUDA versions, matched by PCI address. A missing
library or driver is "not present", never an error. No GPU gives [].
"""
from __future__ import annotations

from typing import Any, Callable

from collector.inventory.hostfs import HostFS, parse_int

PCI_DEVICES = "sys/bus/pci/devices"
PCI_IDS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")

VENDORS = {0x10DE: "NVIDIA", 0x1002: "AMD", 0x8086: "Intel"}
# Emulated or paravirtual display adapters: QEMU/bochs, virtio, VMware SVGA,
# VirtualBox, Hyper-V, Cirrus (emulated by QEMU), Red Hat QXL.
VIRTUAL_VENDORS = {0x1234: "QEMU", 0x1AF4: "Red Hat (virtio)", 0x15AD: "VMware", 0x80EE: "VirtualBox",
                   0x1414: "Microsoft", 0x1013: "Cirrus Logic", 0x1B36: "Red Hat (QXL)"}
OTHER_VENDORS = {0x1A03: "ASPEED", 0x102B: "Matrox", 0x5143: "Qualcomm", 0x1ED5: "Moore Threads"}
# AMD APU graphics (integrated) by device id; everything else from AMD is taken as discrete.
AMD_APU_DEVICES = {
    0x15D8, 0x15DD, 0x1636, 0x1638, 0x164C, 0x1681, 0x15E7, 0x163F, 0x164E, 0x1506,
    0x15BF, 0x15C8, 0x150E, 0x1586, 0x1435, 0x13C0, 0x98E4, 0x9874,
}
PCI_CLASS_DISPLAY = 0x03


def parse_pci_class(text: str | None) -> int | None:
    """sysfs ``class`` ("0x030000") to its integer."""
    return parse_int(text, 16)  # int() accepts the 0x prefix with base 16


def parse_uevent(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def lookup_pci_ids(text: str, vendor: int, device: int) -> tuple[str | None, str | None]:
    """(vendor name, device name) from a pci.ids text, found with str.find (no full parse)."""
    head = f"{vendor:04x}  "
    start = -1 if not text.startswith(head) else 0
    if start < 0:
        start = text.find("\n" + head)
        start = start + 1 if start >= 0 else -1
    if start < 0:
        return None, None
    line_end = text.find("\n", start)
    vendor_name = text[start + 6: line_end if line_end >= 0 else None].strip() or None
    nxt = start
    device_name = None
    while True:
        nxt = text.find("\n", nxt)
        if nxt < 0 or nxt + 1 >= len(text):
            break
        line_end = text.find("\n", nxt + 1)
        line = text[nxt + 1: line_end if line_end >= 0 else None]
        nxt = nxt + 1
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            break  # next vendor
        if not line.startswith("\t\t") and line[1:5].lower() == f"{device:04x}":
            device_name = line[5:].strip() or None
            break
    return vendor_name, device_name


def classify(vendor: int | None, device: int | None, address: str) -> str:
    """Discrete, Integrated or Virtual (the design's GpuInfo.gpu_type values)."""
    if vendor in VIRTUAL_VENDORS:
        return "Virtual"
    if vendor == 0x8086:
        # Intel iGPUs sit at 00:02.0 on the root bus; Arc dGPUs sit behind a bridge.
        return "Integrated" if address.split(":")[1:2] == ["00"] else "Discrete"
    if vendor == 0x1002:
        return "Integrated" if device in AMD_APU_DEVICES else "Discrete"
    if vendor in (0x1A03, 0x102B):
        return "Integrated"  # BMC / on-board server graphics
    return "Discrete"


def collect(fs: HostFS, nvml: Callable[[], dict[str, dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    gpus = []
    for address in fs.listdir(PCI_DEVICES):
        d = f"{PCI_DEVICES}/{address}"
        pci_class = parse_pci_class(fs.read_line(f"{d}/class"))
        if pci_class is None or pci_class >> 16 != PCI_CLASS_DISPLAY:
            continue
        gpus.append(_from_sysfs(fs, address, d, pci_class))
    if gpus:
        _name_from_pci_ids(fs, gpus)
    if nvml is not None and any(g["vendor_id"] == "0x10de" for g in gpus):
        _merge_nvml(fs, gpus, nvml)
    return gpus


def _from_sysfs(fs: HostFS, address: str, d: str, pci_class: int) -> dict[str, Any]:
    vendor = parse_int(fs.read_line(f"{d}/vendor"), 16)
    device = parse_int(fs.read_line(f"{d}/device"), 16)
    where = f"gpus.{address}"
    if vendor is None:
        fs.note(f"{where}.vendor_id")
    if device is None:
        fs.note(f"{where}.device_id")
    vram = fs.read_int(f"{d}/mem_info_vram_total")  # amdgpu only
    driver = fs.link_name(f"{d}/driver")
    return {
        "pci_address": address,
        "vendor": VENDORS.get(vendor or -1) or VIRTUAL_VENDORS.get(vendor or -1) or OTHER_VENDORS.get(vendor or -1),
        "vendor_id": f"0x{vendor:04x}" if vendor is not None else None,
        "device_id": f"0x{device:04x}" if device is not None else None,
        "subsystem_vendor_id": _hex4(fs.read_line(f"{d}/subsystem_vendor")),
        "subsystem_device_id": _hex4(fs.read_line(f"{d}/subsystem_device")),
        "class": f"0x{pci_class:06x}",
        "model": None,
        "driver": driver,
        "gpu_type": classify(vendor, device, address),
        "boot_vga": fs.read_int(f"{d}/boot_vga") == 1 if fs.exists(f"{d}/boot_vga") else None,
        "numa_node": _numa(fs.read_int(f"{d}/numa_node")),
        "memory_bytes": vram,
        "memory_source": "amdgpu" if vram is not None else None,
        "nvml": None,
    }


def _hex4(text: str | None) -> str | None:
    value = parse_int(text, 16)
    return f"0x{value:04x}" if value is not None else None


def _numa(node: int | None) -> int | None:
    return node if node is not None and node >= 0 else None  # -1: no NUMA affinity


def _name_from_pci_ids(fs: HostFS, gpus: list[dict[str, Any]]) -> None:
    """Model and (for vendors outside the table) vendor names from the host's pci.ids."""
    text = None
    for rel in PCI_IDS:
        text = fs.read(rel)
        if text:
            break
    for gpu in gpus:
        vendor, device = parse_int(gpu["vendor_id"], 16), parse_int(gpu["device_id"], 16)
        if text and vendor is not None and device is not None:
            vendor_name, device_name = lookup_pci_ids(text, vendor, device)
            gpu["model"] = device_name
            gpu["vendor"] = gpu["vendor"] or vendor_name
        if gpu["model"] is None:
            gpu["model"] = f"{gpu['vendor'] or 'PCI'} device {gpu['device_id']}"
        if gpu["vendor"] is None:
            gpu["vendor"] = gpu["vendor_id"]


def _merge_nvml(fs: HostFS, gpus: list[dict[str, Any]], nvml: Callable[[], dict[str, dict[str, Any]]]) -> None:
    found = nvml()
    for gpu in gpus:
        info = found.get(gpu["pci_address"].lower())
        if info is None:
            continue
        gpu["nvml"] = info
        gpu["model"] = info.get("name") or gpu["model"]
        if info.get("memory_total_bytes") is not None:
            gpu["memory_bytes"] = info["memory_total_bytes"]
            gpu["memory_source"] = "nvml"


def read_nvml() -> dict[str, dict[str, Any]]:
    """NVIDIA GPUs by PCI address ("0000:01:00.0") through NVML; {} when NVML is absent."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}  # no driver / libnvidia-ml.so not found: not present
    out: dict[str, dict[str, Any]] = {}
    try:
        driver = _nvml_call(pynvml.nvmlSystemGetDriverVersion)
        cuda = _nvml_call(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        for i in range(_nvml_call(pynvml.nvmlDeviceGetCount) or 0):
            handle = _nvml_call(pynvml.nvmlDeviceGetHandleByIndex, i)
            if handle is None:
                continue
            pci = _nvml_call(pynvml.nvmlDeviceGetPciInfo, handle)
            bus_id = (_text(getattr(pci, "busId", "")) or "") if pci is not None else ""
            memory = _nvml_call(pynvml.nvmlDeviceGetMemoryInfo, handle)
            cc = _nvml_call(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
            address = bus_id.lower()[-12:]  # "00000000:01:00.0" -> "0000:01:00.0"
            out[address] = {
                "index": i,
                "name": _text(_nvml_call(pynvml.nvmlDeviceGetName, handle)),
                "uuid": _text(_nvml_call(pynvml.nvmlDeviceGetUUID, handle)),
                "memory_total_bytes": getattr(memory, "total", None),
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "driver_version": _text(driver),
                "cuda_version": cuda_version,
            }
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return out


def _nvml_call(fn: Callable[..., Any], *args: Any) -> Any:
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
