"""A MySQL table and its PostgreSQL copy compared row by row under the sink's type mapping.

    problems = compare_table(mariadb, pg_conn, "shop", "orders", "shop", "orders")
    problems                       # [] when every row is equal, else one line per difference

Each value is brought to one canonical form from both sides, chosen by the MySQL column's
type (the mapping of ``sinks/postgresql.py``, issue 22):

=====================  ===========================  ===========================================
MySQL                  PostgreSQL (default)         canonical form (equal when the copy is right)
=====================  ===========================  ===========================================
integers, unsigned     a type holding the range     ``int``
YEAR                   smallint                     ``int``
DECIMAL(p,s)           numeric(p,s)                 ``Decimal``, normalised (``-0`` is ``0``)
FLOAT                  real                         the float32 value (MySQL's read as DOUBLE)
DOUBLE                 double precision             15 significant digits (MariaDB prints 15)
DATE/DATETIME          date / timestamp             the value; a zero or partial date is NULL
TIMESTAMP              timestamptz                  the UTC instant (MySQL session in UTC)
TIME                   interval                     microseconds, signed (±838 h)
CHAR(n), VARCHAR(n)    character varying(n)         the text, NULs removed (CHAR: no trailing
                                                    spaces, as MySQL reads it)
ENUM, SET, text        text                         the text, NULs removed
BINARY(n)              bytea                        the bytes, padded with NUL to n (as MySQL)
other binary, spatial  bytea                        the bytes
BIT(n)                 bit varying(n)               the bits as an ``int``
JSON                   jsonb                        the parsed document, NUL characters removed,
                                                    integral floats as ints (``1e2`` is ``100``)
UUID, INET4/6          bytea (the binlog's bytes)   the canonical text
=====================  ===========================  ===========================================

The PostgreSQL column types are checked against the mapping too (a column that holds
the right values in the wrong type is a difference). Rows are matched by the primary
key where the table has one, else compared as multisets. Generated columns missing
from the copy are not compared (the sink may skip them); any other missing column is a
difference.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import ipaddress
import json
import re
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pymysql

__all__ = ["Column", "compare_table", "expected_type_problem", "mysql_columns"]

_INTEGERS = {
    "tinyint": 8,
    "smallint": 16,
    "mediumint": 24,
    "int": 32,
    "integer": 32,
    "bigint": 64,
}
_TEXT = {"varchar", "tinytext", "text", "mediumtext", "longtext"}
_BYTES = {
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
}
_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}


@dataclass(frozen=True)
class Column:
    """One MySQL column as information_schema describes it."""

    name: str
    data_type: str  # DATA_TYPE, lower case ("int", "varchar", "json", ...)
    column_type: str  # COLUMN_TYPE ("int(10) unsigned", "bit(7)", "binary(4)", ...)
    json: bool  # MySQL's JSON, or MariaDB's (LONGTEXT with a json_valid() check)
    generated: bool
    precision: int | None
    scale: int | None
    length: int | None  # CHARACTER_MAXIMUM_LENGTH

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type

    @property
    def kind(self) -> str:
        """The canonical form this column's values take (see the module's table)."""
        t = self.data_type
        if self.json:
            return "json"
        if t in _INTEGERS or t == "year":
            return "int"
        if t in ("decimal", "numeric"):
            return "decimal"
        if t in ("float", "double", "date", "datetime", "timestamp", "time", "bit", "char"):
            return t
        if t in ("real", "double precision"):
            return "double"
        if t == "binary":
            return "binary"
        if t in _BYTES:
            return "bytes"
        if t in ("uuid", "inet4", "inet6"):
            return t.rstrip("46")
        return "text"  # varchar, text types, enum, set


def _mysql(server: Any) -> Any:
    """A pymysql connection in UTC from a service object (``.connect``) or connect args."""
    init = "SET time_zone='+00:00'"
    if isinstance(server, dict):
        return pymysql.connect(**server, autocommit=True, charset="utf8mb4", init_command=init)
    return server.connect(init_command=init)


def mysql_columns(conn: Any, schema: str, table: str) -> list[Column]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, table),
        )
        json_checked = {
            m.group(1).replace("``", "`")
            for (clause,) in cur.fetchall()
            for m in re.finditer(r"json_valid\(`((?:[^`]|``)+)`\)", str(clause), re.I)
        }
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_GENERATED, NUMERIC_PRECISION,"
            " NUMERIC_SCALE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        return [
            Column(
                name=str(name),
                data_type=str(data_type).lower(),
                column_type=str(column_type).lower(),
                json=str(data_type).lower() == "json" or str(name) in json_checked,
                generated=str(generated).upper() == "ALWAYS",
                precision=None if precision is None else int(precision),
                scale=None if scale is None else int(scale),
                length=None if length is None else int(length),
            )
            for name, data_type, column_type, generated, precision, scale, length in cur.fetchall()
        ]


def _primary_key(conn: Any, schema: str, table: str) -> tuple[str, ...]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
            " WHERE CONSTRAINT_NAME='PRIMARY' AND TABLE_SCHEMA=%s AND TABLE_NAME=%s"
            " ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        return tuple(str(name) for (name,) in cur.fetchall())


def _pg_types(pg: Any, schema: str, table: str) -> dict[str, str]:
    rows = pg.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


# -- the mapping's column types ----------------------------------------------------------

_PG_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}


def _holds(pg_type: str, bits: int, unsigned: bool) -> bool:
    """Whether ``pg_type`` holds every value of a MySQL integer of ``bits`` bits."""
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if pg_type in _PG_INT_BITS:
        width = _PG_INT_BITS[pg_type]
        return -(2 ** (width - 1)) <= lo and hi <= 2 ** (width - 1) - 1
    numeric = re.fullmatch(r"numeric\((\d+),0\)", pg_type)
    return pg_type == "numeric" or (numeric is not None and len(str(hi)) <= int(numeric[1]))


def expected_type_problem(column: Column, pg_type: str) -> str | None:
    """What is wrong with ``pg_type`` for this column under the default mapping, or None."""
    t = column.data_type
    want: str | None = None
    ok = True
    if column.json:
        want, ok = "jsonb", pg_type == "jsonb"
    elif t in _INTEGERS:
        want = f"an integer type holding {column.column_type}"
        ok = _holds(pg_type, _INTEGERS[t], column.unsigned)
    elif t == "year":
        want, ok = "smallint", pg_type == "smallint"
    elif t == "decimal":
        want = f"numeric({column.precision},{column.scale})"
        ok = pg_type == want
    elif t == "float":
        want, ok = "real", pg_type == "real"
    elif t == "datetime":
        want = "timestamp without time zone"
        ok = pg_type.startswith("timestamp") and pg_type.endswith("without time zone")
    elif t == "timestamp":
        want = "timestamp with time zone"
        ok = pg_type.startswith("timestamp") and pg_type.endswith("with time zone")
    elif t == "time":
        want, ok = "interval", pg_type.startswith("interval")
    elif t in ("enum", "set"):
        want, ok = "text", pg_type == "text"
    elif t == "bit":
        want = f"bit varying({column.precision})"
        ok = pg_type == want
    elif t in _BINARY_TYPES:
        want, ok = "bytea", pg_type == "bytea"
    return None if ok else f"is {pg_type}, the mapping says {want}"


# -- canonical values --------------------------------------------------------------------


def _decimal(value: Any) -> Any:
    d = decimal.Decimal(value)
    return decimal.Decimal(0) if d == 0 else d.normalize()


def _float32(value: Any) -> float:
    return float(struct.unpack("<f", struct.pack("<f", float(value)))[0])


def _double(value: Any) -> float:
    return float(f"{float(value):.15g}")


def _json(value: Any) -> Any:
    """A parsed JSON document as the jsonb copy holds it: NULs removed, integral floats ints."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k.replace("\x00", ""): _json(v) for k, v in value.items()}
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _micros(delta: datetime.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _address(value: Any) -> str:
    if isinstance(value, bytes):  # INET4/INET6 as the binlog carries them
        return str(ipaddress.ip_address(value))
    return str(ipaddress.ip_address(str(value).split("/")[0]))


def _uuid(value: Any) -> str:
    if isinstance(value, bytes):  # MariaDB's UUID as the binlog carries it
        return str(uuid.UUID(bytes=value))
    return str(value).lower()


def from_mysql(column: Column, value: Any) -> Any:
    """The canonical form of a value as pymysql reads the source (FLOAT read as DOUBLE)."""
    if value is None:
        return None
    kind = column.kind
    if kind == "int":
        return int(value)
    if kind == "decimal":
        return _decimal(value)
    if kind == "float":
        return _float32(value)
    if kind == "double":
        return _double(value)
    if kind in ("date", "datetime", "timestamp"):
        return None if isinstance(value, str | bytes) else value  # zero/partial: pymysql's text
    if kind == "time":
        return _micros(value)
    if kind == "bit":
        return int.from_bytes(value, "big")
    if kind == "json":
        text = value.decode() if isinstance(value, bytes) else value
        return _hashable(_json(json.loads(text)))
    if kind in ("binary", "bytes"):
        return bytes(value)
    if kind == "uuid":
        return _uuid(value)
    if kind == "inet":
        return _address(value)
    text = (value.decode() if isinstance(value, bytes) else str(value)).replace("\x00", "")
    return text.rstrip(" ") if kind == "char" else text


def from_pg(column: Column, value: Any) -> Any:
    """The canonical form of a value as psycopg reads the PostgreSQL copy."""
    if value is None:
        return None
    kind = column.kind
    if kind == "int":
        return int(value)
    if kind == "decimal":
        return _decimal(value)
    if kind == "float":
        return _float32(value)
    if kind == "double":
        return _double(value)
    if kind == "timestamp" and isinstance(value, datetime.datetime) and value.tzinfo:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    if kind == "time":
        if isinstance(value, datetime.time):  # the "time" option
            return _micros(
                datetime.timedelta(
                    hours=value.hour,
                    minutes=value.minute,
                    seconds=value.second,
                    microseconds=value.microsecond,
                )
            )
        return _micros(value)
    if kind == "bit":
        return int(str(value), 2) if str(value) else 0
    if kind == "json":  # read as text (see _pg_select): a jsonb string is a str too
        return _hashable(_json(json.loads(value)))
    if kind == "binary":
        return bytes(value).ljust(column.length or 0, b"\x00")
    if kind == "bytes":
        return bytes(value)
    if kind == "uuid":
        return _uuid(bytes(value) if isinstance(value, memoryview) else value)
    if kind == "inet":
        return _address(bytes(value) if isinstance(value, memoryview) else value)
    if isinstance(value, str):
        return value.rstrip(" ") if kind == "char" else value
    return value


# -- comparing ---------------------------------------------------------------------------


def _mysql_select(column: Column) -> str:
    name = "`" + column.name.replace("`", "``") + "`"
    # MariaDB prints a FLOAT with 6 digits; as DOUBLE it is the stored float32 exactly
    return f"CAST({name} AS DOUBLE)" if column.kind == "float" else name


def _pg_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_select(column: Column) -> str:
    name = _pg_name(column.name)
    return f"{name}::text" if column.kind == "json" else name


def compare_table(
    mysql: Any,
    pg: Any,
    schema: str,
    table: str,
    pg_schema: str,
    pg_table: str,
    check_types: bool = True,
) -> list[str]:
    """Every difference between ``schema.table`` on MySQL and its PostgreSQL copy.

    ``mysql``: a service object with ``connect()`` or pymysql connect arguments;
    ``pg``: an open psycopg connection to the target database; ``check_types=False``
    compares the values only (another tool's copy, with its own mapping).
    """
    where = f"{schema}.{table}"
    conn = _mysql(mysql)
    try:
        columns = mysql_columns(conn, schema, table)
        key = _primary_key(conn, schema, table)
        pg_types = _pg_types(pg, pg_schema, pg_table)
        if not pg_types:
            return [f"{where}: no table {pg_schema}.{pg_table} in PostgreSQL"]
        problems = []
        compared = []
        for column in columns:
            if column.name not in pg_types:
                if not column.generated:
                    problems.append(f"{where}.{column.name}: missing in PostgreSQL")
                continue
            wrong = check_types and expected_type_problem(column, pg_types[column.name])
            if wrong:
                problems.append(f"{where}.{column.name} ({column.column_type}) {wrong}")
            compared.append(column)
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {','.join(_mysql_select(c) for c in compared)}"
                f" FROM `{schema.replace('`', '``')}`.`{table.replace('`', '``')}`"
            )
            source = [
                tuple(from_mysql(c, v) for c, v in zip(compared, row, strict=True))
                for row in cur.fetchall()
            ]
    finally:
        conn.close()
    names = ",".join(_pg_select(c) for c in compared)
    target = [
        tuple(from_pg(c, v) for c, v in zip(compared, row, strict=True))
        for row in pg.execute(f"SELECT {names} FROM {_pg_name(pg_schema)}.{_pg_name(pg_table)}")
    ]
    names_compared = [c.name for c in compared]
    if key and all(k in names_compared for k in key):
        problems += _by_key(where, compared, [names_compared.index(k) for k in key], source, target)
    else:
        want, got = collections.Counter(source), collections.Counter(target)
        if want != got:
            problems.append(
                f"{where} (no key): rows only in the source {list((want - got).elements())[:3]},"
                f" only in PostgreSQL {list((got - want).elements())[:3]}"
            )
    return problems


def _by_key(
    where: str,
    columns: list[Column],
    key: list[int],
    source: Iterable[tuple[Any, ...]],
    target: Iterable[tuple[Any, ...]],
) -> list[str]:
    def keyed(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {tuple(row[i] for i in key): row for row in rows}

    want, got = keyed(source), keyed(target)
    problems = []
    for k in sorted(want.keys() - got.keys(), key=repr)[:5]:
        problems.append(f"{where} key {k}: only in the source")
    for k in sorted(got.keys() - want.keys(), key=repr)[:5]:
        problems.append(f"{where} key {k}: only in PostgreSQL")
    for k in sorted(want.keys() & got.keys(), key=repr):
        for column, expected, found in zip(columns, want[k], got[k], strict=True):
            if expected != found:
                problems.append(
                    f"{where} key {k} column {column.name} ({column.column_type}):"
                    f" expected {expected!r}, got {found!r}"
                )
    return problems
