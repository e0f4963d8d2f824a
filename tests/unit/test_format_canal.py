"""canal-json: Canal's FlatMessage, against Canal's documented example and, per column type,
what Canal's binlog reader writes (RowsLogBuffer / LogEventConvert; see docs/formats.md)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from pipeline.dialect.statements import classify
from pipeline.model import DdlChange, JsonText, Position, RowChange, ZeroDate
from selector.schemas import SchemaHistory
from sinks.formats.canal import CanalJson, java_double

POS = Position("mysql-bin.000001", 4)


def definition(sql: str) -> Any:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets["inventory"] = "utf8mb4"
    [change] = history.apply(sql, "inventory")
    return change.definition


def message(change: RowChange | DdlChange, batch_id: int = 0) -> dict[str, Any]:
    [(_, value)] = CanalJson("p").messages(change, now=1_589_373_560_798_000_000, batch_id=batch_id)
    assert value is not None
    return json.loads(value)


def test_canals_documented_example() -> None:
    """The UPDATE of Canal's documentation (Flink's canal-json page quotes it)."""
    products = definition(
        "CREATE TABLE products (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,"
        " name VARCHAR(255) NOT NULL DEFAULT 'robot', description VARCHAR(512), weight FLOAT)"
    )
    row = {"id": 111, "name": "scooter", "description": "Big 2-wheel scooter", "weight": 5.18}
    change = RowChange(
        "inventory",
        "products",
        "update",
        {**row, "weight": 5.15},
        row,
        ("id",),
        1_589_373_560.0,
        POS,
        definition=products,
    )
    raw = CanalJson("p").messages(change, now=1_589_373_560_798_000_000, batch_id=9)[0][1]
    assert raw is not None
    assert json.loads(raw) == {
        "data": [
            {"id": "111", "name": "scooter", "description": "Big 2-wheel scooter", "weight": "5.18"}
        ],
        "database": "inventory",
        "es": 1589373560000,
        "gtid": None,
        "id": 9,
        "isDdl": False,
        "mysqlType": {
            "id": "INTEGER",
            "name": "VARCHAR(255)",
            "description": "VARCHAR(512)",
            "weight": "FLOAT",
        },
        "old": [{"weight": "5.15"}],
        "pkNames": ["id"],
        "sql": "",
        "sqlType": {"id": 4, "name": 12, "description": 12, "weight": 7},
        "table": "products",
        "ts": 1589373560798,
        "type": "UPDATE",
    }
    assert list(json.loads(raw)) == sorted(json.loads(raw))  # fastjson's order: alphabetical


TYPES = """CREATE TABLE t (
    ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT UNSIGNED,
    bi BIGINT UNSIGNED, b BOOL, dc DECIMAL(20,6), f FLOAT, dbl DOUBLE, bt BIT(10),
    d DATE, dt DATETIME(3), ts TIMESTAMP(6), tm TIME(2), y YEAR, e ENUM('x','y'),
    st SET('a','b','c'), c CHAR(3), v VARCHAR(10), bin BINARY(2), vb VARBINARY(4),
    tx TEXT, bl BLOB, j JSON, g GEOMETRY, u UUID
)"""
# column: (value, Canal's text, sqlType, mysqlType)
CASES: dict[str, tuple[Any, str | None, int, str]] = {
    "ti": (-128, "-128", -6, "TINYINT"),
    "tu": (255, "255", 5, "TINYINT UNSIGNED"),  # above the signed range: the next type up
    "si": (7, "7", 5, "SMALLINT UNSIGNED"),
    "mi": (-8388608, "-8388608", 4, "MEDIUMINT"),
    "i": (4294967295, "4294967295", -5, "INT UNSIGNED"),
    "bi": (18446744073709551615, "18446744073709551615", 3, "BIGINT UNSIGNED"),
    "b": (1, "1", -6, "BOOL"),
    "dc": (Decimal("-12345678901234.567891"), "-12345678901234.567891", 3, "DECIMAL(20,6)"),
    "f": (3.14, "3.14", 7, "FLOAT"),
    "dbl": (1e20, "1.0E20", 8, "DOUBLE"),
    "bt": (513, "513", -7, "BIT(10)"),
    "d": (dt.date(2024, 5, 1), "2024-05-01", 91, "DATE"),
    "dt": (
        dt.datetime(2024, 5, 1, 13, 45, 0, 120000),
        "2024-05-01 13:45:00.120",
        93,
        "DATETIME(3)",
    ),
    "ts": (
        dt.datetime(2024, 5, 1, 11, 45, 0, 5, tzinfo=dt.UTC),
        "2024-05-01 11:45:00.000005",
        93,
        "TIMESTAMP(6)",
    ),
    "tm": (-dt.timedelta(hours=838, minutes=59, seconds=59), "-838:59:59.00", 92, "TIME(2)"),
    "y": (0, "0000", 12, "YEAR"),
    "e": ("y", "2", 4, "ENUM('x','y')"),  # the index, as Canal's reader keeps it
    "st": ({"a", "c"}, "5", -7, "SET('a','b','c')"),  # the bit mask
    "c": ("ab", "ab", 1, "CHAR(3)"),
    "v": ("héllo", "héllo", 12, "VARCHAR(10)"),
    "bin": (b"\x00\xff", "\x00ÿ", -2, "BINARY(2)"),  # ISO-8859-1 text of the bytes
    "vb": (b"\xe9", "é", -3, "VARBINARY(4)"),
    "tx": ("text", "text", 2005, "TEXT"),  # a text blob is a CLOB
    "bl": (b"\x01", "\x01", 2004, "BLOB"),
    "j": (JsonText('{"a": 1}'), '{"a": 1}', 2005, "JSON"),
    "g": (b"\x00\x00\x00\x00\x01", "\x00\x00\x00\x00\x01", 2004, "GEOMETRY"),
    "u": (bytes(range(16)), "00010203-0405-0607-0809-0a0b0c0d0e0f", 1, "UUID"),
}


@pytest.mark.parametrize("column", sorted(CASES))
def test_every_column_type(column: str) -> None:
    value, text, sql_type, mysql_type = CASES[column]
    change = RowChange(
        "s", "t", "insert", None, {column: value}, (), 0.0, POS, definition=definition(TYPES)
    )
    got = message(change)
    assert (got["data"][0][column], got["sqlType"][column], got["mysqlType"][column]) == (
        text,
        sql_type,
        mysql_type,
    )


@pytest.mark.parametrize(
    "column,sql_type",
    [("st", -2), ("tx", -4), ("bl", -4), ("g", -2), ("tu", -6), ("i", 4)],
)
def test_null_takes_the_plain_type(column: str, sql_type: int) -> None:
    change = RowChange(
        "s", "t", "insert", None, {column: None}, (), 0.0, POS, definition=definition(TYPES)
    )
    got = message(change)
    assert (got["data"][0][column], got["sqlType"][column]) == (None, sql_type)


def test_zero_dates_as_mysql_writes_them() -> None:
    table = definition("CREATE TABLE z (d DATE, t DATETIME(2))")
    row = {"d": ZeroDate("0000-00-00"), "t": ZeroDate("0000-00-00 00:00:00.00")}
    assert message(RowChange("s", "z", "insert", None, row, (), 0.0, POS, definition=table))[
        "data"
    ] == [{"d": "0000-00-00", "t": "0000-00-00 00:00:00.00"}]


def test_delete_insert_and_no_key() -> None:
    table = definition("CREATE TABLE k (a INT, b VARCHAR(3))")
    deleted = message(
        RowChange("s", "k", "delete", {"a": 1, "b": "x"}, None, (), 0.0, POS, definition=table)
    )
    assert (deleted["type"], deleted["data"], deleted["old"], deleted["pkNames"]) == (
        "DELETE",
        [{"a": "1", "b": "x"}],
        None,
        None,
    )
    inserted = message(RowChange("s", "k", "insert", None, {"a": 2, "b": None}, ("a",), 0.0, POS))
    assert (inserted["type"], inserted["pkNames"], inserted["data"]) == (
        "INSERT",
        ["a"],
        [{"a": "2", "b": None}],
    )


@pytest.mark.parametrize(
    "statement,kind,database,table",
    [
        ("CREATE TABLE shop.orders (id INT)", "CREATE", "shop", "orders"),
        ("ALTER TABLE orders ADD note TEXT", "ALTER", "inventory", "orders"),
        ("DROP TABLE IF EXISTS orders", "ERASE", "inventory", "orders"),
        ("TRUNCATE TABLE orders", "TRUNCATE", "inventory", "orders"),
        ("RENAME TABLE a TO b", "RENAME", "inventory", "a"),
        ("CREATE INDEX i ON orders (id)", "CINDEX", "inventory", "orders"),
        ("DROP INDEX i ON orders", "DINDEX", "inventory", "orders"),
        ("CREATE DATABASE dip_test", "QUERY", "dip_test", ""),
        ("CREATE VIEW v AS SELECT 1", "QUERY", "inventory", "v"),
    ],
)
def test_ddl(statement: str, kind: str, database: str, table: str) -> None:
    classified = classify(statement, "inventory")
    change = DdlChange(
        "inventory",
        statement,
        1_655_812_326.0,
        POS,
        kind=classified.kind,  # type: ignore[arg-type]
        tables=classified.tables,
        object=classified.object,
        verb=classified.verb,
    )
    got = message(change)
    assert (got["type"], got["database"], got["table"], got["sql"]) == (
        kind,
        database,
        table,
        statement,
    )
    assert got["isDdl"] is True
    assert [got[k] for k in ("data", "old", "mysqlType", "sqlType", "pkNames")] == [None] * 5


@pytest.mark.parametrize(
    "value,text",
    [
        (1.0, "1.0"),
        (100.5, "100.5"),
        (0.001, "0.001"),
        (1e7, "1.0E7"),
        (1.5e-4, "1.5E-4"),
        (-2.5e20, "-2.5E20"),
        (0.0, "0.0"),
        (1234567.0, "1234567.0"),
    ],
)
def test_java_double(value: float, text: str) -> None:
    assert java_double(value) == text
