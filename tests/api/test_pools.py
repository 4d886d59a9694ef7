"""Pools through the REST edge: create, show, list, update, delete, and their faults."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from support import PROJECT, Rest, assert_fault, mesh_engine, new_listener, new_pool, paused
from tls_material import tls_refs

LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
LBS = "/v2/lbaas/loadbalancers"
CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
KEYS = [
    "id",
    "name",
    "description",
    "provisioning_status",
    "operating_status",
    "admin_state_up",
    "protocol",
    "lb_algorithm",
    "session_persistence",
    "project_id",
    "loadbalancers",
    "listeners",
    "created_at",
    "updated_at",
    "members",
    "tags",
    "tls_container_ref",
    "ca_tls_container_ref",
    "crl_container_ref",
    "tls_enabled",
    "tls_ciphers",
    "tls_versions",
    "alpn_protocols",
    "tenant_id",
]
MATRIX = {
    "HTTP": ("HTTP", "PROXY", "PROXYV2"),
    "HTTPS": ("HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TCP": ("HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TERMINATED_HTTPS": ("HTTP", "PROXY", "PROXYV2"),
    "UDP": ("UDP",),
    "SCTP": ("SCTP",),
}
POOL_PROTOCOLS = ("HTTP", "HTTPS", "PROXY", "PROXYV2", "SCTP", "TCP", "UDP")


@pytest.fixture(scope="module")
def lb(rest: Rest) -> dict[str, Any]:
    return rest.create_lb(name="pools-module")


def test_create_show_update_delete(mesh: Any, rest: Rest) -> None:
    lb = rest.create_lb(name="p-crud")
    listener = new_listener(rest, lb["id"], 80)
    created = rest.ok(
        "POST",
        POOLS,
        {
            "pool": {
                "name": "p1",
                "protocol": "HTTP",
                "lb_algorithm": "ROUND_ROBIN",
                "listener_id": listener["id"],
                "session_persistence": {"type": "APP_COOKIE", "cookie_name": "c"},
                "tags": ["x"],
            }
        },
    )["pool"]
    assert list(created) == KEYS
    expected = {
        "name": "p1",
        "description": "",
        "provisioning_status": "PENDING_CREATE",
        "operating_status": "OFFLINE",
        "admin_state_up": True,
        "protocol": "HTTP",
        "lb_algorithm": "ROUND_ROBIN",
        "session_persistence": {
            "type": "APP_COOKIE",
            "cookie_name": "c",
            "persistence_timeout": None,
            "persistence_granularity": None,
        },
        "project_id": PROJECT,
        "loadbalancers": [{"id": lb["id"]}],
        "listeners": [{"id": listener["id"]}],
        "updated_at": None,
        "members": [],
        "tags": ["x"],
        "tls_container_ref": None,
        "ca_tls_container_ref": None,
        "crl_container_ref": None,
        "tls_enabled": False,
        "tls_ciphers": None,
        "tls_versions": None,
        "alpn_protocols": None,
        "tenant_id": PROJECT,
    }
    assert {k: created[k] for k in expected} == expected
    rest.wait_lb_active(lb["id"])
    pool = rest.wait_status(f"{POOLS}/{created['id']}", "pool")
    url = f"{POOLS}/{pool['id']}"
    assert rest.ok("GET", f"{LISTENERS}/{listener['id']}")["listener"]["default_pool_id"] == pool["id"]
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["pools"] == [{"id": pool["id"]}]
    assert rest.ok("GET", f"{url}?fields=id,lb_algorithm")["pool"] == {"id": pool["id"], "lb_algorithm": "ROUND_ROBIN"}
    assert rest.ok("GET", f"{url}?fields=id&bogus=1")["pool"] == {"id": pool["id"]}  # Octavia ignores the rest

    with paused(mesh):
        updated = rest.ok(
            "PUT",
            url,
            {"pool": {"lb_algorithm": "SOURCE_IP", "session_persistence": None, "description": "d", "tags": []}},
        )["pool"]
        assert updated["provisioning_status"] == "PENDING_UPDATE" and updated["lb_algorithm"] == "SOURCE_IP"
        assert updated["session_persistence"] is None and updated["description"] == "d" and updated["tags"] == []
        # The listener the pool serves is part of the change, as in Octavia.
        assert rest.ok("GET", f"{LISTENERS}/{listener['id']}")["listener"]["provisioning_status"] == "PENDING_UPDATE"
        immutable = f"Load Balancer {lb['id']} is immutable and cannot be updated."
        assert_fault(rest.put(url, {"pool": {"name": "x"}}), 409, immutable)
        assert_fault(rest.delete(url), 409, immutable)
        assert_fault(
            rest.post(POOLS, {"pool": {"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}),
            409,
            immutable,
        )
    rest.wait_lb_active(lb["id"])
    assert len(rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}")["pools"]) == 1
    assert rest.delete(url).status_code == 204
    rest.wait_lb_active(lb["id"])
    rest.wait_status(url, "pool", "DELETED")
    assert_fault(rest.get(url), 404, f"Pool {pool['id']} not found.")
    assert_fault(rest.delete(url), 404, f"Pool {pool['id']} not found.")
    assert_fault(rest.put(url, {"pool": {}}), 404, f"Pool {pool['id']} not found.")
    assert_fault(rest.get(f"{POOLS}/notauuid"), 404, "Pool notauuid not found.")
    # The listener lost its default pool with it.
    assert rest.ok("GET", f"{LISTENERS}/{listener['id']}")["listener"]["default_pool_id"] is None
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_protocol_matrix(rest: Rest) -> None:
    lb = rest.create_lb(name="p-matrix")
    listeners = {}
    for port, (protocol, extra) in enumerate(
        [
            ("HTTP", {}),
            ("HTTPS", {}),
            ("TCP", {}),
            ("TERMINATED_HTTPS", {"default_tls_container_ref": tls_refs(rest.base_url).pkcs12}),
            ("UDP", {}),
            ("SCTP", {}),
            ("PROMETHEUS", {}),
        ],
        start=1000,
    ):
        listeners[protocol] = new_listener(rest, lb["id"], port, protocol, **extra)["id"]
    for listener_protocol, allowed in MATRIX.items():
        for pool_protocol in POOL_PROTOCOLS:
            if pool_protocol in allowed:
                continue
            assert_fault(
                rest.post(
                    POOLS,
                    {
                        "pool": {
                            "protocol": pool_protocol,
                            "lb_algorithm": "ROUND_ROBIN",
                            "listener_id": listeners[listener_protocol],
                        }
                    },
                ),
                400,
                f"Validation failure: The pool protocol '{pool_protocol}' is invalid while the listener protocol is "
                f"'{listener_protocol}'.",
            )
    assert_fault(
        rest.post(
            POOLS, {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listeners["PROMETHEUS"]}}
        ),
        400,
        "Protocol PROMETHEUS listeners cannot have child objects.",
    )
    assert rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}")["pools"] == []
    # A compatible one per listener works, and a second default pool is refused.
    for listener_protocol, allowed in MATRIX.items():
        made = new_pool(rest, lb["id"], allowed[-1], listener_id=listeners[listener_protocol])
        assert made["listeners"] == [{"id": listeners[listener_protocol]}]
        assert_fault(
            rest.post(
                POOLS,
                {
                    "pool": {
                        "protocol": allowed[-1],
                        "lb_algorithm": "ROUND_ROBIN",
                        "listener_id": listeners[listener_protocol],
                    }
                },
            ),
            409,
            "This listener already has a default pool",
        )
    assert len(rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}")["pools"]) == len(MATRIX)
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_session_persistence_and_tls(rest: Rest, lb: dict[str, Any]) -> None:
    udp = new_pool(
        rest,
        lb["id"],
        "UDP",
        session_persistence={
            "type": "SOURCE_IP",
            "persistence_timeout": 33,
            "persistence_granularity": "255.255.255.0",
        },
    )
    assert udp["session_persistence"] == {
        "type": "SOURCE_IP",
        "cookie_name": None,
        "persistence_timeout": 33,
        "persistence_granularity": "255.255.255.0",
    }
    cookie = new_pool(rest, lb["id"], session_persistence={"type": "HTTP_COOKIE"}, lb_algorithm="LEAST_CONNECTIONS")
    assert cookie["session_persistence"]["type"] == "HTTP_COOKIE" and cookie["lb_algorithm"] == "LEAST_CONNECTIONS"
    # The noop provider supports SOURCE_IP_PORT (Octavia's amphora provider answers 501).
    assert new_pool(rest, lb["id"], lb_algorithm="SOURCE_IP_PORT")["lb_algorithm"] == "SOURCE_IP_PORT"
    client_cert = tls_refs(rest.base_url).pkcs12
    tls = new_pool(rest, lb["id"], tls_enabled=True, tls_container_ref=client_cert, admin_state_up=None)
    assert tls["tls_enabled"] is True and tls["tls_ciphers"] == CIPHERS and tls["admin_state_up"] is False
    assert tls["tls_versions"] == ["TLSv1.2", "TLSv1.3"] and tls["alpn_protocols"] == ["h2", "http/1.1", "http/1.0"]
    assert tls["tls_container_ref"] == client_cert
    # Without re-encryption the lists are stored as given, unchecked (as Octavia does).
    plain = new_pool(rest, lb["id"], tls_versions=["TLSv9"], alpn_protocols=[])
    assert plain["tls_versions"] == ["TLSv9"] and plain["alpn_protocols"] == [] and plain["tls_ciphers"] is None
    url = f"{POOLS}/{cookie['id']}"
    enabled = rest.ok("PUT", url, {"pool": {"tls_enabled": True}})["pool"]
    assert enabled["tls_enabled"] is True and enabled["tls_ciphers"] is None  # Octavia fills no default on update
    rest.wait_lb_active(lb["id"])
    reset = rest.ok(
        "PUT", url, {"pool": {"tls_ciphers": None, "tls_versions": None, "alpn_protocols": None, "name": None}}
    )["pool"]
    assert reset["tls_ciphers"] == CIPHERS and reset["tls_versions"] == ["TLSv1.2", "TLSv1.3"] and reset["name"] == ""
    rest.wait_lb_active(lb["id"])
    faults = [
        (
            {"tls_versions": []},
            "Validation failure: Empty TLS version list. Either specify at least one TLS version or remove this "
            "parameter to use the default.",
        ),
        ({"tls_versions": ["x"]}, "Validation failure: Invalid TLS versions: x"),
        (
            {"alpn_protocols": []},
            "Validation failure: Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this "
            "parameter to use the default.",
        ),
        (
            {"crl_container_ref": "c"},
            "Validation failure: A CA reference is required to specify a certificate revocation list.",
        ),
        (
            {"lb_algorithm": None},
            "Invalid input for field/attribute lb_algorithm. Value: 'None'. Mandatory field missing.",
        ),
        (
            {"lb_algorithm": "BOGUS"},
            "Invalid input for field/attribute lb_algorithm. Value: 'BOGUS'. Value should be one of: "
            "SOURCE_IP_PORT, LEAST_CONNECTIONS, SOURCE_IP, ROUND_ROBIN",
        ),
        (
            {"session_persistence": {"type": "APP_COOKIE"}},
            'Validation failure: Field "cookie_name" must be specified when using the "APP_COOKIE" '
            "session persistence type.",
        ),
        (
            {"session_persistence": {"type": "SOURCE_IP", "persistence_timeout": 5}},
            "Validation failure: persistence_timeout and persistence_granularity is only for UDP and SCTP protocol "
            "pools.",
        ),
        ({"protocol": "TCP"}, "Unknown attribute for argument pool_.pool: protocol"),
        ({"loadbalancer_id": lb["id"]}, "Unknown attribute for argument pool_.pool: loadbalancer_id"),
        ({"listener_id": lb["id"]}, "Unknown attribute for argument pool_.pool: listener_id"),
        (
            {"tls_ciphers": "a b"},
            "Invalid input for field/attribute tls_ciphers. Value: 'a b'. Value must not contain spaces or control "
            "characters",
        ),
        ({"name": 5}, "Invalid input for field/attribute name. Value: '5'. Value should be string"),
        ({"tls_enabled": "maybe"}, None),
    ]
    for fields, message in faults:
        response = rest.put(url, {"pool": fields})
        if message is None:
            assert_fault(response, 400)
            assert response.json()["faultstring"].endswith("Value not an unambiguous boolean: maybe")
        else:
            assert_fault(response, 400, message)
    assert_fault(rest.put(url, {}), 400, "Validation failure: No pool object supplied.")
    assert_fault(
        rest.put(f"{POOLS}/{udp['id']}", {"pool": {"session_persistence": {"type": "HTTP_COOKIE"}}}),
        400,
        "Validation failure: Session persistence of type HTTP_COOKIE is not supported for UDP/SCTP protocol pools.",
    )
    after = rest.ok("GET", url)["pool"]
    assert after["provisioning_status"] == "ACTIVE" and after["lb_algorithm"] == "LEAST_CONNECTIONS"


BAD_CREATE = [
    (
        {"protocol": "FOO"},
        "Invalid input for field/attribute protocol. Value: 'FOO'. Value should be one of: HTTP, TCP, SCTP, PROXY, "
        "HTTPS, PROXYV2, UDP",
    ),
    ({"protocol": None}, "Invalid input for field/attribute protocol. Value: 'None'. Mandatory field missing."),
    (
        {"lb_algorithm": "FASTEST"},
        "Invalid input for field/attribute lb_algorithm. Value: 'FASTEST'. Value should be one of: SOURCE_IP_PORT, "
        "LEAST_CONNECTIONS, SOURCE_IP, ROUND_ROBIN",
    ),
    ({"lb_algorithm": None}, "Invalid input for field/attribute lb_algorithm. Value: 'None'. Mandatory field missing."),
    ({"loadbalancer_id": None}, "Validation failure: Must provide at least one of: loadbalancer_id, listener_id"),
    (
        {"loadbalancer_id": "x"},
        "Invalid input for field/attribute loadbalancer_id. Value: 'x'. Value should be UUID format",
    ),
    (
        {"loadbalancer_id": "00000000-0000-0000-0000-00000000abcd"},
        "Load Balancer 00000000-0000-0000-0000-00000000abcd not found.",
    ),
    (
        {"listener_id": "00000000-0000-0000-0000-00000000abcd"},
        "Listener 00000000-0000-0000-0000-00000000abcd not found.",
    ),
    ({"listener_id": 5}, "Invalid input for field/attribute listener_id. Value: '5'. Value should be UUID format"),
    (
        {"name": "n" * 256},
        f"Invalid input for field/attribute name. Value: '{'n' * 256}'. Value should have a maximum character "
        "requirement of 255",
    ),
    ({"description": 5}, "Invalid input for field/attribute description. Value: '5'. Value should be string"),
    ({"admin_state_up": "maybe"}, None),
    ({"tags": "a"}, None),
    ({"tags": [1]}, "Invalid input for field/attribute tags. Value: '[1]'. Value should be string"),
    ({"session_persistence": "x"}, None),
    ({"session_persistence": {}}, "Invalid input for field/attribute type. Value: 'None'. Mandatory field missing."),
    (
        {"session_persistence": {"type": "BOGUS"}},
        "Invalid input for field/attribute type. Value: 'BOGUS'. Value should be one of: APP_COOKIE, SOURCE_IP, "
        "HTTP_COOKIE",
    ),
    (
        {"session_persistence": {"type": "SOURCE_IP", "foo": 1}},
        "Unknown attribute for argument pool_.pool.session_persistence: foo",
    ),
    (
        {"session_persistence": {"type": "APP_COOKIE"}},
        'Validation failure: Field "cookie_name" must be specified when using the "APP_COOKIE" '
        "session persistence type.",
    ),
    (
        {"session_persistence": {"type": "HTTP_COOKIE", "cookie_name": "c"}},
        'Validation failure: Field "cookie_name" can only be specified with session persistence of type "APP_COOKIE".',
    ),
    (
        {"session_persistence": {"type": "SOURCE_IP", "cookie_name": "c"}},
        'Validation failure: Field "cookie_name" can only be specified with session persistence of type "APP_COOKIE".',
    ),
    (
        {"session_persistence": {"type": "APP_COOKIE", "cookie_name": "bad name"}},
        "Invalid input for field/attribute cookie_name. Value: 'bad name'. Value should match the pattern "
        "^[^\\s,;\\\\]+$",
    ),
    (
        {"session_persistence": {"type": "APP_COOKIE", "cookie_name": "a\nb"}},
        "Invalid input for field/attribute cookie_name. Value: 'a\nb'. Value should match the pattern ^[^\\s,;\\\\]+$",
    ),
    (
        {"session_persistence": {"type": "APP_COOKIE", "cookie_name": "a\x01b"}},
        "Invalid input for field/attribute cookie_name. Value: 'a\x01b'. Value should match the pattern "
        "^[^\\s,;\\\\]+$",
    ),
    (
        {"session_persistence": {"type": "APP_COOKIE", "cookie_name": 5}},
        "Invalid input for field/attribute cookie_name. Value: '5'. Value should be string",
    ),
    (
        {"session_persistence": {"type": "SOURCE_IP", "persistence_timeout": 10}},
        "Validation failure: persistence_timeout and persistence_granularity is only for UDP and SCTP protocol pools.",
    ),
    (
        {"protocol": "UDP", "session_persistence": {"type": "HTTP_COOKIE"}},
        "Validation failure: Session persistence of type HTTP_COOKIE is not supported for UDP/SCTP protocol pools.",
    ),
    (
        {"protocol": "SCTP", "session_persistence": {"type": "APP_COOKIE", "cookie_name": "x"}},
        "Validation failure: Cookie names are not supported for UDP/SCTP pools.",
    ),
    (
        {"protocol": "UDP", "session_persistence": {"type": "SOURCE_IP", "persistence_granularity": "abc"}},
        "Invalid input for field/attribute persistence_granularity. Value: 'abc'. Value should be IPv4 or IPv6 format",
    ),
    ({"protocol": "UDP", "session_persistence": {"type": "SOURCE_IP", "persistence_timeout": "abc"}}, None),
    ({"tls_enabled": True, "tls_versions": ["x"]}, "Validation failure: Invalid TLS versions: x"),
    (
        {"tls_enabled": True, "alpn_protocols": []},
        "Validation failure: Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this "
        "parameter to use the default.",
    ),
    (
        {"alpn_protocols": ["h3"]},
        "Invalid input for field/attribute alpn_protocols. Value: '['h3']'. Value should be a valid ALPN protocol ID",
    ),
    (
        {"crl_container_ref": "ref"},
        "Validation failure: A CA certificate reference is required to specify a revocation list.",
    ),
    (
        {"tls_container_ref": "a\nb"},
        "Invalid input for field/attribute tls_container_ref. Value: 'a\nb'. Value must not contain spaces or "
        "control characters",
    ),
    (
        {"ca_tls_container_ref": "r" * 256},
        f"Invalid input for field/attribute ca_tls_container_ref. Value: '{'r' * 256}'. Value should have a maximum "
        "character requirement of 255",
    ),
    (
        {"tls_ciphers": "HIGH\n"},
        "Invalid input for field/attribute tls_ciphers. Value: 'HIGH\n'. Value must not contain spaces or control "
        "characters",
    ),
    ({"foo": 1}, "Unknown attribute for argument pool_.pool: foo"),
    (
        {"members": [{"address": "10.0.0.1", "protocol_port": 80}]},
        "Embedded healthmonitor and members are only supported in a load balancer create.",
    ),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CREATE, ids=[str(i) for i in range(len(BAD_CREATE))])
def test_create_faults(rest: Rest, lb: dict[str, Any], fields: dict[str, Any], message: str | None) -> None:
    body = {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"], **fields}
    before = len(rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}")["pools"])
    response = rest.post(POOLS, {"pool": body})
    if message is None:
        assert_fault(response, 400)
        assert response.json()["faultstring"].startswith(
            f"Invalid input for field/attribute pool_. Value: '{ {'pool': body} }'. "
        )
    else:
        assert_fault(response, 404 if message.endswith("not found.") else 400, message)
    assert len(rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}")["pools"]) == before


def test_body_faults(rest: Rest, lb: dict[str, Any]) -> None:
    assert_fault(rest.post(POOLS, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(POOLS, raw=b""), 400, 'Missing argument: "pool_"')
    assert_fault(rest.post(POOLS, {"pool": {}, "x": 1}), 400, "Unknown attribute for argument pool_: x")
    assert_fault(rest.post(POOLS, {"pool": []}), 400, "Invalid input for argument pool_.pool")
    missing = "Invalid input for field/attribute {}. Value: 'None'. Mandatory field missing."
    assert_fault(rest.post(POOLS, {"pool": {"loadbalancer_id": lb["id"]}}), 400, missing.format("protocol"))
    assert_fault(
        rest.post(POOLS, {"pool": {"protocol": "HTTP", "loadbalancer_id": lb["id"]}}),
        400,
        missing.format("lb_algorithm"),
    )
    assert_fault(
        rest.post(POOLS, {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}}),
        400,
        "Validation failure: Must provide at least one of: loadbalancer_id, listener_id",
    )
    other = rest.create_lb(name="p-mismatch")
    listener = new_listener(rest, other["id"], 80)
    assert_fault(
        rest.post(
            POOLS,
            {
                "pool": {
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "listener_id": listener["id"],
                    "loadbalancer_id": lb["id"],
                }
            },
        ),
        400,
        "Validation failure: The listener and the pool must be on the same load balancer.",
    )
    assert rest.delete(f"{LBS}/{other['id']}?cascade=true").status_code == 204


def test_relations_and_l7_policy_guard(mesh: Any, rest: Rest, lb: dict[str, Any]) -> None:
    listener = new_listener(rest, lb["id"], 3000)
    pool = new_pool(rest, lb["id"])
    url = f"{POOLS}/{pool['id']}"
    assert "healthmonitor_id" not in pool and pool["listeners"] == [] and pool["members"] == []
    engine = mesh_engine(mesh)
    policy, member, monitor = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    now = dt.datetime(2026, 1, 1)
    common = {"p": PROJECT, "t": True, "c": now}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO l7policy (id, project_id, name, provisioning_status, operating_status, admin_state_up, "
                "created_at, listener_id, action, position, redirect_pool_id) VALUES (:i, :p, '', 'ACTIVE', "
                "'ONLINE', :t, :c, :l, 'REDIRECT_TO_POOL', 1, :pool)"
            ),
            {**common, "i": policy, "l": listener["id"], "pool": pool["id"]},
        )
        conn.execute(
            text(
                "INSERT INTO member (id, project_id, name, provisioning_status, operating_status, admin_state_up, "
                "created_at, pool_id, address, protocol_port, weight, backup, request_sriov, vnic_type) VALUES "
                "(:i, :p, '', 'ACTIVE', 'ONLINE', :t, :c, :pool, '10.0.0.1', 80, 1, :f, :f, 'normal')"
            ),
            {**common, "i": member, "pool": pool["id"], "f": False},
        )
        conn.execute(
            text(
                "INSERT INTO health_monitor (id, project_id, name, provisioning_status, operating_status, "
                "admin_state_up, created_at, pool_id, type, delay, timeout, max_retries, max_retries_down) VALUES "
                "(:i, :p, '', 'ACTIVE', 'ONLINE', :t, :c, :pool, 'TCP', 1, 1, 1, 3)"
            ),
            {**common, "i": monitor, "pool": pool["id"]},
        )
    shown = rest.ok("GET", url)["pool"]
    assert list(shown) == KEYS[:14] + ["healthmonitor_id"] + KEYS[14:]
    assert shown["healthmonitor_id"] == monitor and shown["members"] == [{"id": member}]
    assert shown["listeners"] == []  # a REDIRECT_TO_POOL policy without rules does not count, as in Octavia
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO l7rule (id, project_id, name, provisioning_status, operating_status, admin_state_up, "
                "created_at, l7policy_id, type, compare_type, value, invert) VALUES (:i, :p, '', 'ACTIVE', "
                "'ONLINE', :t, :c, :pol, 'PATH', 'STARTS_WITH', '/x', :f)"
            ),
            {**common, "i": str(uuid.uuid4()), "pol": policy, "f": False},
        )
    assert rest.ok("GET", url)["pool"]["listeners"] == [{"id": listener["id"]}]
    assert_fault(rest.delete(url), 409, f"Pool {pool['id']} is in use by L7 policy {policy}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM l7rule WHERE l7policy_id = :p"), {"p": policy})
        conn.execute(text("DELETE FROM l7policy WHERE id = :p"), {"p": policy})
    engine.dispose()
    assert rest.delete(url).status_code == 204
    rest.wait_lb_active(lb["id"])
    rest.wait_status(url, "pool", "DELETED")


def test_list_filters_pagination_fields(rest: Rest) -> None:
    lb = rest.create_lb(name="p-list")
    ids = [new_pool(rest, lb["id"], "TCP" if i % 2 else "HTTP", name=f"pp-{i}", tags=["ppage"])["id"] for i in range(3)]
    first = rest.ok("GET", f"{POOLS}?limit=2&tags=ppage")
    assert [x["id"] for x in first["pools"]] == ids[:2]
    (link,) = first["pools_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + POOLS + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [x["id"] for x in second["pools"]] == ids[2:]
    assert [x["rel"] for x in second["pools_links"]] == ["previous"]
    back = rest.session.get(second["pools_links"][0]["href"], timeout=10).json()
    assert [x["id"] for x in back["pools"]] == ids[:2]
    assert [x["id"] for x in rest.ok("GET", f"{POOLS}?protocol=TCP&tags=ppage")["pools"]] == [ids[1]]
    assert [x["id"] for x in rest.ok("GET", f"{POOLS}?name=pp-2")["pools"]] == [ids[2]]
    assert [x["id"] for x in rest.ok("GET", f"{POOLS}?loadbalancer_id={lb['id']}&sort=name:desc")["pools"]] == ids[::-1]
    assert rest.ok("GET", f"{POOLS}?tags=ppage&admin_state_up=false")["pools"] == []
    only = rest.ok("GET", f"{POOLS}?tags=ppage&fields=id&fields=name")["pools"]
    assert len(only) == 3 and all(set(x) == {"id", "name"} for x in only)
    assert_fault(rest.get(f"{POOLS}?bogus=1"), 400)
    assert_fault(rest.get(f"{POOLS}?sort=bogus"), 400, "Supplied sort key 'bogus' is not valid.")
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_rbac(secure_rest: Rest) -> None:
    owner = "c" * 32
    admin = secure_rest.as_(owner, "admin")
    member = secure_rest.as_(owner, "member")
    reader = secure_rest.as_(owner, "reader")
    stranger = secure_rest.as_("d" * 32, "member")
    lb = admin.create_lb(project_id=owner)
    body = {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}
    denied = "Policy does not allow this request to be performed."
    assert_fault(reader.post(POOLS, body), 403, denied)
    assert_fault(stranger.post(POOLS, body), 403, denied)  # found, then refused: Octavia's 403
    pool = member.ok("POST", POOLS, body)["pool"]
    assert pool["project_id"] == owner
    member.wait_lb_active(lb["id"])
    url = f"{POOLS}/{pool['id']}"
    assert reader.ok("GET", url)["pool"]["id"] == pool["id"]
    assert [x["id"] for x in reader.ok("GET", POOLS)["pools"]] == [pool["id"]]
    assert stranger.ok("GET", POOLS)["pools"] == []
    for call in (stranger.get(url), stranger.put(url, {"pool": {}}), stranger.delete(url)):
        assert_fault(call, 403, denied)
    assert_fault(reader.put(url, {"pool": {"name": "x"}}), 403, denied)
    assert_fault(reader.delete(url), 403, denied)
    listener = member.ok(
        "POST", LISTENERS, {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb["id"]}}
    )["listener"]
    member.wait_lb_active(lb["id"])
    listener_body = {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener["id"]}}
    assert_fault(stranger.post(POOLS, listener_body), 403, denied)
    assert_fault(reader.post(POOLS, listener_body), 403, denied)
    assert member.delete(url).status_code == 204
    member.wait_lb_active(lb["id"])
    assert admin.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_quota(rest: Rest) -> None:
    project = uuid.uuid4().hex
    lb = rest.create_lb(project_id=project)
    quota = f"/v2/lbaas/quotas/{project}"
    rest.ok("PUT", quota, {"quota": {"listener": 1, "pool": 1}}, status=202)
    listener = new_listener(rest, lb["id"], 80)
    assert_fault(
        rest.post(LISTENERS, {"listener": {"protocol": "TCP", "protocol_port": 81, "loadbalancer_id": lb["id"]}}),
        403,
        "Quota has been met for resources: Listener",
    )
    pool = new_pool(rest, lb["id"], listener_id=listener["id"])
    assert_fault(
        rest.post(POOLS, {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}),
        403,
        "Quota has been met for resources: Pool",
    )
    # The refused pool left nothing behind: the listener keeps its default pool, the load balancer is not locked.
    assert rest.ok("GET", f"{LISTENERS}/{listener['id']}")["listener"]["default_pool_id"] == pool["id"]
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"
    assert rest.delete(f"{POOLS}/{pool['id']}").status_code == 204
    rest.wait_lb_active(lb["id"])
    rest.wait_status(f"{POOLS}/{pool['id']}", "pool", "DELETED")
    assert rest.ok("GET", quota)["quota"]["pool"] == 1
    new_pool(rest, lb["id"])  # the deleted pool gave its quota back
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204
