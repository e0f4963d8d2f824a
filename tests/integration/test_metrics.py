"""`/metrics` of two real `ferry run` nodes (active and standby) while rows flow."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.delivery import Workload
from tests.ferryproc import (
    FerryNode,
    complete_events,
    ferry_status,
    node_report,
    source_position,
    wait_until,
    write_config,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}; empty when nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, node: str, **labels: str) -> float | None:
    key = (name, tuple(sorted({"pipeline": "metrics", "node": node, **labels}.items())))
    return samples.get(key)


def test_metrics_endpoint_counts_rows_and_shows_roles(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    workload = Workload(mariadb, source_db, seed=21)
    ports = {"a": free_port(), "b": free_port()}
    nodes = {}
    for name in ports:
        config = write_config(
            tmp_path / f"pipeline-{name}.yaml",
            pipeline_id="metrics",
            mariadb=mariadb,
            schema=source_db,
            redis_url=redis_server.url,
            prefix=key_prefix,
            sink={"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
            start=source_position(mariadb),
            server_id=4431,
            metrics_port=ports[name],
        )
        nodes[name] = FerryNode(config, name)
    try:
        nodes["a"].start()
        wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
        nodes["b"].start()
        wait_until(lambda: node_report(ferry_status(config), "b"), 30, "b's report")

        a = wait_until(lambda: scrape(ports["a"]), 10, "a's /metrics")
        assert value(a, "ferry_active", "a") == 1.0
        assert value(a, "ferry_role", "a", role="active") == 1.0
        assert value(a, "ferry_role", "a", role="standby") == 0.0
        epoch = value(a, "ferry_epoch", "a")
        assert epoch is not None and epoch >= 1
        assert epoch == ferry_status(config)["epoch"]
        rows_before = value(a, "ferry_rows_total", "a")
        batches_before = value(a, "ferry_batches_total", "a")
        assert rows_before == 0.0 and batches_before is not None
        assert value(a, "ferry_rollbacks_total", "a") == 0.0
        assert value(a, "ferry_retries_total", "a") == 0.0

        b = wait_until(lambda: scrape(ports["b"]), 10, "b's /metrics")
        assert value(b, "ferry_active", "b") == 0.0
        assert value(b, "ferry_role", "b", role="standby") == 1.0
        assert value(b, "ferry_epoch", "b") == 0.0
        assert value(b, "ferry_rows_total", "b") == 0.0

        workload.run(100)
        total = len(workload.expected)
        a = wait_until(
            lambda: (s := scrape(ports["a"])) and value(s, "ferry_rows_total", "a") == total and s,
            30,
            f"ferry_rows_total to reach {total}",
        )
        assert len(complete_events(tmp_path / "out.jsonl")) == total  # acked after written
        assert value(a, "ferry_batches_total", "a") > batches_before  # type: ignore[operator]
        lag = value(a, "ferry_lag_seconds", "a")
        assert lag is not None and 0 <= lag < 30
        source_lag = value(a, "ferry_source_lag_seconds", "a")
        assert source_lag is not None and source_lag >= 0
        for node in nodes.values():
            assert node.stop() == 0, node.log()
    finally:
        for node in nodes.values():
            node.stop()
