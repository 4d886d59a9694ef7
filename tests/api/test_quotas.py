"""Quotas through the REST edge: show, defaults, update, reset, list, enforcement (also under concurrency), RBAC."""

from __future__ import annotations

import threading
import uuid

from support import Rest, assert_fault

QUOTAS = "/v2/lbaas/quotas"
LBS = "/v2/lbaas/loadbalancers"
SUBNET = "11111111-1111-1111-1111-111111111111"


def _project() -> str:
    return uuid.uuid4().hex


def _doc(project: str, **limits: int) -> dict[str, object]:
    """Octavia's quota document with every limit -1 (the test mesh's defaults) unless given."""
    lb = limits.get("load_balancer", -1)
    hm = limits.get("health_monitor", -1)
    return {
        "project_id": project,
        "loadbalancer": lb,
        "load_balancer": lb,
        "listener": limits.get("listener", -1),
        "member": limits.get("member", -1),
        "pool": limits.get("pool", -1),
        "healthmonitor": hm,
        "health_monitor": hm,
        "l7policy": limits.get("l7policy", -1),
        "l7rule": limits.get("l7rule", -1),
        "tenant_id": project,
    }


def test_show_update_reset(rest: Rest) -> None:
    project = _project()
    assert rest.ok("GET", f"{QUOTAS}/{project}") == {"quota": _doc(project)}
    assert rest.ok("GET", f"{QUOTAS}/{project}/default") == {"quota": _doc(project)}
    assert rest.ok("GET", f"{QUOTAS}/defaults") == {"quota": _doc("defaults")}
    # A project nobody set a quota for is not listed, and cannot be reset.
    assert rest.ok("GET", f"{QUOTAS}?project_id={project}") == {"quotas": [], "quotas_links": []}
    assert_fault(rest.delete(f"{QUOTAS}/{project}"), 404, f"Quotas {project} not found.")

    response = rest.put(f"{QUOTAS}/{project}", {"quota": {"loadbalancer": 50, "listener": -1}})
    assert response.status_code == 202, response.text
    assert response.json() == {"quota": _doc(project, load_balancer=50)}
    assert list(response.json()["quota"]) == list(_doc(project))  # Octavia's key order
    assert rest.ok("GET", f"{QUOTAS}/{project}") == {"quota": _doc(project, load_balancer=50)}
    assert rest.ok("GET", f"{QUOTAS}/{project}/default") == {"quota": _doc(project)}
    # A partial update keeps the other limits.
    changed = rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"l7rule": 0, "healthmonitor": 9}}, status=202)
    assert changed == {"quota": _doc(project, load_balancer=50, l7rule=0, health_monitor=9)}
    listed = rest.ok("GET", f"{QUOTAS}?project_id={project}")
    assert listed == {"quotas": [_doc(project, load_balancer=50, l7rule=0, health_monitor=9)], "quotas_links": []}

    response = rest.delete(f"{QUOTAS}/{project}")
    assert response.status_code == 202 and response.content == b""
    assert rest.ok("GET", f"{QUOTAS}/{project}") == {"quota": _doc(project)}
    # Octavia keeps the reset project in the list, with the defaults.
    assert rest.ok("GET", f"{QUOTAS}?project_id={project}")["quotas"] == [_doc(project)]


def test_aliases_nulls_and_bounds(rest: Rest) -> None:
    project = _project()

    def put(body: dict[str, object]) -> dict[str, object]:
        return rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": body}, status=202)["quota"]

    assert put({"loadbalancer": 3, "load_balancer": 4})["load_balancer"] == 3  # the current spelling wins
    assert put({"load_balancer": 7, "loadbalancer": None})["loadbalancer"] == -1  # null = the default
    assert put({"load_balancer": 7})["loadbalancer"] == 7
    assert put({"health_monitor": 5, "member": 2000000000, "pool": 0}) == _doc(
        project, load_balancer=7, health_monitor=5, member=2000000000, pool=0
    )
    assert put({"listener": "12", "l7policy": True})["listener"] == 12  # WSME converts with int()
    assert put({"member": None})["member"] == -1


def test_bad_input_writes_nothing(rest: Rest) -> None:
    project = _project()
    rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"pool": 4}}, status=202)
    path = f"{QUOTAS}/{project}"
    cases = [
        (
            {"quota": {"loadbalancer": -2}},
            "Invalid input for field/attribute loadbalancer. Value: '-2'. Value should be greater or equal to -1",
        ),
        (
            {"quota": {"listener": 2000000001}},
            "Invalid input for field/attribute listener. Value: '2000000001'. "
            "Value should be lower or equal to 2000000000",
        ),
        (
            {"quota": {"loadbalancer": "abc"}},
            "Invalid input for field/attribute quotas. Value: '{'quota': {'loadbalancer': 'abc'}}'. "
            "invalid literal for int() with base 10: 'abc'",
        ),
        (
            {"quota": {"member": [1]}},
            "Invalid input for field/attribute quotas. Value: '{'quota': {'member': [1]}}'. "
            "int() argument must be a string, a bytes-like object or a real number, not 'list'",
        ),
        ({"quota": {"bogus": 1}}, "Unknown attribute for argument quotas.quota: bogus"),
        ({"quota": {"project_id": "x", "a": 1}}, "Unknown attributes for argument quotas.quota: a, project_id"),
        ({"foo": {}}, "Unknown attribute for argument quotas: foo"),
        ({"quota": 5}, "Invalid input for argument quotas.quota"),
        ({}, 'Missing argument: "quotas"'),
        # A valid limit next to a bad one is not applied either.
        ({"quota": {"pool": 9, "l7rule": -5}}, None),
    ]
    for body, message in cases:
        assert_fault(rest.put(path, body), 400, message)
    assert_fault(rest.put(path, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.call("PUT", path), 400, 'Missing argument: "quotas"')
    long_project = "a" * 37
    assert_fault(
        rest.put(f"{QUOTAS}/{long_project}", {"quota": {"pool": 1}}),
        400,
        f"Invalid input for field/attribute project_id. Value: '{long_project}'. "
        "Value should have a maximum character requirement of 36",
    )
    assert rest.ok("GET", path) == {"quota": _doc(project, pool=4)}


def test_list_pagination_sort_and_filters(rest: Rest) -> None:
    prefix = uuid.uuid4().hex[:8]
    projects = sorted(f"{prefix}-{i}" for i in range(3))
    for i, project in enumerate(projects):
        rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"pool": i}}, status=202)
    everything = rest.ok("GET", QUOTAS)["quotas"]
    mine = [q["project_id"] for q in everything if q["project_id"].startswith(prefix)]
    assert mine == projects  # ordered by project
    first = rest.ok("GET", f"{QUOTAS}?project_id={projects[0]}&project_id={projects[1]}&limit=1")
    assert [q["project_id"] for q in first["quotas"]] == [projects[0]]
    (link,) = first["quotas_links"]
    assert link["rel"] == "next" and f"marker={projects[0]}" in link["href"]
    second = rest.session.get(link["href"], timeout=10).json()
    assert [q["project_id"] for q in second["quotas"]] == [projects[1]]
    assert [x["rel"] for x in second["quotas_links"]] == ["previous"]
    by_pool = rest.ok("GET", f"{QUOTAS}?pool=2")["quotas"]
    assert projects[2] in [q["project_id"] for q in by_pool] and projects[1] not in [q["project_id"] for q in by_pool]
    backwards = rest.ok("GET", f"{QUOTAS}?sort=project_id:desc")["quotas"]
    assert [q["project_id"] for q in backwards if q["project_id"].startswith(prefix)] == projects[::-1]
    assert_fault(rest.get(f"{QUOTAS}?bogus=1"), 400)
    assert_fault(rest.get(f"{QUOTAS}?sort=bogus"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{QUOTAS}?pool=x"), 400, "Invalid input for field/attribute pool. Value: 'x'.")


def _create_lb(rest: Rest, project: str) -> object:
    return rest.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": project}})


def test_load_balancer_quota_is_enforced(rest: Rest) -> None:
    project = _project()
    rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"loadbalancer": 2}}, status=202)
    created = []
    for _ in range(5):  # bounded: the third create must fail
        response = _create_lb(rest, project)
        if response.status_code != 201:
            assert_fault(response, 403, "Quota has been met for resources: Load Balancer")
            break
        created.append(response.json()["loadbalancer"]["id"])
    assert len(created) == 2
    listed = rest.ok("GET", f"{LBS}?project_id={project}")["loadbalancers"]
    assert sorted(lb["id"] for lb in listed) == sorted(created)
    # Deleting one gives its unit back once the provider has removed it.
    rest.wait_lb_active(created[0])
    assert rest.delete(f"{LBS}/{created[0]}").status_code == 204
    rest.wait_status(f"{LBS}/{created[0]}", "loadbalancer", "DELETED")
    response = _create_lb(rest, project)
    assert response.status_code == 201, response.text
    assert_fault(_create_lb(rest, project), 403, "Quota has been met for resources: Load Balancer")
    # Zero forbids any; a reset returns to the unlimited default.
    other = _project()
    rest.ok("PUT", f"{QUOTAS}/{other}", {"quota": {"load_balancer": 0}}, status=202)
    assert_fault(_create_lb(rest, other), 403, "Quota has been met for resources: Load Balancer")
    rest.delete(f"{QUOTAS}/{other}")
    assert _create_lb(rest, other).status_code == 201


def test_concurrent_creates_never_exceed_the_quota(rest: Rest) -> None:
    project = _project()
    rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"loadbalancer": 5}}, status=202)
    workers = 20
    barrier = threading.Barrier(workers + 1)
    statuses: list[int] = []
    faults: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    seen: list[int] = []

    def create() -> None:
        client = Rest(rest.base_url)
        barrier.wait(timeout=30)
        response = _create_lb(client, project)
        with lock:
            statuses.append(response.status_code)
            if response.status_code != 201:
                faults.append(response.json()["faultstring"])

    def watch() -> None:
        client = Rest(rest.base_url)
        for _ in range(2000):  # bounded
            seen.append(len(client.ok("GET", f"{LBS}?project_id={project}")["loadbalancers"]))
            if done.is_set():
                break

    threads = [threading.Thread(target=create) for _ in range(workers)]
    watcher = threading.Thread(target=watch)
    for thread in threads:
        thread.start()
    watcher.start()
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=60)
    assert sorted(statuses) == [201] * 5 + [403] * 15, statuses
    assert set(faults) == {"Quota has been met for resources: Load Balancer"}
    assert len(rest.ok("GET", f"{LBS}?project_id={project}")["loadbalancers"]) == 5
    assert seen and max(seen) <= 5


def test_rbac(secure_rest: Rest) -> None:
    mine, other = _project(), _project()
    admin = secure_rest.as_(_project(), "admin")
    member = secure_rest.as_(mine, "member")
    reader = secure_rest.as_(mine, "reader")
    quota_admin = secure_rest.as_(_project(), "load-balancer_quota_admin")
    denied = "Policy does not allow this request to be performed."
    admin.ok("PUT", f"{QUOTAS}/{mine}", {"quota": {"pool": 1}}, status=202)
    admin.ok("PUT", f"{QUOTAS}/{other}", {"quota": {"pool": 2}}, status=202)
    assert member.ok("GET", f"{QUOTAS}/{mine}")["quota"]["pool"] == 1
    assert reader.ok("GET", f"{QUOTAS}/{mine}/default")["quota"]["pool"] == -1
    assert reader.ok("GET", f"{QUOTAS}/defaults") == {"quota": _doc("defaults")}
    assert_fault(member.get(f"{QUOTAS}/{other}"), 403, denied)
    assert_fault(member.get(f"{QUOTAS}/{other}/default"), 403, denied)
    assert_fault(member.put(f"{QUOTAS}/{mine}", {"quota": {"pool": 5}}), 403, denied)
    assert_fault(member.delete(f"{QUOTAS}/{mine}"), 403, denied)
    assert [q["project_id"] for q in reader.ok("GET", QUOTAS)["quotas"]] == [mine]
    assert_fault(member.get(f"{QUOTAS}?project_id={other}"), 403, denied)
    assert_fault(secure_rest.as_(mine).get(f"{QUOTAS}/{mine}"), 403, denied)  # no role at all
    # Octavia 19 refuses its deprecated quota-admin role (deprecated rules are off by default); admins set quotas.
    assert_fault(quota_admin.put(f"{QUOTAS}/{other}", {"quota": {"pool": 3}}), 403, denied)
    assert_fault(quota_admin.get(QUOTAS), 403, denied)
    assert admin.ok("PUT", f"{QUOTAS}/{other}", {"quota": {"pool": 3}}, status=202)["quota"]["pool"] == 3
    listed = {q["project_id"] for q in admin.ok("GET", QUOTAS)["quotas"]}
    assert {mine, other} <= listed
    assert admin.ok("GET", f"{QUOTAS}/{mine}")["quota"]["pool"] == 1
    # Quotas hold in trusted-headers mode too.
    admin.ok("PUT", f"{QUOTAS}/{mine}", {"quota": {"loadbalancer": 0}}, status=202)
    assert_fault(
        member.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET}}),
        403,
        "Quota has been met for resources: Load Balancer",
    )
