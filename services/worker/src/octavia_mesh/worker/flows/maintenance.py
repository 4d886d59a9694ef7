"""Commands housekeeping sends the amphora provider that are not changes of a load balancer.

Certificate rotation and orphan reaping resolve no ``PENDING_*`` state, so they are neither settled nor
failed like changes: a failed run is logged and the command completed, and housekeeping asks again at its
next scan if there is still something to do.
"""

from __future__ import annotations

import logging

from octavia_mesh.common.commands import Op
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.flows.engine import Flow, FlowContext, FlowEngine, FlowFailed
from octavia_mesh.worker.flows.orphans import reap_flow
from octavia_mesh.worker.flows.rotation import rotation_flow

logger = logging.getLogger(__name__)

OPERATIONS = frozenset({Op.OPERATION_ROTATE_CERTIFICATE, Op.OPERATION_REAP_ORPHANS})


def flow(deps: AmphoraDeps, operation: int) -> Flow:
    return rotation_flow(deps) if operation == Op.OPERATION_ROTATE_CERTIFICATE else reap_flow(deps)


async def run(engine: FlowEngine, flow: Flow, command: commands_pb2.ProviderCommand) -> None:
    ctx = FlowContext(
        command_id=command.command_id, load_balancer_id=command.load_balancer_id, resource_id=command.resource_id
    )
    try:
        await engine.run(flow, ctx)
    except FlowFailed as exc:
        logger.warning("%s of %s failed: %s; housekeeping will ask again", flow.name, command.resource_id, exc)
