"""openstacksdk, unchanged, against the REST edge with no Keystone (auth_type none + endpoint override)."""

from __future__ import annotations

import openstack
import pytest
from openstack import exceptions
from support import PROJECT, SUBNET

from octavia_mesh.cli.mesh import Mesh


@pytest.fixture(scope="module")
def conn(mesh: Mesh) -> openstack.connection.Connection:
    return openstack.connect(auth_type="none", load_balancer_endpoint_override=mesh.endpoint)


def test_load_balancer_lifecycle(conn: openstack.connection.Connection) -> None:
    lb = conn.load_balancer.create_load_balancer(name="sdk lb", vip_subnet_id=SUBNET, project_id=PROJECT, tags=["sdk"])
    assert lb.provisioning_status == "PENDING_CREATE"
    lb = conn.load_balancer.wait_for_load_balancer(lb.id, status="ACTIVE", interval=0.05, wait=30)
    assert conn.load_balancer.find_load_balancer("sdk lb").id == lb.id
    assert lb.id in [x.id for x in conn.load_balancer.load_balancers(tags="sdk")]
    assert [x.id for x in conn.load_balancer.load_balancers(limit=1, name="sdk lb")] == [lb.id]
    updated = conn.load_balancer.update_load_balancer(lb.id, description="from the sdk")
    assert updated.description == "from the sdk"
    conn.load_balancer.wait_for_load_balancer(lb.id, status="ACTIVE", interval=0.05, wait=30)
    assert conn.load_balancer.get_load_balancer_statistics(lb.id).bytes_in == 0
    conn.load_balancer.delete_load_balancer(lb.id)
    # Wait on the object already fetched: the noop provider may finish the delete before a fresh GET.
    conn.load_balancer.wait_for_delete(lb, interval=0.05, wait=30)
    with pytest.raises(exceptions.NotFoundException) as missing:
        conn.load_balancer.get_load_balancer(lb.id)
    assert missing.value.details == f"Load Balancer {lb.id} not found."
    assert conn.load_balancer.find_load_balancer(lb.id, ignore_missing=True) is None


def test_pagination_follows_links(conn: openstack.connection.Connection) -> None:
    ids = {
        conn.load_balancer.create_load_balancer(
            name=f"sdk-page-{i}", vip_subnet_id=SUBNET, project_id=PROJECT, tags=["sdk-page"]
        ).id
        for i in range(5)
    }
    seen = [x.id for x in conn.load_balancer.load_balancers(tags="sdk-page", limit=2, paginated=True)]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
