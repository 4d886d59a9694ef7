"""Native gRPC in keystone mode (through the edge and straight to the API service), and header spoofing refused in
every mode: the edge strips identity headers, and the API believes them only from the named proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from google.api import httpbody_pb2
from keystone_server import Keystone
from support import PROXY_SECRET, SUBNET, Rest, start_mesh

from octavia_mesh.cli.edge import envoy_config
from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.authheaders import IDENTITY_HEADERS, PROXY_SECRET_HEADER
from octavia_mesh.protos.lbaas.v2 import flavorprofiles_pb2_grpc, loadbalancers_pb2_grpc, requests_pb2

#: The first test also starts Keystone (~20 s, a one-time ~2 min bootstrap on a fresh machine) and meshes.
pytestmark = pytest.mark.timeout(300)


def lb_stub(target: str) -> tuple[grpc.Channel, loadbalancers_pb2_grpc.LoadBalancersStub]:
    channel = grpc.insecure_channel(target)
    return channel, loadbalancers_pb2_grpc.LoadBalancersStub(channel)


def create_request(name: str) -> requests_pb2.CollectionRequest:
    body = {"loadbalancer": {"name": name, "vip_subnet_id": SUBNET}}
    return requests_pb2.CollectionRequest(
        body=httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(body).encode())
    )


def targets(mesh: Mesh) -> list[str]:
    """The edge's port (native gRPC passes through Envoy) and the API service's own."""
    return [mesh.endpoint.removeprefix("http://"), mesh.grpc_targets["api"]]


def test_grpc_with_a_token_is_served_as_the_tokens_project(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    for target in targets(ks_mesh):
        channel, stub = lb_stub(target)
        with channel:
            metadata = (("x-auth-token", keystone.token_of("member-a", "proj-a")),)
            reply, call = stub.CreateLoadBalancer.with_call(create_request("grpc"), metadata=metadata)
            assert dict(call.initial_metadata())["x-http-code"] == "201"
            assert json.loads(reply.data)["loadbalancer"]["project_id"] == people.project_a
            listed = json.loads(stub.ListLoadBalancers(requests_pb2.CollectionRequest(), metadata=metadata).data)
            assert {lb["project_id"] for lb in listed["loadbalancers"]} == {people.project_a}


def test_grpc_without_or_with_a_bad_token_is_unauthenticated(ks_mesh: Mesh, keystone: Keystone) -> None:
    for target in targets(ks_mesh):
        channel, stub = lb_stub(target)
        with channel:
            for metadata in ((), (("x-auth-token", "garbage"),)):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.ListLoadBalancers(requests_pb2.CollectionRequest(), metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                headers = dict(caught.value.initial_metadata())
                assert headers["www-authenticate"] == f'Keystone uri="{keystone.url}"'
                assert headers["x-http-code"] == "401"


def test_grpc_ignores_identity_metadata_even_straight_to_the_api(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    spoof = (("x-project-id", people.project_b), ("x-roles", "admin"), ("x-octavia-mesh-proxy-secret", "x" * 20))
    for target in targets(ks_mesh):
        with grpc.insecure_channel(target) as channel:
            stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListLoadBalancers(requests_pb2.CollectionRequest(), metadata=spoof)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = (("x-auth-token", keystone.token_of("member-a", "proj-a")),)
            reply = stub.CreateLoadBalancer(create_request("spoof"), metadata=spoof + token)
            assert json.loads(reply.data)["loadbalancer"]["project_id"] == people.project_a
            profiles = flavorprofiles_pb2_grpc.FlavorProfilesStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                profiles.ListFlavorProfiles(requests_pb2.CollectionRequest(), metadata=spoof + token)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_grpc_when_keystone_is_down_is_unavailable(down_mesh: Mesh) -> None:
    for target in targets(down_mesh):
        channel, stub = lb_stub(target)
        with channel, pytest.raises(grpc.RpcError) as caught:
            stub.ListLoadBalancers(requests_pb2.CollectionRequest(), metadata=(("x-auth-token", "t"),))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(caught.value.initial_metadata())["x-http-code"] == "503"


# --- trusted_headers: only the named proxy is believed ---------------------------------------------------------


def test_trusted_headers_need_the_proxys_secret(secure_mesh: Mesh) -> None:
    claims = {"X-Project-Id": "p-trusted", "X-Roles": "admin"}
    for headers in (claims, {**claims, "X-Octavia-Mesh-Proxy-Secret": "wrong-secret-0123456789"}):
        response = Rest(secure_mesh.endpoint, headers).get("/v2/lbaas/loadbalancers")
        assert response.status_code == 401, response.text
    proxied = Rest(secure_mesh.endpoint, {**claims, "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET})
    proxied.ok("GET", "/v2/lbaas/flavorprofiles")  # admin, as the proxy said
    # Straight to the API service over gRPC: the same rule.
    with grpc.insecure_channel(secure_mesh.grpc_targets["api"]) as channel:
        stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListLoadBalancers(
                requests_pb2.CollectionRequest(), metadata=(("x-project-id", "p"), ("x-roles", "admin"))
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("x-project-id", "p"), ("x-roles", "member"), ("x-octavia-mesh-proxy-secret", PROXY_SECRET))
        stub.ListLoadBalancers(requests_pb2.CollectionRequest(), metadata=metadata)


def test_trusted_headers_cannot_start_without_a_secret() -> None:
    from octavia_mesh.api.settings import ApiSettings

    with pytest.raises(ValueError, match="TRUSTED_PROXY_SECRET"):
        ApiSettings(auth_strategy="trusted_headers")
    with pytest.raises(ValueError, match="KEYSTONE_AUTH_URL"):
        ApiSettings(auth_strategy="keystone")


# --- noauth: every caller is admin; X-Project-Id keeps Octavia's noauth meaning, other claims are dropped --------


@pytest.fixture(scope="module")
def noauth_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", default_project="noauth-default")


def test_noauth_takes_the_project_header_and_nothing_else(noauth_mesh: Mesh) -> None:
    rest = Rest(noauth_mesh.endpoint, {"X-Project-Id": "p-header", "X-Roles": "reader"})
    lb = rest.ok("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"vip_subnet_id": SUBNET}})["loadbalancer"]
    assert lb["project_id"] == "p-header"  # X-Roles: reader did not make a noauth caller a reader
    default = Rest(noauth_mesh.endpoint).ok(
        "POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"vip_subnet_id": SUBNET}}
    )
    assert default["loadbalancer"]["project_id"] == "noauth-default"


@pytest.mark.parametrize("mode", ["noauth", "keystone", "trusted_headers"])
def test_the_edge_strips_identity_headers_except_for_a_trusted_proxy(mode: str) -> None:
    config = envoy_config("127.0.0.1", 1, "127.0.0.1", 2, 3, "d.pb", "", mode)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    stripped = set(manager["route_config"]["virtual_hosts"][0]["request_headers_to_remove"])
    if mode == "trusted_headers":
        assert stripped == set()
    else:
        expected = {*IDENTITY_HEADERS, PROXY_SECRET_HEADER} - ({"x-project-id"} if mode == "noauth" else set())
        assert stripped == expected
        assert {"x-roles", "x-user-id", "openstack-system-scope", PROXY_SECRET_HEADER} <= stripped
