"""Listeners through the REST edge: create, show, list, update, delete, stats, and their faults."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from support import PROJECT, Rest, assert_fault, assert_unauthenticated, mesh_engine, new_listener, new_pool, paused
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
    "protocol_port",
    "connection_limit",
    "default_tls_container_ref",
    "sni_container_refs",
    "project_id",
    "default_pool_id",
    "l7policies",
    "insert_headers",
    "created_at",
    "updated_at",
    "loadbalancers",
    "timeout_client_data",
    "timeout_member_connect",
    "timeout_member_data",
    "timeout_tcp_inspect",
    "tags",
    "client_ca_tls_container_ref",
    "client_authentication",
    "client_crl_container_ref",
    "allowed_cidrs",
    "tls_ciphers",
    "tls_versions",
    "alpn_protocols",
    "hsts_max_age",
    "hsts_include_subdomains",
    "hsts_preload",
    "tenant_id",
]


@pytest.fixture(scope="module")
def lb(rest: Rest) -> dict[str, Any]:
    return rest.create_lb(name="listeners-module")


def test_create_show_update_delete(mesh: Any, rest: Rest) -> None:
    lb = rest.create_lb(name="l-crud")
    created = rest.ok(
        "POST",
        LISTENERS,
        {
            "listener": {
                "name": "l1",
                "protocol": "HTTP",
                "protocol_port": 80,
                "loadbalancer_id": lb["id"],
                "tags": ["a"],
            }
        },
    )["listener"]
    assert list(created) == KEYS
    assert created["provisioning_status"] == "PENDING_CREATE" and created["operating_status"] == "OFFLINE"
    expected = {
        "name": "l1",
        "description": "",
        "admin_state_up": True,
        "protocol": "HTTP",
        "protocol_port": 80,
        "connection_limit": -1,
        "default_tls_container_ref": None,
        "sni_container_refs": [],
        "project_id": PROJECT,
        "default_pool_id": None,
        "l7policies": [],
        "insert_headers": {},
        "updated_at": None,
        "loadbalancers": [{"id": lb["id"]}],
        "timeout_client_data": 50000,
        "timeout_member_connect": 5000,
        "timeout_member_data": 50000,
        "timeout_tcp_inspect": 0,
        "tags": ["a"],
        "client_ca_tls_container_ref": None,
        "client_authentication": "NONE",
        "client_crl_container_ref": None,
        "allowed_cidrs": None,
        "tls_ciphers": None,
        "tls_versions": None,
        "alpn_protocols": None,
        "hsts_max_age": None,
        "hsts_include_subdomains": False,
        "hsts_preload": False,
        "tenant_id": PROJECT,
    }
    assert {k: created[k] for k in expected} == expected
    # The load balancer is locked while the listener is created.
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] in ("PENDING_UPDATE", "ACTIVE")
    rest.wait_lb_active(lb["id"])
    shown = rest.wait_status(f"{LISTENERS}/{created['id']}", "listener")
    assert shown["updated_at"] is not None
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["listeners"] == [{"id": created["id"]}]
    only = rest.ok("GET", f"{LISTENERS}/{created['id']}?fields=id&fields=protocol_port")["listener"]
    assert only == {"id": created["id"], "protocol_port": 80}

    with paused(mesh):
        updated = rest.ok(
            "PUT", f"{LISTENERS}/{created['id']}", {"listener": {"connection_limit": 100, "tags": ["b", "b"]}}
        )["listener"]
        assert updated["provisioning_status"] == "PENDING_UPDATE"
        assert updated["connection_limit"] == 100 and updated["tags"] == ["b"]
        immutable = f"Load Balancer {lb['id']} is immutable and cannot be updated."
        assert_fault(rest.put(f"{LISTENERS}/{created['id']}", {"listener": {"name": "x"}}), 409, immutable)
        assert_fault(rest.delete(f"{LISTENERS}/{created['id']}"), 409, immutable)
        assert_fault(
            rest.post(LISTENERS, {"listener": {"protocol": "TCP", "protocol_port": 81, "loadbalancer_id": lb["id"]}}),
            409,
            immutable,
        )
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"{LISTENERS}/{created['id']}")["listener"]["connection_limit"] == 100
    # Nothing of the refused create was written.
    assert len(rest.ok("GET", f"{LISTENERS}?loadbalancer_id={lb['id']}")["listeners"]) == 1

    assert rest.delete(f"{LISTENERS}/{created['id']}").status_code == 204
    rest.wait_lb_active(lb["id"])
    rest.wait_status(f"{LISTENERS}/{created['id']}", "listener", "DELETED")
    assert_fault(rest.get(f"{LISTENERS}/{created['id']}"), 404, f"Listener {created['id']} not found.")
    assert_fault(rest.delete(f"{LISTENERS}/{created['id']}"), 404, f"Listener {created['id']} not found.")
    assert_fault(
        rest.put(f"{LISTENERS}/{created['id']}", {"listener": {}}), 404, f"Listener {created['id']} not found."
    )
    assert_fault(rest.get(f"{LISTENERS}/notauuid/stats"), 404, "Listener notauuid not found.")
    assert rest.delete(f"{LBS}/{lb['id']}").status_code == 204


def test_duplicate_ports(rest: Rest, lb: dict[str, Any]) -> None:
    new_listener(rest, lb["id"], 8080, "HTTP")
    for protocol in ("TCP", "HTTPS", "PROMETHEUS", "HTTP"):
        assert_fault(
            rest.post(
                LISTENERS, {"listener": {"protocol": protocol, "protocol_port": 8080, "loadbalancer_id": lb["id"]}}
            ),
            409,
            "Another Listener on this Load Balancer is already using protocol HTTP and protocol_port 8080",
        )
    # UDP and SCTP have their own port spaces.
    new_listener(rest, lb["id"], 8080, "UDP")
    new_listener(rest, lb["id"], 8080, "SCTP")
    assert_fault(
        rest.post(LISTENERS, {"listener": {"protocol": "UDP", "protocol_port": 8080, "loadbalancer_id": lb["id"]}}),
        409,
        "Another Listener on this Load Balancer is already using protocol UDP and protocol_port 8080",
    )
    # The same port on another load balancer is fine.
    other = rest.create_lb(name="l-dup-other")
    new_listener(rest, other["id"], 8080, "TCP")
    assert rest.delete(f"{LBS}/{other['id']}?cascade=true").status_code == 204


def test_protocols_and_tls_defaults(rest: Rest, lb: dict[str, Any]) -> None:
    refs = tls_refs(rest.base_url)
    term = new_listener(
        rest,
        lb["id"],
        443,
        "TERMINATED_HTTPS",
        default_tls_container_ref=refs.pkcs12,
        sni_container_refs=[refs.container],
        insert_headers={"X-Forwarded-For": "true", "X-SSL-Client-DN": "true"},
        hsts_max_age=31536000,
        hsts_include_subdomains=True,
    )
    assert term["tls_ciphers"] == CIPHERS
    assert term["tls_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert term["alpn_protocols"] == ["h2", "http/1.1", "http/1.0"]
    assert term["sni_container_refs"] == [refs.container]
    assert term["hsts_max_age"] == 31536000 and term["hsts_include_subdomains"] and not term["hsts_preload"]
    custom = new_listener(
        rest,
        lb["id"],
        444,
        "TERMINATED_HTTPS",
        default_tls_container_ref=refs.container,
        tls_versions=["TLSv1.3"],
        alpn_protocols=["h2"],
        tls_ciphers="ECDHE-RSA-AES128-GCM-SHA256",
    )
    assert custom["tls_versions"] == ["TLSv1.3"] and custom["alpn_protocols"] == ["h2"]
    assert custom["tls_ciphers"] == "ECDHE-RSA-AES128-GCM-SHA256"
    for port, protocol in ((9100, "PROMETHEUS"), (9101, "HTTPS"), (9102, "TCP"), (9103, "UDP"), (9104, "SCTP")):
        made = new_listener(rest, lb["id"], port, protocol, timeout_client_data="100", connection_limit=5.7)
        assert made["protocol"] == protocol and made["tls_ciphers"] is None and made["tls_versions"] is None
        assert made["timeout_client_data"] == 100 and made["connection_limit"] == 5
    cidrs = new_listener(
        rest, lb["id"], 9105, allowed_cidrs=["10.0.0.1/8", "192.0.2.7", "10.0.0.0/8"], admin_state_up=None
    )
    assert cidrs["allowed_cidrs"] == ["10.0.0.0/8", "192.0.2.7/32"]
    assert cidrs["admin_state_up"] is False
    nulls = new_listener(
        rest, lb["id"], 9106, name=None, description=None, timeout_member_data=None, connection_limit=None
    )
    assert nulls["name"] == "" and nulls["description"] == "" and nulls["timeout_member_data"] == 50000
    assert nulls["connection_limit"] == -1  # Octavia 19 stores and prints a null here; we keep the default


LB_ID = "{lb}"
BAD_CREATE = [
    (
        {"protocol": "FOO"},
        "Invalid input for field/attribute protocol. Value: 'FOO'. Value should be one of: "
        "PROMETHEUS, HTTP, TCP, SCTP, HTTPS, TERMINATED_HTTPS, UDP",
    ),
    (
        {"protocol": 5},
        "Invalid input for field/attribute protocol. Value: '5'. Value should be one of: "
        "PROMETHEUS, HTTP, TCP, SCTP, HTTPS, TERMINATED_HTTPS, UDP",
    ),
    ({"protocol": None}, "None is not a valid option for protocol"),
    ({"protocol_port": None}, "HTTP is not a valid option for protocol"),
    (
        {"protocol_port": 0},
        "Invalid input for field/attribute protocol_port. Value: '0'. Value should be greater or equal to 1",
    ),
    (
        {"protocol_port": 65536},
        "Invalid input for field/attribute protocol_port. Value: '65536'. Value should be lower or equal to 65535",
    ),
    ({"protocol_port": [1]}, None),
    ({"name": 5}, "Invalid input for field/attribute name. Value: '5'. Value should be string"),
    (
        {"name": "n" * 256},
        f"Invalid input for field/attribute name. Value: '{'n' * 256}'. Value should have a maximum character "
        "requirement of 255",
    ),
    (
        {"description": "d" * 256},
        f"Invalid input for field/attribute description. Value: '{'d' * 256}'. Value should have a maximum character "
        "requirement of 255",
    ),
    (
        {"loadbalancer_id": "notauuid"},
        "Invalid input for field/attribute loadbalancer_id. Value: 'notauuid'. Value should be UUID format",
    ),
    (
        {"loadbalancer_id": "00000000-0000-0000-0000-00000000abcd"},
        "Load Balancer 00000000-0000-0000-0000-00000000abcd not found.",
    ),
    (
        {"default_pool_id": "x"},
        "Invalid input for field/attribute default_pool_id. Value: 'x'. Value should be UUID format",
    ),
    (
        {"default_pool_id": "00000000-0000-0000-0000-00000000abcd"},
        "Pool 00000000-0000-0000-0000-00000000abcd not found.",
    ),
    (
        {"project_id": "p" * 37},
        f"Invalid input for field/attribute project_id. Value: '{'p' * 37}'. Value should have a maximum character "
        "requirement of 36",
    ),
    (
        {"connection_limit": -2},
        "Invalid input for field/attribute connection_limit. Value: '-2'. Value should be greater or equal to -1",
    ),
    (
        {"timeout_client_data": -1},
        "Invalid input for field/attribute timeout_client_data. Value: '-1'. Value should be greater or equal to 0",
    ),
    (
        {"timeout_member_connect": 31536000001},
        "Invalid input for field/attribute timeout_member_connect. Value: '31536000001'. Value should be lower or "
        "equal to 2073600000",
    ),
    ({"timeout_tcp_inspect": "x"}, None),
    ({"admin_state_up": "maybe"}, None),
    ({"tags": "a"}, None),
    ({"tags": [1]}, "Invalid input for field/attribute tags. Value: '[1]'. Value should be string"),
    (
        {"tags": ["t" * 256]},
        f"Invalid input for field/attribute tags. Value: '['{'t' * 256}']'. Value should have a maximum character "
        "requirement of 255",
    ),
    ({"insert_headers": "x"}, None),
    ({"insert_headers": {"X-Bogus": "true"}}, "dict_keys(['X-Bogus']) is not a valid option for insert_headers"),
    (
        {"insert_headers": {"X-Forwarded-For": True}},
        "Invalid input for field/attribute insert_headers. Value: '{'X-Forwarded-For': True}'. Value should be string",
    ),
    (
        {"insert_headers": {"X-Forwarded-For": "tr\nue"}},
        "Invalid input for field/attribute insert_headers. Value: '{'X-Forwarded-For': 'tr\\nue'}'. Value must not "
        "contain spaces or control characters",
    ),
    (
        {"insert_headers": {"X-Forwarded-For": "true false"}},
        "Invalid input for field/attribute insert_headers. Value: '{'X-Forwarded-For': 'true false'}'. Value must "
        "not contain spaces or control characters",
    ),
    (
        {"insert_headers": {"X-SSL-Client-Verify": "true", "X-Forwarded-For": "true", "X-SSL-Issuer": "true"}},
        "['X-SSL-Client-Verify', 'X-SSL-Issuer'] is not a valid option for HTTP protocol listener.",
    ),
    (
        {"protocol": "TCP", "insert_headers": {"X-Forwarded-For": "true"}},
        "insert-headers is not a valid option for a TCP protocol listener.",
    ),
    (
        {"protocol": "UDP", "insert_headers": {"X-Forwarded-For": "true"}},
        "insert-headers is not a valid option for a UDP protocol listener.",
    ),
    (
        {"allowed_cidrs": ["10.0.0.0/33"]},
        "Invalid input for field/attribute allowed_cidrs. Value: '['10.0.0.0/33']'. Value should be IPv4 or IPv6 "
        "CIDR format",
    ),
    (
        {"allowed_cidrs": [1]},
        "Invalid input for field/attribute allowed_cidrs. Value: '[1]'. Value should be IPv4 or IPv6 CIDR format",
    ),
    ({"allowed_cidrs": "10.0.0.0/8"}, None),
    (
        {"allowed_cidrs": ["2001:db8::/32"]},
        "Validation failure: CIDR 2001:db8::/32 IP version incompatible with all VIPs ['{vip}'] IP version.",
    ),
    (
        {"protocol": "TERMINATED_HTTPS"},
        "Validation failure: An SNI or default certificate container reference must be provided for "
        "TERMINATED_HTTPS protocol listeners.",
    ),
    (
        {"default_tls_container_ref": "ref"},
        "Validation failure: Certificate container references are not allowed on HTTP protocol listeners.",
    ),
    (
        {"protocol": "TCP", "sni_container_refs": ["ref"]},
        "Validation failure: Certificate container references are not allowed on TCP protocol listeners.",
    ),
    (
        {"protocol": "UDP", "default_tls_container_ref": "ref"},
        "Validation failure: UDP protocol listener does not support TLS.",
    ),
    (
        {"protocol": "SCTP", "sni_container_refs": ["ref"]},
        "Validation failure: SCTP protocol listener does not support TLS.",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "a b"},
        "Invalid input for field/attribute default_tls_container_ref. Value: 'a b'. Value must not contain spaces "
        "or control characters",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "r" * 256},
        f"Invalid input for field/attribute default_tls_container_ref. Value: '{'r' * 256}'. Value should have a "
        "maximum character requirement of 255",
    ),
    ({"sni_container_refs": "x"}, None),
    (
        {"sni_container_refs": [1]},
        "Invalid input for field/attribute sni_container_refs. Value: '[1]'. Value should be string",
    ),
    (
        {"client_ca_tls_container_ref": "ca"},
        "Validation failure: An SNI or default certificate container reference must be provided with a client CA "
        "container reference.",
    ),
    (
        {"client_authentication": "BOGUS"},
        "Invalid input for field/attribute client_authentication. Value: 'BOGUS'. Value should be one of: "
        "MANDATORY, NONE, OPTIONAL",
    ),
    (
        {"client_authentication": "MANDATORY"},
        "Validation failure: Client authentication setting MANDATORY requires a client CA container reference.",
    ),
    (
        {"client_authentication": None},
        "Validation failure: Client authentication setting None requires a client CA container reference.",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "r", "client_crl_container_ref": "c"},
        "Validation failure: A client authentication CA reference is required to specify a client authentication "
        "revocation list.",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "r", "tls_versions": ["TLSv9"]},
        "Validation failure: Invalid TLS versions: TLSv9",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "r", "tls_versions": []},
        "Validation failure: Empty TLS version list. Either specify at least one TLS version or remove this "
        "parameter to use the default.",
    ),
    ({"tls_versions": "TLSv1.2"}, None),
    ({"tls_versions": [1]}, "Invalid input for field/attribute tls_versions. Value: '[1]'. Value should be string"),
    (
        {"alpn_protocols": ["h3"]},
        "Invalid input for field/attribute alpn_protocols. Value: '['h3']'. Value should be a valid ALPN protocol ID",
    ),
    ({"tls_ciphers": 5}, "Invalid input for field/attribute tls_ciphers. Value: '5'. Value should be string"),
    (
        {"tls_ciphers": "A" * 2049},
        f"Invalid input for field/attribute tls_ciphers. Value: '{'A' * 2049}'. Value should have a maximum "
        "character requirement of 2048",
    ),
    (
        {"tls_ciphers": "HIGH\nbind :1"},
        "Invalid input for field/attribute tls_ciphers. Value: 'HIGH\nbind :1'. Value must not contain spaces or "
        "control characters",
    ),
    (
        {"hsts_max_age": 100},
        "Validation failure: The HSTS feature can only be used for listeners using the TERMINATED_HTTPS protocol.",
    ),
    (
        {"hsts_preload": True},
        "Validation failure: HSTS configuration options hsts_include_subdomains and hsts_preload only make sense if "
        "hsts_max_age is set as well.",
    ),
    (
        {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": "r", "hsts_max_age": -1},
        "Invalid input for field/attribute hsts_max_age. Value: '-1'. Value should be greater or equal to 0",
    ),
    (
        {"protocol": "PROMETHEUS", "default_pool_id": "00000000-0000-0000-0000-00000000abcd"},
        "Protocol PROMETHEUS listeners cannot have child objects.",
    ),
    ({"foo": 1}, "Unknown attribute for argument listener_.listener: foo"),
    (
        {"default_pool": {"protocol": "HTTP"}},
        "Embedded default_pool and l7policies are only supported in a load balancer create.",
    ),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CREATE, ids=[str(i) for i in range(len(BAD_CREATE))])
def test_create_faults(rest: Rest, lb: dict[str, Any], fields: dict[str, Any], message: str | None) -> None:
    body = {"protocol": "HTTP", "protocol_port": 7000, "loadbalancer_id": lb["id"], **fields}
    before = len(rest.ok("GET", f"{LISTENERS}?loadbalancer_id={lb['id']}")["listeners"])
    response = rest.post(LISTENERS, {"listener": body})
    if message is None:  # a value WSME cannot convert: Octavia quotes the whole body
        assert_fault(response, 400)
        assert response.json()["faultstring"].startswith(
            f"Invalid input for field/attribute listener_. Value: '{ {'listener': body} }'. "
        )
    else:
        status = 404 if message.endswith("not found.") else 400
        assert_fault(response, status, message.replace("{vip}", lb["vip_address"]))
    assert len(rest.ok("GET", f"{LISTENERS}?loadbalancer_id={lb['id']}")["listeners"]) == before


def test_body_faults(rest: Rest, lb: dict[str, Any]) -> None:
    assert_fault(rest.post(LISTENERS, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(LISTENERS, raw=b""), 400, 'Missing argument: "listener_"')
    assert_fault(
        rest.post(LISTENERS, {"listener": {}, "extra": 1}), 400, "Unknown attribute for argument listener_: extra"
    )
    assert_fault(rest.post(LISTENERS, {"listener": 5}), 400, "Invalid input for argument listener_.listener")
    assert_fault(rest.post(LISTENERS, [1]), 400, "Invalid input for argument listener_")
    missing = "Invalid input for field/attribute {}. Value: 'None'. Mandatory field missing."
    assert_fault(rest.post(LISTENERS, {"listener": {}}), 400, missing.format("protocol"))
    assert_fault(
        rest.post(LISTENERS, {"listener": {"protocol": "HTTP", "loadbalancer_id": lb["id"]}}),
        400,
        missing.format("protocol_port"),
    )
    assert_fault(
        rest.post(LISTENERS, {"listener": {"protocol": "HTTP", "protocol_port": 1}}),
        400,
        missing.format("loadbalancer_id"),
    )


def test_default_pool_rules(rest: Rest, lb: dict[str, Any]) -> None:
    http_pool = new_pool(rest, lb["id"], "HTTP")
    tcp_pool = new_pool(rest, lb["id"], "TCP")
    other = rest.create_lb(name="l-pool-other")
    foreign = new_pool(rest, other["id"], "HTTP")
    base = {"protocol": "HTTP", "protocol_port": 6000, "loadbalancer_id": lb["id"]}
    assert_fault(
        rest.post(LISTENERS, {"listener": {**base, "default_pool_id": tcp_pool["id"]}}),
        400,
        "Validation failure: The pool protocol 'TCP' is invalid while the listener protocol is 'HTTP'.",
    )
    assert_fault(
        rest.post(LISTENERS, {"listener": {**base, "default_pool_id": foreign["id"]}}),
        404,
        f"Pool {foreign['id']} not found.",
    )
    first = new_listener(rest, lb["id"], 6000, default_pool_id=http_pool["id"])
    assert first["default_pool_id"] == http_pool["id"]
    # Octavia lets two listeners share a default pool.
    second = new_listener(rest, lb["id"], 6001, default_pool_id=http_pool["id"])
    pool = rest.ok("GET", f"{POOLS}/{http_pool['id']}")["pool"]
    assert pool["listeners"] == [{"id": first["id"]}, {"id": second["id"]}]
    tcp = new_listener(rest, lb["id"], 6002, "TCP", default_pool_id=tcp_pool["id"])
    assert tcp["default_pool_id"] == tcp_pool["id"]
    # Update: matrix, unknown pool, unset.
    assert_fault(
        rest.put(f"{LISTENERS}/{first['id']}", {"listener": {"default_pool_id": tcp_pool["id"]}}),
        400,
        "Validation failure: The pool protocol 'TCP' is invalid while the listener protocol is 'HTTP'.",
    )
    assert_fault(
        rest.put(f"{LISTENERS}/{first['id']}", {"listener": {"default_pool_id": foreign["id"]}}),
        404,
        f"Pool {foreign['id']} not found.",
    )
    cleared = rest.ok("PUT", f"{LISTENERS}/{second['id']}", {"listener": {"default_pool_id": None}})["listener"]
    assert cleared["default_pool_id"] is None
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"{POOLS}/{http_pool['id']}")["pool"]["listeners"] == [{"id": first["id"]}]
    # Deleting a default pool is allowed; the listener keeps living without it.
    assert rest.delete(f"{POOLS}/{http_pool['id']}").status_code == 204
    rest.wait_lb_active(lb["id"])
    rest.wait_status(f"{POOLS}/{http_pool['id']}", "pool", "DELETED")
    assert rest.ok("GET", f"{LISTENERS}/{first['id']}")["listener"]["default_pool_id"] is None
    prometheus = new_listener(rest, lb["id"], 6003, "PROMETHEUS")
    assert_fault(
        rest.put(f"{LISTENERS}/{prometheus['id']}", {"listener": {"default_pool_id": tcp_pool["id"]}}),
        400,
        "Protocol PROMETHEUS listeners cannot have child objects.",
    )
    assert rest.delete(f"{LBS}/{other['id']}?cascade=true").status_code == 204


def test_update(rest: Rest, lb: dict[str, Any]) -> None:
    http = new_listener(rest, lb["id"], 5000, insert_headers={"X-Forwarded-For": "true"})
    url = f"{LISTENERS}/{http['id']}"
    changed = rest.ok(
        "PUT",
        url,
        {
            "listener": {
                "name": "renamed",
                "description": "d",
                "admin_state_up": False,
                "timeout_client_data": 1,
                "insert_headers": {"X-Forwarded-Port": "true"},
                "allowed_cidrs": ["192.0.2.0/24"],
                "tls_ciphers": "AES256-SHA",  # a cipher OpenSSL knows (issue 10: "X" would put the LB in ERROR)
            }
        },
    )["listener"]
    assert changed["provisioning_status"] == "PENDING_UPDATE"
    assert changed["name"] == "renamed" and changed["admin_state_up"] is False
    assert changed["insert_headers"] == {"X-Forwarded-Port": "true"} and changed["allowed_cidrs"] == ["192.0.2.0/24"]
    assert changed["timeout_client_data"] == 1 and changed["tls_ciphers"] == "AES256-SHA"
    rest.wait_lb_active(lb["id"])
    # Nulls restore Octavia's defaults (TLS ones too, whatever the protocol).
    reset = rest.ok(
        "PUT",
        url,
        {
            "listener": {
                "name": None,
                "connection_limit": None,
                "timeout_client_data": None,
                "insert_headers": None,
                "allowed_cidrs": None,
                "tls_ciphers": None,
                "tls_versions": None,
                "alpn_protocols": None,
            }
        },
    )["listener"]
    assert reset["name"] == "" and reset["connection_limit"] == -1 and reset["timeout_client_data"] == 50000
    assert reset["insert_headers"] == {} and reset["allowed_cidrs"] is None
    assert reset["tls_ciphers"] == CIPHERS and reset["tls_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert reset["alpn_protocols"] == ["h2", "http/1.1", "http/1.0"]
    rest.wait_lb_active(lb["id"])
    empty = rest.ok("PUT", url, {"listener": {}})["listener"]
    assert empty["provisioning_status"] == "PENDING_UPDATE"
    rest.wait_lb_active(lb["id"])

    term = new_listener(
        rest, lb["id"], 5001, "TERMINATED_HTTPS", default_tls_container_ref=tls_refs(rest.base_url).pkcs12
    )
    udp = new_listener(rest, lb["id"], 5002, "UDP")
    faults = [
        (url, {"protocol_port": 81}, "Unknown attribute for argument listener_.listener: protocol_port"),
        (url, {"protocol": "TCP"}, "Unknown attribute for argument listener_.listener: protocol"),
        (url, {"loadbalancer_id": lb["id"]}, "Unknown attribute for argument listener_.listener: loadbalancer_id"),
        (url, {"project_id": "x"}, "Unknown attribute for argument listener_.listener: project_id"),
        (url, {"name": 5}, "Invalid input for field/attribute name. Value: '5'. Value should be string"),
        (
            url,
            {"default_tls_container_ref": "r"},
            "Validation failure: Certificate container references are not allowed on HTTP protocol listeners.",
        ),
        (
            url,
            {"client_authentication": "OPTIONAL"},
            "Validation failure: Client authentication setting OPTIONAL requires a client CA container reference.",
        ),
        (
            url,
            {"client_crl_container_ref": "r"},
            "Validation failure: A client authentication CA reference is required to specify a client "
            "authentication revocation list.",
        ),
        (url, {"tls_versions": ["TLSv9"]}, "Validation failure: Invalid TLS versions: TLSv9"),
        (
            url,
            {"alpn_protocols": []},
            "Validation failure: Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this "
            "parameter to use the default.",
        ),
        (
            url,
            {"hsts_max_age": 5},
            "Validation failure: The HSTS feature can only be used for listeners using the TERMINATED_HTTPS protocol.",
        ),
        (
            url,
            {"hsts_preload": True},
            "Validation failure: Cannot enable hsts_include_subdomains or hsts_preload if hsts_max_age was not set "
            "as well.",
        ),
        (url, {"insert_headers": {"X-Bogus": "true"}}, "['X-Bogus'] is not a valid option for insert_headers"),
        (
            url,
            {"allowed_cidrs": ["::/0"]},
            f"Validation failure: CIDR ::/0 IP version incompatible with all VIPs ['{lb['vip_address']}'] IP version.",
        ),
        (url, {"connection_limit": "x"}, None),
        (
            f"{LISTENERS}/{udp['id']}",
            {"insert_headers": {"X-Forwarded-For": "true"}},
            "Validation failure: UDP protocol listener does not support TLS or header insertion.",
        ),
        (
            f"{LISTENERS}/{udp['id']}",
            {"default_tls_container_ref": "r"},
            "Validation failure: UDP protocol listener does not support TLS or header insertion.",
        ),
        (
            f"{LISTENERS}/{term['id']}",
            {"tls_versions": []},
            "Validation failure: Empty TLS version list. Either specify at least one TLS version or remove this "
            "parameter to use the default.",
        ),
        (
            f"{LISTENERS}/{term['id']}",
            {"hsts_include_subdomains": True},
            "Validation failure: Cannot enable hsts_include_subdomains or hsts_preload if hsts_max_age was not set "
            "as well.",
        ),
        (
            f"{LISTENERS}/{term['id']}",
            {"client_authentication": None},
            "Validation failure: Client authentication setting None requires a client CA container reference.",
        ),
    ]
    for path, fields, message in faults:
        response = rest.put(path, {"listener": fields})
        if message is None:
            assert_fault(response, 400)
            assert "invalid literal for int() with base 10: 'x'" in response.json()["faultstring"]
        else:
            assert_fault(response, 400, message)
    assert_fault(rest.put(url, {}), 400, "Validation failure: No listener object supplied.")
    assert_fault(rest.put(url, raw=b"[]"), 400, "Invalid input for argument listener_")
    # Nothing was written by the refused updates.
    after = rest.ok("GET", url)["listener"]
    assert after["provisioning_status"] == "ACTIVE" and after["insert_headers"] == {}
    assert after["hsts_max_age"] is None and after["default_tls_container_ref"] is None
    hsts = rest.ok("PUT", f"{LISTENERS}/{term['id']}", {"listener": {"hsts_max_age": 5, "hsts_preload": True}})
    assert hsts["listener"]["hsts_max_age"] == 5 and hsts["listener"]["hsts_preload"] is True
    rest.wait_lb_active(lb["id"])


def test_list_filters_pagination_fields(rest: Rest) -> None:
    lb = rest.create_lb(name="l-list")
    made = [
        new_listener(rest, lb["id"], 100 + i, "TCP" if i % 2 else "HTTP", name=f"page-{i}", tags=["lpage"])
        for i in range(3)
    ]
    ids = [m["id"] for m in made]
    everything = rest.ok("GET", f"{LISTENERS}?loadbalancer_id={lb['id']}")
    assert [x["id"] for x in everything["listeners"]] == ids and everything["listeners_links"] == []
    first = rest.ok("GET", f"{LISTENERS}?limit=2&tags=lpage")
    assert [x["id"] for x in first["listeners"]] == ids[:2]
    (link,) = first["listeners_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + LISTENERS + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [x["id"] for x in second["listeners"]] == ids[2:]
    assert [x["rel"] for x in second["listeners_links"]] == ["previous"]
    assert [x["id"] for x in rest.ok("GET", f"{LISTENERS}?protocol=TCP&tags=lpage")["listeners"]] == [ids[1]]
    assert [x["id"] for x in rest.ok("GET", f"{LISTENERS}?protocol_port=102&tags=lpage")["listeners"]] == [ids[2]]
    assert [x["id"] for x in rest.ok("GET", f"{LISTENERS}?name=page-0")["listeners"]] == [ids[0]]
    desc = rest.ok("GET", f"{LISTENERS}?tags=lpage&sort=protocol_port:desc")["listeners"]
    assert [x["id"] for x in desc] == ids[::-1]
    only = rest.ok("GET", f"{LISTENERS}?tags=lpage&fields=id&fields=protocol")["listeners"]
    assert all(set(x) == {"id", "protocol"} for x in only) and len(only) == 3
    assert_fault(rest.get(f"{LISTENERS}?bogus=1"), 400)
    assert_fault(rest.get(f"{LISTENERS}?sort=bogus:asc"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{LISTENERS}?protocol_port=abc"), 400)
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_stats_and_l7policies_view(mesh: Any, rest: Rest, lb: dict[str, Any]) -> None:
    listener = new_listener(rest, lb["id"], 4000)
    url = f"{LISTENERS}/{listener['id']}"
    zeros = {"bytes_in": 0, "bytes_out": 0, "active_connections": 0, "total_connections": 0, "request_errors": 0}
    assert rest.ok("GET", f"{url}/stats") == {"stats": zeros}
    engine = mesh_engine(mesh)
    policy = str(uuid.uuid4())
    now = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        for amphora, numbers in (("a1", (1, 2, 3, 4, 5)), ("a2", (10, 20, 30, 40, 50))):
            conn.execute(
                text(
                    "INSERT INTO listener_statistics (listener_id, amphora_id, bytes_in, bytes_out, "
                    "active_connections, total_connections, request_errors) VALUES (:l, :a, :b, :c, :d, :e, :f)"
                ),
                dict(zip("labcdef", (listener["id"], amphora, *numbers), strict=True)),
            )
        conn.execute(
            text(
                "INSERT INTO l7policy (id, project_id, name, provisioning_status, operating_status, admin_state_up, "
                "created_at, listener_id, action, position) VALUES (:i, :p, '', 'ACTIVE', 'ONLINE', :t, :c, :l, "
                "'REJECT', 1)"
            ),
            {"i": policy, "p": PROJECT, "t": True, "c": now, "l": listener["id"]},
        )
    engine.dispose()
    totals = {"bytes_in": 11, "bytes_out": 22, "active_connections": 33, "total_connections": 44, "request_errors": 55}
    assert rest.ok("GET", f"{url}/stats") == {"stats": totals}
    assert rest.ok("GET", url)["listener"]["l7policies"] == [{"id": policy}]


def test_rbac(secure_rest: Rest) -> None:
    owner = "a" * 32
    admin = secure_rest.as_(owner, "admin")
    member = secure_rest.as_(owner, "member")
    reader = secure_rest.as_(owner, "reader")
    stranger = secure_rest.as_("b" * 32, "member")
    lb = admin.create_lb(project_id=owner)
    body = {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb["id"]}}
    assert_fault(reader.post(LISTENERS, body), 403, "Policy does not allow this request to be performed.")
    assert_fault(
        stranger.post(LISTENERS, body), 403, "Policy does not allow this request to be performed."
    )  # found, then refused: Octavia's 403
    listener = member.ok("POST", LISTENERS, body)["listener"]
    assert listener["project_id"] == owner
    member.wait_lb_active(lb["id"])
    url = f"{LISTENERS}/{listener['id']}"
    assert reader.ok("GET", url)["listener"]["id"] == listener["id"]
    assert reader.ok("GET", f"{url}/stats")["stats"]["bytes_in"] == 0
    assert [x["id"] for x in reader.ok("GET", LISTENERS)["listeners"]] == [listener["id"]]
    assert stranger.ok("GET", LISTENERS)["listeners"] == []
    assert len(admin.ok("GET", LISTENERS)["listeners"]) >= 1
    for call in (
        stranger.get(url),
        stranger.get(f"{url}/stats"),
        stranger.put(url, {"listener": {}}),
        stranger.delete(url),
    ):
        assert_fault(call, 403, "Policy does not allow this request to be performed.")
    assert_fault(
        reader.put(url, {"listener": {"name": "x"}}), 403, "Policy does not allow this request to be performed."
    )
    assert_fault(reader.delete(url), 403, "Policy does not allow this request to be performed.")
    assert_unauthenticated(secure_rest.get(LISTENERS))
    assert member.ok("PUT", url, {"listener": {"name": "mine"}})["listener"]["name"] == "mine"
    member.wait_lb_active(lb["id"])
    assert member.delete(url).status_code == 204
    member.wait_lb_active(lb["id"])
    assert admin.delete(f"{LBS}/{lb['id']}").status_code == 204
