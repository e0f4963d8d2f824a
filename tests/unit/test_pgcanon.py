"""tests/pgcanon.py: a MySQL value and its PostgreSQL copy meet in one canonical form when
the copy follows the mapping, and differ when it does not."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tests.pgcanon import Column, expected_type_problem, from_mysql, from_pg


def column(data_type: str, column_type: str = "", **more: Any) -> Column:
    fields: dict[str, Any] = {
        "name": "c",
        "data_type": data_type,
        "column_type": column_type or data_type,
        "json": False,
        "generated": False,
        "precision": None,
        "scale": None,
        "length": None,
        **more,
    }
    return Column(**fields)


UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))

SAME = [
    # MySQL's FLOAT read as DOUBLE is the float32 exactly; PostgreSQL's real prints shortest
    (column("float"), 3.1415927410125732, 3.1415927),
    (column("int", "int(10) unsigned"), 4294967295, 4294967295),
    (column("bigint", "bigint(20) unsigned"), 18446744073709551615, Decimal(18446744073709551615)),
    (column("decimal"), Decimal("-0.00"), Decimal("0.00")),
    (column("decimal"), Decimal("12.50"), Decimal("12.5")),
    (
        column("timestamp"),
        dt.datetime(2024, 1, 1, 10),
        dt.datetime(2024, 1, 1, 12, tzinfo=UTC_PLUS_2),
    ),
    (column("datetime"), "0000-00-00 00:00:00", None),  # pymysql's text of a zero date
    (column("date"), "2024-00-10", None),
    (
        column("time"),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
    ),
    (column("time"), dt.timedelta(hours=1, microseconds=5), dt.time(1, 0, 0, 5)),
    (column("longtext", json=True), '{"a": "x\\u0000y", "n": 1e2}', '{"a": "xy", "n": 100}'),
    (column("longtext", json=True), '"scalar"', '"scalar"'),
    (column("bit", "bit(3)"), b"\x05", "101"),
    (column("binary", "binary(4)", length=4), b"ab\x00\x00", b"ab"),
    (column("char", "char(4)"), "ab", "ab  "),
    (column("varchar"), "a\x00b", "ab"),  # NUL characters removed
    (column("enum", "enum('a','b')"), "b", "b"),
    (column("double"), 0.1 + 0.2, 0.30000000000000004),
    (
        column("uuid"),
        "8fa4ab0e-2b1f-11ee-be56-0242ac120002",
        uuid.UUID("8fa4ab0e-2b1f-11ee-be56-0242ac120002").bytes,
    ),
]

DIFFERENT = [
    (column("float"), 3.1415927410125732, 3.14159),  # MariaDB's 6-digit text would differ
    (
        column("timestamp"),
        dt.datetime(2024, 1, 1, 10),
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC_PLUS_2),
    ),
    (column("longtext", json=True), '{"a": 1}', '{"a": 2}'),
    (column("binary", "binary(4)", length=4), b"ab\x00\x01", b"ab"),
    (column("varchar"), "ab ", "ab"),  # only CHAR drops trailing spaces
]


@pytest.mark.parametrize(("col", "mysql", "pg"), SAME)
def test_a_faithful_copy_is_equal(col: Column, mysql: Any, pg: Any) -> None:
    assert from_mysql(col, mysql) == from_pg(col, pg)


@pytest.mark.parametrize(("col", "mysql", "pg"), DIFFERENT)
def test_an_unfaithful_copy_differs(col: Column, mysql: Any, pg: Any) -> None:
    assert from_mysql(col, mysql) != from_pg(col, pg)


@pytest.mark.parametrize(
    ("col", "pg_type", "wrong"),
    [
        (column("int", "int(10) unsigned"), "integer", True),
        (column("int", "int(10) unsigned"), "bigint", False),
        (column("bigint", "bigint(20) unsigned"), "bigint", True),
        (column("bigint", "bigint(20) unsigned"), "numeric(20,0)", False),
        (column("tinyint", "tinyint(3) unsigned"), "smallint", False),
        (column("timestamp"), "timestamp(3) without time zone", True),
        (column("timestamp"), "timestamp(3) with time zone", False),
        (column("datetime"), "timestamp without time zone", False),
        (column("decimal", precision=12, scale=2), "numeric(12,2)", False),
        (column("decimal", precision=12, scale=2), "numeric", True),
        (column("bit", "bit(6)", precision=6), "bit varying(6)", False),
        (column("longtext", json=True), "text", True),
        (column("year"), "integer", True),
        (column("enum", "enum('a')"), "text", False),
        (column("varbinary"), "bytea", False),
    ],
)
def test_column_types_are_checked_against_the_mapping(
    col: Column, pg_type: str, wrong: bool
) -> None:
    assert (expected_type_problem(col, pg_type) is not None) is wrong
