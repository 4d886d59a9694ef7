"""The health service's Prometheus series (names and meanings in ``docs/metrics.md``).

Counts the service already keeps (heartbeats received and written, open streams, the failover detector's
last scan and breaker) are read at scrape time by :class:`HealthCollector`, so heartbeats pay nothing for
them; events that happen rarely (losses, claims) are counted where they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from octavia_mesh.health.failover import FailoverDetector
    from octavia_mesh.health.ingest import Ingest

STREAM_LOSSES = Counter(
    "octavia_mesh_health_stream_losses",
    "Heartbeat streams seen lost by this replica: broken (ended with no farewell) or quiet (connected, silent).",
    ("why",),
)
FAILOVER_CLAIMS = Counter(
    "octavia_mesh_health_failover_claims",
    "Automatic failovers this replica tried to claim, by reason (heartbeat_timeout: silent for the timeout; "
    "stream_lost: its stream broke or went quiet) and outcome (claimed: the failover command was queued; "
    "lost: another replica, a heartbeat or a change got there first).",
    ("reason", "outcome"),
)
FAILOVERS_RELEASED = Counter(
    "octavia_mesh_health_failovers_released",
    "Claimed failovers that settled without replacing the amphora, released for another attempt.",
)


class HealthCollector(Collector):
    """Reads the heartbeat plane's and the failover detector's own counts at scrape time."""

    def __init__(self, ingest: Ingest, detector: FailoverDetector | None) -> None:
        self._ingest = ingest
        self._detector = detector

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        ingest = self._ingest
        yield CounterMetricFamily(
            "octavia_mesh_health_heartbeats_received",
            "Heartbeats received from amphorae (one per load-balancer report message).",
            value=ingest.received,
        )
        yield CounterMetricFamily(
            "octavia_mesh_health_heartbeats_written",
            "Amphora heartbeats written to the database (heartbeats of one amphora within a flush coalesce).",
            value=ingest.written,
        )
        yield GaugeMetricFamily(
            "octavia_mesh_health_heartbeat_streams", "Open heartbeat streams on this replica.", value=ingest.streams
        )
        yield GaugeMetricFamily(
            "octavia_mesh_health_heartbeat_writes_ok",
            "1 while heartbeats are written (the last flush succeeded), 0 while writes fail.",
            value=1 if ingest.writes_ok() else 0,
        )
        detector = self._detector
        if detector is None:
            return
        yield GaugeMetricFamily(
            "octavia_mesh_health_failover_breaker_open",
            "1 while the failover circuit breaker is open (too many amphorae silent at once), else 0.",
            value=1 if detector.gate.breaker_open else 0,
        )
        yield GaugeMetricFamily(
            "octavia_mesh_health_failover_armed",
            "1 while automatic failover may claim amphorae, 0 while it is held (breaker, start-up, database).",
            value=1 if detector.verdict is not None and detector.verdict.armed else 0,
        )
        last = detector.last_scan
        if last is not None:
            yield GaugeMetricFamily(
                "octavia_mesh_health_amphorae_monitored",
                "ALLOCATED amphorae with a health row and no failover in flight, at the last scan.",
                value=last.monitored,
            )
            yield GaugeMetricFamily(
                "octavia_mesh_health_amphorae_silent",
                "Monitored amphorae silent (or lost) at the last scan: what the breaker counts.",
                value=last.silent,
            )
            yield GaugeMetricFamily(
                "octavia_mesh_health_failovers_in_flight",
                "Failovers claimed by any replica and not finished, at the last scan.",
                value=last.in_flight,
            )
            yield GaugeMetricFamily(
                "octavia_mesh_health_heartbeat_lag_seconds",
                "How far behind its heartbeats (unread or unwritten) this replica recently was, at the last scan: "
                "silence is judged that much later.",
                value=last.lag_s,
            )


def register(ingest: Ingest, detector: FailoverDetector | None) -> HealthCollector:
    """Expose ``ingest``'s and ``detector``'s counts on the default registry (once per process)."""
    collector = HealthCollector(ingest, detector)
    REGISTRY.register(collector)
    return collector
