"""Reading existing rows: chunks in key order, each with the binlog position it is exact at.

A snapshot copies the rows a table holds into the stream, so that the rows
read plus the changes streamed after them give exactly the source's state. It
is read in chunks (keyset pagination: ``WHERE key > last ORDER BY key LIMIT n``),
and every chunk comes with the binlog position ``P`` its read view matches:
the chunk holds each of its rows as it was after every transaction before
``P`` and before every transaction after it. The selector hands the chunk out
when its stream reaches ``P`` (``selector.mysql``), so per key the output is a
valid history: older changes before the chunk's row, newer ones after it.

How ``P`` is found, per server flavour (the consistency argument):

* **MariaDB** (and Percona Server): ``START TRANSACTION WITH CONSISTENT
  SNAPSHOT`` creates the read view and, atomically with it, records the binlog
  position of the last transaction that view includes; ``SHOW STATUS LIKE
  'binlog_snapshot_%'`` reads it back. Without any lock: the server holds its
  commit order lock while it takes both, so no transaction can be in the binlog
  before ``P`` and invisible to the view, or visible and after ``P``.
* **MySQL** has no such status. ``SHOW MASTER STATUS`` next to an ordinary
  read view is not exact: a transaction can be written to the binlog before the
  position is read and still be uncommitted in InnoDB, invisible to the view.
  So each chunk's view is opened inside a brief ``FLUSH TABLES WITH READ
  LOCK`` (the RELOAD privilege, Debezium's "minimal" locking): while it is
  held no transaction commits, so the position read then and the view opened
  then agree; the lock is released before the chunk's rows are read.

Keys: the primary key; else the first unique index whose columns are all NOT
NULL; else the table is read in one pass at one position (not resumable: a
restart reads it again from the start), streamed from an unbuffered cursor so
memory stays bounded. Composite keys compare lexicographically
(``(a > x) OR (a = x AND b > y)``), which uses the index.

Values: every column is read so that it becomes the same Python value the
binlog decoder (``selector.values``) gives for the same stored value — a
snapshot row and a streamed row of one key must compare equal. Where the text
protocol loses precision or form, the column is read through an expression
(FLOAT as its double, UUID and INET6 as their bytes) and converted back here.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pymysql
import pymysql.cursors

from pipeline.errors import FatalError
from pipeline.model import JsonText, Position, ZeroDate

from .values import json_columns, single_precision

UTC = datetime.UTC

Convert = Callable[[Any], Any]


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _zero(value: Any) -> Any:
    """A date the driver could not parse is a zero or partial date, kept as MySQL shows it."""
    return ZeroDate(value) if isinstance(value, str) else value


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC)  # the session's time zone is UTC
    return _zero(value)


def _bit(value: Any) -> Any:
    return int.from_bytes(value, "big") if isinstance(value, bytes) else value


def _set(value: Any) -> Any:
    if isinstance(value, bytes):  # a SET with CHARACTER SET binary
        value = value.decode()
    if isinstance(value, str):
        return set(value.split(",")) - {""}
    return set(value) - {""} if isinstance(value, set) else value


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return JsonText(value) if isinstance(value, str) else value


def _float(value: Any) -> Any:
    return single_precision(float(value)) if value is not None else None


def _decimal(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str) else value


def _plain(value: Any) -> Any:
    return value


# DATA_TYPE -> (select expression template, converter)
_READ: dict[str, tuple[str, Convert]] = {
    "float": ("CAST({c} AS DOUBLE)", _float),
    "date": ("{c}", _zero),
    "datetime": ("{c}", _zero),
    "timestamp": ("{c}", _timestamp),
    "bit": ("{c}", _bit),
    "set": ("{c}", _set),
    "json": ("{c}", _json),
    "decimal": ("{c}", _decimal),
    "uuid": ("UNHEX(REPLACE({c}, '-', ''))", _plain),
    "inet6": ("INET6_ATON({c})", _plain),
    "inet4": ("INET6_ATON({c})", _plain),
}


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one table is read: its columns, key and select list."""

    schema: str
    table: str
    columns: tuple[str, ...]
    converters: tuple[Convert, ...]
    select_list: str
    key: tuple[str, ...]  # empty: no usable key (one pass, not resumable)
    primary_key: tuple[str, ...]  # the table's primary key ('' columns: none) for RowChange
    estimated_rows: int

    @property
    def resumable(self) -> bool:
        return bool(self.key)


@dataclass(slots=True)
class Chunk:
    """Rows of one read, in key order, exact at ``position``."""

    rows: list[dict[str, Any]]
    last_key: list[Any] | None  # key of the last row (driver values), None when no key
    position: Position
    done: bool  # the table has no rows after these


def plan_table(conn: Any, schema: str, table: str) -> TablePlan:
    """Columns, types and the key to page by, from information_schema."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE"
            " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s"
            " ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        columns = cur.fetchall()
        if not columns:
            raise FatalError(f"snapshot: table {schema}.{table} does not exist on the source")
        cur.execute(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND NON_UNIQUE=0"
            " ORDER BY INDEX_NAME='PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        indexes: dict[str, list[str]] = {}
        for index, column in cur.fetchall():
            indexes.setdefault(str(index), []).append(str(column))
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s",
            (schema, table),
        )
        row = cur.fetchone()
        # MariaDB's JSON is LONGTEXT with a json_valid(column) check
        cur.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, table),
        )
        json_text = json_columns(str(clause) for (clause,) in cur.fetchall())
    nullable = {str(name) for name, _, _, null in columns if str(null) == "YES"}
    primary = tuple(indexes.get("PRIMARY", ()))
    key = primary
    if not key:
        key = next(
            (tuple(cols) for cols in indexes.values() if not nullable.intersection(cols)), ()
        )
    names, expressions, converters = [], [], []
    for name, data_type, _, _ in columns:
        kind = "json" if str(name) in json_text else str(data_type).lower()
        template, convert = _READ.get(kind, ("{c}", _plain))
        names.append(str(name))
        expressions.append(template.format(c=_ident(str(name))))
        converters.append(convert)
    return TablePlan(
        schema,
        table,
        tuple(names),
        tuple(converters),
        ", ".join(expressions),
        key,
        primary,
        int(row[0] or 0) if row else 0,
    )


def _after(key: tuple[str, ...]) -> str:
    """``(a > %s) OR (a = %s AND b > %s) …``: rows after a key, in key order."""
    terms = []
    for i, column in enumerate(key):
        equal = [f"{_ident(c)} = %s" for c in key[:i]]
        terms.append("(" + " AND ".join([*equal, f"{_ident(column)} > %s"]) + ")")
    return " OR ".join(terms)


def _after_args(last: list[Any]) -> list[Any]:
    args: list[Any] = []
    for i in range(len(last)):
        args.extend(last[: i + 1])
    return args


class Reader:
    """Opens read views at exact binlog positions and reads chunks in them."""

    def __init__(self, connect: Callable[..., Any], mariadb: bool) -> None:
        self._connect = connect
        self.mariadb = mariadb
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect(init_command="SET SESSION time_zone='+00:00'")
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                conn.close()

    def _begin(self, cur: Any) -> Position:
        """Open a consistent read view; the binlog position it is exact at."""
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if self.mariadb:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%%'")
            status = {str(k): str(v) for k, v in cur.fetchall()}
            file, pos = status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"])
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
            [(gtid,)] = cur.fetchall()  # all of it: the cursor may be unbuffered
            return Position(file, pos, str(gtid) if gtid else None)
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            try:
                cur.execute("SHOW BINARY LOG STATUS")
            except pymysql.err.ProgrammingError:
                cur.execute("SHOW MASTER STATUS")
            [row] = cur.fetchall()
        finally:
            cur.execute("UNLOCK TABLES")
        gtid = row[4] if len(row) > 4 and row[4] else None
        return Position(str(row[0]), int(row[1]), gtid)

    def chunk(self, plan: TablePlan, after: list[Any] | None, rows: int) -> Chunk:
        """The next ``rows`` rows after the key ``after`` (None: from the start)."""
        conn = self._connection()
        with conn.cursor() as cur:
            position = self._begin(cur)
            try:
                sql = f"SELECT {plan.select_list} FROM {_ident(plan.schema)}.{_ident(plan.table)}"
                args: list[Any] = []
                if after is not None:
                    sql += " WHERE " + _after(plan.key)
                    args = _after_args(after)
                sql += " ORDER BY " + ", ".join(_ident(c) for c in plan.key) + " LIMIT %s"
                cur.execute(sql, [*args, rows])
                raw = cur.fetchall()
            finally:
                cur.execute("COMMIT")
        key_at = [plan.columns.index(c) for c in plan.key]
        converted = [_row(plan, values) for values in raw]
        last = [raw[-1][i] for i in key_at] if raw else after
        return Chunk(converted, last, position, done=len(raw) < rows)

    def whole(self, plan: TablePlan, rows: int) -> tuple[Position, Iterator[list[dict[str, Any]]]]:
        """A table without a usable key: one read view, streamed in pieces of ``rows``.

        The view stays open until the iterator is exhausted (or closed).
        """
        conn = self._connect(
            init_command="SET SESSION time_zone='+00:00'", cursorclass=pymysql.cursors.SSCursor
        )
        cur = conn.cursor()
        position = self._begin(cur)
        cur.execute(f"SELECT {plan.select_list} FROM {_ident(plan.schema)}.{_ident(plan.table)}")

        def pieces() -> Iterator[list[dict[str, Any]]]:
            try:
                while True:
                    raw = cur.fetchmany(rows)
                    if not raw:
                        return
                    yield [_row(plan, values) for values in raw]
            finally:
                with contextlib.suppress(Exception):  # broken: the view is gone either way
                    cur.close()
                    conn.close()

        return position, pieces()


def _row(plan: TablePlan, values: tuple[Any, ...]) -> dict[str, Any]:
    return {
        name: None if value is None else convert(value)
        for name, convert, value in zip(plan.columns, plan.converters, values, strict=True)
    }
