"""Kernel-level packet loss on a veth pair without sch_netem: the TC classifier
``bpf/lossy_link.c`` on clsact egress (cls_bpf, direct-action) of each end.

Needs bcc (python3-bpfcc, linked into the venv by deploy/host-deps.sh), kernel headers or
kheaders for bcc to compile against, and CONFIG_NET_SCH_INGRESS (clsact) +
CONFIG_NET_CLS_BPF. Anything missing raises ``LossyLinkError`` naming it; the scenario
turns that into a failure, never a skip.
"""
from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "bpf" / "lossy_link.c"
CLSACT_EGRESS = "ffff:fff3"  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)


class LossyLinkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Counts:
    seen: int  # IP packets through the classifier
    seen_lossy: int  # ... while the loss percentage was above 0
    dropped: int

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.seen - other.seen, self.seen_lossy - other.seen_lossy, self.dropped - other.dropped)


class LossyLink:
    """One loaded program, attached to any number of (netns, ifname); detached by
    deleting the veth (the clsact qdisc goes with the device) and freed by ``close``."""

    def __init__(self) -> None:
        try:
            from bcc import BPF  # distribution package python3-bpfcc
        except ImportError as err:
            raise LossyLinkError(f"bcc is not importable ({err}): install python3-bpfcc and link it into "
                                 "the venv (deploy/host-deps.sh does both, as root)") from err
        try:
            self.bpf = BPF(src_file=str(SOURCE).encode())
            self.fn = self.bpf.load_func(b"lossy_link", BPF.SCHED_CLS)
        except Exception as err:  # noqa: BLE001 - bcc raises bare Exception for compile/load failures
            raise LossyLinkError(f"the TC classifier {SOURCE} did not compile/load ({err}); bcc needs "
                                 "kernel headers (/lib/modules/$(uname -r)/build or CONFIG_IKHEADERS) and "
                                 "CONFIG_BPF_SYSCALL") from err
        self.set_loss(0)

    def attach(self, ifname: str, netns: str | None = None) -> None:
        """clsact + cls_bpf direct-action on ``ifname``'s egress (inside ``netns`` when given)."""
        from pyroute2 import IPRoute

        where = f"dev {ifname}" + (f" in netns {netns}" if netns else "")
        try:
            with IPRoute(**({"netns": netns} if netns else {})) as ipr:
                found = ipr.link_lookup(ifname=ifname)
                if not found:
                    raise LossyLinkError(f"no {where}")
                idx = found[0]
                try:
                    ipr.tc("add", "clsact", idx)
                except Exception as err:  # noqa: BLE001 - pyroute2 NetlinkError
                    why = ("it already has a clsact/ingress qdisc" if getattr(err, "code", None) == errno.EEXIST
                           else "needs CONFIG_NET_SCH_INGRESS (sch_ingress, which provides clsact)")
                    raise LossyLinkError(f"adding the clsact qdisc on {where} failed ({err}): {why}") from err
                try:
                    ipr.tc("add-filter", "bpf", idx, ":1", fd=self.fn.fd, name=self.fn.name,
                           parent=CLSACT_EGRESS, classid=1, direct_action=True)
                except Exception as err:  # noqa: BLE001
                    raise LossyLinkError(f"attaching the bpf filter (direct-action) on {where} egress failed "
                                         f"({err}): needs CONFIG_NET_CLS_BPF (cls_bpf)") from err
        except LossyLinkError:
            raise
        except Exception as err:  # noqa: BLE001 - netlink socket in the namespace
            raise LossyLinkError(f"rtnetlink on {where} failed: {err}") from err

    def set_loss(self, pct: int) -> None:
        """Drop ``pct`` % of IP packets from now on (0 = off); the program stays attached."""
        if not 0 <= pct <= 100:
            raise ValueError(pct)
        self.bpf[b"loss_pct"][ctypes.c_int(0)] = ctypes.c_uint32(pct)

    def counts(self) -> Counts:
        table = self.bpf[b"counts"]
        return Counts(*(int(sum(table[ctypes.c_int(i)])) for i in range(3)))

    def close(self) -> None:
        self.bpf.cleanup()
