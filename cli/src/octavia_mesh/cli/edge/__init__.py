"""The Envoy REST edge: its static configuration, built here so that every deployment renders the same one."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
#: Request limits, also in octavia.lua (which answers the common cases itself, with Octavia's fault).
#: Octavia's oslo.middleware ``max_request_body_size``: a larger body is a 413.
MAX_BODY_BYTES = 114688
TOO_LARGE = f"Request is too large. Larger than max_request_body_size ({MAX_BODY_BYTES})."
MAX_PATH_BYTES = 1024
MAX_QUERY_BYTES = 32768
#: What clients get as their request id: Octavia's header, from the id Envoy generates (and sends upstream).
REQUEST_ID_HEADER = {"header": {"key": "x-openstack-request-id", "value": "req-%REQ(x-request-id)%"}}
#: Removed from requests: the request id is the edge's to give (a client's own would not be the one it gets back,
#: and the API takes this header's value as the id when a caller inside the mesh sends it).
CLIENT_REQUEST_ID = "x-openstack-request-id"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def lua_source() -> str:
    return resources.files(__name__).joinpath("octavia.lua").read_text()


def descriptor_path() -> Path:
    """The descriptor set of the edge protos, shipped in the protos distribution."""
    import octavia_mesh.protos

    return Path(octavia_mesh.protos.__file__).resolve().parent / "lbaas_v2.pb"


def _status_is(op: str, code: int) -> dict[str, Any]:
    """An access-log filter on the response status, for local_reply_config mappers."""
    value = {"default_value": code, "runtime_key": f"octavia_edge_status_{op.lower()}_{code}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


#: Request paths of the secret store, whose faults are Barbican's ``{"code", "title", "description"}``.
BARBICAN_PREFIXES = ("/v1", "/key-manager")


def _barbican(status_filter: dict[str, Any]) -> dict[str, Any]:
    """A local-reply filter: ``status_filter`` on a secret-store path."""
    on_path = {
        "or_filter": {
            "filters": [
                {"header_filter": {"header": {"name": ":path", "string_match": {"prefix": prefix}}}}
                for prefix in BARBICAN_PREFIXES
            ]
        }
    }
    return {"and_filter": {"filters": [on_path, status_filter]}}


ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _typed(name: str, type_url: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": type_url, **config}}


#: Retries only of calls no API process received, each on a process not tried yet for that call.
_RETRY_ELSEWHERE = {
    "retry_on": "connect-failure,refused-stream,reset-before-request",
    "num_retries": 3,
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": 5,
}


def envoy_config(
    listen_host: str,
    listen_port: int,
    api_host: str,
    api_port: int | Sequence[int],
    admin_port: int,
    descriptor: str,
    lua: str,
    auth_strategy: str = "keystone",
    metrics_port: int | None = None,
    access_log: str = "/dev/stdout",
    otlp_endpoint: str = "",
    bridge_port: int | Sequence[int] | None = None,
) -> dict[str, Any]:
    """Envoy's bootstrap: REST and native gRPC on one port, transcoded onto the API service.

    ``metrics_port`` adds a listener on ``listen_host`` that serves Envoy's own Prometheus metrics (the admin's
    ``/stats/prometheus``, and nothing else of the admin, which stays on loopback).

    Clients' identity headers are removed from every request unless ``auth_strategy`` is ``trusted_headers``
    (then an authenticating proxy in front sets them; the API believes them only with the proxy's secret).
    Every request is written to ``access_log`` as a JSON line (:func:`access_log_config`); with an
    ``otlp_endpoint`` Envoy also opens the first span of each request's trace (:func:`tracing_config`).
    Several ``api_port``: one API process each, the requests spread by least outstanding requests (a process
    busy with a long list gets the next call last).

    With ``bridge_port`` (each API process's ``BRIDGE_LISTEN`` port, in ``api_port``'s order), the unary calls
    of the edge services go there over HTTP/1.1 (:func:`_bridged`); health and reflection keep the gRPC port.
    """
    api_ports = [api_port] if isinstance(api_port, int) else list(api_port)
    bridge_ports = [] if bridge_port is None else [bridge_port] if isinstance(bridge_port, int) else list(bridge_port)
    fault = {"faultcode": "Client", "faultstring": "%LOCAL_REPLY_BODY%", "debuginfo": None}
    http_filters = [
        # A body larger than the limit is a 413 before it is read (Lua answers when Content-Length says so;
        # this filter cuts off a chunked one), so nothing that large reaches the API.
        _typed(
            "envoy.filters.http.buffer",
            "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            {"max_request_bytes": MAX_BODY_BYTES},
        ),
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
        },
        # Native gRPC keeps its own message size limit (the API's); REST bodies are buffered and capped.
        "envoy.filters.http.buffer": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
            "disabled": True,
        },
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
                    # With several API processes, a call that found one dead or restarting (nothing of it was
                    # sent, so even a POST is safe to send again) is tried on another.
                    **({"retry_policy": _RETRY_ELSEWHERE} if len(api_ports) > 1 else {}),
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
                            # Native gRPC clients get the request id too, in the initial metadata.
                            "request_headers_to_remove": [CLIENT_REQUEST_ID],
                            "response_headers_to_add": [REQUEST_ID_HEADER],
                        },
                        {
                            "match": {"prefix": "/grpc."},
                            "route": {"cluster": "api", "timeout": "60s"},
                            "typed_per_filter_config": lua_off,
                        },
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "api", "timeout": "60s"},
                            # The transcoder keeps the REST path here; the API reads x-octavia-path instead,
                            # and this copy would only count against gRPC's metadata limit.
                            "request_headers_to_remove": ["x-envoy-original-path", CLIENT_REQUEST_ID],
                            "response_headers_to_add": [REQUEST_ID_HEADER],
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
                # The secret store's local replies in Barbican's shape (Lua writes its own 400s and 413s so).
                {
                    "filter": _barbican(_status_is("EQ", 413)),
                    "body_format_override": {
                        "json_format": {
                            "code": 413,
                            "title": "Request Entity Too Large",
                            "description": TOO_LARGE,
                        }
                    },
                },
                {
                    "filter": _barbican(_status_is("EQ", 404)),
                    "body_format_override": {
                        "json_format": {
                            "code": 404,
                            "title": "Not Found",
                            "description": "The resource could not be found.",
                        }
                    },
                },
                {
                    "filter": _barbican(_status_is("GE", 500)),
                    "body_format_override": {
                        "json_format": {
                            "code": "%RESPONSE_CODE%",
                            "title": "Internal Server Error",
                            "description": "%LOCAL_REPLY_BODY%",
                        }
                    },
                },
                {"filter": _barbican(_status_is("GE", 400))},
                {
                    # The buffer filter's 413 for a chunked body says only "Payload Too Large".
                    "filter": _status_is("EQ", 413),
                    "body_format_override": {
                        "json_format": {
                            **fault,
                            "faultstring": TOO_LARGE,
                        }
                    },
                },
                {
                    "filter": _status_is("GE", 500),
                    "body_format_override": {"json_format": {**fault, "faultcode": "Server"}},
                },
                {"filter": _status_is("GE", 400), "body_format_override": {"json_format": fault}},
            ]
        },
        "http_filters": http_filters,
        "access_log": [access_log_config(access_log)],
    }
    clusters = [_api_cluster(api_host, api_ports)]
    if bridge_ports:
        _bridged(manager, api_host, bridge_ports, clusters)
    if otlp_endpoint:
        manager["tracing"] = tracing_config()
        clusters.append(_otlp_cluster(otlp_endpoint))
    config: dict[str, Any] = {
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
            "clusters": clusters,
        },
    }
    if metrics_port is not None:
        _add_metrics_listener(config, listen_host, metrics_port, admin_port)
    return config


def _bridged(manager: dict[str, Any], api_host: str, bridge_ports: list[int], clusters: list[dict[str, Any]]) -> None:
    """Send the edge services' unary calls, REST (once transcoded) and native gRPC, to the API's bridge listeners.

    Those take gRPC's unary calls on HTTP/1.1 (gRPC framing, ``grpc-status`` as a trailer) because Python's gRPC
    server costs more per call than the handlers behind it (docs/architecture.md, "API speed"). Envoy speaks
    HTTP/2 gRPC to native clients and hands the transcoder the same reply and trailers as from a gRPC server,
    so nothing else changes. ``/grpc.`` (health ``Watch``, reflection: streaming) keeps the gRPC port.
    """
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    for route in routes:
        if route["match"]["prefix"] != "/grpc.":
            route["route"] = {**route["route"], "cluster": "api_bridge"}
    bridge_cluster = _api_cluster(api_host, bridge_ports, name="api_bridge")
    # HTTP/1.1 with trailers: a gRPC status arrives as a trailer, as from an HTTP/2 gRPC server.
    options = bridge_cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    options["explicit_http_config"] = {"http_protocol_options": {"enable_trailers": True}}
    clusters.append(bridge_cluster)


def _api_cluster(api_host: str, api_ports: list[int], name: str = "api") -> dict[str, Any]:
    """The API processes (one endpoint each; least outstanding requests first when there are several)."""
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": api_host, "port_value": port}}}} for port in api_ports
    ]
    return {
        "name": name,
        "type": "STRICT_DNS",
        **({"lb_policy": "LEAST_REQUEST"} if len(api_ports) > 1 else {}),
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                # A malformed or oversized response resets that one stream, never the connection
                # that every other client's request shares.
                "explicit_http_config": {
                    "http2_protocol_options": {"override_stream_error_on_invalid_http_message": True}
                },
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }


def _add_metrics_listener(config: dict[str, Any], host: str, port: int, admin_port: int) -> None:
    """A listener whose one route sends ``/stats/prometheus`` to the admin (Envoy's documented way to expose
    metrics without exposing the admin's other, mutating endpoints)."""
    route = {"prefix": "/stats/prometheus"}
    manager = {
        "@type": HCM_TYPE,
        "stat_prefix": "metrics",
        "route_config": {
            "virtual_hosts": [
                {"name": "metrics", "domains": ["*"], "routes": [{"match": route, "route": {"cluster": "admin"}}]}
            ]
        },
        "http_filters": [_typed("envoy.filters.http.router", ROUTER_TYPE, {})],
    }
    config["static_resources"]["listeners"].append(
        {
            "name": "metrics",
            "address": {"socket_address": {"address": host, "port_value": port}},
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
            ],
        }
    )
    endpoint = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}}
    config["static_resources"]["clusters"].append(
        {
            "name": "admin",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "admin", "endpoints": [{"lb_endpoints": [endpoint]}]},
        }
    )


#: The access log's fields: Octavia's request id (as clients get it), the REST method and path (the transcoder
#: rewrites ``:method`` and ``:path`` to gRPC's; Lua keeps them in ``x-octavia-method`` and ``x-octavia-path``),
#: and where the time went.
ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "req-%REQ(X-REQUEST-ID)%",
    "method": "%REQ(X-OCTAVIA-METHOD?:METHOD)%",
    "path": "%REQ(X-OCTAVIA-PATH?:PATH)%",
    "grpc_method": "%REQ(:PATH)%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS_NUMBER%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "flags": "%RESPONSE_FLAGS%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "user_agent": "%REQ(USER-AGENT)%",
    "traceparent": "%REQ(TRACEPARENT)%",
}


def access_log_config(path: str) -> dict[str, Any]:
    """A file access log of JSON lines (``/dev/stdout`` in Kubernetes, a file in the state dir for ``up``)."""
    return _typed(
        "envoy.access_loggers.file",
        "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
        {"path": path, "log_format": {"json_format": ACCESS_LOG_FORMAT, "omit_empty_values": True}},
    )


def tracing_config() -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: a server span per request (every request sampled; the collector may
    sample further), exported to the ``otlp`` cluster, with W3C ``traceparent`` sent to the API."""
    return {
        "random_sampling": {"value": 100},
        "provider": _typed(
            "envoy.tracers.opentelemetry",
            "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            {
                "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "2s"},
                "service_name": "octavia-mesh-edge",
            },
        ),
    }


def _otlp_cluster(endpoint: str) -> dict[str, Any]:
    """The OTLP/gRPC collector at ``endpoint`` (``http://host:port``) as an HTTP/2 cluster."""
    parsed = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parsed.hostname:
        raise ValueError(f"OTLP endpoint {endpoint!r} names no host")
    address = {"socket_address": {"address": parsed.hostname, "port_value": parsed.port or 4317}}
    cluster: dict[str, Any] = {
        "name": "otlp",
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "otlp",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }
    if parsed.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": parsed.hostname,
            },
        }
    return cluster
