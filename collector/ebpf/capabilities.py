"""What the host offers for eBPF, and the one line that says what is missing.

Checks (all under ``host_root`` except the process's own capabilities):
  privileges      CAP_SYS_ADMIN, or CAP_BPF + CAP_PERFMON (5.8+), in CapEff
  btf             /sys/kernel/btf/vmlinux (struct offsets and fentry need it)
  kernel_headers  /lib/modules/<release>/build, or /sys/kernel/kheaders.tar.xz
  tracefs         /sys/kernel/tracing/events or /sys/kernel/debug/tracing/events
  bcc             the distribution's python3-bpfcc importable as ``bcc``
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class CapabilityReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def one_line(self) -> str:
        """The single log line for a host that cannot run eBPF ('' when it can)."""
        if self.ok:
            return ""
        what = "; ".join(f"{c.name}: {c.detail}" for c in self.missing)
        fixes = "; ".join(c.fix for c in self.missing if c.fix)
        return f"eBPF disabled ({what}); fix: {fixes}; continuing with procfs sources only"

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail, "fix": c.fix} for c in self.checks},
        }


def parse_cap_eff(status_text: str) -> int | None:
    """The CapEff bitmask from /proc/<pid>/status text."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return None


def privilege_check(cap_eff: int | None, uid: int) -> Check:
    if cap_eff is None:
        return Check("privileges", False, "CapEff unreadable in /proc/self/status", "run as root")
    def has(bit: int) -> bool:
        return bool(cap_eff >> bit & 1)

    if has(CAP_SYS_ADMIN):
        return Check("privileges", True, f"uid {uid}, CAP_SYS_ADMIN")
    if has(CAP_BPF) and has(CAP_PERFMON):
        return Check("privileges", True, f"uid {uid}, CAP_BPF+CAP_PERFMON")
    return Check(
        "privileges", False, f"uid {uid} lacks CAP_BPF+CAP_PERFMON",
        "run as root or grant CAP_BPF,CAP_PERFMON (systemd AmbientCapabilities=CAP_BPF CAP_PERFMON)",
    )


def _is(path: Path, test: str) -> bool:
    """Path.is_dir()/is_file()/exists() that treat "permission denied" as absent
    (Python 3.11's pathlib raises it for /sys/kernel/tracing as non-root)."""
    try:
        return bool(getattr(path, test)())
    except OSError:
        return False


def check_capabilities(host_root: Path = Path("/"), *, proc_self_status: str | None = None,
                       uid: int | None = None, bcc_available: bool | None = None) -> CapabilityReport:
    """Run every check. The keyword arguments replace the process's own state in tests."""
    root = host_root
    if proc_self_status is None:
        try:
            proc_self_status = Path("/proc/self/status").read_text()
        except OSError:
            proc_self_status = ""
    uid = os.geteuid() if uid is None else uid
    report = CapabilityReport()
    report.checks.append(privilege_check(parse_cap_eff(proc_self_status), uid))

    btf = root / "sys/kernel/btf/vmlinux"
    report.checks.append(
        Check("btf", True, str(btf)) if _is(btf, "is_file") else
        Check("btf", False, f"{btf} missing", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    )

    try:
        release = (root / "proc/sys/kernel/osrelease").read_text().strip()
    except OSError:
        release = os.uname().release
    headers = root / f"lib/modules/{release}/build"
    kheaders = root / "sys/kernel/kheaders.tar.xz"
    if _is(headers, "exists"):
        report.checks.append(Check("kernel_headers", True, f"{headers} -> {os.path.realpath(headers)}"))
    elif _is(kheaders, "exists"):
        report.checks.append(Check("kernel_headers", True, str(kheaders)))
    else:
        report.checks.append(Check(
            "kernel_headers", False, f"{headers} missing",
            f"install linux-headers-{release} (deploy/host-deps.sh) or load the kheaders module",
        ))

    for tracefs in (root / "sys/kernel/tracing", root / "sys/kernel/debug/tracing"):
        if _is(tracefs / "events", "is_dir"):
            report.checks.append(Check("tracefs", True, str(tracefs)))
            break
    else:
        tracefs = root / "sys/kernel/tracing"
        if _is(tracefs, "is_dir") and any(_is(t, "exists") for t in (tracefs / "trace", tracefs)) and uid != 0:
            report.checks.append(Check("tracefs", False, f"{tracefs}/events not readable by uid {uid}",
                                       "run as root (tracefs is root-only by default)"))
        else:
            report.checks.append(Check("tracefs", False, f"{tracefs}/events missing",
                                       "mount -t tracefs nodev /sys/kernel/tracing"))

    if bcc_available is None:
        bcc_available = importlib.util.find_spec("bcc") is not None
    report.checks.append(
        Check("bcc", True, "python3-bpfcc importable") if bcc_available else
        Check("bcc", False, "python module bcc not importable",
              "apt-get install python3-bpfcc and link it into the venv (deploy/host-deps.sh); never pip install bcc")
    )
    return report
