"""The node end to end: real MariaDB binlog, real Redis arbiter, JSONL sink.

* a mixed workload arrives complete and in order (exactly once when nothing fails);
* a sink failure injected mid-run rolls back and recovers with nothing lost;
* SIGTERM mid-run, then a restart, resumes exactly from the committed position.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from arbitrate.redis import RedisArbiter
from pipeline.config import FerryConfig, load_config
from pipeline.errors import ResumableError
from pipeline.model import Batch
from pipeline.node import Node
from pipeline.recovery import StateFile
from selector.base import Selector
from selector.process import open_selector
from sinks.jsonl import JsonlSink
from tests.delivery import Workload, assert_ordered_at_least_once, indexes, jsonl_events
from tests.ferryproc import source_position
from tests.services import track_process, untrack_process

ROOT = Path(__file__).parents[2]


def write_config(
    tmp_path: Path, mariadb: Any, schema: str, redis_url: str, prefix: str, **pipeline: Any
) -> Path:
    settings = {"batch": "{max_rows: 50, max_wait_ms: 50}", "state_dir": str(tmp_path / "state")}
    settings.update({k: str(v) for k, v in pipeline.items()})
    start = source_position(mariadb)  # what the test writes from now on, and nothing older
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        f"""
pipeline:
  id: it-node
  retry_backoff_ms: 50
{lines}
source:
  host: {mariadb.host}
  port: {mariadb.port}
  user: {mariadb.user}
  password: "{mariadb.password}"
  server_id: 4301
  include: ["{schema}.*"]
  start: {{file: {start["file"]}, pos: {start["pos"]}}}
arbiter:
  url: {redis_url}
  key_prefix: "{prefix.rstrip(":")}"
  lock_ttl_ms: 2000
sink:
  type: jsonl
  path: {tmp_path / "out.jsonl"}
"""
    )
    return path


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class FailingJsonl(JsonlSink):
    """The real JSONL sink, failing once on the given load after writing half of it."""

    def __init__(self, config: Any, pipeline_id: str, fail_on: int) -> None:
        super().__init__(config, pipeline_id)
        self.fail_on = fail_on
        self.calls = 0

    def load(self, batch: Batch, epoch: int) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            half = Batch(batch.batch_id, batch.changes[: len(batch.changes) // 2], batch.position)
            super().load(half, epoch)
            raise ResumableError("injected: disk went away")
        super().load(batch, epoch)


def in_process_node(config: FerryConfig, sink: Any) -> tuple[Node, threading.Thread]:
    def selector(store: Any) -> Selector:
        batch = config.pipeline.batch
        return open_selector(config.source, batch.max_rows, batch.max_wait_ms, store, "it-node")

    node = Node(
        config,
        "in-process",
        arbiter=RedisArbiter(config.arbiter, config.pipeline.id, "in-process"),
        sink=sink,
        selector_factory=selector,
        state=StateFile(config.pipeline.state_dir, config.pipeline.id),
    )
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    wait_until(lambda: node.role == "active" and node.task is not None, 20, "the node to start")
    return node, thread


@pytest.mark.parametrize("decoder", ["process", "thread"])
def test_workload_arrives_complete_and_in_order(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str, decoder: str
) -> None:
    workload = Workload(mariadb, source_db, seed=1)
    config = load_config(write_config(tmp_path, mariadb, source_db, redis_server.url, key_prefix))
    config.source.decoder = decoder  # type: ignore[assignment]
    sink = JsonlSink(config.sink, config.pipeline.id)
    node, thread = in_process_node(config, sink)
    try:
        workload.run(300)
        out = tmp_path / "out.jsonl"
        wait_until(lambda: len(jsonl_events(out)) >= len(workload.expected), 60, "all changes")
    finally:
        node.request_stop()
        thread.join(20)
    assert not thread.is_alive()
    assert jsonl_events(tmp_path / "out.jsonl") == workload.expected


def test_sink_failure_mid_run_rolls_back_and_loses_nothing(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    workload = Workload(mariadb, source_db, seed=2)
    config = load_config(write_config(tmp_path, mariadb, source_db, redis_server.url, key_prefix))
    sink = FailingJsonl(config.sink, config.pipeline.id, fail_on=6)
    node, thread = in_process_node(config, sink)
    try:
        workload.run(400)
        out = tmp_path / "out.jsonl"
        wait_until(
            lambda: (
                node.stats.position is not None
                and len(set(jsonl_events(out))) >= len(workload.expected)
            ),
            60,
            "recovery and all changes",
        )
    finally:
        node.request_stop()
        thread.join(20)
    delivered = jsonl_events(tmp_path / "out.jsonl")
    assert sink.calls > 6 and node.stats.rollbacks_total == 1
    assert len(delivered) > len(workload.expected), "the half-written batch was replayed"
    assert_ordered_at_least_once(indexes(delivered, workload.expected), len(workload.expected))


def test_sigterm_mid_run_then_restart_resumes_exactly(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    workload = Workload(mariadb, source_db, seed=3)
    config_path = write_config(tmp_path, mariadb, source_db, redis_server.url, key_prefix)
    config = load_config(config_path)
    out = tmp_path / "out.jsonl"

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("wb") as log:  # the child keeps its own fd
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "run",
                    "-c",
                    str(config_path),
                    "--node-id",
                    name,
                ],
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        track_process(process)
        return process

    arbiter = RedisArbiter(config.arbiter, config.pipeline.id, "probe")
    try:
        first = start("first")
        wait_until(lambda: arbiter.status().active_node == "first", 30, "first to be active")
        time.sleep(0.5)
        writer = threading.Thread(target=workload.run, args=(600,))
        writer.start()
        wait_until(lambda: len(jsonl_events(out)) > 200, 60, "some progress")
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, (tmp_path / "first.log").read_text()[-3000:]
        untrack_process(first)
        assert arbiter.status().active_node is None, "the lock was released on SIGTERM"
        stopped_at = len(jsonl_events(out))
        writer.join(60)
        assert stopped_at < len(workload.expected), "the node was stopped mid-run"

        second = start("second")
        wait_until(lambda: len(jsonl_events(out)) >= len(workload.expected), 60, "the rest")
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        untrack_process(second)
    finally:
        arbiter.close()
    assert jsonl_events(out) == workload.expected, "exactly once across a graceful restart"
    log = (tmp_path / "second.log").read_text()
    assert "recovery from" in log and "origin=redis" in log


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_waits_for_in_flight_work_a_second_exits_at_once(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str, signum: int
) -> None:
    config_path = write_config(
        tmp_path, mariadb, source_db, redis_server.url, key_prefix, shutdown_grace_ms=60000
    )
    os.mkfifo(tmp_path / "out.jsonl")  # opening the sink blocks: no reader, ever
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "-c", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    track_process(process)
    try:
        time.sleep(3)
        process.send_signal(signum)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(1.5)  # the first signal asks for a graceful stop, which waits
        process.send_signal(signum)
        assert process.wait(5) == 128 + signum
    finally:
        process.kill()
        process.wait()
        untrack_process(process)
