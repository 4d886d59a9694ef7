"""The local secret store at the edge (Barbican v1's subset) and TLS references on listeners and pools."""

from __future__ import annotations

import base64
import stat
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from sqlalchemy import text
from support import PROJECT, Rest, assert_fault, mesh_engine, new_listener, new_pool
from tls_material import Store, crl, issue, p12, tls_refs

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common import secrets


@pytest.fixture(scope="module")
def mesh(envoy_mesh: Mesh) -> Mesh:
    """This module boots amphorae (the amphora provider): the whole mesh, not the fast tier's light one, which
    runs no health service for their heartbeats."""
    return envoy_mesh


@pytest.fixture(scope="module")
def rest(envoy_rest: Rest) -> Rest:
    return envoy_rest


LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
LBS = "/v2/lbaas/loadbalancers"
SECRET_KEYS = [
    "status",
    "created",
    "updated",
    "expiration",
    "algorithm",
    "bit_length",
    "mode",
    "name",
    "secret_ref",
    "secret_type",
    "content_types",
    "creator_id",
    "consumers",
]
OTHER_PROJECT = "0c0c0c0c0c0c4c0c8c0c0c0c0c0c0c0c"


@pytest.fixture(scope="module")
def store(rest: Rest) -> Store:
    return Store(rest.base_url, PROJECT)


@pytest.fixture(scope="module")
def lb(rest: Rest) -> Iterator[dict[str, Any]]:
    """An amphora load balancer: its provider resolves references (the noop provider accepts any, as Octavia's
    no-op certificate manager)."""
    subnet = rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"]
    lb = rest.create_lb(name="tls-lb", provider="amphora", vip_subnet_id=subnet)
    yield lb
    rest.delete(f"{LBS}/{lb['id']}?cascade=true")


def _uuid(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def _barbican_fault(response: Any, status: int, description: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["code", "title", "description"] and body["code"] == status, body
    if description is not None:
        assert body["description"] == description


def _count(store: Store, name: str) -> int:
    return store.call("GET", f"/v1/secrets?name={name}").json()["total"]


# --- secrets -------------------------------------------------------------------------------------


def test_secret_roundtrip(rest: Rest, store: Store) -> None:
    ref = store.secret(
        b"\x00\x01binary",
        "round",
        secret_type="symmetric",
        algorithm="aes",
        bit_length=256,
        mode="cbc",
        expiration="2099-01-01T01:00:00+01:00",
    )
    assert ref.startswith(f"{rest.base_url}/v1/secrets/")
    shown = store.call("GET", ref).json()
    assert list(shown) == SECRET_KEYS
    assert shown["secret_ref"] == ref and shown["name"] == "round" and shown["status"] == "ACTIVE"
    assert shown["expiration"] == "2099-01-01T00:00:00" and shown["secret_type"] == "symmetric"
    assert (shown["algorithm"], shown["bit_length"], shown["mode"]) == ("aes", 256, "cbc")
    assert shown["content_types"] == {"default": "application/octet-stream"} and shown["consumers"] == []
    payload = store.call("GET", f"{ref}/payload", headers={"Accept": "application/octet-stream"})
    assert payload.status_code == 200 and payload.content == b"\x00\x01binary"
    assert payload.headers["content-type"] == "application/octet-stream"
    # Barbican's older form: the payload from the secret itself, asked for by Accept header.
    assert store.call("GET", ref, headers={"Accept": "application/octet-stream"}).content == b"\x00\x01binary"
    text_ref = store.secret("  some text\n", "round-text")
    assert store.call("GET", f"{text_ref}/payload").content == b"some text"  # stripped, as Barbican does
    assert store.call("GET", text_ref).json()["content_types"] == {"default": "text/plain"}
    empty = store.call("POST", "/v1/secrets", {"name": "no-payload"}).json()["secret_ref"]
    assert "content_types" not in store.call("GET", empty).json()
    _barbican_fault(store.call("GET", f"{empty}/payload"), 404, "Not Found. Sorry but your secret has no payload.")
    # Trailing slash, and the /key-manager prefix python-barbicanclient uses, reach the same secret.
    assert store.call("GET", f"/key-manager/v1/secrets/{_uuid(ref)}").json() == shown
    for each in (ref, text_ref, empty):
        assert store.call("DELETE", each).status_code == 204
    _barbican_fault(store.call("GET", ref), 404, "Secret not found.")
    _barbican_fault(store.call("GET", f"{ref}/payload"), 404, "Secret not found.")
    _barbican_fault(store.call("DELETE", ref), 404, "Secret not found.")
    _barbican_fault(store.call("GET", "/v1/secrets/not-a-uuid"), 404, "Secret not found.")


def test_list_pagination_and_filters(store: Store) -> None:
    refs = [store.secret(f"page {i}", "paged") for i in range(3)]
    first = store.call("GET", "/v1/secrets?name=paged&limit=2").json()
    assert [s["secret_ref"] for s in first["secrets"]] == refs[:2] and first["total"] == 3
    assert "previous" not in first and first["next"].endswith("/v1/secrets?name=paged&limit=2&offset=2")
    second = store.call("GET", first["next"]).json()
    assert [s["secret_ref"] for s in second["secrets"]] == refs[2:] and "next" not in second
    assert second["previous"].endswith("/v1/secrets?name=paged&limit=2&offset=0")
    assert len(store.call("GET", "/v1/secrets?name=paged&limit=bogus").json()["secrets"]) == 3  # default 10
    assert len(store.call("GET", "/v1/secrets?name=paged&limit=0").json()["secrets"]) == 1  # at least one
    assert store.call("GET", "/v1/secrets?name=paged&secret_type=passphrase").json()["total"] == 0
    for ref in refs:
        store.call("DELETE", ref)


_SCHEMA = "Provided object does not match schema 'Secret': "
_TEXT = {"payload": "x", "payload_content_type": "text/plain"}
_B64 = {"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}
BAD_SECRETS = [
    (
        {"payload": "x"},
        "If 'payload' is supplied, 'payload_content_type' must also be supplied.. Invalid property: "
        "'payload_content_type'",
    ),
    (
        {"payload": "x", "payload_content_type": "text/html"},
        "payload_content_type is not one of ['text/plain', 'text/plain;charset=utf-8', 'text/plain; charset=utf-8', "
        "'application/octet-stream', 'application/pkcs8', 'application/pkix-cert']. Invalid property: "
        "'payload_content_type'",
    ),
    (
        {"payload": "eA==", "payload_content_type": "application/octet-stream"},
        "payload_content_encoding is not one of ['base64']. Invalid property: 'payload_content_encoding'",
    ),
    (
        {**_TEXT, "payload_content_encoding": "base64"},
        "payload_content_encoding is not one of None. Invalid property: 'payload_content_encoding'",
    ),
    (
        {**_TEXT, "payload_content_encoding": "gzip"},
        "'gzip' is not one of ['base64']. Invalid property: 'payload_content_encoding'",
    ),
    ({"payload": "!!!", **_B64}, "Invalid payload for payload_content_encoding. Invalid property: 'payload'"),
    (
        {"payload": " \n", "payload_content_type": "text/plain"},
        "If 'payload' specified, must be non empty. Invalid property: 'payload'",
    ),
    (
        {"payload": 5, "payload_content_type": "text/plain"},
        "the payload is not of type 'string'. Invalid property: 'payload'",
    ),
    (
        {"payload_content_type": "text/plain"},
        "payload must be provided when payload_content_type is specified. Invalid property: 'payload'",
    ),
    (
        {**_TEXT, "secret_type": "bogus"},
        "'bogus' is not one of ['symmetric', 'passphrase', 'private', 'public', 'certificate', 'opaque']. Invalid "
        "property: 'secret_type'",
    ),
    ({**_TEXT, "bit_length": 0}, "0 is less than the minimum of 1. Invalid property: 'bit_length'"),
    ({**_TEXT, "bit_length": 40000}, "40000 is greater than the maximum of 32767. Invalid property: 'bit_length'"),
    ({**_TEXT, "bit_length": True}, "True is not of type 'integer'. Invalid property: 'bit_length'"),
    ({**_TEXT, "name": 5}, "5 is not of type 'string', 'null'. Invalid property: 'name'"),
    ({**_TEXT, "name": "n" * 256}, f"'{'n' * 256}' is too long. Invalid property: 'name'"),
    ({**_TEXT, "algorithm": ["aes"]}, "['aes'] is not of type 'string'. Invalid property: 'algorithm'"),
    ({**_TEXT, "expiration": "tomorrow"}, "Invalid date for 'expiration'. Invalid property: 'expiration'"),
    (
        {**_TEXT, "expiration": "2000-01-01T00:00:00Z"},
        "'expiration' is before current time. Invalid property: 'expiration'",
    ),
]


@pytest.mark.parametrize(("body", "description"), BAD_SECRETS, ids=[str(i) for i in range(len(BAD_SECRETS))])
def test_secret_faults(store: Store, body: dict[str, Any], description: str) -> None:
    response = store.call("POST", "/v1/secrets", {"name": "refused", **body} if "name" not in body else body)
    _barbican_fault(response, 400, _SCHEMA + description)
    assert _count(store, "refused") == 0


def test_body_faults(store: Store) -> None:
    _barbican_fault(
        store.call("POST", "/v1/secrets", data=b"{", headers={"Content-Type": "application/json"}),
        400,
        "Malformed JSON",
    )
    _barbican_fault(
        store.call("POST", "/v1/secrets", [1]),
        400,
        _SCHEMA + "the request body is not a JSON object. Invalid property: 'None'",
    )
    big = {"name": "refused", "payload": "x" * 20001, "payload_content_type": "text/plain"}
    _barbican_fault(store.call("POST", "/v1/secrets", big), 413, "Provided information too large to process")
    assert _count(store, "refused") == 0


def test_encrypted_at_rest_with_a_0600_key_file(mesh: Any, store: Store) -> None:
    leaf = issue("rest.example.com")
    ref = store.secret(leaf.key_pem.decode(), "at-rest")
    with mesh_engine(mesh).connect() as conn:
        row = conn.execute(
            text("SELECT encrypted_payload, content_type FROM secret WHERE id = :id"), {"id": _uuid(ref)}
        ).one()
    stored = bytes(row[0])
    assert b"PRIVATE KEY" not in stored and leaf.key_pem[40:80] not in stored and row[1] == "text/plain"
    key_file = mesh.state / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # It is that key file's key that encrypts (the worker is given the same file).
    ring = secrets.load_keyring(str(key_file))
    assert ring.decrypt(_uuid(ref), stored) == leaf.key_pem.strip()
    store.call("DELETE", ref)


# --- containers ----------------------------------------------------------------------------------


def test_containers(rest: Rest, store: Store) -> None:
    leaf = issue("c.example.com")
    cert, key = store.secret(leaf.cert_pem.decode(), "c-cert"), store.secret(leaf.key_pem.decode(), "c-key")
    ref = store.container("bundle", certificate=cert, private_key=key)
    assert ref.startswith(f"{rest.base_url}/v1/containers/")
    shown = store.call("GET", ref).json()
    assert list(shown) == [
        "status",
        "updated",
        "name",
        "consumers",
        "created",
        "container_ref",
        "creator_id",
        "secret_refs",
        "type",
    ]
    assert shown["container_ref"] == ref and shown["type"] == "certificate" and shown["name"] == "bundle"
    assert shown["secret_refs"] == [
        {"secret_ref": cert, "name": "certificate"},
        {"secret_ref": key, "name": "private_key"},
    ]
    generic = store.container("bag", "generic", anything=cert)
    listed = store.call("GET", "/v1/containers?type=generic&name=bag").json()
    assert [c["container_ref"] for c in listed["containers"]] == [generic] and listed["total"] == 1
    assert store.call("GET", "/v1/containers?limit=1").json()["total"] >= 2
    schema = "Provided object does not match schema 'Container': "
    refused = [
        ({"name": "x"}, 400, schema + "'type' is a required property. Invalid property: 'None'"),
        (
            {"type": "box"},
            400,
            schema + "'box' is not one of ['generic', 'rsa', 'certificate']. Invalid property: 'type'",
        ),
        (
            {"type": "generic", "secret_refs": {}},
            400,
            schema + "{} is not of type 'array'. Invalid property: 'secret_refs'",
        ),
        (
            {"type": "generic", "secret_refs": [{"name": "a"}]},
            400,
            schema + "'secret_ref' is a required property. Invalid property: 'secret_refs'",
        ),
        (
            {"type": "generic", "secret_refs": [{"name": "a", "secret_ref": cert}, {"name": "a", "secret_ref": key}]},
            400,
            schema + "Duplicate reference names are not allowed. Invalid property: 'secret_refs'",
        ),
        (
            {"type": "generic", "secret_refs": [{"name": "a", "secret_ref": cert}, {"name": "b", "secret_ref": cert}]},
            400,
            schema + "Duplicate secret ids are not allowed. Invalid property: 'secret_refs'",
        ),
        (
            {"type": "certificate", "secret_refs": [{"name": "private_key", "secret_ref": key}]},
            400,
            schema + "The minimum required reference name is 'certificate' for Certificate type. Invalid property: "
            "'secret_refs'",
        ),
        (
            {
                "type": "certificate",
                "secret_refs": [{"name": "certificate", "secret_ref": cert}, {"name": "extra", "secret_ref": key}],
            },
            400,
            schema + "only 'private_key', 'certificate' , 'private_key_passphrase',  or 'intermediates' reference "
            "names are allowed for Certificate type. Invalid property: 'secret_refs'",
        ),
        (
            {
                "type": "certificate",
                "secret_refs": [{"name": "certificate", "secret_ref": f"{cert[:-36]}{uuid.uuid4()}"}],
            },
            404,
            "Secret provided for 'certificate' doesn't exist.",
        ),
    ]
    for body, status, description in refused:
        _barbican_fault(store.call("POST", "/v1/containers", {"name": "refused", **body}), status, description)
    assert store.call("GET", "/v1/containers?name=refused").json()["total"] == 0
    for each in (ref, generic):
        assert store.call("DELETE", each).status_code == 204
    _barbican_fault(store.call("GET", ref), 404, "Container not found.")
    for each in (cert, key):
        store.call("DELETE", each)


def test_projects_see_only_their_own(rest: Rest, store: Store) -> None:
    ref = store.secret("mine", "scoped")
    container = store.container("scoped", "generic", a=ref)
    other = Store(rest.base_url, OTHER_PROJECT)
    for path in (ref, f"{ref}/payload"):
        _barbican_fault(other.call("GET", path), 404, "Secret not found.")
    _barbican_fault(other.call("DELETE", ref), 404, "Secret not found.")
    _barbican_fault(other.call("GET", container), 404, "Container not found.")
    assert other.call("GET", "/v1/secrets?name=scoped").json() == {"secrets": [], "total": 0}
    _barbican_fault(
        other.call("POST", "/v1/containers", {"type": "generic", "secret_refs": [{"name": "a", "secret_ref": ref}]}),
        404,
        "Secret provided for 'a' doesn't exist.",
    )
    no_project = Rest(rest.base_url)  # noauth without a project (and no default one): nobody to own a secret
    _barbican_fault(no_project.get("/v1/secrets"), 400, "No project: the X-Project-Id header is required.")
    store.call("DELETE", container)
    store.call("DELETE", ref)


def test_rbac(secure_rest: Rest) -> None:
    project = uuid.uuid4().hex
    member, reader = Store(secure_rest.base_url, project), Store(secure_rest.base_url, project, "reader")
    denied = "attempt not allowed - please review your user/project privileges"
    _barbican_fault(reader.call("POST", "/v1/secrets", _TEXT), 403, f"Secret creation {denied}")
    ref = member.secret("classified", "rbac")
    assert reader.call("GET", ref).json()["name"] == "rbac"  # readers see metadata ...
    _barbican_fault(reader.call("GET", f"{ref}/payload"), 403, f"Secret payload retrieval {denied}")  # ... not payloads
    _barbican_fault(reader.call("DELETE", ref), 403, f"Secret deletion {denied}")
    assert reader.call("GET", "/v1/secrets").json()["total"] == 1
    _barbican_fault(
        Store(secure_rest.base_url, project, "").call("GET", "/v1/secrets"), 403, f"Secret(s) retrieval {denied}"
    )
    # Admins of another project do not see it either: secrets are the project's alone, as in Barbican.
    _barbican_fault(Store(secure_rest.base_url, OTHER_PROJECT, "admin").call("GET", ref), 404, "Secret not found.")
    anonymous = Rest(secure_rest.base_url)
    _barbican_fault(anonymous.get("/v1/secrets"), 401, "The request you have made requires authentication.")
    assert anonymous.get("/key-manager").status_code == 200  # version discovery needs no identity
    assert member.call("GET", f"{ref}/payload").content == b"classified"
    assert member.call("DELETE", ref).status_code == 204


def test_version_discovery(rest: Rest) -> None:
    values = rest.ok("GET", "/key-manager")["versions"]["values"]
    assert [(v["id"], v["status"], v["min_version"], v["max_version"]) for v in values] == [
        ("v1", "CURRENT", "1.0", "1.0")
    ]
    assert values[0]["links"][0] == {"rel": "self", "href": f"{rest.base_url}/key-manager/v1/"}
    assert rest.ok("GET", "/v1")["version"]["links"][0]["href"] == f"{rest.base_url}/v1/"
    assert rest.ok("GET", "/key-manager/v1")["version"]["id"] == "v1"
    assert rest.get("/").json()["versions"][0]["id"] == "v2.0"  # Octavia's own document is untouched


def test_openstacksdk_key_manager(rest: Rest) -> None:
    for override in (f"{rest.base_url}/v1", f"{rest.base_url}/key-manager/v1"):
        conn = openstack.connect(auth_type="none", key_manager_endpoint_override=override)
        conn.session.additional_headers["X-Project-Id"] = PROJECT
        created = conn.key_manager.create_secret(
            name="sdk",
            payload=base64.b64encode(p12(issue("sdk.example.com"))).decode(),
            payload_content_type="application/octet-stream",
            payload_content_encoding="base64",
        )
        secret_id = _uuid(created.secret_ref)
        fetched = conn.key_manager.get_secret(secret_id)
        assert fetched.name == "sdk" and fetched.content_types == {"default": "application/octet-stream"}
        assert "sdk" in [s.name for s in conn.key_manager.secrets(name="sdk")]
        container = conn.key_manager.create_container(
            name="sdk", type="generic", secret_refs=[{"name": "p12", "secret_ref": created.secret_ref}]
        )
        assert conn.key_manager.get_container(_uuid(container.container_ref)).type == "generic"
        conn.key_manager.delete_container(_uuid(container.container_ref))
        conn.key_manager.delete_secret(secret_id)
        assert "sdk" not in [s.name for s in conn.key_manager.secrets(name="sdk")]


# --- references on listeners and pools -----------------------------------------------------------


def test_terminated_https_and_reencryption_with_stored_refs(rest: Rest, lb: dict[str, Any]) -> None:
    refs = tls_refs(rest.base_url)
    listener = new_listener(
        rest,
        lb["id"],
        8443,
        "TERMINATED_HTTPS",
        default_tls_container_ref=refs.pkcs12,
        sni_container_refs=[refs.container],
        client_ca_tls_container_ref=refs.ca,
        client_crl_container_ref=refs.crl,
        client_authentication="MANDATORY",
    )
    assert listener["default_tls_container_ref"] == refs.pkcs12 and listener["sni_container_refs"] == [refs.container]
    assert listener["client_ca_tls_container_ref"] == refs.ca and listener["client_crl_container_ref"] == refs.crl
    pool = new_pool(
        rest,
        lb["id"],
        listener_id=listener["id"],
        tls_enabled=True,
        tls_container_ref=refs.container,
        ca_tls_container_ref=refs.ca,
        crl_container_ref=refs.crl,
    )
    assert pool["tls_container_ref"] == refs.container and pool["crl_container_ref"] == refs.crl
    # Updates check the references they change.
    url = f"{LISTENERS}/{listener['id']}"
    bad = f"{rest.base_url}/v1/secrets/{uuid.uuid4()}"
    assert_fault(
        rest.put(url, {"listener": {"sni_container_refs": [bad]}}), 400, f"Could not retrieve certificate: ['{bad}']"
    )
    assert_fault(
        rest.put(f"{POOLS}/{pool['id']}", {"pool": {"tls_container_ref": bad}}),
        400,
        f"Could not retrieve certificate: ['{bad}']",
    )
    assert_fault(
        rest.put(f"{POOLS}/{pool['id']}", {"pool": {"ca_tls_container_ref": None}}),
        400,
        "Validation failure: A CA reference cannot be removed when a certificate revocation list is present.",
    )
    assert rest.ok("GET", url)["listener"]["sni_container_refs"] == [refs.container]
    swapped = rest.ok("PUT", url, {"listener": {"sni_container_refs": [refs.pkcs12], "name": "swapped"}})["listener"]
    assert swapped["sni_container_refs"] == [refs.pkcs12]
    rest.wait_lb_active(lb["id"])
    assert rest.delete(url).status_code == 204
    rest.wait_status(url, "listener", "DELETED")


def _listener_faults(rest: Rest, refs: Any) -> list[tuple[dict[str, Any], str]]:
    store = Store(rest.base_url)
    missing = [f"{rest.base_url}/v1/secrets/{uuid.uuid4()}", f"{rest.base_url}/v1/containers/{uuid.uuid4()}"]
    not_p12 = store.secret("hello", "not-p12")
    generic = store.container("g", "generic", a=not_p12)
    other_ca = issue("Another CA", ca=True)
    foreign_crl = store.secret(crl(other_ca), "foreign.crl")
    foreign = Store(rest.base_url, OTHER_PROJECT).secret(p12(issue("x.example.com")), "foreign.p12")
    term = {"protocol": "TERMINATED_HTTPS", "default_tls_container_ref": refs.pkcs12}
    unreadable = (
        "The PKCS12 bundle is unreadable. Please check the PKCS12 bundle validity. In addition, make sure it does not "
        "require a pass phrase. Error: "
    )
    return [
        ({**term, "default_tls_container_ref": missing[0]}, f"Could not retrieve certificate: ['{missing[0]}']"),
        (
            {**term, "default_tls_container_ref": missing[0], "sni_container_refs": [missing[1], refs.container]},
            f"Could not retrieve certificate: ['{missing[1]}', '{missing[0]}']",
        ),
        (
            {**term, "default_tls_container_ref": "not-a-reference"},
            "Could not retrieve certificate: ['not-a-reference']",
        ),
        ({**term, "default_tls_container_ref": generic}, f"Could not retrieve certificate: ['{generic}']"),
        ({**term, "default_tls_container_ref": foreign}, f"Could not retrieve certificate: ['{foreign}']"),
        ({**term, "default_tls_container_ref": not_p12}, unreadable + "Could not deserialize PKCS12 data"),
        (
            {**term, "client_ca_tls_container_ref": refs.container},
            f"Could not retrieve certificate: ['{refs.container}']",
        ),
        (
            {**term, "client_ca_tls_container_ref": missing[0], "client_crl_container_ref": missing[1]},
            f"Could not retrieve certificate: ['{missing[0]}', '{missing[1]}']",
        ),
        (
            {**term, "client_ca_tls_container_ref": not_p12},
            "Validation failure: The client authentication CA certificate is invalid. It must be a valid x509 PEM "
            "format certificate. Error: ",
        ),
        (
            {**term, "client_ca_tls_container_ref": refs.ca, "client_crl_container_ref": refs.ca},
            "Validation failure: The client authentication certificate revocation list is invalid. It must be a "
            "valid x509 PEM format certificate revocation list. Error: ",
        ),
        (
            {**term, "client_ca_tls_container_ref": refs.ca, "client_crl_container_ref": foreign_crl},
            "Validation failure: The CRL specified is not valid for client certificate authority reference supplied.",
        ),
    ]


def test_bad_references_refused_with_nothing_written(rest: Rest, lb: dict[str, Any]) -> None:
    refs = tls_refs(rest.base_url)
    for fields, message in _listener_faults(rest, refs):
        body = {"protocol_port": 9443, "loadbalancer_id": lb["id"], **fields}
        response = rest.post(LISTENERS, {"listener": body})
        assert_fault(response, 400)
        assert response.json()["faultstring"].startswith(message), (fields, response.json()["faultstring"])
    assert rest.ok("GET", f"{LISTENERS}?loadbalancer_id={lb['id']}&protocol_port=9443")["listeners"] == []
    missing = f"{rest.base_url}/v1/secrets/{uuid.uuid4()}"
    pool_faults = [
        ({"tls_container_ref": missing}, f"Could not retrieve certificate: ['{missing}']"),
        (
            {"ca_tls_container_ref": refs.pkcs12},
            "Validation failure: The client authentication CA certificate is invalid",
        ),
        (
            {"ca_tls_container_ref": missing, "crl_container_ref": refs.crl},
            f"Could not retrieve certificate: ['{missing}']",
        ),
    ]
    for fields, message in pool_faults:
        body = {
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "loadbalancer_id": lb["id"],
            "name": "bad-tls",
            "tls_enabled": True,
            **fields,
        }
        response = rest.post(POOLS, {"pool": body})
        assert_fault(response, 400)
        assert response.json()["faultstring"].startswith(message), response.json()["faultstring"]
    assert rest.ok("GET", f"{POOLS}?name=bad-tls")["pools"] == []
    # The single-call create checks references too, and writes nothing when one is bad.
    graph = {
        "name": "bad-tls-graph",
        "vip_subnet_id": lb["vip_subnet_id"],
        "project_id": PROJECT,
        "provider": "amphora",
        "listeners": [{"protocol": "TERMINATED_HTTPS", "protocol_port": 443, "default_tls_container_ref": missing}],
    }
    assert_fault(rest.post(LBS, {"loadbalancer": graph}), 400, f"Could not retrieve certificate: ['{missing}']")
    assert rest.ok("GET", f"{LBS}?name=bad-tls-graph")["loadbalancers"] == []
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"


def test_secrets_in_use_cannot_be_deleted(rest: Rest, lb: dict[str, Any]) -> None:
    store = Store(rest.base_url)
    leaf = issue("inuse.example.com")
    bundle = store.secret(p12(leaf), "in-use.p12")
    part = store.secret(leaf.cert_pem.decode(), "in-use.crt")
    container = store.container("in-use", certificate=part, private_key=store.secret(leaf.key_pem.decode(), "k"))
    listener = new_listener(
        rest, lb["id"], 9444, "TERMINATED_HTTPS", default_tls_container_ref=bundle, sni_container_refs=[container]
    )
    lid = listener["id"]
    _barbican_fault(store.call("DELETE", bundle), 409, f"Secret {_uuid(bundle)} is in use by listener {lid}.")
    _barbican_fault(store.call("DELETE", part), 409, f"Secret {_uuid(part)} is in use by listener {lid}.")
    _barbican_fault(store.call("DELETE", container), 409, f"Container {_uuid(container)} is in use by listener {lid}.")
    assert rest.delete(f"{LISTENERS}/{lid}").status_code == 204
    rest.wait_status(f"{LISTENERS}/{lid}", "listener", "DELETED")
    for ref in (container, bundle, part):
        assert store.call("DELETE", ref).status_code == 204


def test_amphora_provider_accepts_terminated_https(rest: Rest) -> None:
    refs = tls_refs(rest.base_url)
    subnet = rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"]
    lb = rest.ok(
        "POST",
        LBS,
        {"loadbalancer": {"name": "amp-tls", "vip_subnet_id": subnet, "project_id": PROJECT, "provider": "amphora"}},
    )["loadbalancer"]
    try:
        rest.wait_lb_active(lb["id"])
        body = {
            "loadbalancer_id": lb["id"],
            "protocol": "TERMINATED_HTTPS",
            "protocol_port": 443,
            "default_tls_container_ref": refs.pkcs12,
        }
        created = rest.ok("POST", LISTENERS, {"listener": body})["listener"]
        assert created["protocol"] == "TERMINATED_HTTPS" and created["provisioning_status"] == "PENDING_CREATE"
        bad = {**body, "protocol_port": 444, "default_tls_container_ref": f"{rest.base_url}/v1/secrets/{uuid.uuid4()}"}
        assert_fault(rest.post(LISTENERS, {"listener": bad}), 400)
    finally:
        # Whatever the worker makes of it (pushing the PEMs to amphorae is its part), it must settle.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"]
            if not status.startswith("PENDING_"):
                break
            time.sleep(0.1)
        assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204


def test_noop_provider_accepts_any_reference(rest: Rest) -> None:
    """Octavia's no-op certificate manager answers every reference; so does the noop provider (tempest's noop
    jobs create TLS listeners and pools with made-up refs)."""
    lb = rest.create_lb(name="noop-tls")
    made_up = [f"http://barbican.example/v1/containers/{uuid.uuid4()}" for _ in range(4)]
    listener = new_listener(
        rest,
        lb["id"],
        443,
        "TERMINATED_HTTPS",
        default_tls_container_ref=made_up[0],
        sni_container_refs=[made_up[1]],
        client_ca_tls_container_ref=made_up[2],
        client_crl_container_ref=made_up[3],
    )
    assert listener["default_tls_container_ref"] == made_up[0] and listener["sni_container_refs"] == [made_up[1]]
    body = {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"], "tls_enabled": True}
    body |= {"tls_container_ref": made_up[0], "ca_tls_container_ref": made_up[2], "crl_container_ref": made_up[3]}
    pool = rest.ok("POST", POOLS, {"pool": body})["pool"]
    assert pool["ca_tls_container_ref"] == made_up[2]
    rest.wait_lb_active(lb["id"])
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204
