"""The Kubernetes manifests in ``deploy/k8s`` stay true to the code they run.

No cluster runs here, so these check, on the base every overlay builds on (``deploy/k8s/base``), what a cluster
would only find out at start-up: every service of the workspace is deployed, each container runs a module that
exists with settings its service accepts (an unknown ``OCTAVIA_MESH_<SERVICE>_*`` variable stops a service at
start), probes and Services point at the port the service listens on, and the edge's init container renders a
working Envoy configuration. ``test_k8s_overlays.py`` checks what the overlays render.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.driver_agent.settings import DriverAgentSettings
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.housekeeping.settings import HousekeepingSettings
from octavia_mesh.worker.settings import WorkerSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"
#: Module each Deployment runs → its settings class and variable prefix.
SERVICES: dict[str, tuple[type, str]] = {
    "octavia_mesh.api": (ApiSettings, "OCTAVIA_MESH_API_"),
    "octavia_mesh.worker": (WorkerSettings, "OCTAVIA_MESH_WORKER_"),
    "octavia_mesh.health": (HealthSettings, "OCTAVIA_MESH_HEALTH_"),
    "octavia_mesh.housekeeping": (HousekeepingSettings, "OCTAVIA_MESH_HOUSEKEEPING_"),
    "octavia_mesh.driver_agent": (DriverAgentSettings, "OCTAVIA_MESH_DRIVER_AGENT_"),
}


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == kind}


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    """The first container's environment as its service sees it, ``<VARIABLE>_FILE`` values resolved.

    Secrets reach the services as files: the ConfigMap names each one's path with a ``_FILE`` variable, and the
    file must come from a Secret the container mounts at that directory, under that key.
    """
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    secrets = {v["name"]: _named("Secret")[v["secret"]["secretName"]] for v in pod["volumes"] if "secret" in v}
    mounted = {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}
    env: dict[str, str] = {}
    for doc in _named("ConfigMap").values():
        env.update(doc["data"])
    for name, path in list(env.items()):
        if name.endswith("_FILE"):
            directory, key = path.rsplit("/", 1)
            assert directory in mounted, f"{name}: {directory} is not a mounted Secret"
            env[name.removesuffix("_FILE")] = mounted[directory]["stringData"][key]
            del env[name]
    assert not any(c.get("secretRef") for c in container["envFrom"])  # no secret as a variable
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_every_service_is_deployed_once() -> None:
    modules = [
        c["args"][0]
        for d in _named("Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
        if c.get("args")
    ]
    assert sorted(modules) == sorted(SERVICES)


@pytest.mark.parametrize("module", sorted(SERVICES))
def test_service_settings_are_accepted_and_ports_line_up(module: str) -> None:
    settings_cls, prefix = SERVICES[module]
    deployment = next(
        d
        for d in _named("Deployment").values()
        if d["spec"]["template"]["spec"]["containers"][0].get("args") == [module]
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert importlib.util.find_spec(f"{module}.__main__") is not None
    settings = settings_cls.from_env(
        _env(deployment)
    )  # raises on an unknown or malformed variable, as the service would
    assert settings.database_url.startswith(("postgresql://", "mysql"))  # never the embedded SQLite
    assert settings.nats_url == "nats://nats.octavia-mesh.svc:4222"
    port = int(settings.grpc_listen.rsplit(":", 1)[1])
    assert settings.grpc_listen.startswith("0.0.0.0:")  # reachable from the Service, not only loopback
    ports = [port]
    if module == "octavia_mesh.health":  # amphorae stream heartbeats to a second, mutual-TLS port
        ports.append(int(settings.heartbeat_listen.rsplit(":", 1)[1]))
    if module == "octavia_mesh.api":  # the edge's unary calls on HTTP/1.1, a port of their own
        assert settings.bridge_listen.startswith("0.0.0.0:")
        ports.append(int(settings.bridge_listen.rsplit(":", 1)[1]))
    # Prometheus metrics on a port of their own, scraped from the pod (named by its annotations), not the Service.
    assert settings.metrics_listen.startswith("0.0.0.0:")
    metrics_port = int(settings.metrics_listen.rsplit(":", 1)[1])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(metrics_port)
    assert [p["containerPort"] for p in container["ports"]] == [*ports, metrics_port]
    assert container["readinessProbe"]["grpc"]["port"] == port
    service = _named("Service")[deployment["metadata"]["name"]]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ports


def test_workers_tell_amphorae_the_health_services_heartbeat_port() -> None:
    worker = _named("Deployment")["octavia-mesh-worker"]["spec"]["template"]["spec"]["containers"][0]
    endpoints = WorkerSettings.from_env({e["name"]: e["value"] for e in worker["env"]}).health_endpoints
    health = _named("Service")["octavia-mesh-health"]
    heartbeats = next(p["port"] for p in health["spec"]["ports"] if p["name"] == "heartbeats")
    assert endpoints == (f"{health['metadata']['name']}.octavia-mesh.svc:{heartbeats}",)


def test_services_holding_the_controller_ca_copy_it_from_its_secret() -> None:
    ca_secret = _named("Secret")["octavia-mesh-ca"]
    assert set(ca_secret["stringData"]) == {"ca.pem", "ca.key"}
    for name, ca_dir in (("octavia-mesh-health", "/var/lib/octavia-mesh/ca"), ("octavia-mesh-worker", None)):
        spec = _named("Deployment")[name]["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        ca_dir = ca_dir or env["OCTAVIA_MESH_WORKER_STATE_DIR"] + "/ca"  # the worker keeps its CA in its state
        assert f"{ca_dir}/" in spec["initContainers"][0]["command"][-1]
        assert {"name": "ca-secret", "secret": {"secretName": "octavia-mesh-ca"}} in spec["volumes"]


def test_migration_job_runs_the_migrations_module() -> None:
    job = _named("Job")["octavia-mesh-migrate"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "octavia_mesh.common.db.migrate" in command[-1]
    assert _env(job)["OCTAVIA_MESH_DATABASE_URL"].startswith("postgresql://")  # the URL file it reads exists
    assert importlib.util.find_spec("octavia_mesh.common.db.migrate") is not None


def test_edge_init_container_renders_an_envoy_config_for_the_api_service() -> None:
    edge = _named("Deployment")["octavia-mesh-edge"]["spec"]["template"]["spec"]
    script = edge["initContainers"][0]["command"][-1]
    argv = shlex.split(script.split(">", 1)[0].removeprefix("exec "))
    assert argv[0] == "octavia-mesh"
    rendered = subprocess.run(
        [sys.executable, "-m", "octavia_mesh.cli", *argv[1:]], capture_output=True, text=True, check=True
    ).stdout
    config = json.loads(rendered)
    text = json.dumps(config)
    api = _named("Service")["octavia-mesh-api"]
    assert f"{api['metadata']['name']}.octavia-mesh.svc" in text
    assert str(api["spec"]["ports"][0]["port"]) in text
    # The edge services' unary calls go to the API's bridge port (the Service's "bridge"), on HTTP/1.1.
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    (bridge_port,) = [p["port"] for p in api["spec"]["ports"] if p["name"] == "bridge"]
    endpoint = clusters["api_bridge"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == bridge_port
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == edge["containers"][0]["ports"][0]["containerPort"]
    edge_service = _named("Service")["octavia-mesh-edge"]
    assert edge_service["spec"]["ports"][0]["targetPort"] == 9876
    # Envoy's metrics: a second listener on the port the pod's annotations name, routed to the admin.
    (metrics,) = [li for li in config["static_resources"]["listeners"] if li["name"] == "metrics"]
    metrics_port = metrics["address"]["socket_address"]["port_value"]
    annotations = _named("Deployment")["octavia-mesh-edge"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/stats/prometheus"
    assert metrics_port in [p["containerPort"] for p in edge["containers"][0]["ports"]]


def test_api_validates_keystone_tokens_and_the_edge_drops_identity_headers() -> None:
    settings = ApiSettings.from_env(_env(_named("Deployment")["octavia-mesh-api"]))
    assert settings.auth_strategy == "keystone" and settings.keystone_auth_url.endswith("/v3")
    edge = _named("Deployment")["octavia-mesh-edge"]["spec"]["template"]["spec"]
    argv = shlex.split(edge["initContainers"][0]["command"][-1].split(">", 1)[0].removeprefix("exec "))
    rendered = subprocess.run(
        [sys.executable, "-m", "octavia_mesh.cli", *argv[1:]], capture_output=True, text=True, check=True
    ).stdout
    host = json.loads(rendered)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    removed = host["typed_config"]["route_config"]["virtual_hosts"][0]["request_headers_to_remove"]
    assert {"x-project-id", "x-roles", "x-octavia-mesh-proxy-secret"} <= set(removed)
