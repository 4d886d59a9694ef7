"""The worker's Prometheus series (names and meanings in ``docs/metrics.md``): commands, flows, tasks, spares.

A leaf module (it imports nothing of the worker), so every layer may count.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from octavia_mesh.common.observability.metrics import LATENCY_BUCKETS

COMMANDS_IN_FLIGHT = Gauge(
    "octavia_mesh_worker_commands_in_flight", "Provider commands this worker is applying now.", ("provider",)
)
COMMANDS = Counter(
    "octavia_mesh_worker_commands",
    "Provider commands taken from JetStream, by provider, kind, operation and outcome (applied; skipped: "
    "already completed; failed: raised, so JetStream delivers it again).",
    ("provider", "kind", "operation", "outcome"),
)
FLOWS = Counter(
    "octavia_mesh_worker_flows", "Flows run to an end, by flow and outcome (success, reverted).", ("flow", "outcome")
)
FLOW_SECONDS = Histogram(
    "octavia_mesh_worker_flow_duration_seconds",
    "Time a flow took from its (re)start to its end, by flow and outcome.",
    ("flow", "outcome"),
    buckets=LATENCY_BUCKETS,
)
TASK_SECONDS = Histogram(
    "octavia_mesh_worker_task_duration_seconds",
    "Time one task of a flow took to execute, by flow, task and outcome (success, failure); the count is the "
    "number of executions.",
    ("flow", "task", "outcome"),
    buckets=LATENCY_BUCKETS,
)
FAILOVERS = Counter(
    "octavia_mesh_worker_failovers",
    "Failover commands applied, by what failed over (load_balancer, amphora) and outcome (success, failure).",
    ("kind", "outcome"),
)
SPARES = Gauge(
    "octavia_mesh_worker_spare_amphorae",
    "Spare amphorae in the pool at this worker's last look, by state (ready: READY, agent running; booting).",
    ("state",),
)
SPARES_TARGET = Gauge("octavia_mesh_worker_spare_amphorae_target", "The pool size this worker keeps (spare_amphorae).")
