"""``octavia-mesh``: run the mesh on one machine, or render its edge configuration."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from octavia_mesh.cli.edge import descriptor_path, envoy_config, lua_source
from octavia_mesh.cli.mesh import MeshOptions, default_api_processes, run_down, run_up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octavia-mesh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start NATS, Envoy and every service; Ctrl-C stops them")
    up.add_argument("--port", type=int, default=9876, help="port of the REST/gRPC edge (default 9876)")
    up.add_argument("--host", default="127.0.0.1", help="address of the edge (default 127.0.0.1)")
    up.add_argument("--state-dir", type=Path, default=Path("state"), help="database, JetStream and logs")
    up.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the state directory)")
    up.add_argument("--nats-url", help="use this NATS server instead of starting one")
    up.add_argument(
        "--auth-strategy",
        choices=("noauth", "keystone", "trusted_headers"),
        default="noauth",
        help="noauth (every caller is admin), keystone (tokens validated against --keystone-url with the service "
        "credentials in OCTAVIA_MESH_API_KEYSTONE_*), trusted_headers (an authenticating proxy in front, named by "
        "OCTAVIA_MESH_API_TRUSTED_PROXY_SECRET)",
    )
    up.add_argument("--keystone-url", default="", help="keystone: Keystone's v3 URL, e.g. http://127.0.0.1:5000/v3")
    up.add_argument(
        "--default-project",
        default="demo",
        help="noauth: project of calls that name none, so that `openstack loadbalancer create` works without "
        "Keystone (default: demo; an empty value gives such calls Octavia's 400)",
    )
    up.add_argument(
        "--provider",
        choices=("amphora", "noop"),
        default="amphora",
        help="provider of load balancers that name none: amphora (HAProxy on this machine, the default) "
        "or noop (no data plane: every change completes at once)",
    )
    up.add_argument(
        "--local-amphorae",
        choices=("process", "shared"),
        default="process",
        help="process (an agent process per amphora, the default) or shared (one amphora host process serves "
        "every SINGLE amphora, each with its own port, certificate, heartbeats and HAProxy: ~7 MiB per load "
        "balancer instead of ~33)",
    )
    up.add_argument("--start-timeout", type=float, default=60.0, help="seconds each part may take to start")
    up.add_argument(
        "--keep-amphorae",
        action="store_true",
        help="on Ctrl-C, stop the services but leave the amphorae serving; the next `up` on the same state "
        "directory adopts them (same ports), `octavia-mesh down` stops them",
    )
    up.add_argument(
        "--api-processes",
        type=int,
        default=default_api_processes(),
        help="API processes behind the edge (default: one per core, at most 4)",
    )
    down = sub.add_parser("down", help="stop the amphorae that `up --keep-amphorae` left running")
    down.add_argument("--state-dir", type=Path, default=Path("state"), help="the state directory `up` used")
    edge = sub.add_parser("edge-config", help="print the Envoy configuration of the REST edge (JSON)")
    edge.add_argument("--port", type=int, default=9876)
    edge.add_argument("--host", default="0.0.0.0")
    edge.add_argument("--api-host", default="api")
    edge.add_argument("--api-port", type=int, default=50051)
    edge.add_argument(
        "--api-bridge-port",
        type=int,
        default=None,
        help="the API's BRIDGE_LISTEN port: REST calls go there over HTTP/1.1 (default: none, to the gRPC port)",
    )
    edge.add_argument("--admin-port", type=int, default=9901)
    edge.add_argument(
        "--metrics-port", type=int, default=None, help="serve Envoy's /stats/prometheus (only) on --host at this port"
    )
    edge.add_argument("--descriptor", default=None, help="path of lbaas_v2.pb as the edge will see it")
    edge.add_argument(
        "--auth-strategy",
        choices=("noauth", "keystone", "trusted_headers"),
        default="keystone",
        help="the API's mode: identity headers are stripped from requests except in trusted_headers",
    )
    edge.add_argument("--access-log", default="/dev/stdout", help="file of the JSON access log (default stdout)")
    edge.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        help="OTLP/gRPC collector for the edge's spans, http://host:port (default OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "up":
        sys.exit(
            run_up(
                MeshOptions(
                    host=args.host,
                    port=args.port,
                    state_dir=args.state_dir,
                    database_url=args.database_url,
                    nats_url=args.nats_url,
                    auth_strategy=args.auth_strategy,
                    start_timeout=args.start_timeout,
                    default_project=args.default_project,
                    default_provider=args.provider,
                    keystone_url=args.keystone_url,
                    keep_amphorae=args.keep_amphorae,
                    local_amphorae=args.local_amphorae,
                    api_processes=args.api_processes,
                )
            )
        )
    if args.command == "down":
        sys.exit(run_down(args.state_dir))
    config = envoy_config(
        args.host,
        args.port,
        args.api_host,
        args.api_port,
        args.admin_port,
        args.descriptor or str(descriptor_path()),
        lua_source(),
        args.auth_strategy,
        metrics_port=args.metrics_port,
        access_log=args.access_log,
        otlp_endpoint=args.otlp_endpoint,
        bridge_port=args.api_bridge_port,
    )
    json.dump(config, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
