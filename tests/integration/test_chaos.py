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
  of the target server; at least three schema changes on the source while the writer
  writes (a column added after ``id``, its type and charset changed, dropped again: the
  target follows each through the schema history, issue 23);
* PostgreSQL variant (issue 22): the same on a private PostgreSQL, whose tables the sink
  creates itself (the pipeline starts before the workload's CREATE TABLEs):
  ``pg_terminate_backend`` of the sink's sessions; the server restarted with a fast or
  an immediate shutdown (SIGINT / SIGQUIT to the postmaster, as ``pg_ctl stop -m fast`` /
  ``-m immediate`` send: the immediate one is a crash, recovered from the WAL), then
  started on the same data directory and port; the same schema changes;
* Kafka variants (a private Apache Kafka 4.x, KRaft): the broker frozen (SIGSTOP) for a
  few seconds, and the broker restarted (SIGTERM or SIGKILL, then started again on the
  same data). Run twice: at-least-once (kafka-python, the default client), and
  ``exactly_once: true`` (confluent-kafka, a transaction per batch).

A supervisor restarts every node that exits, so three nodes keep existing. At the end:
the MySQL target is checksum-identical to the source; the PostgreSQL target equal row by
row under the sink's type mapping (``tests/pgcanon.py``); the Kafka topics, read as a
``read_committed`` consumer reads them, hold every change, first deliveries in order per
key; at-least-once: repeats only re-deliveries (counted); exactly-once: no repeat at all;
the pipeline never paused itself; no node exited unasked. A summary line gives the
faults survived, rows moved, duplicates and losses, and the longest takeover.

The takeovers variant has issue 20's shape (deletes lost in repeated takeovers): two
nodes of a MySQL-sink pipeline with ``parallelism: 4`` and batches of 5000 rows; tables
``orders``, ``order_lines`` (1-3 per order) and ``kv`` (a VARCHAR key); five transactions
of ``--backlog-rows`` rows each (default 20000 or ``$FERRY_SOAK_BACKLOG_ROWS``; the issue
had 100000) written before the nodes start, then a writer of 20-step transactions
(insert an order with its lines, update an order, delete an order and its lines, move a
kv row to a new key: ``UPDATE kv SET k='moved-<n>' ...``). At least eight of its faults
freeze the active node past the TTL and wake it 0.2 s, 0.5 s or 4 s after the standby
took over, whatever the standby did meanwhile. Each such freeze follows a short stop, so the node
wakes with batches queued, and comes the moment its sink commits a load: the frozen node
is then likely past its lock check with the next batch, and that load may land after
its successor chose where to start, so the target is ahead of the successor's first
batch (before abd7240 its merge lost the deletes). One of each other fault joins them.

CI runs each variant for ``--minutes`` (default 1.5, or ``$FERRY_SOAK_MINUTES``) of
faults (the takeovers variant goes on until it has its eight); run it longer with
``pytest tests/integration/test_chaos.py --minutes 30``, replay one with
``FERRY_SOAK_SEED=<the seed it printed>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from pipeline.model import Position
from tests import pgcanon
from tests.chaos import Chaos, Cluster, NodeFaults
from tests.conftest import soak_backlog_rows, soak_minutes
from tests.delivery import (
    Event,
    OrderWorkload,
    Workload,
    assert_every_change_in_order_per_key,
    event_of,
)
from tests.ferryproc import (
    SteadyWriter,
    Writes,
    assert_same_tables,
    checksums,
    mysql_target,
    source_position,
    wait_until,
    write_config,
)
from tests.services import read_all

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

LOCK_TTL_S = 2.0  # arbiter.lock_ttl_ms
PIPELINE = "chaos"
TAKEOVER = "sigstop_wake_after_takeover"


def _timed(action: Callable[[], object]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def _workload(mariadb: Any, schema: str, seed: int) -> Writes:
    return Workload(mariadb, schema, seed=seed, keys=200, key_changes=0.05)


ALTER = "alter_source"  # a schema change on the source (MySQL and PostgreSQL variants)


@dataclass(frozen=True)
class Shape:
    """What a variant runs: its workload, pipeline, nodes, writer and fault mix."""

    workload: Callable[[Any, str, int], Writes] = _workload  # (mariadb, schema, seed)
    nodes: tuple[str, ...] = ("n1", "n2", "n3")
    parallelism: int = 3
    max_rows: int = 500
    rate: float = 150  # transactions a second
    per_round: int = 5
    large_every: int = 100  # rounds; 0: no large transactions
    large_rows: tuple[int, int] = (600, 2500)  # rows of a large one: several batches
    busy_rows: tuple[int, int] | None = (3000, 6000)  # what a freeze past the TTL follows
    weights: Mapping[str, int] = field(default_factory=lambda: {"sigstop_past_ttl": 2})
    at_least: Mapping[str, int] = field(default_factory=dict)
    backlog: int = 0  # transactions written before the nodes start (``backlog_rows`` each)
    max_wait_ms: int = 50
    aim: bool = False  # freezes past the TTL: a short stop first, then the sink's next load


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
        shape: Shape | None = None,
    ) -> None:
        self.variant = variant
        self.shape = shape or Shape()
        self.seed = int(os.environ.get("FERRY_SOAK_SEED") or random.randrange(1 << 30))
        self.minutes = soak_minutes(request.config)
        self.backlog_rows = soak_backlog_rows(request.config)
        self.workload = self.shape.workload(mariadb, source_db, self.seed)
        self.tables: tuple[str, ...] = self.workload.TABLES
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
        aim: Callable[[], Callable[[], bool]] | None = None,
        start: dict[str, Any] | None = None,
    ) -> tuple[Chaos, NodeFaults]:
        """``aim``: what a freeze aims at when the shape says so (``NodeFaults``);
        ``start``: where the pipeline starts (default: the source's binlog end now)."""
        shape = self.shape
        config = write_config(
            self.tmp_path / "pipeline.yaml",
            pipeline_id=PIPELINE,
            mariadb=self.mariadb,
            schema=self.source_db,
            redis_url=self.redis.url,
            prefix="chaos",
            sink=sink,
            start=start or source_position(self.mariadb),
            server_id=4431,
            lock_ttl_ms=int(LOCK_TTL_S * 1000),
            parallelism=shape.parallelism,
            batch={"max_rows": shape.max_rows, "max_wait_ms": shape.max_wait_ms},
            retry_backoff_max_ms=5000,
        )
        cluster = Cluster(config, list(shape.nodes), self.redis.url, f"chaos:{PIPELINE}")
        writer = SteadyWriter(
            self.workload,
            rate=shape.rate,
            per_round=shape.per_round,
            large_every=shape.large_every,
            large_rows=shape.large_rows,
        )
        busy = shape.busy_rows
        nodes = NodeFaults(
            cluster,
            LOCK_TTL_S,
            random.Random(self.seed),
            None if busy is None else lambda: writer.write_large(busy),
            stutter=shape.aim,
            aim=aim if shape.aim else None,
        )
        faults = {**nodes.all(), "restart_redis": self.restart_redis, **sink_faults}
        if shape.at_least.get(TAKEOVER) or shape.weights.get(TAKEOVER):
            faults[TAKEOVER] = nodes.sigstop_wake_after_takeover
        chaos = Chaos(cluster, faults, self.seed, self.say, weights=dict(shape.weights))
        at_least = "".join(f", at least {n} {kind}" for kind, n in shape.at_least.items())
        chaos.say(
            f"chaos soak, {self.variant} sink: {self.minutes:g} min of faults{at_least}, seed"
            f" {self.seed} (FERRY_SOAK_SEED), {len(shape.nodes)} nodes, parallelism"
            f" {shape.parallelism}, batches of {shape.max_rows} rows, {len(faults)} kinds:"
            f" {', '.join(sorted(faults))}"
        )
        if shape.backlog:
            assert isinstance(self.workload, OrderWorkload)
            backlog = self.workload.backlog
            took = _timed(lambda: [backlog(self.backlog_rows) for _ in range(shape.backlog)])
            chaos.say(
                f"backlog: {shape.backlog} transactions of {self.backlog_rows} rows written"
                f" before the nodes start ({took:.1f}s)"
            )
        cluster.start()
        try:
            with writer:
                chaos.run(self.minutes * 60, dict(shape.at_least))
            total = self.workload.changes
            chaos.say(f"writer stopped after {total} row changes; waiting for the sink")
            wait_until(caught_up, 180, f"the {self.variant} sink to hold all {total} changes")
            chaos.say("the sink caught up")
            chaos.check()
            codes = cluster.stop()
            assert all(code == 0 for code in codes.values()), codes
            chaos.check()
        finally:
            cluster.stop()
        return chaos, nodes

    def summary(self, chaos: Chaos, nodes: NodeFaults, duplicates: str) -> None:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(chaos.survived.items()))
        if chaos.survived[TAKEOVER]:
            kinds += (
                f"; {nodes.woke_first} of the {TAKEOVER} zombies woke before their successor"
                f" committed; {nodes.aimed} froze right after a load committed"
            )
        longest = max(nodes.kill_takeovers, default=0.0)
        self.say(
            f"chaos soak, {self.variant} sink, seed {self.seed}: {sum(chaos.survived.values())}"
            f" faults survived ({kinds}); {self.workload.changes} row changes moved;"
            f" duplicates: {duplicates}; longest takeover after SIGKILL {longest:.2f}s (bound"
            f" {LOCK_TTL_S + 1:.1f}s), longest takeover of any kind"
            f" {max(nodes.takeovers, default=0.0):.2f}s; never paused; {chaos.cluster.restarts}"
            " node restarts"
        )
        assert longest <= LOCK_TTL_S + 1.0, f"takeovers after SIGKILL: {nodes.kill_takeovers}"


class SchemaChanges:
    """The soak's schema changes on the source, one per call (``ALTER``)."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.made = 0

    def next(self) -> str:
        """A schema change on the source while the writer writes (issue 23): over the
        workload's tables in turn, a column added after ``id``, its type changed, then
        dropped; the target must follow each, and end identical."""
        soak, n = self.soak, self.made
        self.made += 1
        table = soak.tables[(n // 3) % len(soak.tables)]
        column = f"extra{n // 3}"
        sql = [
            f"ALTER TABLE `{table}` ADD COLUMN `{column}` VARCHAR(8) DEFAULT 'x' AFTER id",
            f"ALTER TABLE `{table}` MODIFY `{column}` VARCHAR(20) CHARACTER SET latin1 DEFAULT 'y'",
            f"ALTER TABLE `{table}` DROP COLUMN `{column}`",
        ][n % 3]
        took = _timed(lambda: soak.mariadb.execute(sql, database=soak.source_db))
        return f"{sql} on the source ({took:.1f}s)"


class MySQLTarget:
    """A soak's MySQL sink: a private target server, its faults and the end check."""

    def __init__(self, soak: Soak, make_mariadb: Callable[..., Any]) -> None:
        self.soak = soak
        self.server = make_mariadb()
        self.server.execute("CREATE DATABASE chaos")
        self.sink = mysql_target(soak.mariadb, self.server, soak.source_db, "chaos", soak.tables)
        self.schema_changes = SchemaChanges(soak)

    def kill_sink_connections(self) -> str:
        sessions = self.server.execute(
            "SELECT ID FROM information_schema.PROCESSLIST"
            " WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon'"
        )
        for (session,) in sessions:
            with contextlib.suppress(pymysql.MySQLError):  # it ended by itself meanwhile
                self.server.execute(f"KILL CONNECTION {int(session)}")
        return f"KILL CONNECTION of {len(sessions)} sink session(s) on the target"

    def restart(self) -> str:
        took = _timed(lambda: (self.server.stop(), self.server.start()))
        return f"target MySQL restarted ({took:.1f}s down)"

    def next_load(self) -> Callable[[], bool]:
        """Read the sink's checkpoint now; the function returned waits until it changes (the
        next load committed; at most 3 s) and says whether it did."""
        query = "SELECT epoch, position, updated_at FROM chaos.ferry_checkpoint"
        try:
            conn = self.server.connect()
        except pymysql.MySQLError:  # the target is restarting
            return lambda: False
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                first = cur.fetchall()
        except pymysql.MySQLError:
            conn.close()
            return lambda: False

        def committed() -> bool:
            deadline = time.monotonic() + 3.0
            try:
                with conn.cursor() as cur:
                    while time.monotonic() < deadline:
                        cur.execute(query)
                        if cur.fetchall() != first:
                            return True
            except pymysql.MySQLError:
                pass
            finally:
                conn.close()
            return False

        return committed

    def caught_up(self) -> bool:
        """The target holds the source's rows, or the sink's checkpoint reached the source's
        binlog end (then the end check tells what differs, rather than a timeout)."""
        soak = self.soak
        if checksums(soak.mariadb, soak.source_db, soak.tables) == checksums(
            self.server, "chaos", soak.tables
        ):
            return True
        end = source_position(soak.mariadb)
        checkpoint = self.server.execute(
            "SELECT position FROM chaos.ferry_checkpoint WHERE pipeline_id = %s", (PIPELINE,)
        )
        if not checkpoint or checkpoint[0][0] is None:
            return False
        reached = Position.from_json(checkpoint[0][0]).sort_key()
        return reached >= Position(end["file"], end["pos"]).sort_key()

    def run(self) -> None:
        """Run the soak against this target, then check it equals the source."""
        soak = self.soak
        faults = {
            "kill_sink_connection": self.kill_sink_connections,
            "restart_target": self.restart,
        }
        if isinstance(soak.workload, Workload):  # its statements name their columns
            faults[ALTER] = self.schema_changes.next
        chaos, nodes = soak.run(self.sink, faults, self.caught_up, self.next_load)
        assert_same_tables(soak.mariadb, soak.source_db, self.server, "chaos", soak.tables)
        soak.summary(chaos, nodes, "none visible (idempotent upserts; target checksum-identical)")


class PostgreSQLTarget:
    """A soak's PostgreSQL sink: a private server, its faults and the end check."""

    DATABASE = "chaos"

    def __init__(self, soak: Soak, server: Any, start: dict[str, Any]) -> None:
        self.soak = soak
        self.server = server
        self.start = start  # before the workload's CREATE TABLEs: the sink creates them
        server.create_database(self.DATABASE)
        self.sink = {
            "type": "postgresql",
            "host": server.host,
            "port": server.port,
            "user": server.user,
            "password": server.password,
            "database": self.DATABASE,
        }
        self.schema_changes = SchemaChanges(soak)
        self.restarts = 0

    def kill_sink_connections(self) -> str:
        ended = self.server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (self.DATABASE,),
        )
        return f"pg_terminate_backend of {len(ended)} sink session(s) on the target"

    def restart(self) -> str:
        # in turns: the shuffled bag brings every kind at least twice in a CI run
        mode = ("fast", "immediate")[self.restarts % 2]
        self.restarts += 1

        def stop() -> None:
            if mode == "immediate":  # a crash: no checkpoint, recovery from the WAL on start
                os.kill(self.server.pid, signal.SIGQUIT)
            self.server.stop()  # SIGINT, a fast shutdown (or waits for the immediate one)

        took = _timed(lambda: (stop(), self.server.start()))
        return f"target PostgreSQL restarted ({mode} shutdown, {took:.1f}s down)"

    def differences(self) -> list[str]:
        soak = self.soak
        with self.server.connect(self.DATABASE) as pg:
            return [
                problem
                for table in soak.tables
                for problem in pgcanon.compare_table(
                    soak.mariadb, pg, soak.source_db, table, soak.source_db, table
                )
            ]

    def caught_up(self) -> bool:
        try:
            return not self.differences()
        except psycopg.Error:  # restarting, or the sink has not created a table yet
            return False

    def run(self) -> None:
        """Run the soak against this target, then check it equals the source."""
        soak = self.soak
        faults = {
            "kill_sink_connection": self.kill_sink_connections,
            "restart_target": self.restart,
            ALTER: self.schema_changes.next,
        }
        chaos, nodes = soak.run(self.sink, faults, self.caught_up, start=self.start)
        problems = self.differences()
        assert problems == [], "the target differs from the source:\n" + "\n".join(problems)
        soak.summary(chaos, nodes, "none visible (idempotent upserts; target equal row by row)")


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
    shape = Shape(at_least={ALTER: 3})
    soak = Soak("mysql", request, tmp_path, mariadb, source_db, appendonly_redis, capsys, shape)
    MySQLTarget(soak, make_mariadb).run()


def test_chaos_soak_postgresql_sink(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    appendonly_redis: Any,
    make_postgresql: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_postgresql()
    start = source_position(mariadb)  # before Soak creates the workload's tables
    shape = Shape(at_least={ALTER: 3})
    soak = Soak(
        "postgresql", request, tmp_path, mariadb, source_db, appendonly_redis, capsys, shape
    )
    PostgreSQLTarget(soak, server, start).run()


TAKEOVERS = Shape(
    workload=OrderWorkload,
    nodes=("n1", "n2"),
    parallelism=4,
    max_rows=5000,
    rate=25,
    per_round=1,
    large_every=0,
    busy_rows=None,
    weights={TAKEOVER: 8},
    at_least={TAKEOVER: 8},
    backlog=5,
    max_wait_ms=200,
    aim=True,
)


def test_chaos_soak_mysql_sink_takeovers(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    appendonly_redis: Any,
    make_mariadb: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 20's shape: two nodes, big batches, a backlog, and zombies that wake while
    their successor has maybe not written yet — no delete may be lost."""
    soak = Soak(
        "mysql-takeovers",
        request,
        tmp_path,
        mariadb,
        source_db,
        appendonly_redis,
        capsys,
        TAKEOVERS,
    )
    MySQLTarget(soak, make_mariadb).run()


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
    assert isinstance(soak.workload, Workload)
    workload = soak.workload
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
        return set(workload.expected) <= set(delivered())

    chaos, nodes = soak.run(
        sink, {"stop_broker": stop_broker, "restart_broker": restart_broker}, caught_up
    )
    events = delivered()
    repeats = assert_every_change_in_order_per_key(events, workload.expected)
    lost = len(set(workload.expected) - set(events))  # 0: asserted above
    if exactly_once:
        soak.summary(
            chaos,
            nodes,
            f"{repeats} duplicates, {lost} losses (read_committed: {len(events)} messages for"
            f" {len(workload.expected)} changes)",
        )
        assert repeats == 0, f"exactly-once delivered {repeats} duplicates"
        assert len(events) == len(workload.expected)
        return
    soak.summary(
        chaos,
        nodes,
        f"{repeats} repeated messages (replays of in-flight batches), {lost} losses",
    )
    # a replay resends at most the in-flight window (parallelism batches of max_rows); a
    # fault causes at most a takeover and a retry, or a zombie's late load and a retry
    bound = 2 * sum(chaos.survived.values()) * soak.shape.parallelism * soak.shape.max_rows
    assert repeats <= bound, f"{repeats} repeats: more than in-flight replays ({bound})"
