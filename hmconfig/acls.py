"""Who may do what on Kafka: one principal per role, least privilege, from ONE table.

``hmtel topics ensure --acls`` (as a super user, e.g. ``admin`` on the secure local
broker) creates exactly these bindings with the StandardAuthorizer; anything not
granted is denied (``allow.everyone.if.no.acl.found=false``). SCRAM users and
client-certificate CNs share the names, so one table covers both logins.

Why CreateAcls is sent with aiokafka's protocol classes: aiokafka's admin client has
no create_acls(), but ``aiokafka.protocol.admin`` has CreateAcls/DescribeAcls v1, which
Kafka 4.x still accepts (KIP-896 removed only v0). That keeps the tool in-process and
in Python, rather than a JVM start (~3 s) of Kafka's AclCommand plus a kafka-tools jar.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from hmconfig.errors import HmtelError

ADMIN = "admin"  # super user of the secure local broker; runs `topics ensure --acls`
ROLES = ("collector", "processor", "validator", "dashboard")

RAW = ("hm.inventory.v1", "hm.usage.v1", "hm.ebpf.v1")
AGGREGATES = ("hm.usage.agg.10s.v1", "hm.usage.agg.1m.v1")
PROOFS = "hm.proofs.v1"
REJECTED = "hm.rejected.v1"

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
PATTERN = {"literal": 3, "prefixed": 4}
OPERATION = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8, "DESCRIBE_CONFIGS": 10}
ALLOW = 3
CLUSTER_NAME = "kafka-cluster"


@dataclass(frozen=True)
class Grant:
    """ALLOW ``operation`` on ``resource`` ``name`` (``{app_id}`` is processor_app_id)."""

    resource: str
    name: str
    operation: str
    pattern: str = "literal"


def _each(resource: str, names: tuple[str, ...], *ops: str, pattern: str = "literal") -> tuple[Grant, ...]:
    return tuple(Grant(resource, n, op, pattern) for n in names for op in ops)


# THE table. Read and Write imply Describe in Kafka; DescribeConfigs is for the
# processor's start-up `ensure_topics` check. Idempotent producers need no
# IdempotentWrite on the cluster: Kafka >= 2.8 accepts Write on any topic (KIP-679).
ACL_TABLE: dict[str, tuple[Grant, ...]] = {
    "collector": _each("topic", RAW, "WRITE"),
    "processor": (
        *_each("topic", RAW, "READ", "DESCRIBE_CONFIGS"),
        # READ too: after a crash or a failed send it reads back what it wrote past the outbox mark
        # (processors/delivered.py), so no output is written twice
        *_each("topic", (*AGGREGATES, PROOFS, REJECTED), "WRITE", "READ", "DESCRIBE_CONFIGS"),
        # faust's changelog and assignor topics are named <app_id>-...; it creates them.
        *_each("topic", ("{app_id}-",), "READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS",
               pattern="prefixed"),
        *_each("group", ("{app_id}",), "READ", pattern="prefixed"),
    ),
    "validator": (
        Grant("topic", PROOFS, "READ"),
        *_each("group", ("hm-validator",), "READ", pattern="prefixed"),
    ),
    # The dashboard (consumers/dashboard/state.py TOPICS) shows the aggregates, and beside them each
    # host's inventory, its latest proofs and its rejections; it reads no raw usage or eBPF record.
    "dashboard": (
        *_each("topic", ("hm.inventory.v1", *AGGREGATES, PROOFS, REJECTED), "READ"),
        *_each("group", ("hm-dashboard",), "READ", pattern="prefixed"),
    ),
}


@dataclass(frozen=True)
class Binding:
    principal: str
    resource: str
    name: str
    pattern: str
    operation: str

    def wire(self) -> tuple[int, str, int, str, str, int, int]:
        return (RESOURCE[self.resource], self.name, PATTERN[self.pattern], self.principal, "*",
                OPERATION[self.operation], ALLOW)

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"{self.principal:15} {self.operation:16} {self.resource} {self.name}{star}"


def bindings(app_id: str) -> list[Binding]:
    """Every binding of the table, with ``{app_id}`` filled in."""
    return [Binding(f"User:{role}", g.resource, g.name.format(app_id=app_id), g.pattern, g.operation)
            for role, grants in ACL_TABLE.items() for g in grants]


class AclError(HmtelError):
    """The broker refused to create or list ACLs (not authorised, or no authorizer)."""


async def ensure_acls(settings: Any) -> list[tuple[str, Binding]]:
    """Create the table's bindings that are missing. Returns (action, binding) for each
    binding of the table ("created" or "present") and each ACL of our roles that the table
    does not have ("extra": left alone, reported so an operator can remove it)."""
    from aiokafka.errors import for_code

    from hmconfig.kafka_clients import make_admin, start_with_retry

    want = bindings(settings.processor_app_id)
    admin = await start_with_retry(lambda: make_admin(settings), settings, what="topics ensure --acls")
    try:
        have = await _describe(admin)
        missing = [b for b in want if b not in have]
        if missing:
            resp = await admin._send_request(_CreateAcls([b.wire() for b in missing]))
            for b, (code, message) in zip(missing, resp.creation_responses):
                if code:
                    raise AclError(f"creating ACL `{b}` failed: {for_code(code).__name__} {message or ''}".rstrip()
                                   + "; run as a super user (the secure broker's `admin`)")
            # The controller commits ACLs; the broker's authorizer sees them a moment later.
            # Wait, so whoever runs next (a test, a component) is judged by the new table.
            deadline = time.monotonic() + 15
            while not set(missing) <= (have_now := await _describe(admin)):
                if time.monotonic() > deadline:
                    raise AclError(f"{len(set(missing) - have_now)} ACLs created but not visible after 15 s")
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    ours = {f"User:{r}" for r in ROLES}
    extra = sorted((b for b in have if b.principal in ours and b not in want), key=str)
    return ([("created" if b in missing else "present", b) for b in want] + [("extra", b) for b in extra])


async def _describe(admin: Any) -> set[Binding]:
    from aiokafka.errors import for_code

    # Filter "any": resource type 1, pattern 1, operation 1, permission 1; null name/principal/host.
    resp = await admin._send_request(_DescribeAcls(1, None, 1, None, None, 1, 1))
    if resp.error_code:
        raise AclError(f"listing ACLs failed: {for_code(resp.error_code).__name__} {resp.error_message or ''}; "
                       "is the broker running with an authorizer, and are you a super user?")
    codes = {v: k for k, v in OPERATION.items()}
    rtypes = {v: k for k, v in RESOURCE.items()}
    ptypes = {v: k for k, v in PATTERN.items()}
    out = set()
    for rtype, name, ptype, acls in resp.resources:
        for principal, _host, op, perm in acls:
            if perm == ALLOW and op in codes and rtype in rtypes and ptype in ptypes:
                out.add(Binding(principal, rtypes[rtype], name, ptypes[ptype], codes[op]))
    return out


def _request_classes():
    from aiokafka.protocol.admin import (CreateAclsRequest_v1, DescribeAclsRequest_v1)
    from aiokafka.protocol.api import Request

    class CreateAcls(Request[CreateAclsRequest_v1]):
        """Many bindings in one CreateAcls v1 (aiokafka's own class sends one)."""

        API_KEY = 30

        def __init__(self, creations: list[tuple]):
            self.creations = creations

        def build(self, request_struct_class):
            return request_struct_class(self.creations)

    class DescribeAcls(Request[DescribeAclsRequest_v1]):
        API_KEY = 29

        def __init__(self, *fields: Any):
            self.fields = fields

        def build(self, request_struct_class):
            return request_struct_class(*self.fields)

    return CreateAcls, DescribeAcls


def _CreateAcls(creations: list[tuple]) -> Any:
    return _request_classes()[0](creations)


def _DescribeAcls(*fields: Any) -> Any:
    return _request_classes()[1](*fields)
