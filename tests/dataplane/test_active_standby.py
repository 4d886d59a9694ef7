"""ACTIVE_STANDBY load balancers: two amphorae in network namespaces, the VIP held by keepalived (VRRP).

A flavor with ``{"loadbalancer_topology": "ACTIVE_STANDBY"}`` gets a MASTER and a BACKUP amphora, each in its
own network namespace on the load balancer's bridge, with the same HAProxy configuration; the VIP (on the
local VIP subnet, as for SINGLE) answers from whichever holds it. These tests kill the master (agent,
HAProxy and keepalived) under bounded load and count the failed requests, kill HAProxy alone, rebuild
amphorae through failovers, and check that deleting the load balancer leaves no namespace, link, process
or file behind.

They need root (namespaces, veths, VRRP); keepalived comes from the distribution's packages, installed by
``make test``'s set-up (scripts/test.sh) when missing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dataplane_helpers import (
    AMPHORAE,
    LBS,
    amphora_home,
    amphorae_of,
    create_lb,
    delete_lb,
    get,
    processes_mentioning,
    wait_lb,
    wait_until,
)
from support import Rest, ensure_keepalived, random_vip_in

from octavia_mesh.cli.mesh import Mesh

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="ACTIVE_STANDBY needs root: network namespaces, veth links and keepalived (VRRP)"
)

#: The worker's default VRRP advertisement interval: a dead master is replaced after about 3.6 of them.
ADVERT_S = 0.1
#: The longest a dead master may leave the VIP unanswered (3 advertisements, the skew, a loaded machine).
TAKEOVER_BOUND_S = 4 * ADVERT_S + 2.0
#: Clients of the rebuild and handover tests wait as long as real ones would: a SYN that reached the old master
#: in the ~0.1 s between its graceful stop (it drops the VIP) and the new master's gratuitous ARP is dropped,
#: and TCP sends it again after 1 s. Such a request is late, not failed.
PATIENT_S = 2.0
#: So the longest pause may reach that 1 s retransmission plus the skew, plus stalls of this loaded 2-core
#: machine; an outage (a master killed, not stopped, at Octavia's 1 s adverts) lasts 3 s and more.
HANDOVER_BOUND_S = 2.5


def own_vip(api: Rest) -> str:
    """A VIP of the upper range of the mesh's own local subnet: the host routes an ACTIVE_STANDBY VIP to its
    bridge, which would hide a SINGLE load balancer of this mesh that got the same (lowest free) address."""
    return random_vip_in(api, third=range(230, 255), fourth=range(2, 255))


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False).stdout


def netns(amphora_id: str) -> str:
    return f"om-amp-{amphora_id.replace('-', '')[:12]}"


def holds(amphora_id: str, address: str) -> bool:
    """Whether the amphora's namespace has ``address`` on its link (keepalived put the VIP there)."""
    return f" {address}/" in ip("-n", netns(amphora_id), "-4", "-o", "addr", "show", "dev", "eth0")


def namespace_pids(amphora_id: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", netns(amphora_id)).split()]


def kill_amphora(amphora_id: str) -> None:
    """SIGKILL everything in the amphora's namespace (its agent, HAProxy, keepalived and their children) at once.
    A process that ended between the listing and its kill (a keepalived check script) is gone as wanted."""
    for pid in namespace_pids(amphora_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def live(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(pid)
        except (OSError, IndexError):
            continue
    return out


@dataclass
class Load:
    """Bounded HTTP load on a VIP: ``clients`` threads, a fresh connection per request, a pause between them,
    for at most ``limit_s``. Records (time, ok) for every request."""

    address: str
    port: int
    clients: int = 4
    pause_s: float = 0.01
    timeout_s: float = 0.5
    limit_s: float = 30.0
    results: list[tuple[float, bool]] = field(default_factory=list)
    #: Failed requests: when each began (from the start), how long it took, and what it got.
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            try:
                status = get(self.address, self.port, timeout=self.timeout_s).status
                ok, what = status == 200, str(status)
            except Exception as exc:
                ok, what = False, type(exc).__name__
            self.results.append((time.monotonic(), ok))
            if not ok:
                self.errors.append(f"{began - self.started:.3f}s+{time.monotonic() - began:.3f}s {what}")
            time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.ended = time.monotonic()

    def failures(self, since: float = 0.0) -> list[float]:
        return [t for t, ok in self.results if not ok and t >= since]

    def succeeded(self, since: float = 0.0) -> int:
        return sum(1 for t, ok in self.results if ok and t >= since)

    def failed_share(self, since: float = 0.0) -> float:
        done = [ok for t, ok in self.results if t >= since]
        return done.count(False) / len(done) if done else 0.0

    def longest_gap(self, since: float | None = None) -> float:
        """The longest time without a successful request from ``since`` (default: the start) to the end: how
        long the VIP went unanswered. One slow request on a loaded machine makes no gap: the others go on."""
        start = self.started if since is None else since
        times = [start, *sorted(t for t, ok in self.results if ok and t >= start), self.ended]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keepalived() -> str:
    return ensure_keepalived()


@pytest.fixture(scope="module")
def ha_flavor(api: Rest, keepalived: str) -> Iterator[str]:
    profile = api.ok(
        "POST",
        "/v2/lbaas/flavorprofiles",
        {
            "flavorprofile": {
                "name": "active-standby",
                "provider_name": "amphora",
                "flavor_data": '{"loadbalancer_topology": "ACTIVE_STANDBY"}',
            }
        },
    )["flavorprofile"]
    flavor = api.ok(
        "POST", "/v2/lbaas/flavors", {"flavor": {"name": "active-standby", "flavor_profile_id": profile["id"]}}
    )["flavor"]
    yield flavor["id"]
    api.delete(f"/v2/lbaas/flavors/{flavor['id']}")
    api.delete(f"/v2/lbaas/flavorprofiles/{profile['id']}")


def tree(backends: list[Any], port: int) -> list[dict[str, Any]]:
    members = [{"address": b.address, "protocol_port": b.port} for b in backends]
    return [
        {
            "protocol": "HTTP",
            "protocol_port": port,
            "default_pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "members": members},
        }
    ]


@dataclass
class Pair:
    api: Rest
    mesh: Mesh
    lb: dict[str, Any]
    port: int

    @property
    def vip(self) -> str:
        return str(self.lb["vip_address"])

    def amphorae(self) -> list[dict[str, Any]]:
        return [a for a in amphorae_of(self.api, self.lb["id"]) if a["status"] == "ALLOCATED"]

    def holder(self) -> dict[str, Any]:
        """The amphora holding the VIP (exactly one must)."""
        holding = [a for a in self.amphorae() if holds(a["id"], self.vip)]
        assert len(holding) == 1, f"the VIP is held by {len(holding)} amphorae"
        return holding[0]

    def serves(self) -> bool:
        try:
            return get(self.vip, self.port, timeout=1.0).status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def pair(api: Rest, dataplane_mesh: Mesh, ha_flavor: str) -> Iterator[Pair]:
    from dataplane_helpers import Backend

    backends = [Backend(f"ha-member{i}") for i in range(2)]
    lb = create_lb(api, "active-standby", flavor_id=ha_flavor, listeners=tree(backends, 8080), vip_address=own_vip(api))
    try:
        yield Pair(api, dataplane_mesh, lb, 8080)
    finally:
        delete_lb(api, lb["id"])
        for backend in backends:
            backend.close()


# ------------------------------------------------------------------------------------------- tests


def test_pair_of_namespaced_amphorae_serves_the_vip(pair: Pair) -> None:
    amphorae = pair.amphorae()
    assert sorted(a["role"] for a in amphorae) == ["BACKUP", "MASTER"]
    assert {a["role"]: a["vrrp_priority"] for a in amphorae} == {"MASTER": 100, "BACKUP": 90}
    assert all(a["vrrp_id"] == 1 and a["vrrp_interface"] == "eth0" and a["ha_ip"] == pair.vip for a in amphorae)
    links = {a["vrrp_ip"] for a in amphorae}
    assert len(links) == 2 and all(link.startswith("169.254.") for link in links), links
    assert all(a["lb_network_ip"] == a["vrrp_ip"] for a in amphorae)
    for amphora in amphorae:  # each agent runs in its own namespace, listening on its link address
        assert Path("/run/netns", netns(amphora["id"])).exists()
        assert live(namespace_pids(amphora["id"])), f"nothing runs in {netns(amphora['id'])}"
    # The MASTER won the first election and holds the VIP; the VIP answers through it, from both members.
    assert pair.holder()["role"] == "MASTER"
    seen = {get(pair.vip, pair.port).body.strip() for _ in range(6)}
    assert seen == {"ha-member0", "ha-member1"}


def test_both_amphorae_get_the_same_configuration(pair: Pair) -> None:
    configs = {
        a["role"]: (amphora_home(pair.mesh, a["id"]) / "state" / "lb" / pair.lb["id"] / "haproxy.cfg").read_text()
        for a in pair.amphorae()
    }
    assert configs["MASTER"] == configs["BACKUP"]
    assert f"bind {pair.vip}:{pair.port}" in configs["MASTER"]
    # keepalived: the same instance, each with its own address, the other as its only unicast peer.
    vrrp = {
        a["role"]: (amphora_home(pair.mesh, a["id"]) / "state" / "vrrp" / "keepalived.conf").read_text()
        for a in pair.amphorae()
    }
    by_role = {a["role"]: a for a in pair.amphorae()}
    for role, other in (("MASTER", "BACKUP"), ("BACKUP", "MASTER")):
        assert f"unicast_src_ip {by_role[role]['vrrp_ip']}" in vrrp[role]
        assert f"unicast_peer {{\n        {by_role[other]['vrrp_ip']}\n    }}" in vrrp[role]
        assert f"{pair.vip}/32 dev eth0" in vrrp[role] and "nopreempt" in vrrp[role]


def test_haproxy_killed_on_the_master_keeps_serving(pair: Pair) -> None:
    master = pair.holder()
    pidfile = amphora_home(pair.mesh, master["id"]) / "state" / "lb" / pair.lb["id"] / "haproxy.pid"
    old = int(pidfile.read_text())
    with Load(pair.vip, pair.port, limit_s=15.0) as load:
        time.sleep(0.5)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        # The agent restarts its HAProxy at once; keepalived's check (every 1 s, fall 2) need not move the VIP.
        wait_until(lambda: int(pidfile.read_text()) != old, 10.0, "HAProxy restarted")
        wait_until(pair.serves, 5.0, "the VIP answers again")
        time.sleep(2.5)
    failures, gap = load.failures(killed), load.longest_gap(killed)
    print(f"\nHAProxy killed on the master: {len(failures)} of {len(load.results)} requests failed, gap {gap:.2f}s")
    assert gap < 2.0, "the VIP went unanswered for too long after HAProxy died"
    assert load.failed_share(killed + 2.0) <= 0.01


def test_master_killed_under_load_the_backup_takes_over(pair: Pair) -> None:
    master, backup = pair.holder(), next(a for a in pair.amphorae() if not holds(a["id"], pair.vip))
    with Load(pair.vip, pair.port, limit_s=30.0) as load:
        time.sleep(1.0)
        assert load.failed_share() <= 0.01, f"requests failed before anything was killed: {load.errors}"
        killed = time.monotonic()
        kill_amphora(master["id"])  # the amphora dies: its agent, HAProxy and keepalived at once
        wait_until(lambda: holds(backup["id"], pair.vip), TAKEOVER_BOUND_S, "the BACKUP to take the VIP")
        took_over = time.monotonic()
        wait_until(pair.serves, 2.0, "the VIP to answer from the BACKUP")
        time.sleep(2.0)  # traffic goes on through the new master
    failures, gap = load.failures(killed), load.longest_gap(killed)
    print(
        f"\nmaster killed: VIP taken over after {took_over - killed:.2f}s; {len(failures)} of {len(load.results)}"
        f" requests failed; no answer for {gap:.2f}s"
    )
    assert gap < TAKEOVER_BOUND_S
    assert load.succeeded(took_over) > 50, "traffic did not continue after the takeover"
    assert load.failed_share(took_over + 0.5) <= 0.01, "requests failed after the BACKUP held the VIP"

    # The dead amphora is rebuilt by an amphora failover, with its role, while the survivor keeps serving.
    with Load(pair.vip, pair.port, clients=2, timeout_s=PATIENT_S, limit_s=60.0) as load:
        response = pair.api.call("PUT", f"{AMPHORAE}/{master['id']}/failover")
        # 409: the health service noticed the silent amphora first and its failover is under way.
        assert response.status_code in (202, 409), response.text
        wait_until(lambda: master["id"] not in {a["id"] for a in pair.amphorae()}, 60.0, "the dead one replaced")
        wait_lb(pair.api, pair.lb["id"], timeout=60.0)
    print(f"rebuild: {len(load.failures())} of {len(load.results)} requests failed, gap {load.longest_gap():.2f}s")
    assert not load.failures(), f"requests failed while the dead amphora was rebuilt: {load.errors}"
    assert load.longest_gap() < HANDOVER_BOUND_S, "the VIP went unanswered while the dead amphora was rebuilt"
    amphorae = pair.amphorae()
    assert sorted(a["role"] for a in amphorae) == ["BACKUP", "MASTER"]
    assert master["id"] not in {a["id"] for a in amphorae}
    assert not Path("/run/netns", netns(master["id"])).exists(), "the dead amphora's namespace is left"
    assert pair.holder()["id"] == backup["id"], "the replacement took the VIP back (nopreempt)"
    replacement = next(a for a in amphorae if a["id"] != backup["id"])
    vrrp = (amphora_home(pair.mesh, backup["id"]) / "state" / "vrrp" / "keepalived.conf").read_text()
    assert f"unicast_peer {{\n        {replacement['vrrp_ip']}\n    }}" in vrrp, "the survivor's peer is not updated"
    # keepalived's processes left by the killed amphora are gone (no zombie, nothing in the old namespace).
    assert not processes_mentioning(str(amphora_home(pair.mesh, master["id"])))


def test_load_balancer_failover_rebuilds_both_one_at_a_time(pair: Pair) -> None:
    before = {a["id"] for a in pair.amphorae()}
    with Load(pair.vip, pair.port, clients=2, timeout_s=PATIENT_S, limit_s=90.0) as load:
        pair.api.ok("PUT", f"{LBS}/{pair.lb['id']}/failover", status=202)
        wait_lb(pair.api, pair.lb["id"], timeout=90.0)
        time.sleep(0.5)
    amphorae = pair.amphorae()
    assert sorted(a["role"] for a in amphorae) == ["BACKUP", "MASTER"]
    assert not before & {a["id"] for a in amphorae}, "an amphora was not replaced"
    pair.holder()
    failures, gap = load.failures(), load.longest_gap()
    print(f"\nload balancer failover: {len(failures)} of {len(load.results)} requests failed, gap {gap:.2f}s")
    # The standby is replaced first; then the master's keepalived stops gracefully (priority 0) and the first
    # replacement takes the VIP over within the skew time: one short gap. A request in flight at that moment
    # may be reset (its connection's next packets reach the new master, which never saw it: the pair shares no
    # connection state, as in Octavia), so each client may lose the one it had in flight; no more.
    assert len(failures) <= load.clients, f"requests failed during the load balancer failover: {load.errors}"
    assert gap < HANDOVER_BOUND_S, "the VIP went unanswered for too long"


def test_whole_pair_lost_is_rebuilt_by_a_load_balancer_failover(pair: Pair) -> None:
    lost = pair.amphorae()
    for amphora in lost:  # both amphorae die: nothing answers the VIP any more
        kill_amphora(amphora["id"])
    wait_until(lambda: not pair.serves(), 5.0, "the VIP to go unanswered")
    response = pair.api.call("PUT", f"{LBS}/{pair.lb['id']}/failover")
    assert response.status_code in (202, 409), response.text  # 409: the health service got there first

    def rebuilt() -> bool:
        now = pair.amphorae()
        return len(now) == 2 and not {a["id"] for a in lost} & {a["id"] for a in now}

    wait_until(rebuilt, 120.0, "both amphorae replaced")
    wait_lb(pair.api, pair.lb["id"], timeout=60.0)
    wait_until(pair.serves, 5.0, "the VIP to answer again")
    amphorae = pair.amphorae()
    assert sorted(a["role"] for a in amphorae) == ["BACKUP", "MASTER"]
    assert len({a["vrrp_ip"] for a in amphorae}) == 2
    pair.holder()
    for amphora in lost:
        assert not Path("/run/netns", netns(amphora["id"])).exists()


def test_keepalived_killed_is_reaped_and_restarted(pair: Pair) -> None:
    backup = next(a for a in pair.amphorae() if not holds(a["id"], pair.vip))
    vrrp_dir = amphora_home(pair.mesh, backup["id"]) / "state" / "vrrp"
    parent = int((vrrp_dir / "keepalived.pid").read_text())
    child = int((vrrp_dir / "vrrp.pid").read_text())
    os.kill(parent, signal.SIGKILL)
    os.kill(child, signal.SIGKILL)

    def restarted() -> bool:
        try:
            return int((vrrp_dir / "keepalived.pid").read_text()) not in (parent, child)
        except (OSError, ValueError):
            return False

    wait_until(restarted, 10.0, "keepalived restarted by the agent")
    # The agent is a subreaper: the killed keepalived and its VRRP child were reaped, not left as zombies.
    for pid in (parent, child):
        assert not Path(f"/proc/{pid}").exists(), f"keepalived process {pid} was not reaped"
    wait_until(lambda: pair.serves(), 5.0, "the VIP answers")
    assert pair.holder()["id"] != backup["id"]


def test_delete_removes_namespaces_links_processes_and_files(
    api: Rest, dataplane_mesh: Mesh, ha_flavor: str, backends: Any
) -> None:
    lb = create_lb(
        api, "active-standby-gone", flavor_id=ha_flavor, listeners=tree(backends(1), 8081), vip_address=own_vip(api)
    )
    amphorae = amphorae_of(api, lb["id"])
    homes = [amphora_home(dataplane_mesh, a["id"]) for a in amphorae]
    bridge = f"omb{lb['id'].replace('-', '')[:12]}"
    assert len(amphorae) == 2 and Path("/sys/class/net", bridge).exists()
    assert lb["vip_address"] in ip("route", "show", "table", "local")
    delete_lb(api, lb["id"])
    for amphora in amphorae:
        assert not Path("/run/netns", netns(amphora["id"])).exists()
        assert not Path("/sys/class/net", f"omv{amphora['id'].replace('-', '')[:12]}").exists()
    assert not Path("/sys/class/net", bridge).exists()
    assert lb["vip_address"] not in ip("route", "show", "table", "local")
    assert not any(home.exists() for home in homes), "pid files and state are left"
    assert processes_mentioning(*(str(h) for h in homes)) == {}


def test_refused_with_octavias_501_where_active_standby_cannot_run(
    tmp_path_factory: pytest.TempPathFactory, keepalived: str
) -> None:
    from support import assert_fault, start_mesh

    mesh_iter = start_mesh(
        tmp_path_factory,
        "noauth",
        default_project="single-only",
        default_provider="amphora",
        service_env={"OCTAVIA_MESH_API_ACTIVE_STANDBY": "disabled"},
    )
    mesh = next(mesh_iter)
    try:
        rest = Rest(mesh.endpoint)
        profile = rest.ok(
            "POST",
            "/v2/lbaas/flavorprofiles",
            {
                "flavorprofile": {
                    "name": "ha",
                    "provider_name": "amphora",
                    "flavor_data": '{"loadbalancer_topology": "ACTIVE_STANDBY"}',
                }
            },
        )["flavorprofile"]
        flavor = rest.ok("POST", "/v2/lbaas/flavors", {"flavor": {"name": "ha", "flavor_profile_id": profile["id"]}})
        subnet = rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"]
        body = {"loadbalancer": {"vip_subnet_id": subnet, "flavor_id": flavor["flavor"]["id"]}}
        assert_fault(
            rest.post(LBS, body),
            501,
            "Provider 'amphora' does not support a requested option: loadbalancer_topology ACTIVE_STANDBY: it is "
            "disabled in this deployment (OCTAVIA_MESH_API_ACTIVE_STANDBY=disabled). This deployment builds SINGLE "
            "load balancers (one amphora).",
        )
        assert rest.ok("GET", LBS)["loadbalancers"] == []  # nothing written, nothing left PENDING_* or ERROR
    finally:
        next(mesh_iter, None)


def test_without_root_the_worker_says_what_is_missing(keepalived: str) -> None:
    from octavia_mesh.worker.drivers.namespaces import missing_for_active_standby

    assert missing_for_active_standby(euid=1000, find=lambda name: f"/usr/sbin/{name}", netns=True) == [
        "root privileges (network namespaces, veth links, VRRP)"
    ]
    assert missing_for_active_standby(euid=0, find=lambda name: None, netns=True) == [
        "the ip command (package iproute2)",
        "keepalived (Debian/Ubuntu package keepalived: apt-get install keepalived)",
    ]
    assert missing_for_active_standby() == []  # this machine (root, keepalived installed above) can
