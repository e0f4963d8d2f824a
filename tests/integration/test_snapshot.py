"""Snapshots through real `ferry run` nodes: consistent under writes, resumable, clear errors.

A new pipeline (no ``source.start``: ``source.snapshot`` defaults to
``initial``) copies the rows that exist, chunk by chunk, while the binlog keeps
flowing and a writer keeps changing the same keys. At the end the MySQL target
must equal the source and the JSON lines, replayed in order, must give exactly
the source's rows. A node SIGKILLed in the middle of a table is replaced by a
standby that continues from the last acked chunk, not from the start.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import realworld
from tests.ferryproc import (
    FerryNode,
    ferry,
    ferry_status,
    mysql_sink,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow

ROWS = {"plain": 100_000, "composite": 60_000, "unique": 40_000}
KEYS = {"plain": ("id",), "composite": ("region", "seq"), "unique": ("code",)}


def create(server: Any, db: str, rows: dict[str, int]) -> None:
    """Three tables: a plain key, a composite key, and no primary key but a unique one."""
    server.execute(
        f"CREATE TABLE `{db}`.plain (id INT PRIMARY KEY, v INT, note VARCHAR(40), at DATETIME(6))"
    )
    server.execute(
        f"CREATE TABLE `{db}`.composite (region CHAR(3), seq INT, v INT, amount DECIMAL(12,2),"
        " PRIMARY KEY (region, seq))"
    )
    server.execute(
        f"CREATE TABLE `{db}`.`unique` (code VARCHAR(16) NOT NULL, v INT, flag BIT(1),"
        " UNIQUE KEY (code))"
    )
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:
            for start in range(0, rows["plain"], 5000):
                cur.executemany(
                    "INSERT INTO plain VALUES (%s, %s, %s, NOW(6))",
                    [(i, i, f"n{i}") for i in range(start, min(start + 5000, rows["plain"]))],
                )
            for start in range(0, rows["composite"], 5000):
                cur.executemany(
                    "INSERT INTO composite VALUES (%s, %s, %s, %s)",
                    [
                        (f"r{i % 13}", i, i, i / 100)
                        for i in range(start, min(start + 5000, rows["composite"]))
                    ],
                )
            for start in range(0, rows["unique"], 5000):
                cur.executemany(
                    "INSERT INTO `unique` VALUES (%s, %s, %s)",
                    [(f"c{i}", i, i % 2) for i in range(start, min(start + 5000, rows["unique"]))],
                )
    finally:
        conn.close()


class Writer(threading.Thread):
    """Updates, deletes and inserts the same keys in all three tables until stopped, at about
    ``rate`` transactions a second (about 20 row changes each): a steady load ferry keeps up
    with on a busy 2-core machine, so the snapshot's chunks meet the stream."""

    def __init__(self, server: Any, db: str, rows: dict[str, int], rate: float = 60) -> None:
        super().__init__(daemon=True, name="writer")
        self.server, self.db, self.rows = server, db, rows
        self.halt = threading.Event()
        self.interval_s = 1 / rate
        self.transactions = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        conn = self.server.connect(self.db)
        try:
            with conn.cursor() as cur:
                next_at = time.monotonic()
                while not self.halt.wait(max(0.0, next_at - time.monotonic())):
                    next_at += self.interval_s
                    cur.execute("BEGIN")
                    for _ in range(5):
                        i = rng.randrange(self.rows["plain"] + 500)
                        cur.execute(
                            "INSERT INTO plain VALUES (%s, %s, 'w', NOW(6))"
                            " ON DUPLICATE KEY UPDATE v = v + 1, note = 'upd'",
                            (i, -i),
                        )
                        cur.execute("DELETE FROM plain WHERE id = %s", (rng.randrange(1000),))
                        j = rng.randrange(self.rows["composite"] + 500)
                        cur.execute(
                            "INSERT INTO composite VALUES (%s, %s, %s, 1.5)"
                            " ON DUPLICATE KEY UPDATE amount = amount + 1",
                            (f"r{j % 13}", j, j),
                        )
                        k = rng.randrange(self.rows["unique"] + 500)
                        cur.execute(
                            "INSERT INTO `unique` VALUES (%s, %s, 1)"
                            " ON DUPLICATE KEY UPDATE v = v - 1",
                            (f"c{k}", k),
                        )
                        if rng.random() < 0.2:
                            cur.execute("DELETE FROM `unique` WHERE code = %s", (f"c{k // 2}",))
                    cur.execute("COMMIT")
                    self.transactions += 1
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        assert self.error is None, repr(self.error)


def snapshot_state(config: Path) -> dict[str, Any] | None:
    for node in ferry_status(config)["nodes"]:
        if node.get("role") == "active" and not node.get("stale"):
            return node.get("snapshot")  # type: ignore[no-any-return]
    return None


def replay(path: Path) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """The JSON lines applied by key, in order: the rows each table holds at the end."""
    state: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {t: {} for t in KEYS}
    for line in path.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if "op" not in message:
            continue  # DDL
        table = message["source"]["table"]
        rows = state[table]
        if message["before"] is not None:
            rows.pop(tuple(message["before"][c] for c in KEYS[table]), None)
        if message["after"] is not None:
            rows[tuple(message["after"][c] for c in KEYS[table])] = message["after"]
    return state


def source_rows(server: Any, db: str) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """The source's rows in the JSON encoding (read back through ferry's own decoder)."""
    state: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    conn = server.connect(db, init_command="SET time_zone='+00:00'")
    try:
        with conn.cursor() as cur:
            for table, key in KEYS.items():
                cur.execute(f"SELECT * FROM `{table}`")
                names = [d[0] for d in cur.description]
                state[table] = {}
                for values in cur.fetchall():
                    row = dict(zip(names, values, strict=True))
                    state[table][tuple(row[c] for c in key)] = row
    finally:
        conn.close()
    return state


def as_json_values(rows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """Rows as the JSON encoding writes them (decimals as text, BIT as a number, …)."""
    out = {}
    for key, row in rows.items():
        encoded = {}
        for column, value in row.items():
            if isinstance(value, bytes):  # BIT(1)
                value = int.from_bytes(value, "big")
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            elif value is not None and not isinstance(value, int | str):
                value = str(value)
            encoded[column] = value
        out[json.dumps(list(key), default=str)] = encoded
    return out


def test_snapshot_under_writes_gives_exactly_the_source(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    create(mariadb, source_db, ROWS)
    common = {
        "mariadb": mariadb,
        "schema": source_db,
        "redis_url": redis_server.url,
        "prefix": key_prefix,
        "start": None,  # no start: source.snapshot defaults to initial
        "batch": {"max_rows": 1000, "max_wait_ms": 100},
        "source": {"snapshot_chunk_rows": 7000},  # many chunks, each under writes
    }
    to_mysql = write_config(
        tmp_path / "mysql.yaml",
        pipeline_id="snap-mysql",
        sink=mysql_sink(mariadb_target, source_db, target_db),
        server_id=4461,
        **common,
    )
    out = tmp_path / "out.jsonl"
    to_jsonl = write_config(
        tmp_path / "jsonl.yaml",
        pipeline_id="snap-jsonl",
        # ferry-json: the readable values as_json_values compares with
        sink={"type": "jsonl", "path": str(out), "format": "ferry-json"},
        server_id=4462,
        **common,
    )
    writer = Writer(mariadb, source_db, ROWS)
    writer.start()
    time.sleep(0.5)
    nodes = [FerryNode(to_mysql, "m").start(), FerryNode(to_jsonl, "j").start()]
    try:
        for config in (to_mysql, to_jsonl):
            wait_until(
                lambda c=config: (snapshot_state(c) or {}).get("state") == "complete",
                240,
                f"the snapshot of {config.stem}",
                interval_s=0.5,
            )
        written_during = writer.transactions
        writer.stop()
        [(file, pos, *_)] = mariadb.execute("SHOW MASTER STATUS")
        for config in (to_mysql, to_jsonl):
            wait_until(
                lambda c=config: committed_at(c) >= (str(file), int(pos)),
                120,
                f"{config.stem} caught up",
            )
        status = ferry_status(to_mysql)
        assert (status["state"], status["error"]) == ("running", ""), status
    finally:
        for node in nodes:
            node.stop()
    assert written_during > 50, "the writer must overlap the snapshot"
    for table in KEYS:
        assert realworld.rows_of(mariadb, source_db, table) == realworld.rows_of(
            mariadb_target, target_db, table
        ), table
        assert realworld.checksum(mariadb, source_db, table) == realworld.checksum(
            mariadb_target, target_db, table
        ), table
    replayed = replay(out)
    source = source_rows(mariadb, source_db)
    for table in KEYS:
        want = as_json_values(source[table])
        got = {json.dumps(list(k), default=str): v for k, v in replayed[table].items()}
        assert got.keys() == want.keys(), table
        assert got == want, table
    reads = sum(1 for line in out.read_text().splitlines() if '"op":"r"' in line)
    assert reads >= sum(ROWS.values()) * 0.9  # the snapshot's rows, as reads


def committed_at(config: Path) -> tuple[str, int]:
    position = ferry_status(config).get("position") or {}
    return (str(position.get("file", "")), int(position.get("pos", 0)))


def test_a_standby_continues_a_killed_nodes_snapshot_where_it_was(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    rows = {"plain": 150_000, "composite": 1, "unique": 1}
    create(mariadb, source_db, rows)
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="snap-kill",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(out), "format": "ferry-json"},
        start=None,
        server_id=4463,
        batch={"max_rows": 1000, "max_wait_ms": 100},
        source={"snapshot_chunk_rows": 5000},
    )
    a = FerryNode(config, "a").start()
    wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
    b = FerryNode(config, "b").start()
    try:
        progress = wait_until(
            lambda: (
                (s := snapshot_state(config))
                and s["table"].endswith(".plain")
                and 30_000 <= s["tables"][f"{source_db}.plain"]["rows"] <= 110_000
                and s
            ),
            120,
            "the snapshot in the middle of the table",
            interval_s=0.1,
        )
        a.signal(signal.SIGKILL)
        a.wait(10)
        acked = progress["tables"][f"{source_db}.plain"]["rows"]
        wait_until(lambda: ferry_status(config)["active_node"] == "b", 30, "b active")
        wait_until(
            lambda: (snapshot_state(config) or {}).get("state") == "complete",
            120,
            "b to finish the snapshot",
            interval_s=0.5,
        )
    finally:
        b.stop()
    log = b.log(10**6)
    resumed = re.search(rf"snapshot initial continues: {source_db}\.plain after (\d+) rows", log)
    assert resumed, log[-3000:]
    assert int(resumed.group(1)) >= acked  # at least what a had acked when it died
    reads = [
        json.loads(line)["after"]["id"]
        for line in out.read_text().splitlines()
        if '"op":"r"' in line and '"table":"plain"' in line
    ]
    assert sorted(set(reads)) == list(range(rows["plain"]))
    # only the batches in flight at the kill are read twice, not the table
    assert len(reads) - rows["plain"] < 20_000, len(reads)


def test_a_table_altered_during_its_snapshot_is_read_again_and_ends_right(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    rows = {"plain": 80_000, "composite": 1, "unique": 1}
    create(mariadb, source_db, rows)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="snap-ddl",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=mysql_sink(mariadb_target, source_db, target_db),
        start=None,
        server_id=4464,
        batch={"max_rows": 1000, "max_wait_ms": 100},
        source={"snapshot_chunk_rows": 2000},
    )
    node = FerryNode(config, "a").start()
    try:
        wait_until(
            lambda: (
                (s := snapshot_state(config))
                and s["table"].endswith(".plain")
                and s["tables"][f"{source_db}.plain"]["rows"] >= 10_000
            ),
            120,
            "the snapshot inside plain",
            interval_s=0.05,
        )
        mariadb.execute(f"ALTER TABLE `{source_db}`.plain ADD COLUMN extra INT DEFAULT 7")
        wait_until(
            lambda: (snapshot_state(config) or {}).get("state") == "complete",
            120,
            "the snapshot to end",
            interval_s=0.5,
        )
        [(file, pos, *_)] = mariadb.execute("SHOW MASTER STATUS")
        wait_until(lambda: committed_at(config) >= (str(file), int(pos)), 60, "caught up")
    finally:
        node.stop()
    assert "changed (DDL) while it was read: reading it again from its start" in node.log(10**6)
    for table in KEYS:
        assert realworld.rows_of(mariadb, source_db, table) == realworld.rows_of(
            mariadb_target, target_db, table
        ), table


def restricted_user(server: Any, db: str) -> str:
    """A replication user that may read all of `composite` and `unique` but only `plain.id`."""
    user = f"snap{random.randrange(10**6)}"
    server.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
    server.execute(
        f"GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION CLIENT ON *.* TO '{user}'@'%'"
    )
    server.execute(f"GRANT SELECT ON `{db}`.composite TO '{user}'@'%'")
    server.execute(f"GRANT SELECT ON `{db}`.`unique` TO '{user}'@'%'")
    server.execute(f"GRANT SELECT (id) ON `{db}`.plain TO '{user}'@'%'")  # it sees the table
    return user


def test_a_table_the_user_cannot_read_pauses_with_the_reason(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    create(mariadb, source_db, {"plain": 10, "composite": 1, "unique": 1})
    user = restricted_user(mariadb, source_db)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="snap-priv",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
        start=None,
        server_id=4465,
        source={"user": user, "password": "pw"},
    )
    node = FerryNode(config, "a").start()
    try:
        status = wait_until(
            lambda: (s := ferry_status(config))["state"] == "paused" and s, 60, "a pause"
        )
    finally:
        node.stop()
    assert f"{source_db}.plain" in status["error"] and "SELECT" in status["error"], status


def test_check_names_what_a_snapshot_needs(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    """`ferry check` before a snapshot: the tables the user cannot read, and on MySQL the
    RELOAD privilege each chunk's read lock needs."""
    create(mariadb, source_db, {"plain": 1, "composite": 1, "unique": 1})
    user = restricted_user(mariadb, source_db)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="snap-check",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
        start=None,
        source={"user": user, "password": "pw", "flavor": "mysql"},
    )
    done = ferry(config, "check")
    assert done.returncode == 1, done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert any("snapshot: SELECT on the 3 included tables" in line for line in failed), failed
    assert f"grant SELECT on {source_db}.plain" in done.stdout, done.stdout
    assert any("RELOAD" in line for line in failed), failed


def test_ferry_snapshot_of_a_table_added_later_survives_a_failover(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    """A table whose rows predate the pipeline's start: `ferry snapshot` copies it while
    the stream goes on, through a SIGKILL of the node that started the snapshot."""
    create(mariadb, source_db, {"plain": 60_000, "composite": 1000, "unique": 1000})
    sink = mysql_sink(mariadb_target, source_db, target_db)
    for table in KEYS:  # the target has the tables, not their rows
        [(_, ddl)] = mariadb.execute(f"SHOW CREATE TABLE `{source_db}`.`{table}`")
        mariadb_target.execute(ddl, database=target_db)
    # A slow target: the copy takes ~20 s, so the kill below lands in its middle (unslowed,
    # the 60,000 rows pass in under 2 s, between two status reports)
    mariadb_target.execute(
        "CREATE TRIGGER plain_slow BEFORE INSERT ON plain FOR EACH ROW SET @slow = SLEEP(0.0003)",
        database=target_db,
    )
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="snap-adhoc",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=sink,
        start="latest",  # streaming only: the existing rows are not copied
        server_id=4466,
        batch={"max_rows": 1000, "max_wait_ms": 100},
        source={"snapshot_chunk_rows": 3000},
    )
    excluded = ferry(config, "snapshot", "other_db.t")
    assert excluded.returncode == 2 and "not replicated" in excluded.stderr
    a = FerryNode(config, "a").start()
    wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
    b = FerryNode(config, "b").start()
    writer = Writer(mariadb, source_db, {"plain": 60_000, "composite": 1000, "unique": 1000})
    writer.start()
    try:
        asked = ferry(config, "snapshot", f"{source_db}.plain")
        assert asked.returncode == 0, asked.stderr
        again = ferry(config, "snapshot", f"{source_db}.plain")
        assert again.returncode == 1 and "already running" in again.stderr
        wait_until(
            lambda: (
                (s := snapshot_state(config))
                and s["request"].startswith("snap-")
                and 10_000 <= s["rows"] < 50_000
            ),
            120,
            "the ad-hoc snapshot halfway",
            interval_s=0.1,
        )
        a.signal(signal.SIGKILL)
        a.wait(10)
        wait_until(lambda: ferry_status(config)["active_node"] == "b", 30, "b active")
        wait_until(
            lambda: [r["state"] for r in ferry_status(config)["snapshot_requests"]] == ["done"],
            120,
            "the request done",
            interval_s=0.5,
        )
        writer.stop()
        [(file, pos, *_)] = mariadb.execute("SHOW MASTER STATUS")
        wait_until(lambda: committed_at(config) >= (str(file), int(pos)), 60, "caught up")
    finally:
        writer.halt.set()
        b.stop()
    assert "snapshot snap-" in b.log(10**6) and "continues" in b.log(10**6)
    assert realworld.rows_of(mariadb, source_db, "plain") == realworld.rows_of(
        mariadb_target, target_db, "plain"
    )


@pytest.fixture
def private_shop(
    tmp_path: Path, make_mariadb: Any, redis_server: Any, key_prefix: str
) -> Callable[..., tuple[Any, Path, Path]]:
    """``private_shop(rows, pipeline_id, server_id, source, **sink)``: a private MariaDB with
    a `shop` schema of ``rows`` and a JSONL pipeline that takes its snapshot (no `start`);
    returns the server, the output file and the config."""

    def make(
        rows: dict[str, int], pipeline_id: str, server_id: int, source: dict[str, Any], **sink: Any
    ) -> tuple[Any, Path, Path]:
        server = make_mariadb()
        server.execute("CREATE DATABASE shop")
        create(server, "shop", rows)
        out = tmp_path / "out.jsonl"
        config = write_config(
            tmp_path / "pipeline.yaml",
            pipeline_id=pipeline_id,
            mariadb=server,
            schema="shop",
            redis_url=redis_server.url,
            prefix=key_prefix,
            sink={"type": "jsonl", "path": str(out), **sink},
            start=None,
            server_id=server_id,
            source=source,
        )
        return server, out, config

    return make


def test_when_needed_snapshots_again_when_the_committed_binlog_was_purged(
    private_shop: Any,
) -> None:
    source, out, config = private_shop(
        {"plain": 3000, "composite": 1, "unique": 1},
        "snap-purged",
        4467,
        {"snapshot": "when_needed"},
    )

    def reads() -> int:
        return out.read_text().count('"op":"r"') if out.exists() else 0

    node = FerryNode(config, "a").start()
    try:
        wait_until(lambda: (snapshot_state(config) or {}).get("state") == "complete", 60, "one")
    finally:
        node.stop()
    first = reads()
    assert first == 3002
    # the binlog the committed position points into is purged while no node runs
    source.execute("FLUSH BINARY LOGS")
    source.execute("INSERT INTO shop.plain VALUES (999999, 1, 'after', NOW(6))")
    [(newest, *_)] = source.execute("SHOW MASTER STATUS")

    def purged() -> bool:
        # the server keeps a file a dump thread still reads: node a's may linger briefly
        source.execute(f"PURGE BINARY LOGS TO '{newest}'")
        return [row[0] for row in source.execute("SHOW BINARY LOGS")] == [newest]

    wait_until(purged, 30, "the old binlogs purged", interval_s=0.2)
    node = FerryNode(config, "b").start()
    try:
        wait_until(lambda: reads() == first + 3003, 60, "a second snapshot")
        status = ferry_status(config)
        assert (status["state"], status["error"]) == ("running", ""), status
    finally:
        node.stop()
    assert "no longer on the source (purged); snapshot.mode when_needed" in node.log(10**6)


def test_initial_only_snapshots_then_never_streams_even_after_a_restart(
    private_shop: Any,
) -> None:
    source, out, config = private_shop(
        {"plain": 20, "composite": 1, "unique": 1},
        "snap-only",
        4468,
        {"snapshot": "initial_only"},
        format="ferry-json",
    )

    def ops() -> list[str]:
        events = (json.loads(line) for line in out.read_text().splitlines())
        return [event["op"] for event in events if "op" in event]  # not the DDL lines

    node = FerryNode(config, "a")
    for run in (1, 2):
        node.start()  # the second time: a restart after the complete snapshot
        try:
            wait_until(
                lambda: (snapshot_state(config) or {}).get("state") == "complete", 60, "done"
            )
            source.execute(f"INSERT INTO shop.plain VALUES ({1000 + run}, 1, 'later', NOW(6))")
            wait_until(lambda: "initial_only" in node.log(), 30, "the initial_only line")
            time.sleep(2)  # a streaming node delivers the insert well within this
            status = ferry_status(config)
        finally:
            node.stop()
        assert (status["state"], status["error"]) == ("running", ""), status
        assert ops() == ["r"] * 22, (run, ops())
    assert "snapshot is complete: no streaming" in node.log(10**6)


def test_a_table_dropped_during_its_snapshot_and_a_table_with_no_key(private_shop: Any) -> None:
    """`plain` is dropped while it is read: the snapshot goes on with the other tables.
    `nokey` has neither a primary nor a unique key: read whole, duplicates included."""
    source, out, config = private_shop(
        {"plain": 60_000, "composite": 10, "unique": 10},
        "snap-drop",
        4469,
        {"snapshot_chunk_rows": 200},
        format="ferry-json",
    )
    source.execute("CREATE TABLE shop.nokey (a INT, b VARCHAR(10))")
    # 500 rows, each value 10 times (MariaDB's SEQUENCE engine)
    source.execute("INSERT INTO shop.nokey SELECT seq % 50, 'same' FROM shop.seq_1_to_500")

    def reads(table: str) -> int:
        events = (json.loads(line) for line in out.read_text().splitlines())
        return sum(1 for e in events if e.get("op") == "r" and e["source"]["table"] == table)

    node = FerryNode(config, "a").start()
    try:
        wait_until(
            lambda: (
                (s := snapshot_state(config) or {}).get("table") == "shop.plain"
                and s["tables"]["shop.plain"]["rows"] > 0
            ),
            60,
            "plain being read",
            interval_s=0.02,
        )
        source.execute("DROP TABLE shop.plain")
        wait_until(lambda: (snapshot_state(config) or {}).get("state") == "complete", 60, "done")
        source.execute("INSERT INTO shop.composite VALUES ('zz', 1, 1, 1)")
        wait_until(lambda: '"region":"zz"' in out.read_text(), 30, "streaming after it")
        status = ferry_status(config)
    finally:
        node.stop()
    assert (status["state"], status["error"]) == ("running", ""), status
    assert (reads("nokey"), reads("composite"), reads("unique")) == (500, 10, 10)
    assert reads("plain") < 60_000
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    nokey = [
        tuple(e["after"].values())
        for e in rows
        if e.get("op") == "r" and e["source"]["table"] == "nokey"
    ]
    assert sorted(nokey) == sorted((i % 50, "same") for i in range(1, 501))


def charset_of(server: Any, db: str) -> tuple[str, str] | None:
    found = server.execute(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
        " FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (db,),
    )
    return (str(found[0][0]), str(found[0][1])) if found else None


@pytest.mark.parametrize("mapped", [True, False], ids=["schema_map", "same_names"])
def test_a_snapshot_into_an_empty_target_creates_its_databases(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
    mapped: bool,
) -> None:
    """The target has none of the source's databases: the snapshot creates each one
    (SHOW CREATE DATABASE: same character set and collation), with schema_map applied,
    before its tables, also an included database that holds no table yet, so a table
    created there later streams in too. The target ends equal to the source."""
    if (mariadb.host, mariadb.port) == (mariadb_target.host, mariadb_target.port):
        pytest.skip("the target is the source server: its databases are not missing")
    empty = f"{source_db}_e"
    names = (
        {source_db: f"{target_db}_m", empty: f"{target_db}_me"}
        if mapped
        else {source_db: source_db, empty: empty}
    )
    try:
        mariadb.execute(
            f"ALTER DATABASE `{source_db}` CHARACTER SET latin2 COLLATE latin2_czech_cs"
        )
        mariadb.execute(f"CREATE DATABASE `{empty}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        create(mariadb, source_db, {"plain": 3000, "composite": 700, "unique": 500})
        for db in names.values():
            assert charset_of(mariadb_target, db) is None, db
        sink = {
            **mysql_sink(mariadb_target, source_db, target_db),
            "schema_map": names if mapped else {},
            "checkpoint_schema": target_db,  # exists already: only the copied ones do not
        }
        config = write_config(
            tmp_path / "pipeline.yaml",
            pipeline_id=f"snap-empty-{'m' if mapped else 's'}",
            mariadb=mariadb,
            schema=source_db,
            redis_url=redis_server.url,
            prefix=key_prefix,
            sink=sink,
            start=None,  # source.snapshot: initial
            server_id=4470 + mapped,
            batch={"max_rows": 1000, "max_wait_ms": 100},
            source={"include": [f"{source_db}.*", f"{empty}.*"], "snapshot_chunk_rows": 1000},
        )
        node = FerryNode(config, "a").start()
        try:
            wait_until(
                lambda: (
                    (snapshot_state(config) or {}).get("state") == "complete"
                    or ferry_status(config)["state"] == "paused"
                ),
                120,
                "the snapshot",
                interval_s=0.3,
            )
            status = ferry_status(config)
            assert (status["state"], status["error"]) == ("running", ""), status
            # the database that had no table: a table created there later streams in
            mariadb.execute(f"CREATE TABLE `{empty}`.later (id INT PRIMARY KEY, t VARCHAR(10))")
            mariadb.execute(f"INSERT INTO `{empty}`.later VALUES (1, 'příliš')")
            mariadb.execute(f"INSERT INTO `{source_db}`.plain VALUES (-1, 1, 'streamed', NOW(6))")
            [(file, pos, *_)] = mariadb.execute("SHOW MASTER STATUS")
            wait_until(lambda: committed_at(config) >= (str(file), int(pos)), 60, "caught up")
            status = ferry_status(config)
        finally:
            node.stop()
        assert (status["state"], status["error"]) == ("running", ""), status
        for db, to in names.items():
            assert charset_of(mariadb_target, to) == charset_of(mariadb, db), (db, to)
        copied = [(source_db, t) for t in KEYS] + [(empty, "later")]
        for db, table in copied:
            to = names[db]
            assert realworld.definition(mariadb, db, table) == realworld.definition(
                mariadb_target, to, table
            ), table
            assert realworld.rows_of(mariadb, db, table) == realworld.rows_of(
                mariadb_target, to, table
            ), table
            assert realworld.checksum(mariadb, db, table) == realworld.checksum(
                mariadb_target, to, table
            ), table
    finally:
        with contextlib.suppress(Exception):
            mariadb.execute(f"DROP DATABASE IF EXISTS `{empty}`")
        for db in names.values():
            with contextlib.suppress(Exception):
                mariadb_target.execute(f"DROP DATABASE IF EXISTS `{db}`")
