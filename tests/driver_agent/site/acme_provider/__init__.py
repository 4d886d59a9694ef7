"""``acme``: an out-of-tree provider driver, written the way a third party would write one.

It is installed for the driver agent only by placing this folder on its
``PYTHONPATH`` next to ``acme_provider-1.0.dist-info`` (whose
``entry_points.txt`` registers it under ``octavia_mesh.provider_agents``), so
the driver agent finds it through ``importlib.metadata`` like any installed
distribution. It depends on nothing but the provider SDK.

What it does with a command: it reads the object the command names through
that object's own ``Get*`` call, then the whole load balancer, and reports
every pending object done: ``PENDING_DELETE`` ones ``DELETED``, the others
``ACTIVE`` and ``ONLINE`` (``OFFLINE`` when disabled). A load balancer named
``acme-error*`` is reported ``ERROR`` instead. Every listener that is active
gets counters from two "appliances", ``acme-a`` and ``acme-b``, derived from
its port so that tests can predict them. Everything it sees and does is
appended to ``$ACME_JOURNAL/journal.jsonl`` for the tests to read.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.provider_sdk import DriverLibrary, ProviderAgentContext, consume

Kind = commands_pb2.ResourceKind
Op = commands_pb2.Operation
PENDING = ("PENDING_CREATE", "PENDING_UPDATE")


def journal(event: str, **fields: Any) -> None:
    folder = os.environ.get("ACME_JOURNAL")
    if not folder:
        return
    line = json.dumps({"event": event, "time": time.time(), "pid": os.getpid(), **fields}, sort_keys=True)
    with open(os.path.join(folder, "journal.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def counters(port: int, instance: str) -> dict[str, Any]:
    """What appliance ``instance`` counts for a listener on ``port`` (the tests compute the same)."""
    scale = 1 if instance == "acme-a" else 2
    return {
        "amphora_id": instance,
        "active_connections": scale,
        "bytes_in": port * 1000 * scale,
        "bytes_out": port * 2000 * scale,
        "request_errors": scale,
        "total_connections": port * scale,
    }


async def _read(lib: DriverLibrary, command: commands_pb2.ProviderCommand) -> dict[str, Any] | None:
    getters = {
        Kind.RESOURCE_KIND_LOAD_BALANCER: lib.get_loadbalancer,
        Kind.RESOURCE_KIND_LISTENER: lib.get_listener,
        Kind.RESOURCE_KIND_POOL: lib.get_pool,
        Kind.RESOURCE_KIND_MEMBER: lib.get_member,
        Kind.RESOURCE_KIND_HEALTH_MONITOR: lib.get_healthmonitor,
        Kind.RESOURCE_KIND_L7_POLICY: lib.get_l7policy,
        Kind.RESOURCE_KIND_L7_RULE: lib.get_l7rule,
    }
    getter = getters.get(command.kind)
    if command.operation == Op.OPERATION_BATCH_UPDATE:
        getter = lib.get_pool  # a member batch names the pool
    return await getter(command.resource_id, statuses=True) if getter else None


def _done(obj: dict[str, Any]) -> dict[str, str] | None:
    """The report entry that finishes ``obj``'s pending change, if it has one."""
    status = obj["provisioning_status"]
    if status == "PENDING_DELETE":
        return {"provisioning_status": "DELETED"}
    if status in PENDING:
        return {"provisioning_status": "ACTIVE", "operating_status": "ONLINE" if obj["admin_state_up"] else "OFFLINE"}
    return None


def settle(lb: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """octavia-lib's status dictionary that finishes everything pending under ``lb``."""
    report: dict[str, list[dict[str, str]]] = {
        "loadbalancers": [],
        "listeners": [],
        "pools": [],
        "members": [],
        "healthmonitors": [],
        "l7policies": [],
        "l7rules": [],
    }

    def add(key: str, obj: dict[str, Any], ident: str) -> None:
        entry = _done(obj)
        if entry is not None:
            report[key].append({"id": obj[ident], **entry})

    for listener in lb["listeners"]:
        add("listeners", listener, "listener_id")
        for policy in listener["l7policies"]:
            add("l7policies", policy, "l7policy_id")
            for rule in policy["rules"]:
                add("l7rules", rule, "l7rule_id")
    for pool in lb["pools"]:
        add("pools", pool, "pool_id")
        for member in pool["members"]:
            add("members", member, "member_id")
        if pool["healthmonitor"]:
            add("healthmonitors", pool["healthmonitor"], "healthmonitor_id")
    if lb["provisioning_status"] == "PENDING_DELETE":
        report["loadbalancers"].append({"id": lb["loadbalancer_id"], "provisioning_status": "DELETED"})
    elif (lb["name"] or "").startswith("acme-error"):
        report["loadbalancers"].append(
            {"id": lb["loadbalancer_id"], "provisioning_status": "ERROR", "operating_status": "ERROR"}
        )
    else:
        report["loadbalancers"].append(
            {"id": lb["loadbalancer_id"], "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
        )
    return {key: entries for key, entries in report.items() if entries}


async def apply(lib: DriverLibrary, command: commands_pb2.ProviderCommand) -> None:
    if not command.load_balancer_id:
        return  # housekeeping's amphora chores: acme has no amphorae
    seen = await _read(lib, command)
    journal(
        "command",
        kind=Kind.Name(command.kind),
        operation=Op.Name(command.operation),
        resource_id=command.resource_id,
        load_balancer_id=command.load_balancer_id,
        object=seen,
    )
    lb = await lib.get_loadbalancer(command.load_balancer_id, statuses=True)
    if lb is None:
        return  # deleted already: a command delivered again after its report
    report = settle(lb)
    completed = await lib.update_loadbalancer_status(report)
    journal("reported", load_balancer_id=command.load_balancer_id, report=report, completed=completed)
    active = [
        listener
        for listener in lb["listeners"]
        if listener["provisioning_status"] != "PENDING_DELETE" and lb["provisioning_status"] != "PENDING_DELETE"
    ]
    if active:
        stats = [
            {"id": listener["listener_id"], **counters(listener["protocol_port"], instance)}
            for listener in active
            for instance in ("acme-a", "acme-b")
        ]
        await lib.update_listener_statistics({"listeners": stats})


async def run(context: ProviderAgentContext) -> None:
    """The entry point: consume ``acme``'s commands until the driver agent stops this process."""
    journal("started", name=context.name, driver_agent=context.driver_agent_address)
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        journal("consuming", name=context.name)

    announcing = asyncio.create_task(announce())
    try:
        async with DriverLibrary(context.driver_agent_address, provider=context.name) as lib:
            await consume(context.nats_url, context.name, lambda command: apply(lib, command), ready=ready)
    finally:
        announcing.cancel()
