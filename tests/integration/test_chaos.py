"""Chaos soak: three `ferry run` nodes of one pipeline, a mixed workload, a random fault
every few seconds — nothing lost, the pipeline never pauses itself.

The workload writes about 150 transactions a second (1-4 rows, some moving a row to a
new primary key) and, every few seconds, one of 600-2500 rows (split into several
batches). Faults, drawn from a shuffled bag and printed with their time:

* SIGKILL of the active node (a standby must hold the mainstem within
  ``lock_ttl_ms`` + 1 s: the lock has to expire);
* SIGSTOP of the active node past the lock TTL, then SIGCONT (a zombie wakes up);
* SIGTERM of the active node (graceful hand-over);
* SIGSTOP shorter than the TTL, then SIGCONT;
* a restart of Redis (``appendonly yes``: the position survives);
* MySQL variant: ``KILL CONNECTION`` of the sink's sessions on the target; a restart
  of the target server;
* Kafka variants (a private Apache Kafka 4.x, KRaft): the broker frozen (SIGSTOP) for a
  few seconds, and the broker restarted (SIGTERM or SIGKILL, then started again on the
  same data). Run twice: at-least-once (kafka-python, the default client), and
  ``exactly_once: true`` (confluent-kafka, a transaction per batch).

A supervisor restarts every node that exits, so three nodes keep existing. At the end:
the MySQL target is checksum-identical to the source; the Kafka topics, read as a
``read_committed`` consumer reads them, hold every change, first deliveries in order per
key; at-least-once: repeats only re-deliveries (counted); exactly-once: no repeat at all;
the pipeline never paused itself; no node exited unasked. A summary line gives the
faults survived, rows moved, duplicates and losses, and the longest takeover.

CI runs each variant for ``--minutes`` (default 1.5, or ``$FERRY_SOAK_MINUTES``) of
faults; run it longer with ``pytest tests/integration/test_chaos.py --minutes 30``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.chaos import Chaos, Cluster, NodeFaults
from tests.conftest import soak_minutes
from tests.delivery import Event, Workload, assert_every_change_in_order_per_key, event_of
from tests.ferryproc import (
    SteadyWriter,
    assert_same_tables,
    mysql_target,
    source_position,
    tables_of,
    wait_until,
    write_config,
)
from tests.services import read_all

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

LOCK_TTL_S = 2.0  # write_config's arbiter.lock_ttl_ms
PARALLELISM = 3
MAX_ROWS = 500
LARGE_ROWS = (600, 2500)  # rows of a large transaction: several batches
BUSY_ROWS = (3000, 6000)  # the transaction a freeze past the TTL follows: ~10 loads
PIPELINE = "chaos"


def _timed(action: Callable[[], None]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


class Soak:
    """One variant's run: services, nodes, faults, writer; then the summary."""

    def __init__(
        self,
        variant: str,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        mariadb: Any,
        source_db: str,
        redis: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.variant = variant
        self.seed = int(os.environ.get("FERRY_SOAK_SEED") or random.randrange(1 << 30))
        self.minutes = soak_minutes(request.config)
        self.workload = Workload(mariadb, source_db, seed=self.seed, keys=200, key_changes=0.05)
        self.tmp_path = tmp_path
        self.mariadb = mariadb
        self.source_db = source_db
        self.redis = redis
        self._capsys = capsys

    def say(self, text: str) -> None:
        with self._capsys.disabled():  # visible in CI logs, with -q too
            print(text, flush=True)

    def restart_redis(self) -> str:
        took = _timed(lambda: (self.redis.stop(), self.redis.start()))
        return f"Redis restarted ({took:.1f}s down; appendonly yes)"

    def run(
        self,
        sink: dict[str, Any],
        sink_faults: dict[str, Callable[[], str]],
        caught_up: Callable[[], bool],
    ) -> tuple[Chaos, NodeFaults]:
        config = write_config(
            self.tmp_path / "pipeline.yaml",
            pipeline_id=PIPELINE,
            mariadb=self.mariadb,
            schema=self.source_db,
            redis_url=self.redis.url,
            prefix="chaos",
            sink=sink,
            start=source_position(self.mariadb),
            server_id=4431,
            parallelism=PARALLELISM,
            batch={"max_rows": MAX_ROWS, "max_wait_ms": 50},
            retry_backoff_max_ms=5000,
        )
        cluster = Cluster(config, ["n1", "n2", "n3"], self.redis.url, f"chaos:{PIPELINE}")
        writer = SteadyWriter(
            self.workload, rate=150, per_round=5, large_every=100, large_rows=LARGE_ROWS
        )
        nodes = NodeFaults(
            cluster, LOCK_TTL_S, random.Random(self.seed), lambda: writer.write_large(BUSY_ROWS)
        )
        faults = {**nodes.all(), "restart_redis": self.restart_redis, **sink_faults}
        # the zombie (issue 13) twice as often as the rest
        chaos = Chaos(cluster, faults, self.seed, self.say, weights={"sigstop_past_ttl": 2})
        chaos.say(
            f"chaos soak, {self.variant} sink: {self.minutes:g} min of faults, seed {self.seed}"
            f" (FERRY_SOAK_SEED), {len(faults)} kinds: {', '.join(sorted(faults))}"
        )
        cluster.start()
        try:
            with writer:
                chaos.run(self.minutes * 60)
            total = len(self.workload.expected)
            chaos.say(f"writer stopped after {total} row changes; waiting for the sink")
            wait_until(caught_up, 180, f"the {self.variant} sink to hold all {total} changes")
            chaos.check()
            codes = cluster.stop()
            assert all(code == 0 for code in codes.values()), codes
            chaos.check()
        finally:
            cluster.stop()
        return chaos, nodes

    def summary(self, chaos: Chaos, nodes: NodeFaults, duplicates: str) -> None:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(chaos.survived.items()))
        longest = max(nodes.kill_takeovers, default=0.0)
        self.say(
            f"chaos soak, {self.variant} sink: {sum(chaos.survived.values())} faults survived"
            f" ({kinds}); {len(self.workload.expected)} row changes moved; duplicates:"
            f" {duplicates}; longest takeover after SIGKILL {longest:.2f}s (bound"
            f" {LOCK_TTL_S + 1:.1f}s), longest takeover of any kind"
            f" {max(nodes.takeovers, default=0.0):.2f}s; never paused; {chaos.cluster.restarts}"
            " node restarts"
        )
        assert longest <= LOCK_TTL_S + 1.0, f"takeovers after SIGKILL: {nodes.kill_takeovers}"


@pytest.fixture
def appendonly_redis(make_redis: Callable[..., Any]) -> Any:
    return make_redis(extra_args=("--appendonly", "yes"))


def test_chaos_soak_mysql_sink(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    appendonly_redis: Any,
    make_mariadb: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    soak = Soak("mysql", request, tmp_path, mariadb, source_db, appendonly_redis, capsys)
    target = make_mariadb()
    target.execute("CREATE DATABASE chaos")
    sink = mysql_target(mariadb, target, source_db, "chaos")

    def kill_sink_connections() -> str:
        sessions = target.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon'"
        )
        for (session,) in sessions:
            with contextlib.suppress(pymysql.MySQLError):  # it ended by itself meanwhile
                target.execute(f"KILL CONNECTION {int(session)}")
        return f"KILL CONNECTION of {len(sessions)} sink session(s) on the target"

    def restart_target() -> str:
        took = _timed(lambda: (target.stop(), target.start()))
        return f"target MySQL restarted ({took:.1f}s down)"

    def caught_up() -> bool:
        return tables_of(mariadb, source_db) == tables_of(target, "chaos")

    chaos, nodes = soak.run(
        sink,
        {"kill_sink_connection": kill_sink_connections, "restart_target": restart_target},
        caught_up,
    )
    assert_same_tables(mariadb, source_db, target, "chaos")
    soak.summary(chaos, nodes, "none visible (idempotent upserts; target checksum-identical)")


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_chaos_soak_kafka_sink(
    exactly_once: bool,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    appendonly_redis: Any,
    make_kafka: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    variant = "kafka exactly-once" if exactly_once else "kafka"
    soak = Soak(variant, request, tmp_path, mariadb, source_db, appendonly_redis, capsys)
    broker = make_kafka()
    topics = [broker.create_topic(f"ferry.{source_db}.{table}") for table in Workload.TABLES]
    sink: dict[str, Any] = {
        "type": "kafka",
        "bootstrap_servers": broker.bootstrap,
        "topic": "ferry.{schema}.{table}",
        "delivery_timeout_ms": 5000,
        # one message per change, as the workload's ledger counts them (debezium-json
        # writes an update of the key as a delete and a create of the new key)
        "format": "ferry-json",
    }
    if exactly_once:
        sink.update(client="confluent-kafka", exactly_once=True, transaction_timeout_ms=15000)

    def stop_broker() -> str:
        stop_s = random.uniform(2.0, 8.0)  # past delivery_timeout_ms (5 s) half the time
        os.kill(broker.pid, signal.SIGSTOP)
        time.sleep(stop_s)
        os.kill(broker.pid, signal.SIGCONT)
        return f"broker stopped for {stop_s:.1f}s (SIGSTOP), then SIGCONT"

    def restart_broker() -> str:
        how = random.choice(["SIGTERM", "SIGKILL"])
        took = _timed(
            lambda: (broker.stop() if how == "SIGTERM" else broker.kill(), broker.start())
        )
        return f"broker restarted ({how}, {took:.1f}s until it answered again; data kept)"

    def delivered() -> list[Event]:
        events = []
        for topic in topics:
            records = read_all(broker.bootstrap, topic, 60, isolation="read_committed")
            for _key, value, _partition, _offset in records:
                event = event_of(json.loads(value)) if value else None
                if event is not None:
                    events.append(event)
        return events

    def caught_up() -> bool:
        return set(soak.workload.expected) <= set(delivered())

    chaos, nodes = soak.run(
        sink, {"stop_broker": stop_broker, "restart_broker": restart_broker}, caught_up
    )
    events = delivered()
    repeats = assert_every_change_in_order_per_key(events, soak.workload.expected)
    lost = len(set(soak.workload.expected) - set(events))  # 0: asserted above
    if exactly_once:
        soak.summary(
            chaos,
            nodes,
            f"{repeats} duplicates, {lost} losses (read_committed: {len(events)} messages for"
            f" {len(soak.workload.expected)} changes)",
        )
        assert repeats == 0, f"exactly-once delivered {repeats} duplicates"
        assert len(events) == len(soak.workload.expected)
        return
    soak.summary(
        chaos,
        nodes,
        f"{repeats} repeated messages (replays of in-flight batches), {lost} losses",
    )
    # a replay resends at most the in-flight window (parallelism batches of max_rows); a
    # fault causes at most a takeover and a retry, or a zombie's late load and a retry
    bound = 2 * sum(chaos.survived.values()) * PARALLELISM * MAX_ROWS
    assert repeats <= bound, f"{repeats} repeats: more than in-flight replays ({bound})"
