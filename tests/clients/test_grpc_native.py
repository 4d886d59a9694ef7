"""Native gRPC clients through the same edge port: reflection, health, and the API's JSON documents."""

from __future__ import annotations

import json

import grpc
import pytest
from google.api import httpbody_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support import PROJECT, SUBNET

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2


@pytest.fixture(scope="module")
def channel(mesh: Mesh) -> grpc.Channel:
    target = mesh.endpoint.removeprefix("http://")
    with grpc.insecure_channel(target) as ch:
        yield ch


def test_reflection_lists_the_api(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (reply,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in reply.list_services_response.service}
    assert "octavia_mesh.lbaas.v2.LoadBalancers" in names
    assert "grpc.health.v1.Health" in names


def test_health_serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_create_get_and_not_found(channel: grpc.Channel) -> None:
    stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
    body = json.dumps({"loadbalancer": {"name": "grpc-lb", "vip_subnet_id": SUBNET, "project_id": PROJECT}})
    reply, call = stub.CreateLoadBalancer.with_call(
        requests_pb2.CollectionRequest(body=httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())),
        timeout=10,
    )
    assert dict(call.initial_metadata())["x-http-code"] == "201"
    lb = json.loads(reply.data)["loadbalancer"]
    assert lb["name"] == "grpc-lb" and lb["provisioning_status"] == "PENDING_CREATE"

    shown = json.loads(stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb["id"]), timeout=10).data)
    assert shown["loadbalancer"]["id"] == lb["id"]
    listed = json.loads(stub.ListLoadBalancers(requests_pb2.CollectionRequest(query="name=grpc-lb"), timeout=10).data)
    assert [x["id"] for x in listed["loadbalancers"]] == [lb["id"]]

    with pytest.raises(grpc.RpcError) as missing:
        stub.GetLoadBalancer(requests_pb2.ResourceRequest(id="00000000-0000-0000-0000-000000000001"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "Load Balancer 00000000-0000-0000-0000-000000000001 not found."

    with pytest.raises(grpc.RpcError) as bad:
        stub.CreateLoadBalancer(
            requests_pb2.CollectionRequest(body=httpbody_pb2.HttpBody(content_type="application/json", data=b"{bad")),
            timeout=10,
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_reflection_v1_answers_as_v1alpha_does(channel: grpc.Channel) -> None:
    """grpcurl and current clients ask ``grpc.reflection.v1`` first; its messages are v1alpha's, field for field."""
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (listed,) = v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for s in listed.list_services_response.service}
    assert {"octavia_mesh.lbaas.v2.LoadBalancers", "grpc.reflection.v1.ServerReflection"} <= names
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="octavia_mesh.lbaas.v2.LoadBalancers")
    (found,) = v1(iter([request]), timeout=10)
    assert found.file_descriptor_response.file_descriptor_proto


def test_native_grpc_links_name_the_rest_collection(mesh: Mesh, channel: grpc.Channel) -> None:
    stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
    body = json.dumps({"loadbalancer": {"name": "grpc-links", "vip_subnet_id": SUBNET, "project_id": PROJECT}})
    for _ in range(2):
        stub.CreateLoadBalancer(
            requests_pb2.CollectionRequest(
                body=httpbody_pb2.HttpBody(content_type="application/json", data=body.encode())
            )
        )
    page = json.loads(stub.ListLoadBalancers(requests_pb2.CollectionRequest(query="name=grpc-links&limit=1")).data)
    (link,) = page["loadbalancers_links"]
    assert link["rel"] == "next"
    assert link["href"].startswith(f"{mesh.endpoint}/v2/lbaas/loadbalancers?"), link  # as REST, never /loadbalancers?
    assert "limit=1" in link["href"] and "marker=" in link["href"]
