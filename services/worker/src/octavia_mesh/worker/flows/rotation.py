"""Certificate rotation: an amphora gets a new certificate before its current one expires.

Housekeeping finds amphorae whose certificate expires within its buffer, marks each ``cert_busy`` and queues
``OPERATION_ROTATE_CERTIFICATE``; this flow is Octavia's cert-rotation flow (new certificate, upload to the
agent, record the expiration, clear ``cert_busy``) with the agent's ``RotateCertificate``: the agent presents
the new certificate from its next TLS handshake on, with no restart and no HAProxy reload, so traffic through
the VIP is not touched.

A rotation is not a change of the load balancer: its status does not move (Octavia's rotation does not lock
it either), so it never holds up the user's changes, and a failure leaves nothing in ERROR (housekeeping
asks again at its next scan while the certificate is still due). It is safe beside a concurrent change:
the certificate names the same amphora and comes from the same CA, calls already on the old connection
finish on it, and an amphora that a failover or delete retires meanwhile is skipped or simply fails the
rotation. ``cert_busy`` keeps housekeeping from queueing a second rotation of the same amphora meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography import x509
from sqlalchemy import update

from octavia_mesh.common.db.models import Amphora, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import AgentEndpoint
from octavia_mesh.worker.flows.engine import Flow, FlowContext

logger = logging.getLogger(__name__)


async def _release(deps: AmphoraDeps, amphora_id: str) -> None:
    async with deps.sessions() as session, session.begin():
        await session.execute(update(Amphora).where(Amphora.id == amphora_id).values(cert_busy=False))


class RotateCertificate:
    """Issues the amphora a new certificate, has its agent present it, and records it."""

    name = "rotate-certificate"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        amphora_id = ctx.resource_id
        async with self.deps.sessions() as session:
            row = await session.get(Amphora, amphora_id)
        if row is None or row.status != AmphoraStatus.ALLOCATED:  # retired or replaced meanwhile: none left to rotate
            await _release(self.deps, amphora_id)
            return {}
        instance = await self.deps.compute.get_instance(row.compute_id or amphora_id)
        if instance is None:  # a lost instance is the health service's to fail over
            raise RuntimeError(f"amphora {amphora_id} has no running instance")
        identity = self.deps.certificates.issue_amphora_certificate(amphora_id, self.deps.cert_validity)
        serial = identity.serial or format(x509.load_pem_x509_certificate(identity.certificate).serial_number, "x")
        endpoint = AgentEndpoint(instance.management_address, amphora_id)
        await self.deps.amphora.rotate_certificate(endpoint, identity)
        # Recorded as soon as the agent presents it, never before: the health service accepts this serial only
        # (the agent's heartbeats reconnect with it at once), and a rotation that failed half-way must not lock
        # out the certificate the amphora still has.
        async with self.deps.sessions() as session, session.begin():
            await session.execute(
                update(Amphora)
                .where(Amphora.id == amphora_id, Amphora.status == AmphoraStatus.ALLOCATED)
                .values(cert_serial=serial, cert_expiration=identity.expires_at, cert_busy=False, updated_at=utcnow())
            )
        # A new connection's handshake verifies the new certificate (chain, name, validity) before we call it done.
        await self.deps.amphora.wait_until_reachable(endpoint, self.deps.agent_timeout_s)
        logger.info("amphora %s presents its new certificate %s (until %s)", amphora_id, serial, identity.expires_at)
        return {"cert_serial": serial}

    async def revert(self, ctx: FlowContext) -> None:
        await _release(self.deps, ctx.resource_id)


def rotation_flow(deps: AmphoraDeps) -> Flow:
    return Flow("rotate-certificate", [RotateCertificate(deps)])
