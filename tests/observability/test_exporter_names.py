"""The PROMETHEUS listener's renaming (the agent's proxy), on HAProxy 2.8's own exposition format: Octavia's
names and help texts, its label names, internal series and series Octavia does not publish left out."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from octavia_mesh.amphora_agent.prometheus import machine_metrics, translate
from octavia_mesh.amphora_agent.promnames import NAMES

# Lines as HAProxy 2.8.25's exporter writes them, help texts shortened (frontend L, backend P:L, server M).
NATIVE = """\
# HELP haproxy_process_current_connections Current number of connections on this worker process
# TYPE haproxy_process_current_connections gauge
haproxy_process_current_connections 3
# HELP haproxy_process_uptime_seconds How long ago this worker process was started (seconds)
# TYPE haproxy_process_uptime_seconds gauge
haproxy_process_uptime_seconds 12
# HELP haproxy_frontend_status Current status of the service, per state label value.
# TYPE haproxy_frontend_status gauge
haproxy_frontend_status{proxy="prometheus-exporter-internal-endpoint",state="UP"} 1
haproxy_frontend_status{proxy="L",state="DOWN"} 0
haproxy_frontend_status{proxy="L",state="UP"} 1
# HELP haproxy_frontend_http_responses_total HTTP responses by class
# TYPE haproxy_frontend_http_responses_total counter
haproxy_frontend_http_responses_total{proxy="L",code="2xx"} 7
# HELP haproxy_backend_server_aborts_total Transfers aborted by the server
# TYPE haproxy_backend_server_aborts_total counter
haproxy_backend_server_aborts_total{proxy="P:L"} 0
haproxy_backend_server_aborts_total{proxy="prometheus-exporter-internal"} 0
# HELP haproxy_server_http_responses_total HTTP responses by class
# TYPE haproxy_server_http_responses_total counter
haproxy_server_http_responses_total{proxy="P:L",server="M",code="2xx"} 7
"""


def families(text: str) -> dict[str, tuple[str, str, list[tuple[dict[str, str], float]]]]:
    return {
        f.name: (f.type, f.documentation, [(s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    }


def test_series_are_renamed_with_octavias_names_labels_and_help() -> None:
    out = families(translate(NATIVE))
    assert out == {
        "octavia_loadbalancer_current_connections": (
            "gauge",
            "Current number of connections on this worker process",
            [({}, 3.0)],
        ),
        "octavia_listener_status": (
            "gauge",
            "Current status of the listener.",
            [({"listener": "L", "state": "DOWN"}, 0.0), ({"listener": "L", "state": "UP"}, 1.0)],
        ),
        "octavia_listener_http_responses": (
            "counter",
            "HTTP responses by class",
            [({"listener": "L", "code": "2xx"}, 7.0)],
        ),
        "octavia_pool_member_aborts": (
            "counter",
            "Total number of data transfers aborted by the server.",
            [({"pool": "P:L"}, 0.0)],
        ),
        "octavia_member_http_responses": (
            "counter",
            "HTTP responses by class",
            [({"pool": "P:L", "member": "M", "code": "2xx"}, 7.0)],
        ),
    }


def test_octavias_table_and_the_machine_gauges() -> None:
    assert len(NAMES) == 142  # Octavia's METRIC_MAP, one entry per HAProxy metric
    prefixes = {octavia.split("_")[1] for octavia, _ in NAMES.values()}
    assert prefixes == {"loadbalancer", "memory", "listener", "pool", "member"}
    machine = families(machine_metrics())
    assert set(machine) == {"octavia_loadbalancer_cpu", "octavia_loadbalancer_memory"}
    assert 0 < machine["octavia_loadbalancer_memory"][2][0][1] < 100
