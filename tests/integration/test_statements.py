"""Statements that are not row changes, through real `ferry run` nodes.

* account statements carry passwords as typed (MariaDB logs them so): they
  must never reach a sink, a target server, a log line, `ferry status`, a
  metric or an error;
* statement-format DML is skipped, warned about once per table and counted,
  never passed on as DDL;
* XA transactions are delivered at XA COMMIT (also on an idle source), never
  after XA ROLLBACK, and exactly once across a restart between PREPARE and
  COMMIT.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.ferryproc import (
    FerryNode,
    ferry,
    ferry_status,
    source_position,
    wait_until,
    write_config,
)
from tests.integration.test_metrics import free_port, scrape
from tests.integration.test_operations import jsonl_pipeline

PASSWORDS = ("hunter2-Q7x", "hunter3-Z9k", "hunter4-M2p", "hunter5-W8d")


def skipped(port: int, kind: str) -> float:
    """ferry_skipped_statements_total of ``kind``, summed over tables, from /metrics."""
    return sum(
        count
        for (name, labels), count in scrape(port).items()
        if name == "ferry_skipped_statements_total" and ("kind", kind) in labels
    )


def rows(path: Path) -> list[dict[str, Any]]:
    """The row-change messages of a debezium-json lines file, whole lines only."""
    if not path.exists():
        return []
    data = path.read_text(encoding="utf-8")
    lines = data[: data.rfind("\n") + 1].splitlines()
    return [m for m in map(json.loads, lines) if "op" in m]


def ids(path: Path) -> list[int]:
    return [(m["after"] or m["before"])["id"] for m in rows(path)]


def run(server: Any, db: str, *statements: str) -> None:
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def test_account_statements_never_leave_the_source(
    tmp_path: Path,
    make_mariadb: Any,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
    kafka_broker: Any,
) -> None:
    source = make_mariadb()
    db = "shop"
    source.execute(f"CREATE DATABASE {db}")
    source.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY)")
    [(hashed,)] = source.execute(f"SELECT PASSWORD('{PASSWORDS[2]}')")
    run(
        source,
        db,  # a session whose default database is a replicated one
        f"CREATE USER 'mallory'@'%' IDENTIFIED BY '{PASSWORDS[0]}'",
        f"GRANT SELECT ON {db}.* TO 'mallory'@'%'",
        f"ALTER USER 'mallory'@'%' IDENTIFIED BY '{PASSWORDS[1]}'",
        f"SET PASSWORD FOR 'mallory'@'%' = PASSWORD('{PASSWORDS[2]}')",
        f"CREATE USER 'eve'@'%' IDENTIFIED BY PASSWORD '{hashed}'",
        f"GRANT ALL ON {db}.* TO 'eve'@'%' IDENTIFIED BY '{PASSWORDS[3]}'",
        "INSERT INTO t VALUES (1)",
    )
    secrets = (*PASSWORDS, str(hashed), str(hashed)[1:])
    topic = kafka_broker.create_topic(f"accounts-{key_prefix[10:18]}")
    ddl_topic = kafka_broker.create_topic(f"accounts-ddl-{key_prefix[10:18]}")
    sinks = {
        "mysql": {
            "type": "mysql",
            "host": mariadb_target.host,
            "port": mariadb_target.port,
            "user": mariadb_target.user,
            "schema_map": {db: target_db},
            "checkpoint_schema": target_db,
        },
        "jsonl": {"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
        "kafka": {
            "type": "kafka",
            "bootstrap_servers": kafka_broker.bootstrap,
            "topic": topic,
            "ddl_topic": ddl_topic,
        },
    }
    configs = {
        name: write_config(
            tmp_path / f"{name}.yaml",
            pipeline_id=f"acct-{name}",
            mariadb=source,
            schema=db,
            redis_url=redis_server.url,
            prefix=key_prefix,
            sink=sink,
            start="earliest",
            server_id=4440 + n,
            metrics_port=free_port(),
        )
        for n, (name, sink) in enumerate(sinks.items())
    }
    nodes = [FerryNode(config, f"n-{name}").start() for name, config in configs.items()]
    try:
        wait_until(lambda: ids(tmp_path / "out.jsonl") == [1], 60, "the insert after them")
        wait_until(
            lambda: (
                ("t",) in mariadb_target.execute(f"SHOW TABLES FROM `{target_db}`")
                and mariadb_target.execute(f"SELECT id FROM `{target_db}`.t") == ((1,),)
            ),
            60,
            "the insert on the target",
        )
        shown = [ferry(config, "status", "--json").stdout for config in configs.values()]
        shown += [ferry(config, "status").stdout for config in configs.values()]
        for name, config in configs.items():
            port = json.loads(config.read_text())["pipeline"]["metrics_port"]
            shown.append(repr(scrape(port)))
            assert skipped(port, "account") == 6, name
    finally:
        for node in nodes:
            assert node.stop() == 0
    shown.append((tmp_path / "out.jsonl").read_text())
    shown += [node.log(10**7) for node in nodes]
    records = kafka_broker.read_all(topic, min_count=1) + kafka_broker.read_all(ddl_topic)
    assert [json.loads(v)["after"]["id"] for _, v, _, _ in records[:1] if v] == [1]
    shown += [repr(record) for record in records]
    everything = "\n".join(shown)
    assert "skipped an account statement (CREATE USER)" in everything  # kind and position only
    for secret in secrets:
        assert secret not in everything
    assert (
        mariadb_target.execute("SELECT user FROM mysql.user WHERE user IN ('mallory', 'eve')") == ()
    )


def test_statement_format_dml_is_skipped_warned_and_counted(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    start = source_position(mariadb)  # the shared server's binlog holds earlier tests' writes
    mariadb.execute(f"CREATE TABLE `{source_db}`.t (id INT PRIMARY KEY, v INT)")
    port = free_port()
    config = jsonl_pipeline(
        tmp_path, mariadb, source_db, redis_server, key_prefix, start=start, metrics_port=port
    )
    out = tmp_path / "out.jsonl"
    node = FerryNode(config, "a").start()
    try:
        run(
            mariadb,
            source_db,
            "SET SESSION binlog_format='STATEMENT'",
            "INSERT INTO t VALUES (1, 1)",
            "UPDATE t SET v = 2 WHERE id = 1",
        )
        run(mariadb, source_db, "SET SESSION binlog_format='MIXED'", "INSERT INTO t VALUES (2, 2)")
        run(mariadb, source_db, "INSERT INTO t VALUES (3, 3)")  # ROW, the server's format
        wait_until(lambda: ids(out) == [3], 30, "the ROW-format insert")

        def counted() -> Any:
            [report] = [n for n in ferry_status(config)["nodes"] if n["node_id"] == "a"]
            return report["skipped"].get(f"dml {source_db}.t")

        assert wait_until(counted, 10, "the count in ferry status") == 3
        text = ferry(config, "status").stdout
        assert f"statement-format DML skipped (a), changes missing: {source_db}.t (3)" in text
        assert skipped(port, "dml") == 3
    finally:
        assert node.stop() == 0
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    assert not any("INSERT" in m.get("ddl", "") or "UPDATE" in m.get("ddl", "") for m in messages)
    log = node.log(10**6)
    assert log.count(f"statement-format INSERT on {source_db}.t skipped") == 1, log


def test_xa_transactions(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    start = source_position(mariadb)  # the shared server's binlog holds earlier tests' writes
    mariadb.execute(f"CREATE TABLE `{source_db}`.t (id INT PRIMARY KEY)")
    config = jsonl_pipeline(tmp_path, mariadb, source_db, redis_server, key_prefix, start=start)
    out = tmp_path / "out.jsonl"
    node = FerryNode(config, "a").start()
    try:
        run(mariadb, source_db, "INSERT INTO t VALUES (1)")
        wait_until(lambda: ids(out) == [1], 30, "the first row")
        # prepared, then rolled back: never delivered
        run(
            mariadb,
            source_db,
            "XA START 'gone'",
            "INSERT INTO t VALUES (2)",
            "XA END 'gone'",
            "XA PREPARE 'gone'",
        )
        run(mariadb, source_db, "INSERT INTO t VALUES (3)")
        run(mariadb, source_db, "XA ROLLBACK 'gone'")
        # prepared, then committed, and nothing after it: delivered at once
        run(
            mariadb,
            source_db,
            "XA START 'kept'",
            "INSERT INTO t VALUES (4)",
            "XA END 'kept'",
            "XA PREPARE 'kept'",
        )
        run(mariadb, source_db, "INSERT INTO t VALUES (5)")
        wait_until(lambda: ids(out) == [1, 3, 5], 30, "the rows committed meanwhile")
        assert 4 not in ids(out)  # prepared only
        run(mariadb, source_db, "XA COMMIT 'kept'")
        wait_until(lambda: ids(out) == [1, 3, 5, 4], 2.5, "the XA row, on an idle source")
        # a restart between PREPARE and COMMIT: delivered exactly once
        run(
            mariadb,
            source_db,
            "XA START 'across'",
            "INSERT INTO t VALUES (6)",
            "XA END 'across'",
            "XA PREPARE 'across'",
        )
        run(mariadb, source_db, "INSERT INTO t VALUES (7)")
        wait_until(lambda: ids(out)[-1] == 7, 30, "the row after the prepare")
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 0
        run(mariadb, source_db, "XA COMMIT 'across'")
        node = FerryNode(config, "b").start()
        wait_until(lambda: 6 in ids(out), 30, "the XA row after the restart")
        run(mariadb, source_db, "INSERT INTO t VALUES (8)")
        wait_until(lambda: ids(out)[-1] == 8, 30, "the row after it")
    finally:
        node.stop()
    delivered = ids(out)
    assert 2 not in delivered
    assert delivered.count(4) == 1 and delivered.count(6) == 1, delivered
    # the prepare held the committed position back: 7 was read again after the restart
    assert delivered == [1, 3, 5, 4, 7, 7, 6, 8], delivered
