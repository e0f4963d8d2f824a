"""MariaDB -> `ferry run` -> PostgreSQL end to end (real binlog, Redis, PostgreSQL).

* a steady workload survives PostgreSQL killed and restarted mid-run: nothing lost,
  never paused;
* DDL mid-stream (add, drop, modify, rename column; a new table) reaches PostgreSQL,
  and the rows written around it end equal;
* a value the target's column cannot hold pauses the pipeline, naming table and column.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.delivery import Workload
from tests.ferryproc import (
    FerryNode,
    SteadyWriter,
    ferry_status,
    source_position,
    wait_until,
    write_config,
)


def pg_sink(server: Any, db: str, source_db: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "postgresql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": db,
        "schema_map": {source_db: "replica"},
        **fields,
    }


def target_rows(server: Any, db: str, table: str) -> tuple[tuple[Any, ...], ...] | None:
    try:
        return server.execute(f'SELECT * FROM replica."{table}" ORDER BY 1', database=db)
    except Exception:  # not created yet, or the server is down
        return None


def same_rows(mariadb: Any, source_db: str, server: Any, db: str, tables: tuple[str, ...]) -> bool:
    return all(
        target_rows(server, db, t)
        == mariadb.execute(f"SELECT * FROM `{source_db}`.`{t}` ORDER BY 1")
        for t in tables
    )


def test_postgresql_killed_mid_run_loses_nothing_and_never_pauses(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
    make_postgresql: Any,
) -> None:
    server = make_postgresql()
    db = server.create_database("replica_db")
    workload = Workload(mariadb, source_db, seed=7)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="pg-restart",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=pg_sink(server, db, source_db, timeout_s=5),
        start=source_position(mariadb),
        max_retries=1000,
    )
    node = FerryNode(config, "a").start().selecting()
    states: list[str] = []
    try:
        with SteadyWriter(workload, rate=200):
            time.sleep(2)
            server.kill()  # a crash: in-flight transactions are lost on the server's side
            states.append(ferry_status(config)["state"])
            time.sleep(2)
            server.start()
            time.sleep(2)
            states.append(ferry_status(config)["state"])
        wait_until(
            lambda: same_rows(mariadb, source_db, server, db, Workload.TABLES),
            90,
            "PostgreSQL to hold the source's rows",
        )
        states.append(ferry_status(config)["state"])
    finally:
        node.stop()
    assert states == ["running"] * 3, states
    retried = [line for line in node.log(200_000).splitlines() if "rollback, retry" in line]
    assert any("PostgreSQL sink" in line for line in retried), "the kill was not noticed"
    [(epoch, stored)] = server.execute(
        "SELECT epoch, position FROM ferry.ferry_checkpoint WHERE pipeline_id = 'pg-restart'",
        database=db,
    )
    assert epoch >= 1 and stored["file"]


def test_ddl_and_a_new_table_mid_stream(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
    postgresql: Any,
    postgresql_db: str,
) -> None:
    def source(sql: str) -> None:
        mariadb.execute(sql, database=source_db)

    source("CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(5), gone TEXT)")
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="pg-ddl",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=pg_sink(postgresql, postgresql_db, source_db),
        start=None,  # a snapshot first: it creates the schema and t on the empty target
    )
    source("INSERT INTO t VALUES (1, 10, 'x', 'bye'), (2, 20, 'y', NULL)")
    node = FerryNode(config, "a").start()
    try:
        wait_until(
            lambda: (
                target_rows(postgresql, postgresql_db, "t")
                == ((1, 10, "x", "bye"), (2, 20, "y", None))
            ),
            60,
            "the snapshot",
        )
        source("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 5")
        source("ALTER TABLE t DROP COLUMN gone")
        source("INSERT INTO t VALUES (3, 30, 'z', 6)")
        source("ALTER TABLE t MODIFY a BIGINT UNSIGNED, MODIFY b VARCHAR(20)")
        source("UPDATE t SET a = 18446744073709551615, b = 'longer than five' WHERE id = 1")
        source("ALTER TABLE t RENAME COLUMN b TO bb")
        source("UPDATE t SET bb = 'renamed' WHERE id = 2")
        source(
            "CREATE TABLE n (k VARCHAR(10) PRIMARY KEY, v JSON, at DATETIME(3),"
            " g INT AS (LENGTH(k)) VIRTUAL)"
        )
        source(
            "INSERT INTO n (k, v, at) VALUES ('one', '{\"a\": [1, 2]}',"
            " '2024-02-29 12:00:00.125'), ('two', NULL, NULL)"
        )
        source("DELETE FROM t WHERE id = 3")
        expected_t = (
            (1, 18446744073709551615, "longer than five", 5),
            (2, 20, "renamed", 5),
        )
        wait_until(
            lambda: (
                target_rows(postgresql, postgresql_db, "t") == expected_t
                and target_rows(postgresql, postgresql_db, "n") is not None
                and len(target_rows(postgresql, postgresql_db, "n") or ()) == 2
            ),
            60,
            "the DDL and the rows around it",
        )
    finally:
        node.stop()
    columns = postgresql.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'replica' AND table_name = 't' ORDER BY ordinal_position",
        database=postgresql_db,
    )
    assert columns == (
        ("id", "integer"),
        ("a", "numeric"),
        ("bb", "character varying"),
        ("c", "integer"),
    )
    [one, two] = target_rows(postgresql, postgresql_db, "n") or ()
    assert one[0] == "one" and one[1] == {"a": [1, 2]} and one[2].microsecond == 125000
    assert two == ("two", None, None, 3)  # a generated column: the value MySQL computed
    assert one[3] == 3


def test_a_value_the_target_cannot_hold_pauses_naming_table_and_column(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
    postgresql: Any,
    postgresql_db: str,
) -> None:
    mariadb.execute(
        "CREATE TABLE m (id INT PRIMARY KEY, n INT, secret_token VARCHAR(20))", database=source_db
    )
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="pg-overflow",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        # the target's column is narrower than the source's, on purpose
        sink=pg_sink(
            postgresql, postgresql_db, source_db, column_types={f"{source_db}.m.n": "smallint"}
        ),
        start=None,
    )
    node = FerryNode(config, "a").start()
    try:
        wait_until(lambda: ferry_status(config)["state"] == "running", 30, "the node")
        mariadb.execute(
            "INSERT INTO m VALUES (1, 7, 'tok-1'), (2, 40000, 'tok-2')", database=source_db
        )
        paused = wait_until(
            lambda: (s := ferry_status(config))["state"] == "paused" and s, 60, "the fatal pause"
        )
    finally:
        node.stop()
    error = paused["error"]
    assert f"{source_db}.m (target replica.m)" in error, error
    assert "column n" in error and "key (id=2)" in error, error
    assert "40000" not in error and "tok-2" not in error, error
    assert target_rows(postgresql, postgresql_db, "m") in (None, ())


def test_a_snapshot_creates_every_table_with_its_keys_enum_types_and_no_generated_columns(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
    postgresql: Any,
    postgresql_db: str,
) -> None:
    """Into an empty target: a table without rows is created too (from the snapshot's DDL,
    with the definition SHOW CREATE TABLE gave), with the source's UNIQUE keys, an enum
    type per ENUM column and without generated columns; a MODIFY adding members reaches
    the enum type before the rows that use them."""

    def source(sql: str) -> None:
        mariadb.execute(sql, database=source_db)

    source("CREATE TABLE full_t (id INT PRIMARY KEY, g INT AS (id * 2) STORED)")
    source("INSERT INTO full_t (id) VALUES (1)")
    source(
        "CREATE TABLE empty_t (id INT PRIMARY KEY, mail VARCHAR(20), st ENUM('new', 'done'),"
        " v INT AS (id + 1) VIRTUAL, UNIQUE KEY (mail))"
    )
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="pg-snapshot-empty",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=pg_sink(
            postgresql, postgresql_db, source_db, generated_columns="skip", enums="enum_types"
        ),
        start=None,
    )
    node = FerryNode(config, "a").start()
    try:
        wait_until(
            lambda: target_rows(postgresql, postgresql_db, "full_t") == ((1,),), 60, "the snapshot"
        )
        assert target_rows(postgresql, postgresql_db, "empty_t") == ()
        source("ALTER TABLE empty_t MODIFY st ENUM('new', 'busy', 'done')")
        source("INSERT INTO empty_t (id, mail, st) VALUES (1, 'a@x', 'busy')")
        wait_until(
            lambda: target_rows(postgresql, postgresql_db, "empty_t") == ((1, "a@x", "busy"),),
            60,
            "the MODIFY and the row after it",
        )
    finally:
        node.stop()
    [(labels,)] = postgresql.execute(
        "SELECT enum_range(NULL::replica.empty_t_st)::text[]", database=postgresql_db
    )
    assert labels == ["new", "busy", "done"]
    constraints = postgresql.execute(
        "SELECT contype::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'replica.empty_t'::regclass ORDER BY contype",
        database=postgresql_db,
    )
    assert constraints == (("p", "PRIMARY KEY (id)"), ("u", "UNIQUE (mail)"))
