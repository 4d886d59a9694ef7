"""Spare amphorae: booted, reachable and assigned to nobody, so that a create or a failover takes one instead of
booting (an agent's start, its launcher and the first TLS handshake are most of a create's second).

**The pool** (:class:`SparePool`, a task of the worker): keeps ``spare_amphorae`` amphorae in Octavia's spare
status ``READY`` (no load balancer), booting one at a time (a burst of creates larger than the pool falls back
to booting in the flow, and the pool refills behind it). A spare whose instance died is retired; one a killed
worker left half-booted is retired once it is older than the agent timeout; one whose certificate expires within
``renew_before`` is retired and replaced by a fresh one (housekeeping rotates the certificates of ALLOCATED
amphorae only, and a spare has nothing to keep: booting another is the rotation). ``0`` turns the pool off.

**Identity.** A spare is a whole amphora from its birth: its row (id, ``cert_serial``), its certificate (CN
``amphora-<id>``, issued for that id and never changed by the assignment) and its heartbeat stream, which the
health service accepts like any other amphora's (a spare reports no load balancer, so nothing but
``amphora_health.last_update`` is written for it; automatic failover watches ALLOCATED amphorae only). Taking a
spare only sets ``load_balancer_id``, ``status`` and ``role`` on that row, so the certificate, the serial the
health service checks and the stream already open all stay valid: the next heartbeat flush reads the row again
and reports for the load balancer from then on.

**Nobody can use a spare before it is assigned.** Its agent accepts the controller's client certificate only
(as every amphora's); it holds no VIP and runs no HAProxy until a flow has taken it, plugged the VIP and pushed
the load balancer's configuration; and the take is one conditional UPDATE (``READY`` and no load balancer), so
two flows never get the same spare.

**Taking** (:class:`TakeSpare`, the first task of the SINGLE create and failover flows): the row is marked
with a key derived from the command (``assigned_by``), so the task run again after a crash finds the amphora
it took. With no spare left it takes nothing, and the flow's next tasks create and boot an amphora as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import func, select, update

from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import Amphora, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.worker import metrics
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import AgentEndpoint
from octavia_mesh.worker.drivers.compute import InstanceSpec
from octavia_mesh.worker.flows.engine import FlowContext

logger = logging.getLogger(__name__)

#: Octavia's status of a spare amphora.
READY = AmphoraStatus.READY
#: Namespace of the keys that mark which flow took a spare.
_TAKEN_BY = uuid.UUID("5d0f3a8e-2b7c-4c1e-9f64-7a3e1b2c9d05")


def spare_flag(key: str) -> str:
    """The flow-store key saying that ``key``'s amphora came from the pool (so it is not booted again)."""
    return f"{key}_spare"


class TakeSpare:
    """Assigns a READY spare amphora to the load balancer, if there is one (see the module docstring)."""

    name = "take-spare"

    def __init__(self, deps: AmphoraDeps, key: str = "amphora_id") -> None:
        self.deps, self.key = deps, key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        token = str(uuid.uuid5(_TAKEN_BY, f"{ctx.command_id}/{self.key}"))
        async with self.deps.sessions() as session:
            taken = await session.scalar(select(Amphora.id).where(Amphora.assigned_by == token))
            if taken is not None:  # this task ran before, and its result was not saved
                return {self.key: taken, spare_flag(self.key): True}
            candidates = (
                await session.execute(
                    select(Amphora.id, Amphora.compute_id)
                    .where(Amphora.status == READY, Amphora.load_balancer_id.is_(None))
                    .order_by(Amphora.created_at)
                    .limit(8)
                )
            ).all()
        for amphora_id, compute_id in candidates:
            if await self.deps.compute.get_instance(compute_id or amphora_id) is None:
                continue  # died as a spare: the pool retires it
            async with self.deps.sessions() as session, session.begin():
                won = await session.execute(
                    update(Amphora)
                    .where(Amphora.id == amphora_id, Amphora.status == READY, Amphora.load_balancer_id.is_(None))
                    .values(
                        load_balancer_id=ctx.load_balancer_id,
                        status=AmphoraStatus.ALLOCATED,
                        role="STANDALONE",
                        vrrp_id=1,
                        assigned_by=token,
                        updated_at=utcnow(),
                    )
                )
            if rowcount(won) == 1:
                metrics.SPARES.labels("ready").dec()  # until the pool's next look counts again
                logger.info("load balancer %s takes spare amphora %s", ctx.load_balancer_id, amphora_id)
                return {self.key: amphora_id, spare_flag(self.key): True}
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None  # CreateAmphora's and BootAmphora's reverts retire it like any amphora of the flow


def _naive(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC without a zone, as ``utcnow()`` and every database driver's DATETIME give it."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


class SparePool:
    """Keeps ``size`` spare amphorae booted (see the module docstring)."""

    def __init__(
        self,
        deps: AmphoraDeps,
        size: int,
        interval_s: float = 0.5,
        refill_delay_s: float = 1.0,
        renew_before: dt.timedelta = dt.timedelta(days=14),
    ) -> None:
        self.deps, self.size, self.interval_s, self.refill_delay_s = deps, size, interval_s, refill_delay_s
        # Never half the certificate's life or more: the pool would retire every spare it boots.
        self.renew_before = min(renew_before, deps.cert_validity / 2)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: Spares booted since the start (for tests and logs).
        self.booted = 0

    def start(self) -> None:
        if self.size > 0:
            self._task = asyncio.create_task(self._run(), name="spare-pool")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.refill()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.exception("refilling the spare amphora pool failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s * 2 ** min(failures, 6))
            self._wake.clear()

    async def _spares(self) -> list[tuple[str, str | None, str, dt.datetime, dt.datetime | None]]:
        async with self.deps.sessions() as session:
            return [
                tuple(r)  # type: ignore[misc]
                for r in await session.execute(
                    select(
                        Amphora.id, Amphora.compute_id, Amphora.status, Amphora.created_at, Amphora.cert_expiration
                    ).where(
                        Amphora.load_balancer_id.is_(None),
                        Amphora.status.in_((READY, AmphoraStatus.PENDING_CREATE, AmphoraStatus.BOOTING)),
                    )
                )
            ]

    async def refill(self, delay: bool = True) -> None:
        """Retire broken spares, then boot spares one at a time until there are ``size``.

        A spare was just taken by a create or a failover whose configuration is being pushed right now: booting
        an agent (a Python process's start) beside it would take the CPU that flow needs, so the refill waits
        ``refill_delay_s`` first (a burst of creates meanwhile boots its own amphorae anyway).
        """
        if delay and len(await self._spares()) < self.size:
            await asyncio.sleep(self.refill_delay_s)
        now = utcnow()
        stuck_before = now - dt.timedelta(seconds=self.deps.agent_timeout_s + 30)
        renew_by = now + self.renew_before
        healthy = ready = 0
        for amphora_id, compute_id, status, created_at, expires in await self._spares():
            if status == READY and expires is not None and _naive(expires) < renew_by:
                await self._retire(amphora_id, compute_id, f"its certificate expires at {expires:%Y-%m-%d %H:%M:%S}")
            elif status == READY and await self.deps.compute.get_instance(compute_id or amphora_id) is not None:
                healthy += 1
                ready += 1
            elif status == READY or created_at < stuck_before:
                await self._retire(amphora_id, compute_id, f"{status.lower()} spare without a running agent")
            else:
                healthy += 1  # being booted (by this worker, or another)
        metrics.SPARES_TARGET.set(self.size)
        metrics.SPARES.labels("ready").set(ready)
        metrics.SPARES.labels("booting").set(healthy - ready)
        while healthy < self.size:
            await self._boot()
            healthy += 1
            ready += 1
            metrics.SPARES.labels("ready").set(ready)
            metrics.SPARES.labels("booting").set(healthy - ready)

    async def _boot(self) -> None:
        amphora_id = str(uuid.uuid4())
        async with self.deps.sessions() as session, session.begin():
            # The row first: an instance is never without one (orphan reaping relies on it).
            session.add(Amphora(id=amphora_id, status=AmphoraStatus.PENDING_CREATE, created_at=utcnow()))
        try:
            identity = self.deps.certificates.issue_amphora_certificate(amphora_id, self.deps.cert_validity)
            instance = await self.deps.compute.create_instance(InstanceSpec(amphora_id, identity))
            await self._set(
                amphora_id,
                status=AmphoraStatus.BOOTING,
                compute_id=instance.compute_id,
                lb_network_ip=instance.management_address.rsplit(":", 1)[0],
                cert_expiration=identity.expires_at,
                cert_serial=identity.serial or None,
            )
            # A spare is READY once its agent answers over mutual TLS (which also opens the worker's channel).
            await self.deps.amphora.wait_until_reachable(
                AgentEndpoint(instance.management_address, amphora_id), self.deps.agent_timeout_s
            )
            await self._set(amphora_id, status=READY, status_from=AmphoraStatus.BOOTING)
        except BaseException:
            await asyncio.shield(self._retire(amphora_id, amphora_id, "could not boot"))
            raise
        self.booted += 1
        logger.info("spare amphora %s ready", amphora_id)

    async def _retire(self, amphora_id: str, compute_id: str | None, why: str) -> None:
        logger.warning("retiring spare amphora %s: %s", amphora_id, why)
        async with self.deps.sessions() as session, session.begin():
            # Only while it is still nobody's: a flow may have taken it meanwhile.
            mine = await session.execute(
                update(Amphora)
                .where(
                    Amphora.id == amphora_id,
                    Amphora.load_balancer_id.is_(None),
                    Amphora.status != AmphoraStatus.DELETED,
                )
                .values(status=AmphoraStatus.PENDING_DELETE, updated_at=utcnow())
            )
        if rowcount(mine) != 1:
            return
        await self.deps.compute.delete_instance(compute_id or amphora_id)
        await self._set(amphora_id, status=AmphoraStatus.DELETED)

    async def _set(self, amphora_id: str, status_from: str | None = None, **values: Any) -> None:
        async with self.deps.sessions() as session, session.begin():
            stmt = update(Amphora).where(Amphora.id == amphora_id, Amphora.load_balancer_id.is_(None))
            if status_from is not None:
                stmt = stmt.where(Amphora.status == status_from)
            await session.execute(stmt.values(updated_at=utcnow(), **values))

    async def count(self) -> int:
        async with self.deps.sessions() as session:
            return int(
                await session.scalar(
                    select(func.count()).where(Amphora.status == READY, Amphora.load_balancer_id.is_(None))
                )
                or 0
            )
