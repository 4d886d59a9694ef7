"""What the amphora provider's tasks use (drivers, renderers, settings), injected once at start-up.

The bottom layer of the worker's amphora provider: ``deps`` <- ``tasks`` <- ``flows`` <- ``providers``
(see :mod:`octavia_mesh.worker.tasks`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import secrets
from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.common.network import NetworkDriver
from octavia_mesh.common.network.noop import NoopNetworkDriver
from octavia_mesh.worker.drivers.amphora import AmphoraDriver
from octavia_mesh.worker.drivers.certificates import CertificateDriver
from octavia_mesh.worker.drivers.compute import ComputeDriver
from octavia_mesh.worker.haproxy.render import HaproxyRenderer
from octavia_mesh.worker.vrrp.render import VrrpOptions


@dataclass(frozen=True, slots=True)
class AmphoraDeps:
    """What the amphora provider's tasks use, injected once at start-up."""

    sessions: async_sessionmaker[AsyncSession]
    compute: ComputeDriver
    amphora: AmphoraDriver
    certificates: CertificateDriver
    renderer: HaproxyRenderer
    max_connections: int
    cert_validity: dt.timedelta = dt.timedelta(days=30)
    agent_timeout_s: float = 60.0
    keyring: secrets.Keyring | None = None  # decrypts listener and pool TLS material from the secret store
    vrrp: VrrpOptions | None = None  # ACTIVE_STANDBY load balancers (flows/vrrp.py); None: SINGLE only
    network: NetworkDriver = field(default_factory=NoopNetworkDriver)  # plugs VIPs and member subnets
    barbican: BarbicanCertManager | None = None  # TLS refs from Barbican instead of the local store
    #: The agents configure the ports plugged into their VMs (PlugVip/PlugNetwork; only where the network
    #: driver plugs ports: neutron). False for an image that configures hot-plugged ports by itself.
    plug_interfaces: bool = True
