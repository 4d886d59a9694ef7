"""Providers and their capabilities, and the amphora admin API, through the REST edge.

No provider in this repository creates amphorae yet, so the amphora tests
write amphora and statistics rows straight into the mesh's database (a
documented exception to testing through the API only).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from support import Rest, assert_fault, mesh_engine, paused

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.db.models import Amphora, ListenerStatistics, ProviderCommand

PROVIDERS = "/v2/lbaas/providers"
AMPS = "/v2/octavia/amphorae"
LBS = "/v2/lbaas/loadbalancers"
DENIED = "Policy does not allow this request to be performed."

FLAVOR_CAPABILITIES = [
    {
        "name": "loadbalancer_topology",
        "description": "The load balancer topology. One of: SINGLE - One amphora per load balancer. "
        "ACTIVE_STANDBY - Two amphora per load balancer.",
    },
    {"name": "compute_flavor", "description": "The compute driver flavor ID."},
    {"name": "amp_image_tag", "description": "The amphora image tag."},
    {"name": "sriov_vip", "description": "When true, the VIP port will be created using an SR-IOV VF port."},
    {
        "name": "allow_member_sriov",
        "description": "When true, users can request a member port be SR-IOV enabled at member creation time.",
    },
]
AZ_CAPABILITIES = [
    {"name": "compute_zone", "description": "The compute availability zone."},
    {"name": "volume_zone", "description": "The volume availability zone."},
    {"name": "management_network", "description": "The management network ID for the amphora."},
    {
        "name": "valid_vip_networks",
        "description": "List of network IDs that are allowed for VIP use. This overrides/replaces the list of "
        "allowed networks configured in `octavia.conf`.",
    },
]


# --- providers --------------------------------------------------------------------------


def test_providers_and_capabilities(rest: Rest) -> None:
    providers = rest.ok("GET", PROVIDERS)["providers"]
    assert [p["name"] for p in providers] == ["amphora", "noop"] and set(providers[0]) == {"name", "description"}
    # Listable in Octavia's (and tempest's) ``enabled_provider_drivers`` format, ``name:description,...``.
    assert not any("," in p["description"] for p in providers), providers
    assert rest.ok("GET", f"{PROVIDERS}?fields=name&bogus=1") == {"providers": [{"name": "amphora"}, {"name": "noop"}]}
    assert rest.ok("GET", f"{PROVIDERS}/noop/flavor_capabilities") == {"flavor_capabilities": FLAVOR_CAPABILITIES}
    assert rest.ok("GET", f"{PROVIDERS}/noop/availability_zone_capabilities") == {
        "availability_zone_capabilities": AZ_CAPABILITIES
    }
    assert rest.ok("GET", f"{PROVIDERS}/noop/flavor_capabilities?name=compute_flavor") == {
        "flavor_capabilities": [FLAVOR_CAPABILITIES[1]]
    }
    by_description = rest.ok(
        "GET", f"{PROVIDERS}/noop/availability_zone_capabilities?description=The+volume+availability+zone."
    )
    assert by_description == {"availability_zone_capabilities": [AZ_CAPABILITIES[1]]}
    names = rest.ok("GET", f"{PROVIDERS}/noop/flavor_capabilities?fields=name")["flavor_capabilities"]
    assert names == [{"name": c["name"]} for c in FLAVOR_CAPABILITIES]
    repeated = rest.ok("GET", f"{PROVIDERS}/noop/flavor_capabilities?name=sriov_vip&name=amp_image_tag")
    assert repeated == {"flavor_capabilities": []}  # as Octavia: a repeated filter matches nothing
    for kind in ("flavor_capabilities", "availability_zone_capabilities"):
        assert_fault(rest.get(f"{PROVIDERS}/nope/{kind}"), 400, "Provider 'nope' is not enabled.")
        # The amphora provider (and Octavia's deprecated alias of it) offers the same capabilities.
        assert rest.ok("GET", f"{PROVIDERS}/amphora/{kind}") == rest.ok("GET", f"{PROVIDERS}/noop/{kind}")
        assert rest.ok("GET", f"{PROVIDERS}/octavia/{kind}") == rest.ok("GET", f"{PROVIDERS}/noop/{kind}")


def test_provider_rbac(secure_rest: Rest) -> None:
    project = uuid.uuid4().hex
    for roles in (("member",), ("reader",)):
        caller = secure_rest.as_(project, *roles)
        assert [p["name"] for p in caller.ok("GET", PROVIDERS)["providers"]] == ["amphora", "noop"]
        assert_fault(caller.get(f"{PROVIDERS}/noop/flavor_capabilities"), 403, DENIED)
        assert_fault(caller.get(f"{PROVIDERS}/noop/availability_zone_capabilities"), 403, DENIED)
    assert_fault(secure_rest.as_(project).get(PROVIDERS), 403, DENIED)
    admin = secure_rest.as_(project, "admin")
    assert admin.ok("GET", f"{PROVIDERS}/noop/flavor_capabilities")["flavor_capabilities"] == FLAVOR_CAPABILITIES


# --- amphorae ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(mesh) -> Iterator[Engine]:
    """A synchronous engine on the mesh's own database."""
    engine = mesh_engine(mesh)
    yield engine
    engine.dispose()


def _amphora(db: Engine, lb_id: str | None, **fields: object) -> dict[str, object]:
    """Insert an amphora row as an amphora provider would, and return Octavia's view of it."""
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "load_balancer_id": lb_id,
        "compute_id": str(uuid.uuid4()),
        "lb_network_ip": "192.0.2.1",
        "vrrp_ip": "198.51.100.1",
        "ha_ip": "198.51.100.1",
        "vrrp_port_id": str(uuid.uuid4()),
        "ha_port_id": str(uuid.uuid4()),
        "cert_expiration": dt.datetime(2026, 12, 25, 21, 24, 25),
        "cert_busy": False,
        "role": "STANDALONE",
        "status": "ALLOCATED",
        "vrrp_interface": None,
        "vrrp_id": 1,
        "vrrp_priority": None,
        "cached_zone": None,
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "updated_at": None,
        "image_id": None,
        "compute_flavor": None,
        **fields,
    }
    with Session(db) as session, session.begin():
        session.add(Amphora(**values))
    view = {**values, "loadbalancer_id": values.pop("load_balancer_id")}
    order = (
        "id loadbalancer_id compute_id lb_network_ip vrrp_ip ha_ip vrrp_port_id ha_port_id cert_expiration "
        "cert_busy role status vrrp_interface vrrp_id vrrp_priority cached_zone created_at updated_at image_id "
        "compute_flavor"
    ).split()
    return {k: (view[k].isoformat() if isinstance(view[k], dt.datetime) else view[k]) for k in order}


def test_list_show_and_filters(rest: Rest, db: Engine) -> None:
    lb = rest.create_lb(name="amp-list")
    master = _amphora(db, lb["id"], role="MASTER", vrrp_priority=100)
    backup = _amphora(db, lb["id"], role="BACKUP", vrrp_priority=90, status="ERROR", compute_id=None)
    deleted = _amphora(db, lb["id"], status="DELETED")
    listed = rest.ok("GET", f"{AMPS}?loadbalancer_id={lb['id']}")
    assert listed == {"amphorae": [master, backup], "amphorae_links": []}
    assert rest.ok("GET", f"{AMPS}/{master['id']}") == {"amphora": master}
    assert list(rest.ok("GET", f"{AMPS}/{master['id']}")["amphora"]) == list(master)
    assert rest.ok("GET", f"{AMPS}/{master['id']}?fields=id&fields=role") == {
        "amphora": {"id": master["id"], "role": "MASTER"}
    }
    assert_fault(rest.get(f"{AMPS}/{deleted['id']}"), 404, f"Amphora {deleted['id']} not found.")
    assert_fault(rest.get(f"{AMPS}/not-a-uuid"), 404, "Amphora not-a-uuid not found.")

    def ids(query: str) -> list[str]:
        return [a["id"] for a in rest.ok("GET", f"{AMPS}?loadbalancer_id={lb['id']}&{query}")["amphorae"]]

    assert ids("status=ERROR") == [backup["id"]]
    assert ids("role=MASTER&role=BACKUP&sort=vrrp_priority:asc") == [backup["id"], master["id"]]
    assert ids("vrrp_priority=100") == [master["id"]]
    assert ids("cert_busy=false&status=ALLOCATED") == [master["id"]]
    assert ids(f"project_id={lb['project_id']}&role=BACKUP") == [backup["id"]]
    assert ids("project_id=someone-else") == []
    assert ids("fields=id") == [master["id"], backup["id"]]
    first = rest.ok("GET", f"{AMPS}?loadbalancer_id={lb['id']}&limit=1")
    assert [a["id"] for a in first["amphorae"]] == [master["id"]]
    (link,) = first["amphorae_links"]
    assert link["rel"] == "next" and f"marker={master['id']}" in link["href"]
    second = rest.session.get(link["href"], timeout=10).json()
    assert [a["id"] for a in second["amphorae"]] == [backup["id"]]
    assert_fault(rest.get(f"{AMPS}?bogus=1"), 400)
    assert_fault(rest.get(f"{AMPS}?sort=bogus:asc"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{AMPS}?vrrp_id=x"), 400, "Invalid input for field/attribute vrrp_id. Value: 'x'.")
    assert_fault(
        rest.get(f"{AMPS}?created_at=yesterday"),
        400,
        "Invalid input for field/attribute created_at. Value: 'yesterday'.",
    )


def test_stats(rest: Rest, db: Engine) -> None:
    lb = rest.create_lb(name="amp-stats")
    amp = _amphora(db, lb["id"])
    quiet = _amphora(db, lb["id"])
    listeners = sorted(str(uuid.uuid4()) for _ in range(2))
    with Session(db) as session, session.begin():
        for i, listener_id in enumerate(listeners):
            session.add(
                ListenerStatistics(
                    listener_id=listener_id,
                    amphora_id=amp["id"],
                    bytes_in=100 + i,
                    bytes_out=200 + i,
                    active_connections=3 + i,
                    total_connections=40 + i,
                    request_errors=i,
                )
            )
    stats = rest.ok("GET", f"{AMPS}/{amp['id']}/stats")
    assert stats == {
        "amphora_stats": [
            {
                "active_connections": 3 + i,
                "bytes_in": 100 + i,
                "bytes_out": 200 + i,
                "id": amp["id"],
                "listener_id": listener_id,
                "loadbalancer_id": lb["id"],
                "request_errors": i,
                "total_connections": 40 + i,
            }
            for i, listener_id in enumerate(listeners)
        ]
    }
    assert list(stats["amphora_stats"][0]) == [
        "active_connections",
        "bytes_in",
        "bytes_out",
        "id",
        "listener_id",
        "loadbalancer_id",
        "request_errors",
        "total_connections",
    ]
    assert_fault(rest.get(f"{AMPS}/{quiet['id']}/stats"), 404, f"Amphora stats for {quiet['id']} not found.")
    missing = str(uuid.uuid4())
    assert_fault(rest.get(f"{AMPS}/{missing}/stats"), 404, f"Amphora stats for {missing} not found.")


def _commands(db: Engine, amp_id: str) -> list[str]:
    """Subjects of the provider commands queued for an amphora."""
    from octavia_mesh.protos.provider.v1 import commands_pb2

    with Session(db) as session:
        rows = session.execute(select(ProviderCommand).order_by(ProviderCommand.created_at)).scalars().all()
        out = []
        for row in rows:
            message = commands_pb2.ProviderCommand.FromString(row.payload)
            if message.resource_id == amp_id:
                out.append(row.subject)
        return out


def test_config_and_failover(mesh, rest: Rest, db: Engine) -> None:
    lb = rest.create_lb(name="amp-failover")
    amp = _amphora(db, lb["id"])
    spare = _amphora(db, None, role=None)
    response = rest.put(f"{AMPS}/{amp['id']}/config")
    assert response.status_code == 202 and response.content == b""
    assert _commands(db, amp["id"]) == ["octavia.provider.v1.noop.amphora.update"]
    assert rest.put(f"{AMPS}/{spare['id']}/config").status_code == 202
    rest.wait_lb_active(lb["id"])
    with paused(mesh):
        response = rest.put(f"{AMPS}/{amp['id']}/failover")
        assert response.status_code == 202 and response.content == b""
        assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "PENDING_UPDATE"
        assert_fault(
            rest.put(f"{AMPS}/{amp['id']}/failover"),
            409,
            f"Load Balancer {lb['id']} is immutable and cannot be updated.",
        )
    assert _commands(db, amp["id"])[-1] == "octavia.provider.v1.noop.amphora.failover"
    rest.wait_lb_active(lb["id"])
    assert_fault(
        rest.put(f"{AMPS}/{spare['id']}/failover"), 409, f"amphora {spare['id']} is immutable and cannot be updated."
    )
    missing = str(uuid.uuid4())
    for method in ("config", "failover"):
        assert_fault(rest.put(f"{AMPS}/{missing}/{method}"), 404, f"Amphora {missing} not found.")


def test_delete(mesh: Mesh, rest: Rest, db: Engine) -> None:
    lb = rest.create_lb(name="amp-delete")
    healthy = _amphora(db, lb["id"])
    broken = _amphora(db, lb["id"], status="ERROR")
    assert_fault(
        rest.delete(f"{AMPS}/{healthy['id']}"), 409, f"amphora {healthy['id']} is immutable and cannot be updated."
    )
    assert rest.ok("GET", f"{AMPS}/{healthy['id']}")["amphora"]["status"] == "ALLOCATED"
    with paused(mesh):
        assert rest.delete(f"{AMPS}/{broken['id']}").status_code == 204
        assert rest.ok("GET", f"{AMPS}/{broken['id']}")["amphora"]["status"] == "PENDING_DELETE"
        assert _commands(db, broken["id"]) == ["octavia.provider.v1.noop.amphora.delete"]
        assert_fault(
            rest.delete(f"{AMPS}/{broken['id']}"), 409, f"amphora {broken['id']} is immutable and cannot be updated."
        )
    # The provider retires it: gone from the API like every deleted amphora.
    deadline = time.monotonic() + 15
    while rest.get(f"{AMPS}/{broken['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the amphora delete was never applied"
        time.sleep(0.05)
    missing = str(uuid.uuid4())
    assert_fault(rest.delete(f"{AMPS}/{missing}"), 404, f"Amphora {missing} not found.")


def test_amphora_rbac(secure_rest: Rest) -> None:
    project = uuid.uuid4().hex
    amp = str(uuid.uuid4())
    for roles in (("member",), ("reader",), ("load-balancer_global_observer",)):
        caller = secure_rest.as_(project, *roles)
        assert_fault(caller.get(AMPS), 403, DENIED)
        assert_fault(caller.get(f"{AMPS}/{amp}"), 403, DENIED)
        assert_fault(caller.get(f"{AMPS}/{amp}/stats"), 403, DENIED)
        assert_fault(caller.put(f"{AMPS}/{amp}/config"), 403, DENIED)
        assert_fault(caller.put(f"{AMPS}/{amp}/failover"), 403, DENIED)
        assert_fault(caller.delete(f"{AMPS}/{amp}"), 403, DENIED)
    admin = secure_rest.as_(project, "admin")
    assert admin.ok("GET", AMPS) == {"amphorae": [], "amphorae_links": []}
    assert_fault(admin.get(f"{AMPS}/{amp}"), 404, f"Amphora {amp} not found.")
