"""The ``nova`` compute driver against Nova and Glance faked at their HTTP boundary (``fake_nova.py``).

A booted server runs the amphora image's start-up contract for real: our agent comes up from the user data's
files and answers the worker's mutual-TLS calls. Every failed boot leaves no server and no server group.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pytest
from fake_cloud import MGMT_NET, SERVICE_PROJECT, FakeCloud

from octavia_mesh.worker.drivers.amphora import AgentEndpoint, GrpcAmphoraDriver
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import InstanceSpec
from octavia_mesh.worker.drivers.namespaces import NamespacedInstanceSpec
from octavia_mesh.worker.drivers.openstack_compute import (
    META_AMPHORA,
    ComputeError,
    NovaComputeDriver,
    NovaOptions,
    group_name,
)


@pytest.fixture
def certificates(tmp_path: Path) -> LocalCertificateDriver:
    return LocalCertificateDriver(tmp_path / "ca")


def _driver(cloud: FakeCloud, **overrides: object) -> NovaComputeDriver:
    options = {
        "image_tag": "octavia-mesh-amphora",
        "image_owner": SERVICE_PROJECT,
        "flavor_id": "amphora-flavor",
        "network_id": MGMT_NET[0],
        "security_group_ids": ("lb-mgmt-sec-grp",),
        "agent_port": cloud.nova.agent_port,
        "poll_interval_s": 0.05,
        "boot_timeout_s": 10.0,
        "delete_timeout_s": 10.0,
        "health_endpoints": ("127.0.0.1:1",),
    } | overrides
    return NovaComputeDriver(cloud.connection(), NovaOptions(**options))  # type: ignore[arg-type]


def _spec(certificates: LocalCertificateDriver, lb_id: str | None = None) -> InstanceSpec:
    amphora_id = str(uuid.uuid4())
    identity = certificates.issue_amphora_certificate(amphora_id, dt.timedelta(days=1))
    if lb_id:
        return NamespacedInstanceSpec(amphora_id, identity, load_balancer_id=lb_id, vip_address="10.0.0.5")
    return InstanceSpec(amphora_id, identity)


def _images(cloud: FakeCloud) -> str:
    """The image to boot, among decoys: an older one, another owner's newer one, one not active, untagged."""
    cloud.glance.add_image("amphora-old", ["octavia-mesh-amphora"], SERVICE_PROJECT)
    wanted = cloud.glance.add_image("amphora-new", ["octavia-mesh-amphora"], SERVICE_PROJECT)
    cloud.glance.add_image("amphora-foreign", ["octavia-mesh-amphora"], "someone-else")
    cloud.glance.add_image("amphora-queued", ["octavia-mesh-amphora"], SERVICE_PROJECT, status="queued")
    cloud.glance.add_image("ubuntu", [], SERVICE_PROJECT)
    return wanted


def _alive(cloud: FakeCloud) -> list[str]:
    return [s for s, p in cloud.nova.processes.items() if p.poll() is None]


async def test_boot_runs_the_agent_from_user_data_and_delete_fences(
    cloud: FakeCloud, certificates: LocalCertificateDriver
) -> None:
    image_id = _images(cloud)
    driver = _driver(cloud)
    spec = _spec(certificates)
    instance = await driver.create_instance(spec)

    server = cloud.nova.servers[instance.compute_id]
    assert server["name"] == f"amphora-{spec.amphora_id}"
    assert server["image"]["id"] == image_id
    assert server["flavor"]["original_name"] == "amphora-flavor"
    assert server["_networks"] == [{"uuid": MGMT_NET[0]}]
    assert server["security_groups"] == [{"name": "lb-mgmt-sec-grp"}]
    assert server["config_drive"] == "True"  # the private key stays off the metadata service
    assert server["metadata"] == {META_AMPHORA: spec.amphora_id}
    data = base64.b64decode(server["_user_data"]).decode()
    files = {f["path"]: f for f in json.loads(data.split("\n", 1)[1])["write_files"]}
    assert files["/etc/octavia-mesh/agent.key"]["permissions"] == "0600"
    env = files["/etc/octavia-mesh/agent.env"]["content"]
    assert f"OCTAVIA_MESH_AGENT_AMPHORA_ID={spec.amphora_id}\n" in env
    assert "OCTAVIA_MESH_AGENT_HEALTH_ENDPOINTS=127.0.0.1:1\n" in env
    address = server["addresses"][MGMT_NET[1]][0]["addr"]
    assert instance.management_address == f"{address}:{cloud.nova.agent_port}"

    # The image's agent answers the controller over mutual TLS, as the amphora it was told it is.
    agents = GrpcAmphoraDriver(certificates.controller_certificate())
    try:
        await agents.wait_until_reachable(AgentEndpoint(instance.management_address, spec.amphora_id), 30)
    finally:
        await agents.close()

    assert await driver.get_instance(spec.amphora_id) == instance  # by amphora id: before the row has the server
    assert await driver.get_instance(instance.compute_id) == instance
    assert await driver.list_instances() == [spec.amphora_id]
    assert await driver.create_instance(spec) == instance  # idempotent: no second server
    assert len(cloud.nova.servers) == 1

    cloud.nova.delete_delay_s = 0.5  # Nova deletes asynchronously: the driver waits until it is gone
    started = time.monotonic()
    await driver.delete_instance(instance.compute_id)
    assert time.monotonic() - started >= 0.4
    assert cloud.nova._visible() == [] and _alive(cloud) == []
    assert await driver.get_instance(instance.compute_id) is None
    assert await driver.list_instances() == []
    await driver.delete_instance(instance.compute_id)  # idempotent


async def test_failed_boot_leaves_no_server(cloud: FakeCloud, certificates: LocalCertificateDriver) -> None:
    _images(cloud)
    driver = _driver(cloud)
    cloud.nova.fail_boots.append("Build of instance aborted: Failure prepping block device.")
    with pytest.raises(ComputeError, match="Failure prepping block device"):
        await driver.create_instance(_spec(certificates))
    assert cloud.nova._visible() == [] and cloud.nova.groups == {}
    assert any(m == "DELETE" for m, _, _ in cloud.nova.requests)  # the ERROR server was deleted, not left


async def test_no_image_boots_nothing(cloud: FakeCloud, certificates: LocalCertificateDriver) -> None:
    cloud.glance.add_image("amphora-foreign", ["octavia-mesh-amphora"], "someone-else")
    with pytest.raises(ComputeError, match="no active amphora image tagged 'octavia-mesh-amphora' owned by"):
        await _driver(cloud).create_instance(_spec(certificates))
    assert cloud.nova.servers == {} and not any(m == "POST" for m, _, _ in cloud.nova.requests)


async def test_boot_timeout_deletes_the_server(cloud: FakeCloud, certificates: LocalCertificateDriver) -> None:
    _images(cloud)
    original = cloud.nova._create

    def stuck(body: dict) -> tuple[int, object]:  # a server that stays in BUILD
        status, answer = original(body)
        cloud.nova.servers[answer["server"]["id"]]["status"] = "BUILD"
        return status, answer

    cloud.nova._create = stuck  # type: ignore[method-assign]
    with pytest.raises(ComputeError, match="did not boot"):
        await _driver(cloud, boot_timeout_s=0.5).create_instance(_spec(certificates))
    assert cloud.nova._visible() == [] and _alive(cloud) == []


async def test_active_standby_pair_is_anti_affine(cloud: FakeCloud, certificates: LocalCertificateDriver) -> None:
    _images(cloud)
    driver = _driver(cloud)
    lb_id = str(uuid.uuid4())
    first, second = _spec(certificates, lb_id), _spec(certificates, lb_id)
    one, two = await asyncio.gather(driver.create_instance(first), driver.create_instance(second))
    (group,) = cloud.nova.groups.values()
    assert group["name"] == group_name(lb_id) and group["policy"] == "anti-affinity"
    assert sorted(group["members"]) == sorted([one.compute_id, two.compute_id])
    assert cloud.nova.servers[one.compute_id]["hostId"] != cloud.nova.servers[two.compute_id]["hostId"]

    # A third member finds no host (two hosts): Nova's fault, and the failed server is deleted.
    with pytest.raises(ComputeError, match="No valid host was found"):
        await driver.create_instance(_spec(certificates, lb_id))
    assert len(cloud.nova._visible()) == 2 and len(cloud.nova.groups) == 1

    await driver.delete_instance(one.compute_id)
    assert len(cloud.nova.groups) == 1  # the survivor still needs it
    await driver.delete_instance(second.amphora_id)  # by amphora id (orphan reaping names instances so)
    assert cloud.nova.groups == {} and cloud.nova._visible() == []


async def test_failed_first_boot_of_a_pair_removes_its_group(
    cloud: FakeCloud, certificates: LocalCertificateDriver
) -> None:
    _images(cloud)
    cloud.nova.fail_boots.append("Exceeded maximum number of retries.")
    with pytest.raises(ComputeError, match="Exceeded maximum number of retries"):
        await _driver(cloud).create_instance(_spec(certificates, str(uuid.uuid4())))
    assert cloud.nova.groups == {} and cloud.nova._visible() == []


async def test_a_boot_left_in_build_is_replaced_not_duplicated(
    cloud: FakeCloud, certificates: LocalCertificateDriver
) -> None:
    """A worker that died while its server was building left it in BUILD; the retried boot deletes it."""
    _images(cloud)
    spec = _spec(certificates)
    stale = cloud.nova.add_server(f"amphora-{spec.amphora_id}")
    cloud.nova.servers[stale].update(status="BUILD", metadata={META_AMPHORA: spec.amphora_id})
    driver = _driver(cloud)
    assert await driver.get_instance(spec.amphora_id) is None  # not serving: the flow boots again
    instance = await driver.create_instance(spec)
    assert [s["id"] for s in cloud.nova._visible()] == [instance.compute_id] != [stale]
    await driver.delete_instance(instance.compute_id)
