"""Applying a provider's status report (octavia-lib's ``update_loadbalancer_status``) in one transaction.

Octavia's driver agent applies a report entry by entry and stops at the first
bad one, leaving the entries before it applied. Here the whole report is
checked first and applied in one transaction, so a refused report changes
nothing. Otherwise the semantics are Octavia's:

* a status the report sets is written as it is (a provider may set a child
  ``ACTIVE`` and leave its load balancer ``PENDING_UPDATE``: it reports the
  load balancer when its change is done);
* ``DELETED`` removes a child row, with everything under it, and gives back
  its quota; a load balancer keeps its row in ``DELETED`` (housekeeping purges
  it later), loses every child and its VIP address, and gives back its quota;
* ``DELETED`` for an object already gone is accepted and does nothing, so a
  provider may repeat a report safely (Octavia ignores it the same way).

Once a load balancer and everything under it are out of ``PENDING_*``, the
provider commands in flight for it are stamped completed, in the same
transaction: the API's outbox relay stops re-publishing them. A provider that
never reports gets its command again from the relay (once JetStream's
duplicate window has passed).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db import quota
from octavia_mesh.common.db.models import utcnow
from octavia_mesh.common.lifecycle import Operating, Provisioning
from octavia_mesh.common.lifecycle.transitions import complete_if_settled, remove_subtree
from octavia_mesh.common.lifecycle.tree import Tree
from octavia_mesh.driver_agent.errors import InvalidArgument, NotFound, PermissionDenied
from octavia_mesh.driver_agent.owners import KINDS, check_id, owner_query

logger = logging.getLogger(__name__)

#: octavia-lib's ``SUPPORTED_PROVISIONING_STATUSES``.
PROVISIONING = frozenset(Provisioning)
#: octavia-lib's ``SUPPORTED_OPERATING_STATUSES``.
OPERATING = frozenset(Operating)
DELETED = Provisioning.DELETED


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a report: ``kind`` is the request field (``listeners``, ...), ``index`` its position."""

    kind: str
    index: int
    id: str
    provisioning_status: str = ""
    operating_status: str = ""

    @property
    def field(self) -> str:
        return f"{self.kind}[{self.index}]"


def validate(changes: Sequence[Change]) -> list[Change]:
    """The changes with canonical ids, or :class:`InvalidArgument` for the first bad entry."""
    seen: set[tuple[str, str]] = set()
    out = []
    for change in changes:
        if change.kind not in KINDS:
            raise InvalidArgument(f"unknown kind {change.kind!r}")
        object_id = check_id(change.id, change.kind, f"{change.field}.id")
        if not change.provisioning_status and not change.operating_status:
            raise InvalidArgument(
                f"{change.field}: {change.kind} {object_id} sets neither provisioning_status nor operating_status",
                change.kind,
                object_id,
                change.field,
            )
        if change.provisioning_status and change.provisioning_status not in PROVISIONING:
            raise InvalidArgument(
                f"{change.field}.provisioning_status: {change.provisioning_status!r} is not one of "
                f"{', '.join(sorted(PROVISIONING))}",
                change.kind,
                object_id,
                f"{change.field}.provisioning_status",
            )
        if change.operating_status and change.operating_status not in OPERATING:
            raise InvalidArgument(
                f"{change.field}.operating_status: {change.operating_status!r} is not one of "
                f"{', '.join(sorted(OPERATING))}",
                change.kind,
                object_id,
                f"{change.field}.operating_status",
            )
        if (change.kind, object_id) in seen:
            raise InvalidArgument(
                f"{change.field}: {change.kind} {object_id} is reported twice", change.kind, object_id, change.field
            )
        seen.add((change.kind, object_id))
        out.append(Change(change.kind, change.index, object_id, change.provisioning_status, change.operating_status))
    return out


async def _owners(session: AsyncSession, changes: Sequence[Change]) -> dict[tuple[str, str], str]:
    """``(kind, id)`` to load balancer id, for the reported objects that exist."""
    owners: dict[tuple[str, str], str] = {}
    for kind in KINDS:
        ids = [c.id for c in changes if c.kind == kind]
        if ids:
            for row in await session.execute(owner_query(kind, ids)):
                owners[(kind, row.id)] = row.lb_id
    return owners


def _gone_already(change: Change) -> bool:
    return change.provisioning_status == DELETED


async def apply(session: AsyncSession, raw: Sequence[Change], provider: str = "") -> list[str]:
    """Apply a report in the caller's transaction; returns the load balancers whose pending change it completed.

    Raises :class:`InvalidArgument`, :class:`NotFound` or :class:`PermissionDenied` before anything is written
    (the caller rolls back on any exception anyway).
    """
    changes = validate(raw)
    owners = await _owners(session, changes)
    by_lb: dict[str, list[Change]] = {}
    for change in changes:
        lb_id = owners.get((change.kind, change.id))
        if lb_id is None:
            if _gone_already(change):
                continue
            raise NotFound(change.kind, change.id)
        by_lb.setdefault(lb_id, []).append(change)

    # Lock the load balancers in one order (their ids), so two reports never wait on each other in a cycle.
    trees: dict[str, tuple[Tree, list[Change]]] = {}
    for lb_id in sorted(by_lb):
        tree = await Tree.load(session, lb_id)
        pending = by_lb[lb_id]
        if tree is None or tree.lb.provisioning_status == DELETED:
            # Removed (or deleted) since the lookup: only repeated deletions are still meaningful.
            for change in pending:
                if not _gone_already(change):
                    raise NotFound(change.kind, change.id)
            continue
        if provider and tree.lb.provider != provider:
            change = pending[0]
            raise PermissionDenied(
                f"{change.kind} {change.id} belongs to load balancer {lb_id} of provider {tree.lb.provider!r}, "
                f"not {provider!r}",
                change.kind,
                change.id,
            )
        present = {tree.lb.id} | {o.id for o in tree.children()}
        for change in pending:
            if change.id not in present and not _gone_already(change):
                raise NotFound(change.kind, change.id)
        trees[lb_id] = (tree, pending)

    completed = []
    for lb_id, (tree, pending) in trees.items():
        await _apply_to_tree(session, tree, pending)
        if await complete_if_settled(session, tree):
            completed.append(lb_id)
    return completed


async def _apply_to_tree(session: AsyncSession, tree: Tree, changes: list[Change]) -> None:
    now = utcnow()
    lb = tree.lb
    objects = {lb.id: lb, **{o.id: o for o in tree.children()}}
    deleted = {c.id for c in changes if c.provisioning_status == DELETED and c.id in objects}
    gone = tree.with_descendants(deleted)
    for change in changes:
        obj = objects.get(change.id)
        if obj is None or (change.id in gone and change.id != lb.id):
            continue  # removed below (or already gone)
        if change.provisioning_status and change.provisioning_status != obj.provisioning_status:
            obj.provisioning_status = change.provisioning_status
            obj.updated_at = now
        if change.operating_status:
            obj.operating_status = change.operating_status
    freed = await remove_subtree(session, tree, gone)
    if lb.id in gone and not any(c.id == lb.id and c.operating_status for c in changes):
        lb.operating_status = Operating.OFFLINE
    await quota.release(session, lb.project_id, dict(freed))
    if freed:
        logger.info("load balancer %s: removed %s", lb.id, dict(Counter(freed)))
