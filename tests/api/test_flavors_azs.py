"""Flavor profiles, flavors, availability-zone profiles and availability zones through the REST edge."""

from __future__ import annotations

import json
import uuid

from support import PROJECT, SUBNET, Rest, assert_fault

FPS = "/v2/lbaas/flavorprofiles"
FLAVORS = "/v2/lbaas/flavors"
AZPS = "/v2/lbaas/availabilityzoneprofiles"
AZS = "/v2/lbaas/availabilityzones"
LBS = "/v2/lbaas/loadbalancers"
DENIED = "Policy does not allow this request to be performed."
MISSING = "00000000-0000-0000-0000-000000000009"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _profile(rest: Rest, data: str = '{"loadbalancer_topology": "SINGLE"}') -> dict[str, str]:
    body = {"flavorprofile": {"name": _name("fp"), "provider_name": "noop", "flavor_data": data}}
    return rest.ok("POST", FPS, body)["flavorprofile"]


def _flavor(rest: Rest, profile_id: str, **fields: object) -> dict[str, object]:
    body = {"name": _name("flavor"), "flavor_profile_id": profile_id, **fields}
    return rest.ok("POST", FLAVORS, {"flavor": body})["flavor"]


def _zone_profile(rest: Rest, data: str = '{"compute_zone": "az1"}') -> dict[str, str]:
    body = {
        "availability_zone_profile": {"name": _name("azp"), "provider_name": "noop", "availability_zone_data": data}
    }
    return rest.ok("POST", AZPS, body)["availability_zone_profile"]


def _count(rest: Rest, path: str, key: str) -> int:
    return len(rest.ok("GET", path)[key])


# --- flavor profiles --------------------------------------------------------------------


def test_flavor_profile_lifecycle(rest: Rest) -> None:
    name = _name("fp")
    data = '{"loadbalancer_topology": "SINGLE"}'
    created = rest.ok("POST", FPS, {"flavorprofile": {"name": name, "provider_name": "noop", "flavor_data": data}})
    profile = created["flavorprofile"]
    assert list(profile) == ["id", "name", "provider_name", "flavor_data"]
    assert profile == {"id": profile["id"], "name": name, "provider_name": "noop", "flavor_data": data}
    path = f"{FPS}/{profile['id']}"
    assert rest.ok("GET", path) == created
    assert rest.ok("GET", f"{path}?fields=flavor_data&bogus=1") == {"flavorprofile": {"flavor_data": data}}
    every_option = json.dumps(
        {
            "sriov_vip": True,
            "allow_member_sriov": False,
            "amp_image_tag": "t",
            "loadbalancer_topology": "ACTIVE_STANDBY",
        }
    )
    updated = rest.ok("PUT", path, {"flavorprofile": {"name": "renamed", "flavor_data": every_option}})
    assert updated["flavorprofile"] == {**profile, "name": "renamed", "flavor_data": every_option}
    assert rest.ok("PUT", path, {"flavorprofile": {}}) == updated
    listed = rest.ok("GET", f"{FPS}?name=renamed&fields=id")
    assert {"id": profile["id"]} in listed["flavorprofiles"] and listed["flavorprofile_links"] == []
    assert rest.delete(path).status_code == 204
    assert_fault(rest.get(path), 404, f"Flavor Profile {profile['id']} not found.")
    assert_fault(rest.put(path, {"flavorprofile": {"name": "x"}}), 404, f"Flavor Profile {profile['id']} not found.")
    assert_fault(rest.delete(path), 404, f"Flavor profile {profile['id']} not found.")


def test_flavor_profile_pagination(rest: Rest) -> None:
    ids = sorted(_profile(rest)["id"] for _ in range(3))
    first = rest.ok("GET", f"{FPS}?limit=2&sort=id:asc&id={ids[0]}&id={ids[1]}&id={ids[2]}")
    assert [p["id"] for p in first["flavorprofiles"]] == ids[:2]
    (link,) = first["flavorprofile_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + FPS + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [p["id"] for p in second["flavorprofiles"]] == ids[2:]
    assert [x["rel"] for x in second["flavorprofile_links"]] == ["previous"]
    assert_fault(rest.get(f"{FPS}?sort=bogus"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{FPS}?bogus=1"), 400)


def test_flavor_profile_bad_input_writes_nothing(rest: Rest) -> None:
    before = _count(rest, FPS, "flavorprofiles")

    def body(**fields: object) -> dict[str, object]:
        return {"flavorprofile": {"name": "x", "provider_name": "noop", "flavor_data": "{}", **fields}}

    unsupported = "Provider 'noop' does not support a requested option: "
    cases = [
        (
            body(flavor_data='{"bogus": 1}'),
            501,
            unsupported + "Additional properties are not allowed ('bogus' was unexpected)",
        ),
        (
            body(flavor_data='{"bogus": 1, "zzz": 2}'),
            501,
            unsupported + "Additional properties are not allowed ('bogus', 'zzz' were unexpected)",
        ),
        (
            body(flavor_data='{"loadbalancer_topology": "X"}'),
            501,
            unsupported + "loadbalancer_topology 'X' is not one of ['ACTIVE_STANDBY', 'SINGLE']",
        ),
        (
            body(flavor_data='{"loadbalancer_topology": 1}'),
            501,
            unsupported + "loadbalancer_topology 1 is not of type 'string'",
        ),
        (body(flavor_data='{"sriov_vip": "yes"}'), 501, unsupported + "sriov_vip 'yes' is not of type 'boolean'"),
        (
            body(flavor_data='{"compute_flavor": 5, "sriov_vip": "x"}'),
            501,
            unsupported + "sriov_vip 'x' is not of type 'boolean'",
        ),
        (body(flavor_data="[1]"), 501, unsupported + "[1] is not of type 'object'"),
        (body(flavor_data="null"), 501, unsupported + "None is not of type 'object'"),
        (body(flavor_data="not json"), 400, "not json is not a valid option for flavor_data"),
        (body(flavor_data=None), 400, "None is not a valid option for flavor_data"),
        (
            body(flavor_data={"a": 1}),
            400,
            "Invalid input for field/attribute flavor_data. Value: '{'a': 1}'. Value should be string",
        ),
        (
            body(flavor_data="x" * 4097),
            400,
            f"Invalid input for field/attribute flavor_data. Value: '{'x' * 4097}'. "
            "Value should have a maximum character requirement of 4096",
        ),
        (body(provider_name="nope"), 400, "Provider 'nope' is not enabled."),
        (body(provider_name="ovn"), 400, "Provider 'ovn' is not enabled."),
        (body(provider_name="nope", flavor_data="bad"), 400, "bad is not a valid option for flavor_data"),
        (body(name=5), 400, "Invalid input for field/attribute name. Value: '5'. Value should be string"),
        (body(id=str(uuid.uuid4())), 400, "Unknown attribute for argument flavor_profile_.flavorprofile: id"),
        ({"flavorprofile": {}}, 400, "Invalid input for field/attribute name. Value: 'None'. Mandatory field missing."),
        (
            {"flavorprofile": {"name": "x", "provider_name": "noop"}},
            400,
            "Invalid input for field/attribute flavor_data. Value: 'None'. Mandatory field missing.",
        ),
        ({"flavor_profile": {}}, 400, "Unknown attribute for argument flavor_profile_: flavor_profile"),
    ]
    for request, status, message in cases:
        assert_fault(rest.post(FPS, request), status, message)
    assert_fault(rest.post(FPS, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.call("POST", FPS), 400, 'Missing argument: "flavor_profile_"')
    assert _count(rest, FPS, "flavorprofiles") == before

    profile = _profile(rest)
    path = f"{FPS}/{profile['id']}"
    for request, status, message in [
        ({"flavorprofile": {"name": None}}, 400, "None is not a valid option for name"),
        ({"flavorprofile": {"provider_name": None}}, 400, "None is not a valid option for provider_name"),
        ({"flavorprofile": {"flavor_data": "bad"}}, 400, "bad is not a valid option for flavor_data"),
        ({"flavorprofile": {"provider_name": "nope"}}, 400, "Provider 'nope' is not enabled."),
        (
            {"flavorprofile": {"name": "changed", "flavor_data": '{"bogus": 2}'}},
            501,
            unsupported + "Additional properties are not allowed ('bogus' was unexpected)",
        ),
    ]:
        assert_fault(rest.put(path, request), status, message)
    assert rest.ok("GET", path)["flavorprofile"] == profile


# --- flavors ----------------------------------------------------------------------------


def test_flavor_lifecycle(rest: Rest) -> None:
    profile = _profile(rest)
    name = _name("small")
    created = rest.ok(
        "POST",
        FLAVORS,
        {"flavor": {"name": name, "description": "d", "flavor_profile_id": profile["id"], "enabled": True}},
    )
    flavor = created["flavor"]
    assert list(flavor) == ["id", "name", "description", "enabled", "flavor_profile_id"]
    assert flavor == {
        "id": flavor["id"],
        "name": name,
        "description": "d",
        "enabled": True,
        "flavor_profile_id": profile["id"],
    }
    path = f"{FLAVORS}/{flavor['id']}"
    assert rest.ok("GET", path) == created
    assert rest.ok("GET", f"{path}?fields=name&fields=enabled") == {"flavor": {"name": name, "enabled": True}}
    assert_fault(
        rest.post(FLAVORS, {"flavor": {"name": name, "flavor_profile_id": profile["id"]}}),
        409,
        f"A flavor of {name} already exists.",
    )
    updated = rest.ok("PUT", path, {"flavor": {"description": "d2", "enabled": "false"}})["flavor"]
    assert updated == {**flavor, "description": "d2", "enabled": False}
    listed = rest.ok("GET", f"{FLAVORS}?name={name}")
    assert listed == {"flavors": [updated], "flavors_links": []}
    assert rest.ok("GET", f"{FLAVORS}?name={name}&enabled=true")["flavors"] == []
    # A disabled flavor cannot be used.
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT, "flavor_id": flavor["id"]}}),
        400,
        f"The selected flavor is not allowed in this deployment: {flavor['id']}",
    )
    assert rest.ok("PUT", path, {"flavor": {"name": None, "description": None}})["flavor"]["name"] == ""
    assert rest.delete(path).status_code == 204
    assert_fault(rest.get(path), 404, f"Flavor {flavor['id']} not found.")
    assert_fault(rest.put(path, {"flavor": {"name": "x"}}), 404, f"Flavor {flavor['id']} not found.")
    assert_fault(rest.delete(path), 404, f"Flavor {flavor['id']} not found.")
    assert_fault(rest.get(f"{FLAVORS}/nope"), 404, "Flavor nope not found.")


def test_flavor_bad_input_writes_nothing(rest: Rest) -> None:
    profile = _profile(rest)
    before = _count(rest, FLAVORS, "flavors")

    def body(**fields: object) -> dict[str, object]:
        return {"flavor": {"name": "x", "flavor_profile_id": profile["id"], **fields}}

    cases = [
        (body(flavor_profile_id=MISSING), 404, f"Flavor Profile {MISSING} not found."),
        (
            body(flavor_profile_id="nope"),
            400,
            "Invalid input for field/attribute flavor_profile_id. Value: 'nope'. Value should be UUID format",
        ),
        (
            body(flavor_profile_id=None),
            400,
            "Invalid input for field/attribute flavor_profile_id. Value: 'None'. Mandatory field missing.",
        ),
        (
            {"flavor": {"name": "x"}},
            400,
            "Invalid input for field/attribute flavor_profile_id. Value: 'None'. Mandatory field missing.",
        ),
        ({"flavor": {}}, 400, "Invalid input for field/attribute name. Value: 'None'. Mandatory field missing."),
        (
            body(name="x" * 256),
            400,
            f"Invalid input for field/attribute name. Value: '{'x' * 256}'. "
            "Value should have a maximum character requirement of 255",
        ),
        (body(description=7), 400, "Invalid input for field/attribute description. Value: '7'. Value should be string"),
        (
            body(enabled="maybe"),
            400,
            "Invalid input for field/attribute flavor_. Value: "
            f"'{{'flavor': {{'name': 'x', 'flavor_profile_id': '{profile['id']}', 'enabled': 'maybe'}}}}'. "
            "Value not an unambiguous boolean: maybe",
        ),
        (body(enabled=None), 400, "None is not a valid option for enabled"),
        (body(bogus=1, id="x"), 400, "Unknown attributes for argument flavor_.flavor: bogus, id"),
        ({"flavors": {}}, 400, "Unknown attribute for argument flavor_: flavors"),
    ]
    for request, status, message in cases:
        assert_fault(rest.post(FLAVORS, request), status, message)
    assert _count(rest, FLAVORS, "flavors") == before

    flavor = _flavor(rest, profile["id"])
    path = f"{FLAVORS}/{flavor['id']}"
    other = _flavor(rest, profile["id"])
    for request, status, message in [
        (
            {"flavor": {"flavor_profile_id": profile["id"]}},
            400,
            "Unknown attribute for argument flavor_.flavor: flavor_profile_id",
        ),
        ({"flavor": {"name": other["name"]}}, 409, f"A flavor of {other['name']} already exists."),
        ({"flavor": {"enabled": None}}, 400, "None is not a valid option for enabled"),
        ({"flavor": {"enabled": [], "name": "y"}}, 400, None),
    ]:
        assert_fault(rest.put(path, request), status, message)
    assert rest.ok("GET", path)["flavor"] == flavor


def test_flavor_in_use(rest: Rest) -> None:
    profile = _profile(rest)
    flavor = _flavor(rest, profile["id"])
    lb = rest.create_lb(flavor_id=flavor["id"])
    assert lb["flavor_id"] == flavor["id"]
    fp_path, flavor_path = f"{FPS}/{profile['id']}", f"{FLAVORS}/{flavor['id']}"
    in_use = f"Flavor profile {profile['id']} is in use and cannot be modified."
    assert_fault(rest.delete(flavor_path), 409, f"Flavor {flavor['id']} is in use and cannot be modified.")
    assert_fault(rest.delete(fp_path), 409, in_use)
    assert_fault(rest.put(fp_path, {"flavorprofile": {"flavor_data": "{}"}}), 409, in_use)
    assert_fault(rest.put(fp_path, {"flavorprofile": {"provider_name": "noop"}}), 409, in_use)
    assert rest.ok("PUT", fp_path, {"flavorprofile": {"name": "still-renamable"}})["flavorprofile"]["name"] == (
        "still-renamable"
    )
    assert rest.delete(f"{LBS}/{lb['id']}").status_code == 204
    rest.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED")
    assert rest.delete(flavor_path).status_code == 204
    assert rest.delete(fp_path).status_code == 204


def test_flavor_pagination_and_filters(rest: Rest) -> None:
    profile = _profile(rest)
    flavors = sorted((_flavor(rest, profile["id"]) for _ in range(3)), key=lambda f: f["id"])
    query = f"flavor_profile_id={profile['id']}"
    first = rest.ok("GET", f"{FLAVORS}?{query}&limit=2")
    assert first["flavors"] == flavors[:2]  # ordered by id, as Octavia (flavors have no created_at)
    (link,) = first["flavors_links"]
    assert link["rel"] == "next" and f"marker={flavors[1]['id']}" in link["href"]
    second = rest.session.get(link["href"], timeout=10).json()
    assert second["flavors"] == flavors[2:]
    (back,) = second["flavors_links"]
    assert back["rel"] == "previous"
    assert rest.session.get(back["href"], timeout=10).json()["flavors"] == flavors[:2]
    names = rest.ok("GET", f"{FLAVORS}?{query}&sort=name:desc&fields=name")["flavors"]
    assert names == [{"name": n} for n in sorted((f["name"] for f in flavors), reverse=True)]
    assert_fault(rest.get(f"{FLAVORS}?enabled=maybe"), 400)
    assert_fault(rest.get(f"{FLAVORS}?marker={MISSING}"), 404)


# --- availability zones -----------------------------------------------------------------


def test_zone_profile_and_zone_lifecycle(rest: Rest) -> None:
    data = '{"compute_zone": "nova", "volume_zone": "v", "management_network": "n", "valid_vip_networks": ["a"]}'
    profile = _zone_profile(rest, data)
    assert list(profile) == ["id", "name", "provider_name", "availability_zone_data"]
    assert profile["availability_zone_data"] == data and profile["provider_name"] == "noop"
    azp_path = f"{AZPS}/{profile['id']}"
    assert rest.ok("GET", azp_path) == {"availability_zone_profile": profile}
    listed = rest.ok("GET", f"{AZPS}?id={profile['id']}&fields=name")
    assert listed == {"availability_zone_profiles": [{"name": profile["name"]}], "availability_zone_profile_links": []}

    name = _name("az")
    created = rest.ok(
        "POST",
        AZS,
        {"availability_zone": {"name": name, "description": "zone", "availability_zone_profile_id": profile["id"]}},
    )
    zone = created["availability_zone"]
    assert zone == {"name": name, "description": "zone", "enabled": True, "availability_zone_profile_id": profile["id"]}
    assert list(zone) == ["name", "description", "enabled", "availability_zone_profile_id"]
    path = f"{AZS}/{name}"
    assert rest.ok("GET", path) == created
    assert rest.ok("GET", f"{AZS}?name={name}") == {"availability_zones": [zone], "availability_zones_links": []}
    assert_fault(
        rest.post(AZS, {"availability_zone": {"name": name, "availability_zone_profile_id": profile["id"]}}),
        409,
        f"A availability zone of {name} already exists.",
    )
    updated = rest.ok("PUT", path, {"availability_zone": {"description": "d2", "enabled": False}})["availability_zone"]
    assert updated == {**zone, "description": "d2", "enabled": False}
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT, "availability_zone": name}}),
        400,
        f"The selected availability_zone is not allowed in this deployment: {name}",
    )
    rest.ok("PUT", path, {"availability_zone": {"enabled": True}})
    lb = rest.create_lb(availability_zone=name)
    assert lb["availability_zone"] == name
    assert_fault(rest.delete(path), 409, f"Availability Zone {name} is in use and cannot be modified.")
    in_use = f"Availability Zone Profile {profile['id']} is in use and cannot be modified."
    assert_fault(rest.delete(azp_path), 409, in_use)
    assert_fault(rest.put(azp_path, {"availability_zone_profile": {"availability_zone_data": "{}"}}), 409, in_use)
    assert rest.delete(f"{LBS}/{lb['id']}").status_code == 204
    rest.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED")
    assert rest.delete(path).status_code == 204
    assert_fault(rest.get(path), 404, f"Availability Zone {name} not found.")
    assert_fault(rest.delete(path), 404, f"Availability Zone {name} not found.")
    assert_fault(rest.put(path, {"availability_zone": {"enabled": True}}), 404, f"Availability Zone {name} not found.")
    assert rest.ok("PUT", azp_path, {"availability_zone_profile": {"availability_zone_data": "{}"}})
    assert rest.delete(azp_path).status_code == 204
    assert_fault(rest.get(azp_path), 404, f"Availability Zone Profile {profile['id']} not found.")
    assert_fault(rest.delete(azp_path), 404, f"Availability Zone Profile {profile['id']} not found.")


def test_zone_pagination(rest: Rest) -> None:
    profile = _zone_profile(rest)
    prefix = _name("page")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        rest.ok("POST", AZS, {"availability_zone": {"name": name, "availability_zone_profile_id": profile["id"]}})
    query = "&".join(f"name={n}" for n in names)
    first = rest.ok("GET", f"{AZS}?limit=2&{query}")
    assert [z["name"] for z in first["availability_zones"]] == names[:2]
    (link,) = first["availability_zones_links"]
    assert link["rel"] == "next" and f"marker={names[1]}" in link["href"]
    second = rest.session.get(link["href"], timeout=10).json()
    assert [z["name"] for z in second["availability_zones"]] == names[2:]
    backwards = rest.ok("GET", f"{AZS}?sort=name:desc&{query}")["availability_zones"]
    assert [z["name"] for z in backwards] == names[::-1]


def test_zone_bad_input_writes_nothing(rest: Rest) -> None:
    profile = _zone_profile(rest)
    before = _count(rest, AZS, "availability_zones"), _count(rest, AZPS, "availability_zone_profiles")
    unsupported = "Provider 'noop' does not support a requested option: "

    def azp(**fields: object) -> dict[str, object]:
        return {
            "availability_zone_profile": {
                "name": "x",
                "provider_name": "noop",
                "availability_zone_data": "{}",
                **fields,
            }
        }

    for request, status, message in [
        (
            azp(availability_zone_data='{"valid_vip_networks": "x"}'),
            501,
            unsupported + "valid_vip_networks 'x' is not of type 'array'",
        ),
        (
            azp(availability_zone_data='{"compute_zone": null}'),
            501,
            unsupported + "compute_zone None is not of type 'string'",
        ),
        (
            azp(availability_zone_data='{"x": 1}'),
            501,
            unsupported + "Additional properties are not allowed ('x' was unexpected)",
        ),
        (azp(availability_zone_data="bad"), 400, "bad is not a valid option for availability_zone_data"),
        (azp(provider_name="nope"), 400, "Provider 'nope' is not enabled."),
        (azp(x=1), 400, "Unknown attribute for argument availability_zone_profile_.availability_zone_profile: x"),
        (
            {"availabilityzoneprofile": {}},
            400,
            "Unknown attribute for argument availability_zone_profile_: availabilityzoneprofile",
        ),
    ]:
        assert_fault(rest.post(AZPS, request), status, message)
    # Octavia names flavor_data when an update's zone data is not JSON.
    path = f"{AZPS}/{profile['id']}"
    assert_fault(
        rest.put(path, {"availability_zone_profile": {"availability_zone_data": "bad"}}),
        400,
        "bad is not a valid option for flavor_data",
    )

    def az(**fields: object) -> dict[str, object]:
        return {"availability_zone": {"name": _name("bad"), "availability_zone_profile_id": profile["id"], **fields}}

    for request, status, message in [
        (az(availability_zone_profile_id=MISSING), 404, f"Availability Zone Profile {MISSING} not found."),
        (az(name=None), 400, "Invalid input for field/attribute name. Value: 'None'. Mandatory field missing."),
        (az(enabled="maybe"), 400, None),
        (az(description="x" * 256), 400, None),
        (az(bogus=1), 400, "Unknown attribute for argument availability_zone_.availability_zone: bogus"),
    ]:
        assert_fault(rest.post(AZS, request), status, message)
    name = rest.ok("POST", AZS, az())["availability_zone"]["name"]
    for request, message in [
        (
            {"availability_zone": {"name": "y"}},
            "Unknown attribute for argument availability_zone_.availability_zone: name",
        ),
        (
            {"availability_zone": {"availability_zone_profile_id": profile["id"]}},
            "Unknown attribute for argument availability_zone_.availability_zone: availability_zone_profile_id",
        ),
    ]:
        assert_fault(rest.put(f"{AZS}/{name}", request), 400, message)
    assert rest.delete(f"{AZS}/{name}").status_code == 204
    assert (_count(rest, AZS, "availability_zones"), _count(rest, AZPS, "availability_zone_profiles")) == before


# --- RBAC -------------------------------------------------------------------------------


def test_rbac(secure_rest: Rest) -> None:
    project = uuid.uuid4().hex
    admin = secure_rest.as_(project, "admin")
    member = secure_rest.as_(project, "member")
    reader = secure_rest.as_(project, "reader")
    nobody = secure_rest.as_(project)
    profile = _profile(admin)
    flavor = _flavor(admin, profile["id"])
    zone_profile = _zone_profile(admin)
    zone = admin.ok(
        "POST", AZS, {"availability_zone": {"name": _name("az"), "availability_zone_profile_id": zone_profile["id"]}}
    )["availability_zone"]
    # Everyone with a role reads flavors and zones...
    for caller in (member, reader):
        assert caller.ok("GET", f"{FLAVORS}/{flavor['id']}")["flavor"] == flavor
        assert flavor in caller.ok("GET", FLAVORS)["flavors"]
        assert caller.ok("GET", f"{AZS}/{zone['name']}")["availability_zone"] == zone
        assert zone in caller.ok("GET", AZS)["availability_zones"]
    for path in (FLAVORS, AZS, f"{FLAVORS}/{flavor['id']}"):
        assert_fault(nobody.get(path), 403, DENIED)
    # ...but only admins write them, and only admins see profiles.
    for caller in (member, reader):
        assert_fault(caller.post(FLAVORS, {"flavor": {"name": "x", "flavor_profile_id": profile["id"]}}), 403, DENIED)
        assert_fault(caller.put(f"{FLAVORS}/{flavor['id']}", {"flavor": {"name": "x"}}), 403, DENIED)
        assert_fault(caller.delete(f"{FLAVORS}/{flavor['id']}"), 403, DENIED)
        assert_fault(caller.post(AZS, {"availability_zone": {"name": "x"}}), 403, DENIED)
        assert_fault(caller.put(f"{AZS}/{zone['name']}", {"availability_zone": {"enabled": False}}), 403, DENIED)
        assert_fault(caller.delete(f"{AZS}/{zone['name']}"), 403, DENIED)
        for base, item in ((FPS, profile), (AZPS, zone_profile)):
            assert_fault(caller.get(base), 403, DENIED)
            assert_fault(caller.get(f"{base}/{item['id']}"), 403, DENIED)
            assert_fault(caller.post(base, {}), 403, DENIED)
            assert_fault(caller.put(f"{base}/{item['id']}", {}), 403, DENIED)
            assert_fault(caller.delete(f"{base}/{item['id']}"), 403, DENIED)
    assert admin.ok("GET", f"{FPS}/{profile['id']}")["flavorprofile"] == profile
    assert admin.delete(f"{AZS}/{zone['name']}").status_code == 204
    assert admin.delete(f"{FLAVORS}/{flavor['id']}").status_code == 204
