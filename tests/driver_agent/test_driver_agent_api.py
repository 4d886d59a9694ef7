"""The ``DriverAgent`` gRPC contract, called as a provider would (the SDK's ``DriverLibrary`` and the raw stub).

Objects are made through the REST edge with the ``acme`` provider (which settles them); the tests then read
them back through ``Get*`` and send good and bad reports.
"""

from __future__ import annotations

import uuid

import grpc
import pytest
from support import PROJECT, Rest, new_listener, new_pool
from tls_material import tls_refs

from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2 as api
from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2_grpc
from octavia_mesh.provider_sdk import DriverAgentError, DriverLibrary, UpdateStatisticsError, UpdateStatusError

# octavia-lib 3.x provider data models (octavia_lib/api/drivers/data_models.py): the keys a driver gets.
LB_KEYS = {
    "admin_state_up",
    "description",
    "flavor",
    "listeners",
    "loadbalancer_id",
    "name",
    "pools",
    "project_id",
    "vip_address",
    "vip_network_id",
    "vip_port_id",
    "vip_subnet_id",
    "vip_qos_policy_id",
    "additional_vips",
    "availability_zone",
    "vip_sg_ids",
}
LISTENER_KEYS = {
    "admin_state_up",
    "connection_limit",
    "default_pool",
    "default_pool_id",
    "default_tls_container_ref",
    "default_tls_container_data",
    "description",
    "insert_headers",
    "l7policies",
    "listener_id",
    "loadbalancer_id",
    "name",
    "protocol",
    "protocol_port",
    "sni_container_refs",
    "sni_container_data",
    "timeout_client_data",
    "timeout_member_connect",
    "timeout_member_data",
    "timeout_tcp_inspect",
    "client_ca_tls_container_ref",
    "client_ca_tls_container_data",
    "client_authentication",
    "client_crl_container_ref",
    "client_crl_container_data",
    "project_id",
    "allowed_cidrs",
    "tls_versions",
    "tls_ciphers",
    "alpn_protocols",
    "hsts_max_age",
    "hsts_include_subdomains",
    "hsts_preload",
}
POOL_KEYS = {
    "admin_state_up",
    "description",
    "healthmonitor",
    "lb_algorithm",
    "loadbalancer_id",
    "members",
    "name",
    "pool_id",
    "listener_id",
    "protocol",
    "session_persistence",
    "tls_container_ref",
    "tls_container_data",
    "ca_tls_container_ref",
    "ca_tls_container_data",
    "crl_container_ref",
    "crl_container_data",
    "tls_enabled",
    "project_id",
    "tls_versions",
    "tls_ciphers",
    "alpn_protocols",
}
MEMBER_KEYS = {
    "address",
    "admin_state_up",
    "member_id",
    "monitor_address",
    "monitor_port",
    "name",
    "pool_id",
    "protocol_port",
    "subnet_id",
    "weight",
    "backup",
    "project_id",
    "vnic_type",
}
MONITOR_KEYS = {
    "admin_state_up",
    "delay",
    "expected_codes",
    "healthmonitor_id",
    "http_method",
    "max_retries",
    "max_retries_down",
    "name",
    "pool_id",
    "timeout",
    "type",
    "url_path",
    "http_version",
    "domain_name",
    "project_id",
}
POLICY_KEYS = {
    "action",
    "admin_state_up",
    "description",
    "l7policy_id",
    "listener_id",
    "name",
    "position",
    "redirect_pool_id",
    "redirect_url",
    "rules",
    "redirect_prefix",
    "redirect_http_code",
    "project_id",
}
RULE_KEYS = {
    "admin_state_up",
    "compare_type",
    "invert",
    "key",
    "l7policy_id",
    "l7rule_id",
    "type",
    "value",
    "project_id",
}


@pytest.fixture(scope="module")
def tree(acme_rest: Rest) -> dict[str, dict]:
    """An acme load balancer with one object of every kind, all ACTIVE."""
    rest = acme_rest
    lb = rest.create_lb(provider="acme", name="contract", description="for the contract tests")
    listener = new_listener(rest, lb["id"], 8181, insert_headers={"X-Forwarded-For": "true"})
    pool = new_pool(
        rest, lb["id"], listener_id=listener["id"], session_persistence={"type": "APP_COOKIE", "cookie_name": "c"}
    )
    member = rest.ok(
        "POST",
        f"/v2/lbaas/pools/{pool['id']}/members",
        {"member": {"address": "192.0.2.20", "protocol_port": 8000, "weight": 7, "monitor_port": 9000}},
    )["member"]
    rest.wait_status(f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}", "member")
    rest.wait_lb_active(lb["id"])
    monitor = rest.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {
            "healthmonitor": {
                "pool_id": pool["id"],
                "type": "HTTP",
                "delay": 3,
                "timeout": 2,
                "max_retries": 4,
                "url_path": "/healthz",
            }
        },
    )["healthmonitor"]
    rest.wait_status(f"/v2/lbaas/healthmonitors/{monitor['id']}", "healthmonitor")
    rest.wait_lb_active(lb["id"])
    policy = rest.ok(
        "POST",
        "/v2/lbaas/l7policies",
        {"l7policy": {"listener_id": listener["id"], "action": "REDIRECT_TO_URL", "redirect_url": "http://x.example"}},
    )["l7policy"]
    rest.wait_status(f"/v2/lbaas/l7policies/{policy['id']}", "l7policy")
    rest.wait_lb_active(lb["id"])
    rule = rest.ok(
        "POST",
        f"/v2/lbaas/l7policies/{policy['id']}/rules",
        {"rule": {"type": "HEADER", "key": "X-Debug", "compare_type": "EQUAL_TO", "value": "1"}},
    )["rule"]
    rest.wait_status(f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}", "rule")
    rest.wait_lb_active(lb["id"])
    return {
        "lb": lb,
        "listener": listener,
        "pool": pool,
        "member": member,
        "monitor": monitor,
        "policy": policy,
        "rule": rule,
    }


async def test_gets_return_octavia_lib_provider_dicts(driver_agent_address: str, tree: dict[str, dict]) -> None:
    async with DriverLibrary(driver_agent_address) as lib:
        lb = await lib.get_loadbalancer(tree["lb"]["id"])
        listener = await lib.get_listener(tree["listener"]["id"])
        pool = await lib.get_pool(tree["pool"]["id"])
        member = await lib.get_member(tree["member"]["id"])
        monitor = await lib.get_healthmonitor(tree["monitor"]["id"])
        policy = await lib.get_l7policy(tree["policy"]["id"])
        rule = await lib.get_l7rule(tree["rule"]["id"])
        with_statuses = await lib.get_member(tree["member"]["id"], statuses=True)
    assert set(lb) == LB_KEYS
    assert set(listener) == LISTENER_KEYS
    assert set(pool) == POOL_KEYS
    assert set(member) == MEMBER_KEYS
    assert set(monitor) == MONITOR_KEYS
    assert set(policy) == POLICY_KEYS
    assert set(rule) == RULE_KEYS
    assert with_statuses == {**member, "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}

    assert lb["loadbalancer_id"] == tree["lb"]["id"]
    assert (lb["name"], lb["description"], lb["project_id"]) == ("contract", "for the contract tests", PROJECT)
    assert lb["vip_address"] == tree["lb"]["vip_address"]
    assert lb["flavor"] is None and lb["availability_zone"] is None  # unset renders as None, as octavia-lib's
    assert [item["listener_id"] for item in lb["listeners"]] == [tree["listener"]["id"]]
    assert [item["pool_id"] for item in lb["pools"]] == [tree["pool"]["id"]]
    assert lb["listeners"][0] == listener  # nested objects are the same dictionaries

    assert (listener["protocol"], listener["protocol_port"], listener["loadbalancer_id"]) == (
        "HTTP",
        8181,
        tree["lb"]["id"],
    )
    assert listener["insert_headers"] == {"X-Forwarded-For": "true"}
    assert listener["default_pool_id"] == tree["pool"]["id"]
    assert listener["default_pool"] == pool
    assert (listener["timeout_client_data"], listener["timeout_tcp_inspect"]) == (50000, 0)
    assert (listener["hsts_max_age"], listener["tls_ciphers"], listener["connection_limit"]) == (None, None, -1)
    assert [p["l7policy_id"] for p in listener["l7policies"]] == [tree["policy"]["id"]]
    assert listener["default_tls_container_data"] is None  # no certificate: None, not an empty dict

    assert pool["listener_id"] == tree["listener"]["id"]
    assert pool["session_persistence"] == {
        "type": "APP_COOKIE",
        "cookie_name": "c",
        "persistence_timeout": None,
        "persistence_granularity": None,
    }
    assert pool["healthmonitor"] == monitor
    assert pool["members"] == [member]

    assert (member["address"], member["protocol_port"], member["weight"]) == ("192.0.2.20", 8000, 7)
    assert (member["monitor_port"], member["monitor_address"]) == (9000, None)
    assert (monitor["type"], monitor["delay"], monitor["url_path"], monitor["pool_id"]) == (
        "HTTP",
        3,
        "/healthz",
        tree["pool"]["id"],
    )
    assert (policy["action"], policy["redirect_url"], policy["position"]) == ("REDIRECT_TO_URL", "http://x.example", 1)
    assert policy["rules"] == [rule]
    assert (rule["type"], rule["key"], rule["value"], rule["invert"]) == ("HEADER", "X-Debug", "1", False)


async def test_unknown_ids_are_not_found(driver_agent_address: str) -> None:
    missing = str(uuid.uuid4())
    async with DriverLibrary(driver_agent_address) as lib:
        for getter in (
            lib.get_loadbalancer,
            lib.get_listener,
            lib.get_pool,
            lib.get_member,
            lib.get_healthmonitor,
            lib.get_l7policy,
            lib.get_l7rule,
            lib.get_flavor,
            lib.get_availability_zone,
        ):
            assert await getter(missing) is None, getter.__name__
        stub = lib.stub
        calls = [
            (stub.GetLoadBalancer, api.GetLoadBalancerRequest(load_balancer_id=missing)),
            (stub.GetListener, api.GetListenerRequest(listener_id=missing)),
            (stub.GetPool, api.GetPoolRequest(pool_id=missing)),
            (stub.GetMember, api.GetMemberRequest(member_id=missing)),
            (stub.GetHealthMonitor, api.GetHealthMonitorRequest(health_monitor_id=missing)),
            (stub.GetL7Policy, api.GetL7PolicyRequest(l7_policy_id=missing)),
            (stub.GetL7Rule, api.GetL7RuleRequest(l7_rule_id=missing)),
            (stub.GetFlavor, api.GetFlavorRequest(flavor_id=missing)),
            (stub.GetAvailabilityZone, api.GetAvailabilityZoneRequest(name="nowhere")),
        ]
        for method, request in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND, request
        # A malformed id is a bad argument, not a missing object.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetPool(api.GetPoolRequest(pool_id="not-a-uuid"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(DriverAgentError):
            await lib.get_member("")


async def test_a_member_of_another_kind_is_not_found(driver_agent_address: str, tree: dict[str, dict]) -> None:
    """An id is looked up as the kind asked for: a pool's id is no member."""
    async with DriverLibrary(driver_agent_address) as lib:
        assert await lib.get_member(tree["pool"]["id"]) is None
        assert await lib.get_loadbalancer(tree["listener"]["id"]) is None


async def test_bad_status_reports_are_refused_whole(
    driver_agent_address: str, tree: dict[str, dict], acme_rest: Rest
) -> None:
    lb_id, listener_id = tree["lb"]["id"], tree["listener"]["id"]
    async with DriverLibrary(driver_agent_address, provider="acme") as lib:
        cases = [
            (
                {"listeners": [{"id": listener_id, "provisioning_status": "BOGUS"}]},
                grpc.StatusCode.INVALID_ARGUMENT,
                ("listeners", listener_id),
            ),
            (
                {"members": [{"id": tree["member"]["id"], "operating_status": "UP"}]},
                grpc.StatusCode.INVALID_ARGUMENT,
                ("members", tree["member"]["id"]),
            ),
            ({"pools": [{"id": "nope", "provisioning_status": "ACTIVE"}]}, grpc.StatusCode.INVALID_ARGUMENT, None),
            ({"pools": [{"id": tree["pool"]["id"]}]}, grpc.StatusCode.INVALID_ARGUMENT, ("pools", tree["pool"]["id"])),
            (
                {
                    "l7rules": [
                        {"id": tree["rule"]["id"], "operating_status": "ONLINE"},
                        {"id": tree["rule"]["id"], "operating_status": "OFFLINE"},
                    ]
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                ("l7rules", tree["rule"]["id"]),
            ),
        ]
        missing = str(uuid.uuid4())
        # A good entry next to an unknown object: the report is refused whole, the good entry not applied.
        cases.append(
            (
                {
                    "loadbalancers": [{"id": lb_id, "operating_status": "DEGRADED"}],
                    "healthmonitors": [{"id": missing, "provisioning_status": "ACTIVE"}],
                },
                grpc.StatusCode.NOT_FOUND,
                ("healthmonitors", missing),
            )
        )
        for report, code, named in cases:
            with pytest.raises(UpdateStatusError) as caught:
                await lib.update_loadbalancer_status(report)
            assert caught.value.code == code, (report, caught.value.fault_string)
            if named is not None:
                assert (caught.value.status_object, caught.value.status_object_id) == named, caught.value.fault_string
        with pytest.raises(UpdateStatusError):
            await lib.update_loadbalancer_status({"widgets": [{"id": lb_id, "operating_status": "ONLINE"}]})
    lb = acme_rest.ok("GET", f"/v2/lbaas/loadbalancers/{lb_id}")["loadbalancer"]
    assert (lb["provisioning_status"], lb["operating_status"]) == ("ACTIVE", "ONLINE")

    # Another provider may not touch acme's objects.
    async with DriverLibrary(driver_agent_address, provider="noop") as other:
        with pytest.raises(UpdateStatusError) as caught:
            await other.update_loadbalancer_status({"loadbalancers": [{"id": lb_id, "operating_status": "ERROR"}]})
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert (caught.value.status_object, caught.value.status_object_id) == ("loadbalancers", lb_id)
        with pytest.raises(UpdateStatisticsError) as stats_refused:
            await other.update_listener_statistics({"listeners": [{"id": listener_id, "bytes_in": 1}]})
        assert stats_refused.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_operating_status_reports_and_repeated_deletions(
    driver_agent_address: str, tree: dict[str, dict], acme_rest: Rest
) -> None:
    """Health-style reports change operating statuses only; DELETED for an object already gone is a no-op."""
    member_path = f"/v2/lbaas/pools/{tree['pool']['id']}/members/{tree['member']['id']}"
    async with DriverLibrary(driver_agent_address, provider="acme") as lib:
        completed = await lib.update_loadbalancer_status(
            {"members": [{"id": tree["member"]["id"], "operating_status": "ERROR"}]}
        )
        assert completed == []  # nothing was pending
        member = acme_rest.ok("GET", member_path)["member"]
        assert (member["provisioning_status"], member["operating_status"]) == ("ACTIVE", "ERROR")
        await lib.update_loadbalancer_status({"members": [{"id": tree["member"]["id"], "operating_status": "ONLINE"}]})
        assert acme_rest.ok("GET", member_path)["member"]["operating_status"] == "ONLINE"
        gone = str(uuid.uuid4())
        assert (
            await lib.update_loadbalancer_status({"listeners": [{"id": gone, "provisioning_status": "DELETED"}]}) == []
        )


async def test_statistics_reports(driver_agent_address: str, tree: dict[str, dict], acme_rest: Rest) -> None:
    listener_id = tree["listener"]["id"]
    async with DriverLibrary(driver_agent_address, provider="acme") as lib:
        for bad, field in (
            ({"id": listener_id, "bytes_in": -1}, "negative"),
            ({"id": listener_id, "active_connections": 2**31}, "too many connections for the column"),
            ({"id": listener_id, "amphora_id": "x" * 37}, "instance id too long"),
            ({"id": "x"}, "malformed id"),
        ):
            with pytest.raises(UpdateStatisticsError) as caught:
                await lib.update_listener_statistics({"listeners": [bad]})
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT, field
        missing = str(uuid.uuid4())
        with pytest.raises(UpdateStatisticsError) as caught:
            await lib.update_listener_statistics({"listeners": [{"id": missing, "bytes_in": 1}]})
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert (caught.value.stats_object, caught.value.stats_object_id) == ("listeners", missing)

        # Counters replace the previous ones per (listener, instance); the API sums the instances.
        await lib.update_listener_statistics(
            {
                "listeners": [
                    {
                        "id": listener_id,
                        "amphora_id": "acme-a",
                        "bytes_in": 10,
                        "bytes_out": 20,
                        "total_connections": 3,
                    },
                    {"id": listener_id, "amphora_id": "acme-b", "bytes_in": 5, "active_connections": 2},
                    {"id": listener_id, "bytes_in": 1, "request_errors": 4},  # the listener standing for itself
                ]
            }
        )
        stats = acme_rest.ok("GET", f"/v2/lbaas/listeners/{listener_id}/stats")["stats"]
        assert stats == {
            "bytes_in": 16,
            "bytes_out": 20,
            "active_connections": 2,
            "total_connections": 3,
            "request_errors": 4,
        }


async def test_flavor_and_availability_zone(driver_agent_address: str, acme_rest: Rest) -> None:
    rest = acme_rest
    profile = rest.ok(
        "POST",
        "/v2/lbaas/flavorprofiles",
        {
            "flavorprofile": {
                "name": "acme-p",
                "provider_name": "acme",
                "flavor_data": '{"loadbalancer_topology": "SINGLE"}',
            }
        },
    )["flavorprofile"]
    flavor = rest.ok(
        "POST",
        "/v2/lbaas/flavors",
        {"flavor": {"name": "acme-small", "flavor_profile_id": profile["id"], "description": "small"}},
    )["flavor"]
    zone_profile = rest.ok(
        "POST",
        "/v2/lbaas/availabilityzoneprofiles",
        {
            "availability_zone_profile": {
                "name": "acme-zp",
                "provider_name": "acme",
                "availability_zone_data": '{"compute_zone": "az-east"}',
            }
        },
    )["availability_zone_profile"]
    rest.ok(
        "POST",
        "/v2/lbaas/availabilityzones",
        {"availability_zone": {"name": "acme-east", "availability_zone_profile_id": zone_profile["id"]}},
    )
    lb = rest.create_lb(flavor_id=flavor["id"], availability_zone="acme-east", name="flavored")
    assert lb["provider"] == "acme"  # the flavor's provider
    async with DriverLibrary(driver_agent_address) as lib:
        seen = await lib.get_loadbalancer(lb["id"])
        assert seen["flavor"] == {"loadbalancer_topology": "SINGLE"}
        assert seen["availability_zone"] == "acme-east"
        assert await lib.get_flavor(flavor["id"]) == {
            "id": flavor["id"],
            "name": "acme-small",
            "description": "small",
            "enabled": True,
            "provider_name": "acme",
            "flavor_data": {"loadbalancer_topology": "SINGLE"},
        }
        zone = await lib.get_availability_zone("acme-east")
        assert zone["availability_zone_data"] == {"compute_zone": "az-east"}
        assert (zone["provider_name"], zone["enabled"]) == ("acme", True)
    rest.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}")
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED")


async def test_certificates_are_handed_to_the_provider(driver_agent_address: str, acme_mesh, acme_rest: Rest) -> None:
    """A TERMINATED_HTTPS listener's certificates come resolved from the secret store, as Octavia's drivers get them."""
    refs = tls_refs(acme_mesh.endpoint)
    lb = acme_rest.create_lb(provider="acme", name="tls")
    listener = new_listener(
        acme_rest,
        lb["id"],
        443,
        protocol="TERMINATED_HTTPS",
        default_tls_container_ref=refs.pkcs12,
        sni_container_refs=[refs.container],
        client_authentication="OPTIONAL",
        client_ca_tls_container_ref=refs.ca,
        client_crl_container_ref=refs.crl,
    )
    async with DriverLibrary(driver_agent_address) as lib:
        seen = await lib.get_listener(listener["id"])
    tls = seen["default_tls_container_data"]
    assert tls["primary_cn"] == "www.example.com"
    assert tls["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in tls["private_key"]
    assert len(tls["intermediates"]) == 1  # the intermediate CA of the PKCS12 bundle
    assert [s["primary_cn"] for s in seen["sni_container_data"]] == ["sni.example.com"]
    assert seen["client_ca_tls_container_data"].strip() == refs.ca_cert.cert_pem.decode().strip()
    assert seen["client_crl_container_data"].startswith("-----BEGIN X509 CRL-----")
    assert seen["client_authentication"] == "OPTIONAL"
    acme_rest.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true")
    acme_rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED")


async def test_raw_stub_reports_complete_pending_changes(driver_agent_address: str, acme_rest: Rest) -> None:
    """A provider in any language: the plain stub, enum-free messages, the completed load balancers returned."""
    lb = acme_rest.create_lb(provider="acme", name="raw")
    async with grpc.aio.insecure_channel(driver_agent_address) as channel:
        stub = driver_agent_pb2_grpc.DriverAgentStub(channel)
        reply = await stub.GetLoadBalancer(api.GetLoadBalancerRequest(load_balancer_id=lb["id"]), timeout=5)
        assert reply.load_balancer.provisioning_status == "ACTIVE"
        assert not reply.load_balancer.HasField("flavor")
        report = api.UpdateStatusesRequest(
            load_balancers=[api.StatusUpdate(id=lb["id"], operating_status="DEGRADED")], provider="acme"
        )
        assert list((await stub.UpdateStatuses(report, timeout=5)).completed_load_balancer_ids) == []
    assert acme_rest.ok("GET", f"/v2/lbaas/loadbalancers/{lb['id']}")["loadbalancer"]["operating_status"] == "DEGRADED"
    acme_rest.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}")
    acme_rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED")


async def test_deleted_takes_everything_under_the_object(driver_agent_address: str, acme_rest: Rest) -> None:
    """A provider's DELETED removes the object with its descendants, whatever state they were in."""
    rest = acme_rest
    lb = rest.create_lb(provider="acme", name="subtree")
    listener = new_listener(rest, lb["id"], 9090)
    pool = new_pool(rest, lb["id"], listener_id=listener["id"])
    member = rest.ok(
        "POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "192.0.2.30", "protocol_port": 80}}
    )["member"]
    rest.wait_lb_active(lb["id"])
    policy = rest.ok("POST", "/v2/lbaas/l7policies", {"l7policy": {"listener_id": listener["id"], "action": "REJECT"}})[
        "l7policy"
    ]
    rest.wait_lb_active(lb["id"])
    rule = rest.ok(
        "POST",
        f"/v2/lbaas/l7policies/{policy['id']}/rules",
        {"rule": {"type": "PATH", "compare_type": "EQUAL_TO", "value": "/x"}},
    )["rule"]
    rest.wait_lb_active(lb["id"])
    async with DriverLibrary(driver_agent_address, provider="acme") as lib:
        await lib.update_listener_statistics({"listeners": [{"id": listener["id"], "bytes_in": 99}]})
        await lib.update_loadbalancer_status({"listeners": [{"id": listener["id"], "provisioning_status": "DELETED"}]})
        for path in (
            f"/v2/lbaas/listeners/{listener['id']}",
            f"/v2/lbaas/l7policies/{policy['id']}",
            f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}",
        ):
            assert rest.get(path).status_code == 404, path
        # The pool outlives its listener; the load balancer's counters lost the listener's.
        assert rest.ok("GET", f"/v2/lbaas/pools/{pool['id']}")["pool"]["listeners"] == []
        assert rest.ok("GET", f"/v2/lbaas/loadbalancers/{lb['id']}/stats")["stats"]["bytes_in"] == 0

        await lib.update_loadbalancer_status({"pools": [{"id": pool["id"], "provisioning_status": "DELETED"}]})
        assert rest.get(f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}").status_code == 404
        assert await lib.get_member(member["id"]) is None
        remaining = await lib.get_loadbalancer(lb["id"])
        assert (remaining["listeners"], remaining["pools"]) == ([], [])

        # The load balancer itself: its row stays DELETED (not found for the API and for Get*).
        await lib.update_loadbalancer_status({"loadbalancers": [{"id": lb["id"], "provisioning_status": "DELETED"}]})
        assert rest.get(f"/v2/lbaas/loadbalancers/{lb['id']}").status_code == 404
        assert await lib.get_loadbalancer(lb["id"]) is None
        # Reporting it again is harmless; reporting anything else about it is not found.
        await lib.update_loadbalancer_status({"loadbalancers": [{"id": lb["id"], "provisioning_status": "DELETED"}]})
        with pytest.raises(UpdateStatusError) as caught:
            await lib.update_loadbalancer_status({"loadbalancers": [{"id": lb["id"], "operating_status": "ONLINE"}]})
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
