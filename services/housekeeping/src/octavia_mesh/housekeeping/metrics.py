"""Housekeeping's Prometheus series (names and meanings in ``docs/metrics.md``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from octavia_mesh.common.observability.metrics import LATENCY_BUCKETS

JOB_RUNS = Counter(
    "octavia_mesh_housekeeping_job_runs",
    "Runs of each periodic job, by outcome (success, failure).",
    ("job", "outcome"),
)
JOB_SECONDS = Histogram(
    "octavia_mesh_housekeeping_job_duration_seconds",
    "Time one run of a periodic job took, by job.",
    ("job",),
    buckets=LATENCY_BUCKETS,
)
PURGED = Counter("octavia_mesh_housekeeping_purged_rows", "Rows the cleanup job deleted, by kind.", ("kind",))
PENDING = Counter(
    "octavia_mesh_housekeeping_pending_changes",
    "Changes stuck in PENDING_* that the pending job handled, by action (redriven: queued again; "
    "given_up: its objects went to ERROR).",
    ("action",),
)
ROTATIONS = Counter("octavia_mesh_housekeeping_certificate_rotations_queued", "Amphora certificate rotations queued.")
ORPHANS = Counter(
    "octavia_mesh_housekeeping_orphans",
    "Orphans the orphans job acted on, by kind (vip_released: VIP addresses given back; amphora_reap_queued).",
    ("kind",),
)
