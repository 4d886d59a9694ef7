"""The Envoy REST edge: its static configuration, built here so that every deployment renders the same one."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from octavia_mesh.common.authheaders import headers_to_strip

EDGE_SERVICES = (
    "Versions",
    "LoadBalancers",
    "Listeners",
    "Pools",
    "Members",
    "HealthMonitors",
    "L7Policies",
    "L7Rules",
    "Quotas",
    "Providers",
    "Flavors",
    "FlavorProfiles",
    "AvailabilityZones",
    "AvailabilityZoneProfiles",
    "Amphorae",
)
PACKAGE = "octavia_mesh.lbaas.v2"
#: The read-only Neutron lookups clients make around Octavia calls (the CLI's subnet lookups, Ansible's floating-IP
#: lookups), answered for the local VIP subnet.
NEUTRON_SERVICES = tuple(f"octavia_mesh.neutron.v2.{s}" for s in ("Subnets", "Networks", "FloatingIps"))
#: The local secret store (Barbican v1's secrets and containers) that TLS listeners and pools refer to.
KEYMANAGER_SERVICES = tuple(f"octavia_mesh.keymanager.v1.{s}" for s in ("KeyManagerVersions", "Secrets", "Containers"))
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def lua_source() -> str:
    return resources.files(__package__).joinpath("octavia.lua").read_text()


def descriptor_path() -> Path:
    """The descriptor set of the edge protos, shipped in the protos distribution."""
    import octavia_mesh.protos

    return Path(octavia_mesh.protos.__file__).resolve().parent / "lbaas_v2.pb"


def _status_is(op: str, code: int) -> dict[str, Any]:
    """An access-log filter on the response status, for local_reply_config mappers."""
    value = {"default_value": code, "runtime_key": f"octavia_edge_status_{op.lower()}_{code}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _typed(name: str, type_url: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": type_url, **config}}


def envoy_config(
    listen_host: str,
    listen_port: int,
    api_host: str,
    api_port: int,
    admin_port: int,
    descriptor: str,
    lua: str,
    auth_strategy: str = "keystone",
) -> dict[str, Any]:
    """Envoy's bootstrap: REST and native gRPC on one port, transcoded onto the API service.

    Clients' identity headers are removed from every request unless ``auth_strategy`` is ``trusted_headers``
    (then an authenticating proxy in front sets them; the API believes them only with the proxy's secret).
    """
    fault = {"faultcode": "Client", "faultstring": "%LOCAL_REPLY_BODY%", "debuginfo": None}
    http_filters = [
        _typed(
            "envoy.filters.http.grpc_web", "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb", {}
        ),
        _typed(
            "envoy.filters.http.lua",
            "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            {"default_source_code": {"inline_string": lua}},
        ),
        _typed(
            "envoy.filters.http.grpc_json_transcoder",
            "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            {
                "proto_descriptor": descriptor,
                "services": [f"{PACKAGE}.{s}" for s in EDGE_SERVICES]
                + list(NEUTRON_SERVICES)
                + list(KEYMANAGER_SERVICES),
                "match_incoming_request_route": True,
                "convert_grpc_status": True,
                "query_param_unescape_plus": True,
                "print_options": {"always_print_primitive_fields": True, "preserve_proto_field_names": True},
                "request_validation_options": {
                    "reject_unknown_method": True,
                    "reject_unknown_query_parameters": True,
                    "reject_binding_body_field_collisions": True,
                },
            },
        ),
        _typed("envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", {}),
    ]
    lua_off = {
        "envoy.filters.http.lua": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
            "disabled": True,
        }
    }
    manager = {
        "stat_prefix": "octavia_rest",
        "codec_type": "AUTO",
        "generate_request_id": True,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "octavia",
                    "domains": ["*"],
                    "request_headers_to_remove": headers_to_strip(auth_strategy),
                    "request_headers_to_add": [
                        {
                            "header": {"key": "x-forwarded-host", "value": "%REQ(:authority)%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                    "routes": [
                        {
                            "match": {"prefix": "/octavia_mesh."},
                            "route": {"cluster": "api", "timeout": "60s"},
                            "typed_per_filter_config": lua_off,
                        },
                        {
                            "match": {"prefix": "/grpc."},
                            "route": {"cluster": "api", "timeout": "60s"},
                            "typed_per_filter_config": lua_off,
                        },
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "api", "timeout": "60s"},
                            "response_headers_to_add": [
                                {"header": {"key": "x-openstack-request-id", "value": "req-%REQ(x-request-id)%"}}
                            ],
                        },
                    ],
                }
            ]
        },
        "local_reply_config": {
            "mappers": [
                # The Lua filter answers 405 and 415 in Octavia's shape already: keep those bodies.
                {"filter": _status_is("EQ", 405)},
                {"filter": _status_is("EQ", 415)},
                {
                    "filter": _status_is("EQ", 404),
                    "body_format_override": {"json_format": {"code": 404, "title": "Not Found", "description": ""}},
                },
                {
                    "filter": _status_is("GE", 500),
                    "body_format_override": {"json_format": {**fault, "faultcode": "Server"}},
                },
                {"filter": _status_is("GE", 400), "body_format_override": {"json_format": fault}},
            ]
        },
        "http_filters": http_filters,
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "octavia_rest",
                    "address": {"socket_address": {"address": listen_host, "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM_TYPE,
                                        **manager,
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "api",
                    "type": "STRICT_DNS",
                    "connect_timeout": "2s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "api",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": api_host, "port_value": api_port}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }
