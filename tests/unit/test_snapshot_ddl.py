"""The DDL a snapshot hands out before its rows: each database once (SHOW CREATE DATABASE,
as CREATE DATABASE IF NOT EXISTS), before its first table, so an empty target fills up."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest

import selector.snapshot as snapshot
from pipeline.model import DdlChange
from sinks.ddl import rewrite
from sinks.formats.debezium.envelope import DebeziumJson
from sinks.formats.debezium.options import DebeziumOptions

CHARSET = "/*!40100 DEFAULT CHARACTER SET latin2 COLLATE latin2_czech_cs */"


class Cursor:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.row: tuple[str, str] | None = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, sql: str, args: Any = None) -> None:
        self.server.queries.append(sql)
        name = sql.rsplit(" ", 1)[1]
        if sql.startswith("SHOW CREATE DATABASE"):
            db = name.strip("`")
            if db in self.server.gone:
                raise pymysql.err.OperationalError(1049, f"Unknown database '{db}'")
            self.row = (db, f"CREATE DATABASE {name} {CHARSET}")
        else:
            table = name.split(".")[1].strip("`")
            self.row = (table, f"CREATE TABLE `{table}` (id INT PRIMARY KEY)")

    def fetchone(self) -> tuple[str, str] | None:
        return self.row


class Server:
    def __init__(self, gone: tuple[str, ...] = ()) -> None:
        self.queries: list[str] = []
        self.gone = gone

    def cursor(self) -> Cursor:
        return Cursor(self)


def begin(
    monkeypatch: pytest.MonkeyPatch, server: Server, tables: list[str], databases: list[str]
) -> list[DdlChange]:
    monkeypatch.setattr(snapshot, "plan_table", lambda *_: SimpleNamespace(estimated_rows=1))
    snap = snapshot.Snapshotter(None, lambda: server, 100, 10, None)  # type: ignore[arg-type]
    return snap.begin("initial", tables, 0.0, databases)


def test_each_database_once_before_its_tables_then_the_empty_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ddls = begin(monkeypatch, Server(), ["a.t1", "a.t2", "b.u"], ["a", "b", "c"])
    assert [(d.kind, d.statement) for d in ddls] == [
        ("database", f"CREATE DATABASE IF NOT EXISTS `a` {CHARSET}"),
        ("table", "CREATE TABLE IF NOT EXISTS `t1` (id INT PRIMARY KEY)"),
        ("table", "CREATE TABLE IF NOT EXISTS `t2` (id INT PRIMARY KEY)"),
        ("database", f"CREATE DATABASE IF NOT EXISTS `b` {CHARSET}"),
        ("table", "CREATE TABLE IF NOT EXISTS `u` (id INT PRIMARY KEY)"),
        ("database", f"CREATE DATABASE IF NOT EXISTS `c` {CHARSET}"),
    ]
    database = ddls[0]
    assert (database.schema, database.tables, database.verb, database.object) == (
        "a",
        (("a", ""),),
        "CREATE",
        "DATABASE",
    )


def test_a_database_dropped_meanwhile_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    ddls = begin(monkeypatch, Server(gone=("c",)), ["a.t"], ["a", "c"])
    assert [d.statement.split(" /*")[0] for d in ddls] == [
        "CREATE DATABASE IF NOT EXISTS `a`",
        "CREATE TABLE IF NOT EXISTS `t` (id INT PRIMARY KEY)",
    ]


def test_schema_map_renames_the_database_created(monkeypatch: pytest.MonkeyPatch) -> None:
    [database, _] = begin(monkeypatch, Server(), ["shop.t"], [])
    mapped = {"shop": "shop_copy"}.get
    assert rewrite(database, lambda s, t: (mapped(s, s), t), lambda s: mapped(s, s)) == (
        f"CREATE DATABASE IF NOT EXISTS `shop_copy` {CHARSET}"
    )


def test_debezium_json_gets_a_database_schema_change_as_debeziums_snapshot_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debezium 3.6.3's initial snapshot writes, per database, DROP DATABASE IF EXISTS,
    CREATE DATABASE `db` CHARSET … COLLATE … and USE `db` events (tableChanges [], source.table
    null) before the database's CREATE TABLE events; ferry writes the CREATE one."""
    [database, _] = begin(monkeypatch, Server(), ["shop.t"], [])
    fmt = DebeziumJson("pipe", options=DebeziumOptions.model_validate({}))
    [(key, value)] = fmt.messages(database)
    assert key is not None and value is not None
    event = json.loads(value)
    assert json.loads(key) == {"databaseName": "shop"}
    assert (event["databaseName"], event["tableChanges"]) == ("shop", [])
    assert (event["source"]["db"], event["source"]["table"]) == ("shop", None)
    assert event["ddl"] == f"CREATE DATABASE IF NOT EXISTS `shop` {CHARSET}"
