"""Database rows as providers see them: octavia-lib's provider data models, as ``driveragent.v1`` messages.

Octavia's driver agent builds these with ``octavia/api/drivers/utils.py``
(``db_loadbalancer_to_provider_loadbalancer`` and friends); the shapes are the
same: a load balancer carries its listeners and pools, a listener its default
pool and L7 policies, a pool its members and health monitor, an L7 policy its
rules, and TLS references come with the certificates they name when the
driver agent holds the secret store's keys.

Every ``Get*`` loads the whole tree of the object's load balancer in one
read: the nested objects then come from memory, and the tree is one
consistent snapshot.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from google.protobuf import struct_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common import secrets
from octavia_mesh.common.db.models import (
    AvailabilityZone,
    AvailabilityZoneProfile,
    Flavor,
    FlavorProfile,
    HealthMonitor,
    L7Policy,
    L7Rule,
    Listener,
    Member,
    Pool,
)
from octavia_mesh.common.lifecycle import Provisioning
from octavia_mesh.common.lifecycle.tree import Tree
from octavia_mesh.driver_agent.errors import NotFound
from octavia_mesh.driver_agent.owners import owner_query
from octavia_mesh.protos.driveragent.v1 import models_pb2 as pb

logger = logging.getLogger(__name__)


def _struct(data: Any) -> struct_pb2.Struct | None:
    if not isinstance(data, dict):
        return None
    out = struct_pb2.Struct()
    out.update(data)
    return out


def _profile_data(raw: str | None) -> struct_pb2.Struct | None:
    try:
        return _struct(json.loads(raw)) if raw else None
    except ValueError:
        return None


class TreeView:
    """One load balancer's tree, rendered on demand (secrets resolved in the same session)."""

    def __init__(self, session: AsyncSession, tree: Tree, keyring: secrets.Keyring | None) -> None:
        self._session = session
        self._tree = tree
        self._keyring = keyring
        self._members: dict[str, list[Member]] = {}
        for member in tree.members:
            self._members.setdefault(member.pool_id, []).append(member)
        self._monitors = {m.pool_id: m for m in tree.monitors}
        self._rules: dict[str, list[L7Rule]] = {}
        for rule in tree.rules:
            self._rules.setdefault(rule.l7policy_id, []).append(rule)
        self._policies: dict[str, list[L7Policy]] = {}
        for policy in sorted(tree.policies, key=lambda p: p.position):
            self._policies.setdefault(policy.listener_id, []).append(policy)
        self._pools = {p.id: p for p in tree.pools}

    # --- secrets ---------------------------------------------------------------------------------

    async def _bundle(self, ref: str | None, project_id: str | None) -> pb.TlsContainerData | None:
        if not ref or self._keyring is None:
            return None
        try:
            bundle = await secrets.resolve(self._session, ref, self._keyring, project_id=project_id)
        except secrets.SecretError as exc:
            logger.warning("certificate %s of project %s not resolved: %s", ref, project_id, exc)
            return None
        return pb.TlsContainerData(
            certificate=bundle.certificate,
            private_key=bundle.private_key,
            intermediates=list(bundle.intermediates),
            primary_cn=bundle.primary_cn,
        )

    async def _pem(self, ref: str | None, project_id: str | None) -> str | None:
        if not ref or self._keyring is None:
            return None
        try:
            data = await secrets.resolve_secret(self._session, ref, self._keyring, project_id=project_id)
            return data.decode()
        except (secrets.SecretError, UnicodeDecodeError) as exc:
            logger.warning("secret %s of project %s not resolved: %s", ref, project_id, exc)
            return None

    # --- objects ---------------------------------------------------------------------------------

    async def load_balancer(self) -> pb.LoadBalancer:
        lb = self._tree.lb
        flavor = None
        if lb.flavor_id:
            row = (
                await self._session.execute(
                    select(FlavorProfile.flavor_data)
                    .join(Flavor, Flavor.flavor_profile_id == FlavorProfile.id)
                    .where(Flavor.id == lb.flavor_id)
                )
            ).scalar_one_or_none()
            flavor = _profile_data(row)
        return pb.LoadBalancer(
            loadbalancer_id=lb.id,
            name=lb.name,
            description=lb.description,
            project_id=lb.project_id,
            admin_state_up=lb.admin_state_up,
            vip_address=lb.vip_address,
            vip_network_id=lb.vip_network_id,
            vip_port_id=lb.vip_port_id,
            vip_subnet_id=lb.vip_subnet_id,
            vip_qos_policy_id=lb.vip_qos_policy_id,
            vip_sg_ids=list(lb.vip_sg_ids or []),
            additional_vips=[
                pb.AdditionalVip(
                    subnet_id=v.get("subnet_id") or "",
                    ip_address=v.get("ip_address"),
                    port_id=v.get("port_id"),
                    network_id=v.get("network_id"),
                )
                for v in lb.additional_vips or []
                if isinstance(v, dict)
            ],
            availability_zone=lb.availability_zone,
            flavor=flavor,
            listeners=[await self.listener(listener) for listener in self._tree.listeners],
            pools=[await self.pool(pool) for pool in self._tree.pools],
            provisioning_status=lb.provisioning_status,
            operating_status=lb.operating_status,
        )

    async def listener(self, listener: Listener) -> pb.Listener:
        project = listener.project_id
        default_pool = self._pools.get(listener.default_pool_id or "")
        sni = [await self._bundle(ref, project) for ref in listener.sni_container_refs or []]
        return pb.Listener(
            listener_id=listener.id,
            loadbalancer_id=listener.load_balancer_id,
            name=listener.name,
            description=listener.description,
            project_id=project,
            admin_state_up=listener.admin_state_up,
            protocol=listener.protocol,
            protocol_port=listener.protocol_port,
            connection_limit=listener.connection_limit,
            default_pool_id=listener.default_pool_id,
            default_pool=await self.pool(default_pool) if default_pool is not None else None,
            default_tls_container_ref=listener.default_tls_container_ref,
            default_tls_container_data=await self._bundle(listener.default_tls_container_ref, project),
            sni_container_refs=list(listener.sni_container_refs or []),
            sni_container_data=[b for b in sni if b is not None],
            insert_headers={str(k): str(v) for k, v in (listener.insert_headers or {}).items()},
            l7policies=[self.l7policy(p) for p in self._policies.get(listener.id, [])],
            timeout_client_data=listener.timeout_client_data,
            timeout_member_connect=listener.timeout_member_connect,
            timeout_member_data=listener.timeout_member_data,
            timeout_tcp_inspect=listener.timeout_tcp_inspect,
            client_ca_tls_container_ref=listener.client_ca_tls_container_ref,
            client_ca_tls_container_data=await self._pem(listener.client_ca_tls_container_ref, project),
            client_authentication=listener.client_authentication or "NONE",
            client_crl_container_ref=listener.client_crl_container_ref,
            client_crl_container_data=await self._pem(listener.client_crl_container_ref, project),
            allowed_cidrs=list(listener.allowed_cidrs or []),
            tls_versions=list(listener.tls_versions or []),
            tls_ciphers=listener.tls_ciphers,
            alpn_protocols=list(listener.alpn_protocols or []),
            hsts_max_age=listener.hsts_max_age,
            hsts_include_subdomains=listener.hsts_include_subdomains,
            hsts_preload=listener.hsts_preload,
            provisioning_status=listener.provisioning_status,
            operating_status=listener.operating_status,
        )

    async def pool(self, pool: Pool) -> pb.Pool:
        project = pool.project_id
        persistence = pool.session_persistence if isinstance(pool.session_persistence, dict) else None
        monitor = self._monitors.get(pool.id)
        # Octavia names the first listener that uses the pool as its default pool.
        listener_id = next((li.id for li in self._tree.listeners if li.default_pool_id == pool.id), None)
        return pb.Pool(
            pool_id=pool.id,
            loadbalancer_id=pool.load_balancer_id,
            listener_id=listener_id,
            name=pool.name,
            description=pool.description,
            project_id=project,
            admin_state_up=pool.admin_state_up,
            protocol=pool.protocol,
            lb_algorithm=pool.lb_algorithm,
            session_persistence=pb.SessionPersistence(
                type=persistence.get("type") or "",
                cookie_name=persistence.get("cookie_name"),
                persistence_timeout=persistence.get("persistence_timeout"),
                persistence_granularity=persistence.get("persistence_granularity"),
            )
            if persistence
            else None,
            healthmonitor=self.health_monitor(monitor) if monitor is not None else None,
            members=[self.member(m) for m in self._members.get(pool.id, [])],
            tls_enabled=pool.tls_enabled,
            tls_container_ref=pool.tls_container_ref,
            tls_container_data=await self._bundle(pool.tls_container_ref, project),
            ca_tls_container_ref=pool.ca_tls_container_ref,
            ca_tls_container_data=await self._pem(pool.ca_tls_container_ref, project),
            crl_container_ref=pool.crl_container_ref,
            crl_container_data=await self._pem(pool.crl_container_ref, project),
            tls_versions=list(pool.tls_versions or []),
            tls_ciphers=pool.tls_ciphers,
            alpn_protocols=list(pool.alpn_protocols or []),
            provisioning_status=pool.provisioning_status,
            operating_status=pool.operating_status,
        )

    @staticmethod
    def member(member: Member) -> pb.Member:
        return pb.Member(
            member_id=member.id,
            pool_id=member.pool_id,
            name=member.name,
            project_id=member.project_id,
            admin_state_up=member.admin_state_up,
            address=member.address,
            protocol_port=member.protocol_port,
            weight=member.weight,
            backup=member.backup,
            subnet_id=member.subnet_id,
            monitor_address=member.monitor_address,
            monitor_port=member.monitor_port,
            vnic_type=member.vnic_type or "normal",
            provisioning_status=member.provisioning_status,
            operating_status=member.operating_status,
        )

    @staticmethod
    def health_monitor(monitor: HealthMonitor) -> pb.HealthMonitor:
        return pb.HealthMonitor(
            healthmonitor_id=monitor.id,
            pool_id=monitor.pool_id,
            name=monitor.name,
            project_id=monitor.project_id,
            admin_state_up=monitor.admin_state_up,
            type=monitor.type,
            delay=monitor.delay,
            timeout=monitor.timeout,
            max_retries=monitor.max_retries,
            max_retries_down=monitor.max_retries_down,
            http_method=monitor.http_method,
            url_path=monitor.url_path,
            expected_codes=monitor.expected_codes,
            http_version=monitor.http_version,
            domain_name=monitor.domain_name,
            provisioning_status=monitor.provisioning_status,
            operating_status=monitor.operating_status,
        )

    def l7policy(self, policy: L7Policy) -> pb.L7Policy:
        return pb.L7Policy(
            l7policy_id=policy.id,
            listener_id=policy.listener_id,
            name=policy.name,
            description=policy.description,
            project_id=policy.project_id,
            admin_state_up=policy.admin_state_up,
            action=policy.action,
            position=policy.position,
            redirect_pool_id=policy.redirect_pool_id,
            redirect_url=policy.redirect_url,
            redirect_prefix=policy.redirect_prefix,
            redirect_http_code=policy.redirect_http_code,
            rules=[self.l7rule(r) for r in self._rules.get(policy.id, [])],
            provisioning_status=policy.provisioning_status,
            operating_status=policy.operating_status,
        )

    @staticmethod
    def l7rule(rule: L7Rule) -> pb.L7Rule:
        return pb.L7Rule(
            l7rule_id=rule.id,
            l7policy_id=rule.l7policy_id,
            project_id=rule.project_id,
            admin_state_up=rule.admin_state_up,
            type=rule.type,
            compare_type=rule.compare_type,
            key=rule.key,
            value=rule.value,
            invert=rule.invert,
            provisioning_status=rule.provisioning_status,
            operating_status=rule.operating_status,
        )


# --- lookups ---------------------------------------------------------------------------------------


async def tree_of(session: AsyncSession, kind: str, object_id: str) -> tuple[Tree, Any]:
    """The tree holding the ``kind`` object ``object_id``, and that object's row; :class:`NotFound` if none."""
    row = (await session.execute(owner_query(kind, [object_id]))).first()
    if row is None:
        raise NotFound(kind, object_id)
    tree = await Tree.load(session, row.lb_id, lock=False)
    if tree is None or tree.lb.provisioning_status == Provisioning.DELETED:
        raise NotFound(kind, object_id)
    if kind == "load_balancers":
        return tree, tree.lb
    everything = {o.id: o for o in tree.children()}
    if object_id not in everything:
        raise NotFound(kind, object_id)
    return tree, everything[object_id]


async def flavor(session: AsyncSession, flavor_id: str) -> pb.Flavor:
    row = (
        await session.execute(
            select(Flavor, FlavorProfile)
            .join(FlavorProfile, Flavor.flavor_profile_id == FlavorProfile.id)
            .where(Flavor.id == flavor_id)
        )
    ).first()
    if row is None:
        raise NotFound("flavors", flavor_id)
    found, profile = row
    return pb.Flavor(
        id=found.id,
        name=found.name,
        description=found.description,
        enabled=found.enabled,
        provider_name=profile.provider_name,
        flavor_data=_profile_data(profile.flavor_data),
    )


async def availability_zone(session: AsyncSession, name: str) -> pb.AvailabilityZone:
    row = (
        await session.execute(
            select(AvailabilityZone, AvailabilityZoneProfile)
            .join(AvailabilityZoneProfile, AvailabilityZone.availability_zone_profile_id == AvailabilityZoneProfile.id)
            .where(AvailabilityZone.name == name)
        )
    ).first()
    if row is None:
        raise NotFound("availability_zones", name)
    zone, profile = row
    return pb.AvailabilityZone(
        name=zone.name,
        description=zone.description,
        enabled=zone.enabled,
        provider_name=profile.provider_name,
        availability_zone_data=_profile_data(profile.availability_zone_data),
    )
