"""Ansible's openstack.cloud collection (the ``ansible`` package) against the mesh: a playbook builds a load
balancer, listener, pool, member and health monitor; a second run changes nothing; ``state: absent`` removes it.

Ansible lives in its own virtualenv (it brings its own Jinja2 and collections), cached in the project's ignored
``.cache/ansible-venv`` (``tool_venvs.ansible_venv``). Its openstacksdk is 4.14.0, not our lock's: the
openstack.cloud collection ansible 12.3.0 ships reads ``openstack.version`` after importing only ``openstack``,
which openstacksdk stopped providing in 4.15.0 ("module 'openstack' has no attribute 'version'" on every task).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PROJECT, Rest, start_mesh
from tool_venvs import ansible_venv

from octavia_mesh.cli.mesh import Mesh


@pytest.fixture(scope="module")
def project_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """noauth with a default project: the collection's modules name no project, as a Keystone token would."""
    yield from start_mesh(tmp_path_factory, "noauth", default_project=PROJECT)


PRESENT = """
- hosts: localhost
  gather_facts: false
  tasks:
    - openstack.cloud.loadbalancer:
        cloud: mesh
        name: ansible-lb
        vip_subnet: {subnet}
        wait: true
        timeout: 60
    - openstack.cloud.lb_listener:
        cloud: mesh
        name: ansible-listener
        load_balancer: ansible-lb
        protocol: HTTP
        protocol_port: 80
    - openstack.cloud.lb_pool:
        cloud: mesh
        name: ansible-pool
        listener: ansible-listener
        protocol: HTTP
        lb_algorithm: ROUND_ROBIN
    - openstack.cloud.lb_member:
        cloud: mesh
        name: ansible-member
        pool: ansible-pool
        address: 192.0.2.10
        protocol_port: 8080
    - openstack.cloud.lb_health_monitor:
        cloud: mesh
        name: ansible-hm
        pool: ansible-pool
        type: HTTP
        delay: 5
        health_monitor_timeout: 3
        max_retries: 3
"""

ABSENT = """
- hosts: localhost
  gather_facts: false
  tasks:
    - openstack.cloud.lb_health_monitor: {cloud: mesh, name: ansible-hm, state: absent}
    - openstack.cloud.lb_member: {cloud: mesh, name: ansible-member, pool: ansible-pool, state: absent}
    - openstack.cloud.lb_pool: {cloud: mesh, name: ansible-pool, state: absent}
    - openstack.cloud.lb_listener: {cloud: mesh, name: ansible-listener, load_balancer: ansible-lb, state: absent}
    - openstack.cloud.loadbalancer: {cloud: mesh, name: ansible-lb, state: absent, wait: true, timeout: 60}
"""


ABSENT_LB = """
- hosts: localhost
  gather_facts: false
  tasks:
    - openstack.cloud.loadbalancer: {cloud: mesh, name: ansible-lb, state: absent, wait: true, timeout: 60}
"""


def _play(bin_dir: Path, work: Path, endpoint: str, playbook: str) -> dict[str, int]:
    """Run ``playbook``; returns the recap's counters (``ok``, ``changed``, ``failed``, ...)."""
    clouds = work / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  mesh:\n    auth_type: none\n"
        f"    load_balancer_endpoint_override: {endpoint}\n    network_endpoint_override: {endpoint}\n"
    )
    book = work / "play.yml"
    book.write_text(playbook)
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_HOME": str(work / "home"),
        "ANSIBLE_NOCOLOR": "1",
        # Each task's module goes to its Python over stdin instead of a file written, then run and removed.
        "ANSIBLE_PIPELINING": "True",
    }
    command = [
        str(bin_dir / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={bin_dir / 'python'}",
        str(book),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    recap = re.search(r"localhost\s*:\s*(.*)", done.stdout.split("PLAY RECAP")[-1])
    assert done.returncode == 0 and recap, done.stdout[-4000:] + done.stderr[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


@pytest.mark.timeout(900)  # a run that has not built ansible's virtualenv yet (~60 MB) builds it here
def test_playbook_is_idempotent_and_absent_removes_everything(project_mesh: Mesh, tmp_path: Path) -> None:
    bin_dir = ansible_venv()
    rest = Rest(project_mesh.endpoint)
    subnet = rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"]
    present = PRESENT.format(subnet=subnet)

    first = _play(bin_dir, tmp_path, project_mesh.endpoint, present)
    assert first["failed"] == 0 and first["changed"] == 5, first
    (lb,) = rest.ok("GET", "/v2/lbaas/loadbalancers?name=ansible-lb")["loadbalancers"]
    assert lb["provisioning_status"] == "ACTIVE" and lb["project_id"] == PROJECT
    (pool,) = rest.ok("GET", "/v2/lbaas/pools?name=ansible-pool")["pools"]
    (member,) = rest.ok("GET", f"/v2/lbaas/pools/{pool['id']}/members")["members"]
    assert (member["address"], member["protocol_port"]) == ("192.0.2.10", 8080)
    assert pool["healthmonitor_id"] is not None and pool["listeners"]

    second = _play(bin_dir, tmp_path, project_mesh.endpoint, present)
    assert second["failed"] == 0 and second["changed"] == 0, second

    gone = _play(bin_dir, tmp_path, project_mesh.endpoint, ABSENT)
    assert gone["failed"] == 0 and gone["changed"] == 5, gone
    assert rest.ok("GET", "/v2/lbaas/loadbalancers?name=ansible-lb")["loadbalancers"] == []
    assert rest.ok("GET", "/v2/lbaas/pools?name=ansible-pool")["pools"] == []
    # Absent again changes nothing (lb_member itself fails once its pool is gone, against Octavia too).
    again = _play(bin_dir, tmp_path, project_mesh.endpoint, ABSENT_LB)
    assert again["failed"] == 0 and again["changed"] == 0, again
