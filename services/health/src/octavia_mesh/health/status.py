"""Operating statuses from a heartbeat, by the rules of Octavia's health manager (``update_health``).

Pure: a load balancer's tree as the database has it, and what its HAProxy reports, give the changes to write.
The mapping of HAProxy's words:

* frontend ``OPEN`` -> listener ONLINE; ``FULL`` (session limit reached) -> DEGRADED; ``STOP`` -> OFFLINE;
  an enabled listener missing from the report (HAProxy down, or not in its configuration) -> ERROR while the
  load balancer is ACTIVE, else OFFLINE;
* backend ``UP`` -> pool ONLINE; ``DOWN`` (no usable server) -> pool ERROR and load balancer ERROR; a pool in
  no backend (attached to no listener) -> OFFLINE. Backends are named ``<pool_id>:<listener_id>``; a pool
  shared by two listeners counts once, from its first backend, as Octavia does;
* server ``UP`` or ``UP 1/2`` -> member ONLINE; ``DOWN`` or ``DOWN 1/2`` -> ERROR, and the pool (when ONLINE)
  and the load balancer (when ONLINE) turn DEGRADED; ``DRAIN`` -> DRAINING; ``MAINT`` -> OFFLINE; ``no check``
  -> NO_MONITOR; a member missing from its backend -> OFFLINE (unless NO_MONITOR); anything else (``NOLB``)
  leaves the status as it is;
* anything with ``admin_state_up`` false is OFFLINE (and the children of a disabled load balancer or
  listener are not served); a load balancer is DEGRADED while a listener is DEGRADED or ERROR, and ERROR when
  every enabled listener is in ERROR (HAProxy is down: nothing is served), which Octavia leaves ONLINE.

Load balancers in a ``PENDING_*`` provisioning status are not evaluated at all: the worker is changing
them, and the configuration HAProxy reports may not be the one the database describes yet. Nor are
heartbeats read before the load balancer's last change was settled (``updated_at``), for the same reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from octavia_mesh.common.lifecycle import Operating, Provisioning, is_pending

ONLINE, DEGRADED, ERROR, OFFLINE = Operating.ONLINE, Operating.DEGRADED, Operating.ERROR, Operating.OFFLINE
NO_MONITOR, DRAINING = Operating.NO_MONITOR, Operating.DRAINING

LOAD_BALANCER, LISTENER, POOL, MEMBER = "load_balancer", "listener", "pool", "member"


@dataclass(slots=True)
class Node:
    """One object of a load balancer's tree, as much as the rules need."""

    id: str
    operating_status: str
    admin_state_up: bool = True
    provisioning_status: str = Provisioning.ACTIVE


@dataclass(slots=True)
class Tree:
    """A load balancer and its listeners, pools and members (by pool)."""

    lb: Node
    project_id: str = ""
    #: When the load balancer's last change was settled (its ``updated_at``).
    changed_at: dt.datetime | None = None
    listeners: dict[str, Node] = field(default_factory=dict)
    pools: dict[str, Node] = field(default_factory=dict)
    members: dict[str, dict[str, Node]] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether statuses may be written: no change is in flight, and the load balancer still exists."""
        status = self.lb.provisioning_status
        return not is_pending(status) and status != Provisioning.DELETED


@dataclass(frozen=True, slots=True)
class Change:
    """One operating status to write."""

    kind: str
    id: str
    load_balancer_id: str
    previous: str
    status: str


@dataclass(frozen=True, slots=True)
class Report:
    """What one heartbeat says about one load balancer (names as HAProxy has them)."""

    running: bool
    listeners: dict[str, str]  # frontend name -> status
    pools: dict[str, tuple[str, dict[str, str]]]  # pool id -> (backend status, server name -> status)

    @classmethod
    def of(
        cls, running: bool, listeners: Iterable[tuple[str, str]], backends: Iterable[tuple[str, str, dict[str, str]]]
    ) -> Report:
        pools: dict[str, tuple[str, dict[str, str]]] = {}
        for name, status, members in backends:
            pool_id = name.split(":", 1)[0]
            pools.setdefault(pool_id, (status, members))  # the first backend of a shared pool, as Octavia
        return cls(running, dict(listeners), pools)


def _listener_status(reported: str | None, lb: Node) -> str | None:
    if reported is None:
        return ERROR if lb.provisioning_status == Provisioning.ACTIVE else OFFLINE
    if reported == "OPEN":
        return ONLINE
    if reported == "FULL":
        return DEGRADED
    if reported == "STOP":
        return OFFLINE
    return None


def _member_status(reported: str) -> str | None:
    if reported.startswith("UP"):
        return ONLINE
    if reported.startswith("DOWN"):
        return ERROR
    if reported.startswith("DRAIN"):
        return DRAINING
    if reported.startswith("MAINT"):
        return OFFLINE
    if reported == "no check":
        return NO_MONITOR
    return None


def evaluate(tree: Tree, report: Report) -> list[Change]:
    """The operating statuses of ``tree`` that ``report`` changes (none while the tree is not settled)."""
    if not tree.settled:
        return []
    lb = tree.lb
    changes: list[Change] = []

    def note(kind: str, node: Node, status: str | None) -> None:
        if status is not None and status != node.operating_status:
            changes.append(Change(kind, node.id, lb.id, node.operating_status, status))

    lb_status = ONLINE if lb.admin_state_up else OFFLINE
    enabled_listeners = failed_listeners = 0
    for listener in tree.listeners.values():
        if not (lb.admin_state_up and listener.admin_state_up):
            note(LISTENER, listener, OFFLINE)
            continue
        enabled_listeners += 1
        status = _listener_status(report.listeners.get(listener.id), lb)
        if status == ERROR:
            failed_listeners += 1
        if status in (DEGRADED, ERROR) and lb_status == ONLINE:
            lb_status = DEGRADED
        note(LISTENER, listener, status)

    for pool in tree.pools.values():
        backend = report.pools.get(pool.id)
        if not pool.admin_state_up or backend is None:
            # Disabled, or in no backend: not served. Its members are not reported either; they keep theirs.
            note(POOL, pool, OFFLINE)
            continue
        backend_status, servers = backend
        pool_status: str | None = None
        if backend_status == "UP":
            pool_status = ONLINE
        elif backend_status == "DOWN":
            pool_status = ERROR
            if lb.admin_state_up:
                lb_status = ERROR
        for member in tree.members.get(pool.id, {}).values():
            reported = servers.get(member.id)
            if not member.admin_state_up:
                status = OFFLINE
            elif reported is None:
                status = None if member.operating_status == NO_MONITOR else OFFLINE
            else:
                status = _member_status(reported)
            if status == ERROR and pool_status == ONLINE:
                pool_status = DEGRADED
                if lb_status == ONLINE:
                    lb_status = DEGRADED
            note(MEMBER, member, status)
        note(POOL, pool, pool_status)

    if enabled_listeners and failed_listeners == enabled_listeners and lb.admin_state_up:
        lb_status = ERROR
    note(LOAD_BALANCER, lb, lb_status)
    return changes
