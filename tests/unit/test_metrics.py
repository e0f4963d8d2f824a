"""The metrics collector on a fake report: values, roles, missing lag, nothing global."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.registry import CollectorRegistry

from pipeline.metrics import NodeCollector


def exposition(report: dict[str, Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector("p1", lambda: report))
    return generate_latest(registry).decode()


def test_counters_gauges_and_role_come_from_the_report() -> None:
    text = exposition(
        {
            "node_id": "n1",
            "role": "active",
            "epoch": 7,
            "rows_total": 120,
            "batches_total": 9,
            "rollbacks_total": 1,
            "retries_total": 2,
            "lag_ms": 1500,
            "event_lag_ms": 250,
        }
    )
    labels = 'node="n1",pipeline="p1"'
    for line in (
        f"ferry_rows_total{{{labels}}} 120.0",
        f"ferry_batches_total{{{labels}}} 9.0",
        f"ferry_rollbacks_total{{{labels}}} 1.0",
        f"ferry_retries_total{{{labels}}} 2.0",
        f"ferry_lag_seconds{{{labels}}} 1.5",
        f"ferry_source_lag_seconds{{{labels}}} 0.25",
        f"ferry_active{{{labels}}} 1.0",
        f'ferry_role{{{labels},role="active"}} 1.0',
        f'ferry_role{{{labels},role="standby"}} 0.0',
        f"ferry_epoch{{{labels}}} 7.0",
    ):
        assert line in text, text


def test_a_standby_before_any_ack_has_no_lag_sample_and_epoch_zero() -> None:
    text = exposition({"node_id": "n2", "role": "standby", "epoch": "", "lag_ms": None})
    assert "ferry_lag_seconds{" not in text and "# TYPE ferry_lag_seconds gauge" in text
    assert 'ferry_epoch{node="n2",pipeline="p1"} 0.0' in text
    assert 'ferry_active{node="n2",pipeline="p1"} 0.0' in text
    assert 'ferry_rows_total{node="n2",pipeline="p1"} 0.0' in text


def test_importing_registers_nothing_globally() -> None:
    assert "ferry_" not in generate_latest(REGISTRY).decode()
