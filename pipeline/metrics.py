"""Prometheus metrics of one node, served on ``pipeline.metrics_port`` (optional).

Nothing is counted twice and nothing costs per row: a custom collector reads
``node.report()`` (the same counters ``ferry status`` shows) when Prometheus
scrapes, into a registry of its own, so importing this module registers
nothing globally. Every sample is labelled ``pipeline`` and ``node``:

=================================  =======  ==========================================
metric                             type     meaning
=================================  =======  ==========================================
``ferry_rows_total``               counter  row changes acked (durably written)
``ferry_batches_total``            counter  batches acked, empty ones included
``ferry_rollbacks_total``          counter  rollbacks (a failed batch, lock loss, ...)
``ferry_retries_total``            counter  resumable failures retried
``ferry_lag_seconds``              gauge    now - first event time of the last acked
                                            batch (0 when caught up); absent before
                                            the first ack
``ferry_source_lag_seconds``       gauge    now - time of the last binlog event read
                                            (active node only)
``ferry_active``                   gauge    1 while this node holds the mainstem
``ferry_role``                     gauge    1 for the node's role (``role`` label:
                                            standby, active, stopped), 0 for others
``ferry_epoch``                    gauge    the epoch held (0 when not active)
``ferry_server_id_clashes_total``  counter  pauses because another binlog client of the
                                            source uses this pipeline's server id
``ferry_source_server_id``         gauge    the server id of the binlog dump
=================================  =======  ==========================================

Bytes are not exported: no stage knows the size of a change without encoding
it again, and that would put a cost on every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from pipeline.node import Role

ROLES: tuple[Role, ...] = ("standby", "active", "stopped")  # "starting" is not exported
_COUNTERS = (
    ("rows", "row changes acked (durably written by the sink)"),
    ("batches", "batches acked, empty ones included"),
    ("rollbacks", "rollbacks: a failed batch discards everything in flight after it"),
    ("retries", "resumable failures retried with backoff"),
    (
        "server_id_clashes",
        "pauses because another binlog client of the source uses this pipeline's server id",
    ),
)


class NodeCollector(Collector):
    """Reads ``report()`` (a ``Node.report``-shaped dict) at every scrape."""

    def __init__(self, pipeline_id: str, report: Callable[[], dict[str, Any]]) -> None:
        self._pipeline = pipeline_id
        self._report = report

    def describe(self) -> list[Metric]:
        return []  # samples are only known at scrape time; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        report = self._report()
        labels = ["pipeline", "node"]
        values = [self._pipeline, str(report.get("node_id", ""))]
        for name, documentation in _COUNTERS:
            counter = CounterMetricFamily(f"ferry_{name}", documentation, labels=labels)
            counter.add_metric(values, float(report.get(f"{name}_total") or 0))
            yield counter
        for name, key, documentation in (
            ("lag_seconds", "lag_ms", "now minus the first event time of the last acked batch"),
            ("source_lag_seconds", "event_lag_ms", "now minus the last binlog event read"),
        ):
            gauge = GaugeMetricFamily(f"ferry_{name}", documentation, labels=labels)
            if report.get(key) not in (None, ""):
                gauge.add_metric(values, float(report[key]) / 1000)
            yield gauge
        skipped = CounterMetricFamily(
            "ferry_skipped_statements",
            "statements read and not passed on, by kind (dml: statement-format, its changes are"
            " missing; account; other) and table",
            labels=[*labels, "kind", "table"],
        )
        for key, count in (report.get("skipped") or {}).items():
            kind, _, table = str(key).partition(" ")
            skipped.add_metric([*values, kind, table], float(count))
        yield skipped
        yield from _snapshot_metrics(report.get("snapshot"), labels, values)
        role = str(report.get("role", ""))
        active = GaugeMetricFamily(
            "ferry_active", "1 while this node holds the mainstem", labels=labels
        )
        active.add_metric(values, 1.0 if role == "active" else 0.0)
        yield active
        roles = GaugeMetricFamily(
            "ferry_role", "1 for the node's current role", labels=[*labels, "role"]
        )
        for name in ROLES:
            roles.add_metric([*values, name], 1.0 if role == name else 0.0)
        yield roles
        epoch = GaugeMetricFamily(
            "ferry_epoch", "the epoch held (0 when not active)", labels=labels
        )
        epoch.add_metric(values, float(report.get("epoch") or 0))
        yield epoch
        server_id = GaugeMetricFamily(
            "ferry_source_server_id", "the server id of the binlog dump", labels=labels
        )
        if report.get("server_id"):
            server_id.add_metric(values, float(report["server_id"]))
        yield server_id


def _snapshot_metrics(
    snapshot: dict[str, Any] | None, labels: list[str], values: list[str]
) -> Iterator[Metric]:
    """Rows read and estimated per table of the snapshot the node reports, and its ETA."""
    rows = GaugeMetricFamily(
        "ferry_snapshot_rows", "rows a snapshot has read, per table", labels=[*labels, "table"]
    )
    estimate = GaugeMetricFamily(
        "ferry_snapshot_rows_estimate",
        "rows a snapshot expects per table (information_schema, at its start)",
        labels=[*labels, "table"],
    )
    eta = GaugeMetricFamily(
        "ferry_snapshot_eta_seconds", "estimated time a running snapshot needs", labels=labels
    )
    for name, table in ((snapshot or {}).get("tables") or {}).items():
        rows.add_metric([*values, name], float(table["rows"]))
        estimate.add_metric([*values, name], float(table["estimate"]))
    if snapshot and snapshot.get("eta_s") is not None:
        eta.add_metric(values, float(snapshot["eta_s"]))
    yield from (rows, estimate, eta)


def serve(
    pipeline_id: str, report: Callable[[], dict[str, Any]], port: int, addr: str = "0.0.0.0"
) -> Any:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the HTTP server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(pipeline_id, report))
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
