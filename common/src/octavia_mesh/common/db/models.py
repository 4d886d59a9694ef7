"""SQLAlchemy models of Octavia's data.

The schema follows Octavia's own (load balancers keep a ``DELETED`` row until
housekeeping purges it; children are removed outright), with these additions:
``tag`` is one table for every taggable resource; ``provider_command`` is the
outbox through which the API (and the health service, housekeeping and the
worker's rebuild) hand changes to providers; ``flow_progress`` keeps the
worker's durable flows; ``vip_allocation`` holds the local network driver's
addresses; ``secret`` and ``secret_container`` are the local secret store;
statistics are kept per listener and amphora.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(36)
#: Microsecond timestamps everywhere: MariaDB's DATETIME keeps whole seconds unless told otherwise, which
#: would make the default sort order (created_at, id) differ from SQLite's and PostgreSQL's.
DateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")  # type: ignore[assignment]


def utcnow() -> dt.datetime:
    """Naive UTC, as Octavia stores and prints its timestamps."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Base of every model."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class _Provisioned:
    """Columns every provisioned object has."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    provisioning_status: Mapped[str] = mapped_column(String(16))
    operating_status: Mapped[str] = mapped_column(String(16))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class LoadBalancer(_Provisioned, Base):
    __tablename__ = "load_balancer"

    description: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(64))
    flavor_id: Mapped[str | None] = mapped_column(ID, ForeignKey("flavor.id"))
    availability_zone: Mapped[str | None] = mapped_column(String(255), ForeignKey("availability_zone.name"))
    topology: Mapped[str | None] = mapped_column(String(16))
    vip_address: Mapped[str | None] = mapped_column(String(64))
    vip_port_id: Mapped[str | None] = mapped_column(ID)
    vip_subnet_id: Mapped[str | None] = mapped_column(ID)
    vip_network_id: Mapped[str | None] = mapped_column(ID)
    vip_qos_policy_id: Mapped[str | None] = mapped_column(ID)
    vip_vnic_type: Mapped[str] = mapped_column(String(16), default="normal")
    vip_sg_ids: Mapped[list[Any]] = mapped_column(default=list)
    additional_vips: Mapped[list[Any]] = mapped_column(default=list)

    __table_args__ = (Index("ix_load_balancer_status", "provisioning_status"),)


class Listener(_Provisioned, Base):
    __tablename__ = "listener"

    load_balancer_id: Mapped[str] = mapped_column(ID, ForeignKey("load_balancer.id"), index=True)
    description: Mapped[str | None] = mapped_column(String(255))
    protocol: Mapped[str] = mapped_column(String(16))
    protocol_port: Mapped[int] = mapped_column(Integer)
    connection_limit: Mapped[int] = mapped_column(Integer, default=-1)
    default_pool_id: Mapped[str | None] = mapped_column(ID, ForeignKey("pool.id"))
    default_tls_container_ref: Mapped[str | None] = mapped_column(String(255))
    sni_container_refs: Mapped[list[Any]] = mapped_column(default=list)
    client_authentication: Mapped[str] = mapped_column(String(16), default="NONE")
    client_ca_tls_container_ref: Mapped[str | None] = mapped_column(String(255))
    client_crl_container_ref: Mapped[str | None] = mapped_column(String(255))
    insert_headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_client_data: Mapped[int | None] = mapped_column(Integer)
    timeout_member_connect: Mapped[int | None] = mapped_column(Integer)
    timeout_member_data: Mapped[int | None] = mapped_column(Integer)
    timeout_tcp_inspect: Mapped[int | None] = mapped_column(Integer)
    allowed_cidrs: Mapped[list[Any]] = mapped_column(default=list)
    tls_ciphers: Mapped[str | None] = mapped_column(String(2048))
    tls_versions: Mapped[list[Any] | None] = mapped_column()
    alpn_protocols: Mapped[list[Any] | None] = mapped_column()
    hsts_max_age: Mapped[int | None] = mapped_column(Integer)
    hsts_include_subdomains: Mapped[bool] = mapped_column(Boolean, default=False)
    hsts_preload: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("load_balancer_id", "protocol", "protocol_port"),)


class Pool(_Provisioned, Base):
    __tablename__ = "pool"

    load_balancer_id: Mapped[str] = mapped_column(ID, ForeignKey("load_balancer.id"), index=True)
    description: Mapped[str | None] = mapped_column(String(255))
    protocol: Mapped[str] = mapped_column(String(16))
    lb_algorithm: Mapped[str] = mapped_column(String(32))
    session_persistence: Mapped[dict[str, Any] | None] = mapped_column()
    tls_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    tls_container_ref: Mapped[str | None] = mapped_column(String(255))
    ca_tls_container_ref: Mapped[str | None] = mapped_column(String(255))
    crl_container_ref: Mapped[str | None] = mapped_column(String(255))
    tls_ciphers: Mapped[str | None] = mapped_column(String(2048))
    tls_versions: Mapped[list[Any] | None] = mapped_column()
    alpn_protocols: Mapped[list[Any] | None] = mapped_column()


class Member(_Provisioned, Base):
    __tablename__ = "member"

    pool_id: Mapped[str] = mapped_column(ID, ForeignKey("pool.id"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    protocol_port: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    backup: Mapped[bool] = mapped_column(Boolean, default=False)
    subnet_id: Mapped[str | None] = mapped_column(ID)
    monitor_address: Mapped[str | None] = mapped_column(String(64))
    monitor_port: Mapped[int | None] = mapped_column(Integer)
    request_sriov: Mapped[bool] = mapped_column(Boolean, default=False)
    vnic_type: Mapped[str] = mapped_column(String(16), default="normal")

    __table_args__ = (UniqueConstraint("pool_id", "address", "protocol_port"),)


class HealthMonitor(_Provisioned, Base):
    __tablename__ = "health_monitor"

    pool_id: Mapped[str] = mapped_column(ID, ForeignKey("pool.id"), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    delay: Mapped[int] = mapped_column(Integer)
    timeout: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    max_retries_down: Mapped[int] = mapped_column(Integer, default=3)
    http_method: Mapped[str | None] = mapped_column(String(16))
    url_path: Mapped[str | None] = mapped_column(String(2048))
    expected_codes: Mapped[str | None] = mapped_column(String(64))
    http_version: Mapped[float | None] = mapped_column(Float)
    domain_name: Mapped[str | None] = mapped_column(String(255))


class L7Policy(_Provisioned, Base):
    __tablename__ = "l7policy"

    listener_id: Mapped[str] = mapped_column(ID, ForeignKey("listener.id"), index=True)
    description: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    redirect_pool_id: Mapped[str | None] = mapped_column(ID, ForeignKey("pool.id"))
    redirect_url: Mapped[str | None] = mapped_column(String(2048))
    redirect_prefix: Mapped[str | None] = mapped_column(String(2048))
    redirect_http_code: Mapped[int | None] = mapped_column(Integer)


class L7Rule(_Provisioned, Base):
    __tablename__ = "l7rule"

    l7policy_id: Mapped[str] = mapped_column(ID, ForeignKey("l7policy.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    compare_type: Mapped[str] = mapped_column(String(32))
    key: Mapped[str | None] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    invert: Mapped[bool] = mapped_column(Boolean, default=False)


class Tag(Base):
    """A tag on any taggable resource (load balancers, listeners, pools, ...)."""

    __tablename__ = "tag"

    resource_id: Mapped[str] = mapped_column(ID, primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_tag_tag", "tag"),)


class Quota(Base):
    """A project's limits (``None`` = the deployment default) and what it uses."""

    __tablename__ = "quota"

    project_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    load_balancer: Mapped[int | None] = mapped_column(Integer)
    listener: Mapped[int | None] = mapped_column(Integer)
    pool: Mapped[int | None] = mapped_column(Integer)
    health_monitor: Mapped[int | None] = mapped_column(Integer)
    member: Mapped[int | None] = mapped_column(Integer)
    l7policy: Mapped[int | None] = mapped_column(Integer)
    l7rule: Mapped[int | None] = mapped_column(Integer)
    in_use_load_balancer: Mapped[int] = mapped_column(Integer, default=0)
    in_use_listener: Mapped[int] = mapped_column(Integer, default=0)
    in_use_pool: Mapped[int] = mapped_column(Integer, default=0)
    in_use_health_monitor: Mapped[int] = mapped_column(Integer, default=0)
    in_use_member: Mapped[int] = mapped_column(Integer, default=0)
    in_use_l7policy: Mapped[int] = mapped_column(Integer, default=0)
    in_use_l7rule: Mapped[int] = mapped_column(Integer, default=0)
    explicit: Mapped[bool] = mapped_column(Boolean, default=False)


class FlavorProfile(Base):
    __tablename__ = "flavor_profile"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    provider_name: Mapped[str] = mapped_column(String(255))
    flavor_data: Mapped[str] = mapped_column(Text)


class Flavor(Base):
    __tablename__ = "flavor"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    flavor_profile_id: Mapped[str] = mapped_column(ID, ForeignKey("flavor_profile.id"))


class AvailabilityZoneProfile(Base):
    __tablename__ = "availability_zone_profile"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    provider_name: Mapped[str] = mapped_column(String(255))
    availability_zone_data: Mapped[str] = mapped_column(Text)


class AvailabilityZone(Base):
    __tablename__ = "availability_zone"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_zone_profile_id: Mapped[str] = mapped_column(ID, ForeignKey("availability_zone_profile.id"))


class Amphora(Base):
    __tablename__ = "amphora"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    load_balancer_id: Mapped[str | None] = mapped_column(ID, ForeignKey("load_balancer.id"), index=True)
    compute_id: Mapped[str | None] = mapped_column(String(255))
    lb_network_ip: Mapped[str | None] = mapped_column(String(64))
    vrrp_ip: Mapped[str | None] = mapped_column(String(64))
    ha_ip: Mapped[str | None] = mapped_column(String(64))
    vrrp_port_id: Mapped[str | None] = mapped_column(ID)
    ha_port_id: Mapped[str | None] = mapped_column(ID)
    cert_expiration: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cert_busy: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Serial number (hex) of the amphora's current certificate: the health service refuses any other, so a
    #: rotated-out or never-issued certificate is as good as revoked.
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    #: The flow that took this amphora from the pool of spare (READY) amphorae: a key derived from its command,
    #: so that the flow, run again after a crash, finds the amphora it took instead of taking a second one.
    assigned_by: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    vrrp_interface: Mapped[str | None] = mapped_column(String(16))
    vrrp_id: Mapped[int | None] = mapped_column(Integer)
    vrrp_priority: Mapped[int | None] = mapped_column(Integer)
    cached_zone: Mapped[str | None] = mapped_column(String(255))
    image_id: Mapped[str | None] = mapped_column(String(36))
    compute_flavor: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AmphoraHealth(Base):
    """When the health service last heard from an amphora (Octavia's ``amphora_health``).

    Written in batches by the health service; the failover detector reads it. ``busy`` marks an amphora a
    failover has claimed, so that neither another health replica nor a second pass claims it again.
    """

    __tablename__ = "amphora_health"

    amphora_id: Mapped[str] = mapped_column(ID, primary_key=True)
    last_update: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    busy: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The health replica that last wrote the row (for operators reading who holds which stream).
    reporter: Mapped[str | None] = mapped_column(String(255))
    #: When a health replica saw the amphora's heartbeat stream break or go quiet (fast failover); a mark
    #: counts while nothing was heard since (``lost_at >= last_update``).
    lost_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ListenerStatistics(Base):
    """Counters one amphora reports for one listener."""

    __tablename__ = "listener_statistics"

    listener_id: Mapped[str] = mapped_column(ID, primary_key=True)
    amphora_id: Mapped[str] = mapped_column(ID, primary_key=True)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    active_connections: Mapped[int] = mapped_column(Integer, default=0)
    total_connections: Mapped[int] = mapped_column(BigInteger, default=0)
    request_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ProviderCommand(Base):
    """Outbox row of a provider command.

    Written in the same transaction as the ``PENDING_*`` state it resolves, so a
    change is never accepted without its command. The relay publishes rows with
    ``published_at`` unset. ``completed_at`` is stamped once the change is
    finished (``lifecycle.transitions.complete_commands``: by the worker after
    its flow, in a transaction of its own; by a provider's report; by
    housekeeping giving up); a command redelivered after that is skipped, one
    redelivered before it runs again, so its steps are idempotent.
    """

    __tablename__ = "provider_command"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    load_balancer_id: Mapped[str] = mapped_column(ID, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)


class FlowProgress(Base):
    """How far a provider flow got, so that a worker that dies mid-flow resumes or reverts it on restart.

    Keyed by the provider command that started the flow; ``store`` holds what the completed tasks produced
    (ids of created instances, allocated addresses) for the tasks after them and for reverts.
    """

    __tablename__ = "flow_progress"

    command_id: Mapped[str] = mapped_column(ID, primary_key=True)
    flow: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # RUNNING, REVERTING, DONE, REVERTED
    done_steps: Mapped[int] = mapped_column(Integer, default=0)
    store: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class VipAllocation(Base):
    """An address handed out from a local VIP subnet; the primary key makes a double allocation impossible."""

    __tablename__ = "vip_allocation"

    subnet_id: Mapped[str] = mapped_column(ID, primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    load_balancer_id: Mapped[str] = mapped_column(ID, index=True)


class Secret(Base):
    """A secret of the local key manager (the Barbican v1 subset served at ``/v1/secrets``).

    ``encrypted_payload`` is a Fernet token bound to the row's id (``octavia_mesh.common.secrets``); the
    keys are never stored here. ``content_type`` is the normalized ``text/plain`` or
    ``application/octet-stream``, ``None`` while the secret has no payload.
    """

    __tablename__ = "secret"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    secret_type: Mapped[str] = mapped_column(String(80), default="opaque")
    algorithm: Mapped[str | None] = mapped_column(String(255))
    bit_length: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(255))
    encrypted_payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    expiration: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class SecretContainer(Base):
    """A named group of one project's secrets (``/v1/containers``): ``certificate``, ``generic`` or ``rsa``.

    ``secret_refs`` lists ``{"name": ..., "secret_id": ...}`` in the order given; references are built
    from the ids when shown, with the host the client called.
    """

    __tablename__ = "secret_container"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    secret_refs: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
