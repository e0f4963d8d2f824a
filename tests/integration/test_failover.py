"""Failover between two real `ferry run` processes for one pipeline, under a steady load.

Nodes ``a`` and ``b`` run the same pipeline file (real MariaDB source, real
Redis arbiter, a JSONL file or a second MariaDB as the sink); ``a`` holds the
mainstem, ``b`` waits. A writer thread keeps committing transactions while
the active node is

* SIGKILLed: ``b`` must hold the mainstem within ``lock_ttl_ms`` + 1 s of the
  kill (the lock has to expire: nobody released it); the target ends with
  every change — JSONL: in order, duplicates only from the batches in flight
  at the kill; MySQL: the same rows as the source (idempotent apply);
* SIGTERMed: ``a`` drains, acks, releases the lock, and ``b`` takes over in
  under a second; zero duplicates (JSONL: exactly the expected lines; MySQL:
  the rows both nodes acked add up to exactly the changes written).

Either way the stopped node, started again, comes back as a standby. The
takeover times are printed (``pytest -s tests/integration/test_failover.py``).

And the zombie of issue 13, deterministically, with two in-process nodes: ``a``
freezes (clock and renewer stopped, like SIGSTOP) between its loader's lock check
and the MySQL sink's fence; ``b`` takes over and writes; ``a`` wakes, its write is
refused by the fence, and it steps down — the pipeline is never paused.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arbitrate.redis import RedisArbiter
from pipeline.config import load_config
from pipeline.model import Batch, Position
from pipeline.node import Node
from selector.base import Selector
from selector.process import open_selector
from sinks.mysql import MySQLSink
from tests.delivery import Workload, assert_ordered_at_least_once, indexes
from tests.ferryproc import (
    FerryNode,
    SteadyWriter,
    assert_same_tables,
    complete_events,
    ferry_status,
    node_report,
    source_position,
    tables_of,
    wait_until,
    write_config,
)
from tests.frozen import FrozenMidLoad, running
from tests.integration.test_arbitrate_redis import StallableClock

LOCK_TTL_S = 2.0
PARALLELISM = 3
MAX_ROWS = 50


class Target:
    """Where the pipeline writes, and how to tell that it holds every change."""

    def __init__(self, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.out = tmp_path / "out.jsonl"
        self.server: Any = None
        self.db = ""
        if kind == "mysql":
            self.server = request.getfixturevalue("mariadb_target")
            self.db = request.getfixturevalue("target_db")

    def prepare(self, workload: Workload) -> dict[str, Any]:
        """Create what the sink needs; returns the `sink:` section."""
        if self.kind == "jsonl":
            return {"type": "jsonl", "path": str(self.out)}
        for table in Workload.TABLES:
            [(_, ddl)] = workload.mariadb.execute(
                f"SHOW CREATE TABLE `{workload.schema}`.`{table}`"
            )
            self.server.execute(ddl, database=self.db)
        return {
            "type": "mysql",
            "host": self.server.host,
            "port": self.server.port,
            "user": self.server.user,
            "password": self.server.password,
            "schema_map": {workload.schema: self.db},
            "checkpoint_schema": self.db,
        }

    def caught_up(self, workload: Workload) -> bool:
        if self.kind == "jsonl":
            return len(set(complete_events(self.out))) >= len(workload.expected)
        return tables_of(workload.mariadb, workload.schema) == tables_of(self.server, self.db)

    def assert_matches(self, workload: Workload) -> None:
        """The MySQL target holds exactly the source's rows: same rows, same checksums."""
        assert_same_tables(workload.mariadb, workload.schema, self.server, self.db)


def assert_one_steady_dump(server: Any, seconds: float = 3.0) -> None:
    """One binlog dump thread on the source, the same one for ``seconds``: no two clients
    of one server id drop each other in a loop."""

    def dumps() -> set[int]:
        rows = server.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'"
        )
        return {int(row[0]) for row in rows}

    first = wait_until(lambda: (found := dumps()) and len(found) == 1 and found, 30, "one dump")
    seen = set(first)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen |= dumps()
        time.sleep(0.05)
    assert seen == first, f"binlog dump threads came and went: {sorted(seen)}"


def holder(client: Any, key: str) -> Callable[[], str | None]:
    """Reads the mainstem key (``<epoch>:<node_id>``) directly: the exact moment of takeover."""

    def read() -> str | None:
        value = client.get(key)
        return value.decode().split(":", 1)[1] if value else None

    return read


def rows_of(config: Path, node_id: str) -> int:
    report = node_report(ferry_status(config), node_id)
    return int(report.get("rows_total") or 0) if report else 0


def role_of(config: Path, node_id: str) -> str | None:
    report = node_report(ferry_status(config), node_id)
    return str(report["role"]) if report else None


def run_failover(
    signum: int,
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
) -> tuple[float, Workload, Target, dict[str, int]]:
    """Two nodes, load, signal the active one; returns (takeover_s, workload, target, rows)."""
    pipeline_id = f"failover-{kind}"
    workload = Workload(mariadb, source_db, seed=signum)
    target = Target(kind, tmp_path, request)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id=pipeline_id,
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=target.prepare(workload),
        start=source_position(mariadb),
        server_id=4411,
        parallelism=PARALLELISM,
        batch={"max_rows": MAX_ROWS, "max_wait_ms": 50},
    )
    client = redis_server.client()
    active = holder(client, f"{key_prefix.rstrip(':')}:{pipeline_id}:mainstem")
    a, b = FerryNode(config, "a"), FerryNode(config, "b")
    acked: dict[str, int] = {}
    try:
        a.start()
        wait_until(lambda: active() == "a", 30, "a to hold the mainstem")
        b.start()
        wait_until(lambda: role_of(config, "b") == "standby", 30, "b to report as standby")
        status = ferry_status(config)
        assert status["active_node"] == "a" and status["state"] == "running", status

        with SteadyWriter(workload) as writer:
            wait_until(lambda: rows_of(config, "a") > 400, 30, "a to replicate under load")
            if signum == signal.SIGTERM:
                # a's final report, published on its way out, holds every row it acked
                a_rows_before = rows_of(config, "a")
            started = time.monotonic()
            a.signal(signum)
            wait_until(lambda: active() == "b", 30, "b to hold the mainstem", interval_s=0.005)
            takeover_s = time.monotonic() - started
            name = signal.Signals(signum).name
            print(f"\n{name} {kind}: b active {takeover_s:.3f}s after the signal to a")

            assert a.wait(30) == (0 if signum == signal.SIGTERM else -signal.SIGKILL), a.log()
            if signum == signal.SIGTERM:
                acked["a"] = int(node_report(ferry_status(config), "a")["rows_total"])  # type: ignore[index]
                assert acked["a"] >= a_rows_before
            assert writer.written > 0
            wait_until(lambda: rows_of(config, "b") > 300, 30, "b to replicate under load")

            a.start()  # the stopped node comes back as a standby
            wait_until(lambda: role_of(config, "a") == "standby", 30, "restarted a as standby")
            status = ferry_status(config)
            assert status["active_node"] == "b", status
            assert node_report(status, "b")["role"] == "active", status  # type: ignore[index]
            assert status["epoch"] > 1, status
        total = len(workload.expected)
        wait_until(lambda: target.caught_up(workload), 60, f"the target to hold all {total}")
        if signum == signal.SIGTERM:
            wait_until(lambda: rows_of(config, "b") + acked["a"] >= total, 30, "b's report")
            acked["b"] = rows_of(config, "b")
        for node in (a, b):
            assert node.stop() == 0, node.log()
    finally:
        for node in (a, b):
            node.stop()
        client.close()
    return takeover_s, workload, target, acked


@pytest.mark.parametrize("kind", ["jsonl", "mysql"])
def test_sigkill_active_node_standby_takes_over_nothing_lost(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    takeover_s, workload, target, _ = run_failover(
        signal.SIGKILL, kind, tmp_path, request, mariadb, source_db, redis_server, key_prefix
    )
    assert takeover_s <= LOCK_TTL_S + 1.0, f"takeover took {takeover_s:.3f}s"
    expected = workload.expected
    if kind == "jsonl":
        delivered = indexes(complete_events(target.out), expected)
        assert_ordered_at_least_once(delivered, len(expected))
        replays = sum(1 for x, y in itertools.pairwise(delivered) if y <= x)
        duplicates = len(delivered) - len(expected)
        print(f"{len(expected)} changes, {duplicates} duplicates, {replays} replay")
        assert replays <= 1, "one replay point: the position a committed last"
        # only batches loaded but not yet acked when a died are written twice
        assert duplicates <= (PARALLELISM + 1) * MAX_ROWS
    else:
        target.assert_matches(workload)


@pytest.mark.parametrize("kind", ["jsonl", "mysql"])
def test_sigterm_active_node_hands_over_at_once_zero_duplicates(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    takeover_s, workload, target, acked = run_failover(
        signal.SIGTERM, kind, tmp_path, request, mariadb, source_db, redis_server, key_prefix
    )
    assert takeover_s < 1.0, f"hand-over took {takeover_s:.3f}s"
    expected = workload.expected
    # every change acked exactly once across both nodes
    assert acked["a"] + acked["b"] == len(expected), acked
    assert acked["a"] > 0 and acked["b"] > 0, acked
    if kind == "jsonl":
        assert complete_events(target.out) == expected, "exactly once across the hand-over"
    else:
        target.assert_matches(workload)


class FreezingMySQLSink(FrozenMidLoad, MySQLSink):
    """The real MySQL sink, frozen mid-load: before its transaction, so before the fence."""


def test_a_node_frozen_between_its_lock_check_and_the_sink_fence_steps_down(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    workload = Workload(mariadb, source_db, seed=13)
    target = Target("mysql", tmp_path, request)
    path = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="zombie",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=target.prepare(workload),
        start=source_position(mariadb),
        server_id=4412,
        batch={"max_rows": 20, "max_wait_ms": 50},
    )
    config = load_config(path)
    clock = StallableClock()
    a_arbiter = RedisArbiter(config.arbiter, "zombie", "a", clock=clock)
    b_arbiter = RedisArbiter(config.arbiter, "zombie", "b")
    a_sink = FreezingMySQLSink(config.sink, "zombie", freeze_at=3)

    def node(node_id: str, arbiter: RedisArbiter, sink: MySQLSink) -> Node:
        def selector(store: Any) -> Any:
            batch = config.pipeline.batch
            return open_selector(config.source, batch.max_rows, batch.max_wait_ms, store, "zombie")

        return Node(config, node_id, arbiter=arbiter, sink=sink, selector_factory=selector)

    a = node("a", a_arbiter, a_sink)
    b = node("b", b_arbiter, MySQLSink(config.sink, "zombie"))
    with running(a, b) as threads:
        threads[0].start()
        wait_until(lambda: a.role == "active", 30, "a active")
        workload.run(120)
        wait_until(a_sink.frozen.is_set, 30, "a's third load")
        a_arbiter.freeze_renewer()  # a stop-the-world pause: no renewal, time stands still
        clock.frozen_at = clock()
        threads[1].start()
        wait_until(lambda: b.role == "active", 30, "b to take over")
        workload.run(40)
        checkpoint = f"SELECT epoch FROM `{target.db}`.ferry_checkpoint"
        wait_until(lambda: target.server.execute(checkpoint)[0][0] == b_arbiter.epoch, 30, "b")
        # a's decoder (a child process, running on while a is frozen) was dropped when b's
        # connected with the same server id: it asks Redis, learns a lost the mainstem, and
        # stops, instead of taking the dump back (they kicked each other until a woke up)
        assert_one_steady_dump(mariadb)
        a_sink.thaw.set()  # a's load goes on to the fence while a still believes it is active
        wait_until(lambda: a.role == "standby", 30, "a to step down")
        clock.frozen_at = None
        a_arbiter.unfreeze_renewer()
        workload.run(40)
        wait_until(lambda: target.caught_up(workload), 60, "the target to hold every change")
        state = b_arbiter.get_state()
        assert not state.paused, state.error
        assert b.role == "active" and a.role == "standby"
        target.assert_matches(workload)


class HeldFirstLoad(MySQLSink):
    """The real MySQL sink whose first load with rows waits for ``release`` (and keeps it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first: Batch | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.loaded = threading.Event()

    def load(self, batch: Batch, epoch: int) -> None:
        if self.first is None and batch.row_count:
            self.first = batch
            self.holding.set()
            self.release.wait(120)
            super().load(batch, epoch)
            self.loaded.set()
            return
        super().load(batch, epoch)


class StalledSelector(Selector):
    """A selector that stands still while its node is frozen (``stalled`` set), as every
    thread of a SIGSTOPped process does."""

    def __init__(self, inner: Selector, stalled: threading.Event, thaw: threading.Event) -> None:
        self._inner = inner
        self._stalled = stalled
        self._thaw = thaw

    def start(self) -> None:
        self._inner.start()

    def stop(self) -> None:
        self._thaw.set()  # a stopping node is not frozen any more
        self._inner.stop()

    def select(self) -> Batch:
        if self._stalled.is_set():
            self._thaw.wait(120)
        return self._inner.select()

    def ack(self, batch_id: int) -> Position | None:
        return self._inner.ack(batch_id)

    def rollback(self) -> None:
        self._inner.rollback()

    def last_entry_time(self) -> float | None:
        return self._inner.last_entry_time()

    @property
    def committed(self) -> Position | None:
        return self._inner.committed


def test_a_zombie_load_ahead_of_the_new_holders_start_loses_no_delete(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    """Issue 20's lost deletes, deterministically.

    ``a`` freezes while loading a batch that inserts order 2 and moves key ``a`` to ``b``;
    ``b`` takes over and selects from the committed position, so its first batch holds
    that transaction *and* the next one, which deletes order 2 and moves ``b`` to ``c``.
    ``a`` wakes and its load lands first (the fence lets it: ``b`` has written nothing
    yet), so the target is ahead of ``b``'s batch. ``b``'s merged batch must still delete
    order 2 and key ``b``: within one batch they were inserted and deleted, but the target
    may hold them.
    """
    mariadb.execute("CREATE TABLE orders (id INT PRIMARY KEY, v INT)", database=source_db)
    mariadb.execute("CREATE TABLE kv (k VARCHAR(32) PRIMARY KEY, v INT)", database=source_db)
    target = Target("mysql", tmp_path, request)
    for table in ("orders", "kv"):
        [(_, ddl)] = mariadb.execute(f"SHOW CREATE TABLE `{source_db}`.`{table}`")
        target.server.execute(ddl, database=target.db)
    sink_section = {
        "type": "mysql",
        "host": target.server.host,
        "port": target.server.port,
        "user": target.server.user,
        "password": target.server.password,
        "schema_map": {source_db: target.db},
        "checkpoint_schema": target.db,
    }
    path = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="ahead",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=sink_section,
        start=source_position(mariadb),
        server_id=4413,
        batch={"max_rows": 5000, "max_wait_ms": 1000},
    )
    config = load_config(path)
    clock = StallableClock()
    a_arbiter = RedisArbiter(config.arbiter, "ahead", "a", clock=clock)
    b_arbiter = RedisArbiter(config.arbiter, "ahead", "b")
    a_sink = FreezingMySQLSink(config.sink, "ahead", freeze_at=2)
    b_sink = HeldFirstLoad(config.sink, "ahead")
    batch = config.pipeline.batch

    def a_selector(store: Any) -> Selector:
        source = config.source.model_copy(update={"decoder": "thread"})
        inner = open_selector(source, batch.max_rows, batch.max_wait_ms, store, "ahead")
        return StalledSelector(inner, a_sink.frozen, a_sink.thaw)

    def b_selector(store: Any) -> Selector:
        return open_selector(config.source, batch.max_rows, batch.max_wait_ms, store, "ahead")

    a = Node(config, "a", arbiter=a_arbiter, sink=a_sink, selector_factory=a_selector)
    b = Node(config, "b", arbiter=b_arbiter, sink=b_sink, selector_factory=b_selector)

    def write(*statements: str) -> None:
        with mariadb.connect(source_db) as conn, conn.cursor() as cur:
            conn.begin()  # one transaction
            for statement in statements:
                cur.execute(statement)
            conn.commit()

    def target_rows() -> dict[str, Any]:
        return {
            "orders": target.server.execute(f"SELECT id FROM `{target.db}`.orders ORDER BY id"),
            "kv": target.server.execute(f"SELECT k FROM `{target.db}`.kv ORDER BY k"),
        }

    with running(a, b) as threads:
        threads[0].start()
        wait_until(lambda: a.role == "active", 30, "a active")
        write("INSERT INTO orders VALUES (1, 0)", "INSERT INTO kv VALUES ('a', 0)")
        wait_until(lambda: a_sink.first_epoch_loads == 1, 30, "a's first load")
        write("INSERT INTO orders VALUES (2, 0)", "UPDATE kv SET k='b' WHERE k='a'")
        wait_until(a_sink.frozen.is_set, 30, "a frozen in its second load")
        a_arbiter.freeze_renewer()  # a stop-the-world pause: no renewal, time stands still
        clock.frozen_at = clock()
        write("DELETE FROM orders WHERE id=2", "UPDATE kv SET k='c' WHERE k='b'")
        threads[1].start()
        wait_until(lambda: b.role == "active", 30, "b to take over")
        wait_until(b_sink.holding.is_set, 30, "b's first load")
        assert b_sink.first is not None
        ops = [(c.table, c.op) for c in b_sink.first.changes]
        assert ("orders", "delete") in ops and ("orders", "insert") in ops, ops
        # a wakes: its clock runs again, and its frozen load goes on to the fence, which
        # lets it write (the checkpoint still holds a's epoch); a's next lock check fails.
        clock.frozen_at = None
        a_sink.thaw.set()
        wait_until(lambda: target_rows()["kv"] == (("b",),), 30, "a's zombie load to land")
        assert target_rows()["orders"] == ((1,), (2,))
        wait_until(lambda: a.role == "standby", 30, "a to step down")
        b_sink.release.set()
        wait_until(b_sink.loaded.is_set, 30, "b's first load")
        a_arbiter.unfreeze_renewer()
        state = b_arbiter.get_state()
        assert not state.paused, state.error
        assert target_rows() == {"orders": ((1,),), "kv": (("c",),)}, "deletes lost"
