"""Every value the source stores is handed out exactly, and stored identically by the MySQL sink.

One column per case, each holding a value mysql-replication decodes lossily or
that a naive write-back changes (zero and partial dates, zero TIMESTAMP, TIME
with fractions, negative and beyond 24 h, FLOAT(M,D) at its range limit, YEAR
0, BINARY padding, MariaDB JSON text, …). The selector must hand out the
Python value in the table of ``selector.values``; the sink must then store a
row that is byte-identical to the source's (``CHECKSUM TABLE``) and reads the
same.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.model import Batch, JsonText, ZeroDate
from selector.mysql import MySQLSelector
from sinks.mysql import MySQLSink, MySQLSinkConfig
from tests.integration.test_selector_mysql import collect, selector

UTC = datetime.UTC
td = datetime.timedelta

# name, column definition, SQL literal, the value ferry hands out
CASES: list[tuple[str, str, str, Any]] = [
    ("date_zero", "DATE", "'0000-00-00'", ZeroDate("0000-00-00")),
    ("date_no_month", "DATE", "'2015-00-21'", ZeroDate("2015-00-21")),
    ("date_no_day", "DATE", "'2015-05-00'", ZeroDate("2015-05-00")),
    ("date_year0", "DATE", "'0000-01-21'", ZeroDate("0000-01-21")),
    ("date_min", "DATE", "'1000-01-01'", datetime.date(1000, 1, 1)),
    ("date_max", "DATE", "'9999-12-31'", datetime.date(9999, 12, 31)),
    ("dt_zero", "DATETIME", "'0000-00-00 00:00:00'", ZeroDate("0000-00-00 00:00:00")),
    ("dt3_zero", "DATETIME(3)", "'0000-00-00 00:00:00'", ZeroDate("0000-00-00 00:00:00.000")),
    ("dt_partial", "DATETIME(2)", "'2013-00-00 10:11:12.34'", ZeroDate("2013-00-00 10:11:12.34")),
    (
        "dt6",
        "DATETIME(6)",
        "'9999-12-31 23:59:59.999999'",
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ),
    ("ts_zero", "TIMESTAMP NULL", "'0000-00-00 00:00:00'", ZeroDate("0000-00-00 00:00:00")),
    ("ts3_zero", "TIMESTAMP(3) NULL", "0", ZeroDate("0000-00-00 00:00:00.000")),
    (
        "ts_min",
        "TIMESTAMP(6) NULL",
        "'1970-01-01 00:00:01.000001'",
        datetime.datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC),
    ),
    (
        "ts_max",
        "TIMESTAMP NULL",
        "'2038-01-19 03:14:07'",
        datetime.datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC),
    ),
    ("time_neg_frac2", "TIME(2)", "'-00:00:00.01'", -td(microseconds=10000)),
    (
        "time_neg_frac3",
        "TIME(3)",
        "'-12:34:56.789'",
        -td(hours=12, minutes=34, seconds=56, microseconds=789000),
    ),
    ("time_neg_frac6", "TIME(6)", "'-00:00:01.000001'", -td(seconds=1, microseconds=1)),
    ("time_min", "TIME(1)", "'-838:59:59.9'", -td(hours=838, minutes=59, seconds=59.9)),
    ("time_max", "TIME", "'838:59:59'", td(hours=838, minutes=59, seconds=59)),
    ("time_day", "TIME(4)", "'25:00:00.0001'", td(hours=25, microseconds=100)),
    ("year0", "YEAR", "0", 0),
    ("year_min", "YEAR", "1901", 1901),
    ("year_max", "YEAR", "2155", 2155),
    ("float", "FLOAT", "3.14", 3.14),
    ("float_min", "FLOAT", "-3.4e38", -3.4e38),
    ("float_md_limit", "FLOAT(10,2)", "-99999999.99", -1e8),  # stored as -1e8: single precision
    ("float_unsigned", "FLOAT UNSIGNED", "64.1234", 64.1234),
    ("double", "DOUBLE", "1.7976931348623157e308", 1.7976931348623157e308),
    ("double_sub", "DOUBLE", "4.9e-324", 5e-324),
    (
        "dec65",
        "DECIMAL(65,30)",
        "-99999999999999999999999999999999999.999999999999999999999999999999",
        Decimal("-99999999999999999999999999999999999.999999999999999999999999999999"),
    ),
    ("dec_zero_scale", "DECIMAL(10,0)", "-1", Decimal("-1")),
    ("bigint_umax", "BIGINT UNSIGNED", "18446744073709551615", 18446744073709551615),
    (
        "bit64",
        "BIT(64)",
        "b'1111111111111111111111111111111111111111111111111111111111111111'",
        2**64 - 1,
    ),
    ("binary_zeros", "BINARY(16)", "X'7b7400'", b"\x7b\x74" + b"\0" * 14),
    ("binary_all_zero", "BINARY(3)", "X'000000'", b"\0\0\0"),
    (
        "uuid",
        "UUID",
        "'6ccd780c-baba-1026-9564-5b8c656024db'",
        bytes.fromhex("6ccd780cbaba102695645b8c656024db"),
    ),
    ("inet6", "INET6", "'::ffff:127.0.0.1'", bytes.fromhex("00000000000000000000ffff7f000001")),
    ("inet4", "INET4", "'192.168.0.255'", bytes.fromhex("c0a800ff")),  # MariaDB 10.10+
    ("inet4_zero", "INET4", "'0.0.0.0'", b"\0\0\0\0"),  # trailing 0x00 padded back
    (
        "json_text",
        "JSON",
        '\'{"b" :1,  "a": [1.0E+2, "é"]}\'',
        JsonText('{"b" :1,  "a": [1.0E+2, "é"]}'),
    ),
    ("enum_comma", "ENUM('a','b,c','d''e')", "'b,c'", "b,c"),
    ("set_empty", "SET('x','y')", "''", set()),
    ("latin2", "VARCHAR(10) CHARACTER SET latin2", "'Příliš'", "Příliš"),
    ("utf8mb3", "CHAR(5) CHARACTER SET utf8mb3", "'日本語'", "日本語"),
    ("emoji", "TEXT CHARACTER SET utf8mb4", "'😀 ok'", "😀 ok"),
    (
        "point_srid",
        "POINT",
        "ST_GeomFromText('POINT(1 2)', 4326)",
        bytes.fromhex("e6100000") + bytes.fromhex("0101000000000000000000f03f0000000000000040"),
    ),
]


@pytest.fixture
def table(mariadb: Any, source_db: str) -> str:
    columns = ", ".join(f"`{name}` {kind}" for name, kind, _, _ in CASES)
    mariadb.execute(f"CREATE TABLE `{source_db}`.v (id INT PRIMARY KEY, {columns})")
    return "v"


def write(mariadb: Any, db: str, sql: str) -> None:
    conn = mariadb.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode='', time_zone='+00:00'")  # zero dates allowed
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_every_value_is_handed_out_exactly(mariadb: Any, source_db: str, table: str) -> None:
    sel: MySQLSelector = selector(mariadb, source_db)
    literals = ", ".join(literal for _, _, literal, _ in CASES)
    write(mariadb, source_db, f"INSERT INTO v VALUES (1, {literals})")
    # ENUM's invalid value (index 0), stored by a non-strict session: the empty string
    mariadb.execute(f"CREATE TABLE `{source_db}`.e (id INT PRIMARY KEY, e ENUM('a','b,c'))")
    write(mariadb, source_db, "INSERT INTO e VALUES (1, 'x')")
    change, invalid = collect(sel, 2)
    sel.stop()
    assert change.after is not None
    for name, _, _, expected in CASES:
        value = change.after[name]
        assert (value, type(value)) == (expected, type(expected)), name
    assert invalid.after == {"id": 1, "e": ""}


def test_the_mysql_sink_stores_every_value_identically(
    mariadb: Any, source_db: str, table: str, mariadb_target: Any, target_db: str
) -> None:
    [(_, ddl)] = mariadb.execute(f"SHOW CREATE TABLE `{source_db}`.v")
    mariadb_target.execute(ddl, database=target_db)
    sel: MySQLSelector = selector(mariadb, source_db)
    literals = ", ".join(literal for _, _, literal, _ in CASES)
    write(mariadb, source_db, f"INSERT INTO v VALUES (1, {literals})")
    write(mariadb, source_db, "INSERT INTO v (id) VALUES (2)")  # every column NULL
    write(mariadb, source_db, "DELETE FROM v WHERE id = 2")
    changes = collect(sel, 3)
    sel.stop()
    sink = MySQLSink(
        MySQLSinkConfig(
            type="mysql",
            host=mariadb_target.host,
            port=mariadb_target.port,
            user=mariadb_target.user,
            schema_map={source_db: target_db},
            checkpoint_schema=target_db,
        ),
        "values",
    )
    try:
        sink.load(Batch(1, list(changes), changes[-1].position), epoch=1)
    finally:
        sink.close()

    def stored(server: Any, db: str) -> Any:
        conn = server.connect(db, init_command="SET time_zone='+00:00'")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM v ORDER BY id")
                rows = cur.fetchall()
                cur.execute("CHECKSUM TABLE v EXTENDED")
                return rows, cur.fetchone()[1]
        finally:
            conn.close()

    assert stored(mariadb_target, target_db) == stored(mariadb, source_db)
