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

import base64
import contextlib
import datetime
import json
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pymysql
import pymysql.converters
import pymysql.cursors
from loguru import logger
from pymysql.constants import FIELD_TYPE

from pipeline.dialect import ident
from pipeline.dialect.statements import classify, references
from pipeline.errors import FatalError
from pipeline.model import (
    DdlChange,
    JsonText,
    Position,
    RowChange,
    SnapshotProgress,
    TableSchema,
    ZeroDate,
)

from .batching import Piece
from .tables import unique_key
from .values import json_columns, single_precision

_NO_TABLE = 1146  # ER_NO_SUCH_TABLE: dropped while the snapshot reads it
_NO_DATABASE = 1049  # ER_BAD_DB_ERROR


class TableMissing(FatalError):
    """A table to snapshot does not exist (dropped since it was asked for)."""


UTC = datetime.UTC

Convert = Callable[[Any], Any]


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


def _iso_datetime(text: str) -> Any:
    """DATETIME/TIMESTAMP text as the driver's decoder, 20x faster (C); zero dates stay text."""
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return text


def _iso_date(text: str) -> Any:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        return text


# pymysql's decoders, with C-speed parsing of the temporal types that dominate wide reads
_DECODERS = {
    **pymysql.converters.conversions,
    FIELD_TYPE.DATETIME: _iso_datetime,
    FIELD_TYPE.TIMESTAMP: _iso_datetime,
    FIELD_TYPE.DATE: _iso_date,
}

_UTC_SESSION = "SET SESSION time_zone='+00:00'"  # TIMESTAMPs are read as UTC instants

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
    converting: tuple[tuple[int, Convert], ...]  # the columns whose driver value is converted
    select_list: str  # the columns as read, then the key columns as stored
    key: tuple[str, ...]  # the primary key, else a unique NOT NULL one; empty: none (one pass)
    estimated_rows: int

    @property
    def resumable(self) -> bool:
        return bool(self.key)


@dataclass(slots=True)
class Chunk:
    """Rows of one read, in key order, exact at ``position``."""

    rows: list[tuple[Any, ...]]  # converted values, in the plan's column order
    keys: list[list[Any]]  # each row's key as the driver gives it (for the next chunk's WHERE)
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
            raise TableMissing(f"snapshot: table {schema}.{table} does not exist on the source")
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
        try:  # information_schema shows what the user may see: make sure it may read it all
            cur.execute(f"SELECT * FROM {ident(schema)}.{ident(table)} LIMIT 0")
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else None
            if code in (1142, 1143):  # SELECT (or a column of it) denied
                raise FatalError(
                    f"snapshot: cannot read {schema}.{table}: {exc.args[1]}; grant the source"
                    " user SELECT on every included table"
                ) from exc
            raise
    key = unique_key(lambda sql, args: _rows(conn, sql, args), schema, table)
    names, expressions, converters = [], [], []
    for name, data_type, _, _ in columns:
        kind = "json" if str(name) in json_text else str(data_type).lower()
        template, convert = _READ.get(kind, ("{c}", _plain))
        names.append(str(name))
        expressions.append(template.format(c=ident(str(name))))
        converters.append(convert)
    return TablePlan(
        schema,
        table,
        tuple(names),
        tuple((i, c) for i, c in enumerate(converters) if c is not _plain),
        ", ".join([*expressions, *(ident(c) for c in key)]),
        key,
        int(row[0] or 0) if row else 0,
    )


def _rows(conn: Any, sql: str, args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _select(cur: Any, plan: TablePlan, sql: str, args: list[Any] | None = None) -> None:
    """Run a read of ``plan``'s table; a table dropped since it was planned is TableMissing."""
    try:
        cur.execute(sql, args)
    except pymysql.err.ProgrammingError as exc:
        if exc.args and exc.args[0] == _NO_TABLE:
            raise TableMissing(f"snapshot: table {plan.schema}.{plan.table} was dropped") from exc
        raise


def _after(key: tuple[str, ...]) -> str:
    """``(a > %s) OR (a = %s AND b > %s) …``: rows after a key, in key order."""
    terms = []
    for i, column in enumerate(key):
        equal = [f"{ident(c)} = %s" for c in key[:i]]
        terms.append("(" + " AND ".join([*equal, f"{ident(column)} > %s"]) + ")")
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
            self._conn = self._connect(
                init_command="SET SESSION time_zone='+00:00'", conv=_DECODERS
            )
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
        try:
            cur.execute("FLUSH TABLES WITH READ LOCK")
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] in (1045, 1227):  # access denied: no RELOAD
                raise FatalError(
                    "snapshot on MySQL: FLUSH TABLES WITH READ LOCK was refused"
                    f" ({exc.args[1]}); it takes the binlog position of each chunk's read"
                    " view: grant the source user RELOAD (MariaDB needs no lock)"
                ) from exc
            raise
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
                sql = f"SELECT {plan.select_list} FROM {ident(plan.schema)}.{ident(plan.table)}"
                args: list[Any] = []
                if after is not None:
                    sql += " WHERE " + _after(plan.key)
                    args = _after_args(after)
                sql += " ORDER BY " + ", ".join(ident(c) for c in plan.key) + " LIMIT %s"
                _select(cur, plan, sql, [*args, rows])
                raw = cur.fetchall()
            finally:
                cur.execute("COMMIT")
        width = len(plan.columns)
        converted = [_convert(plan, values[:width]) for values in raw]
        keys = [list(values[width:]) for values in raw]
        return Chunk(converted, keys, position, done=len(raw) < rows)

    def whole(self, plan: TablePlan, rows: int) -> tuple[Position, Iterator[list[tuple[Any, ...]]]]:
        """A table without a usable key: one read view, streamed in pieces of ``rows``.

        The view stays open until the iterator is exhausted (or closed).
        """
        conn = self._connect(
            init_command=_UTC_SESSION,
            cursorclass=pymysql.cursors.SSCursor,
            conv=_DECODERS,
        )
        cur = conn.cursor()
        position = self._begin(cur)
        _select(
            cur, plan, f"SELECT {plan.select_list} FROM {ident(plan.schema)}.{ident(plan.table)}"
        )

        def pieces() -> Iterator[list[tuple[Any, ...]]]:
            try:
                while True:
                    raw = cur.fetchmany(rows)
                    if not raw:
                        return
                    yield [_convert(plan, values) for values in raw]  # no key: no extra columns
            finally:
                with contextlib.suppress(Exception):  # broken: the view is gone either way
                    cur.close()
                    conn.close()

        return position, pieces()


def _convert(plan: TablePlan, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as the binlog decoder would give its values (only some columns need it)."""
    if not plan.converting:
        return values
    out = list(values)
    for index, convert in plan.converting:
        if out[index] is not None:
            out[index] = convert(out[index])
    return tuple(out)


class Reads(list):
    """A chunk's rows as ``read`` RowChanges, pickled as column names plus value tuples.

    Chunks cross from the decoder process to the node: value tuples pickle in two
    thirds of the time of RowChanges with dicts, and the node builds the RowChanges
    faster than it unpickles them. With ``build=False`` (the decoder process, which
    only ships them) the list stays empty until it is unpickled on the other side.
    """

    def __init__(self, meta: tuple[Any, ...], rows: list[tuple[Any, ...]], build: bool) -> None:
        super().__init__(build_reads(meta, rows) if build else ())
        self.meta = meta
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        return (build_reads, (self.meta, self.rows))


def build_reads(meta: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> list[RowChange]:
    """RowChanges of a chunk's value tuples; ``meta`` = (schema, table, key, ts, position,
    columns, index of the first row, the table's definition)."""
    schema, table, key, ts, at, columns, first, definition = meta
    return [
        RowChange(schema, table, "read", None, dict(zip(columns, values, strict=True)), key, ts,
                  at, None, first + i, definition)
        for i, values in enumerate(rows)
    ]  # fmt: skip


# -- the schedule: which chunk next, and when the stream may hand it out -------------------

_TAGS: dict[type, str] = {
    int: "i",
    str: "s",
    bytes: "b",
    Decimal: "n",
    datetime.datetime: "dt",
    datetime.date: "d",
    datetime.timedelta: "t",
    float: "f",
}


def encode_key(values: list[Any]) -> str:
    """A key as driver values, as JSON text that keeps their types (for the position)."""
    out = []
    for value in values:
        tag = _TAGS.get(type(value), "s")
        if tag == "b":
            out.append([tag, base64.b64encode(value).decode()])
        elif tag == "t":
            out.append([tag, value // datetime.timedelta(microseconds=1)])
        elif tag in ("dt", "d"):
            out.append([tag, value.isoformat()])
        elif tag in ("n", "f"):
            out.append([tag, repr(value) if tag == "f" else str(value)])
        else:
            out.append([tag, value])
    return json.dumps(out)


def decode_key(text: str) -> list[Any]:
    values: list[Any] = []
    for tag, value in json.loads(text):
        if tag == "b":
            values.append(base64.b64decode(value))
        elif tag == "t":
            values.append(datetime.timedelta(microseconds=value))
        elif tag == "dt":
            values.append(datetime.datetime.fromisoformat(value))
        elif tag == "d":
            values.append(datetime.date.fromisoformat(value))
        elif tag == "n":
            values.append(Decimal(value))
        elif tag == "f":
            values.append(float(value))
        else:
            values.append(value)
    return values


@dataclass(slots=True)
class _Pending:
    """A chunk read and not yet handed out: it waits until the stream reaches its position."""

    plan: TablePlan
    position: Position
    rows: Iterator[list[tuple[Any, ...]]] | list[tuple[Any, ...]]
    keys: list[list[Any]]  # per row, for a keyed table
    done: bool  # the table ends with this chunk


class Snapshotter:
    """The snapshot of one selector: reads the next chunk, says when the stream may hand it out,
    and cuts it into pieces that carry the progress (see the module docstring).

    ``progress`` is the snapshot's state as of the stream's current point: positions
    handed out carry it, so the committed position says where a restart continues.
    """

    def __init__(
        self,
        reader: Reader,
        control: Callable[[], Any],
        chunk_rows: int,
        batch_rows: int,
        progress: SnapshotProgress | None,
        before_read: Callable[[], None] = lambda: None,
        build_reads: bool = True,
        definition: Callable[[str, str, list[str]], TableSchema | None] = lambda *_: None,
    ) -> None:
        self.build_reads = build_reads  # False in the decoder process (see Reads)
        self._reader = reader
        self._definition = definition  # the table's definition for rows of these columns
        self._before_read = before_read
        self._control = control
        self.chunk_rows = chunk_rows
        self.batch_rows = batch_rows
        self.progress = progress if progress is not None and progress.tables else None
        self._pending: _Pending | None = None
        self._plans: dict[str, TablePlan] = {}

    @property
    def active(self) -> bool:
        return self.progress is not None

    def begin(
        self, request: str, tables: list[str], started: float, databases: list[str] | None = None
    ) -> list[DdlChange]:
        """Start a snapshot of ``tables`` ("schema.table"); returns the DDL that creates each
        missing database and table on a sink that applies DDL (SHOW CREATE DATABASE / TABLE:
        the binlog may not hold those statements), to hand out before any of their rows:
        each database once, before its first table. ``databases`` adds databases to create
        even if none of ``tables`` is in them (an included database without tables yet,
        whose later ``CREATE TABLE`` needs it on the target)."""
        estimates = []
        ddls = []
        created: set[str] = set()
        conn = self._control()
        for name in tables:
            schema, _, table = name.partition(".")
            plan = self._plan(name)
            estimates.append((name, plan.estimated_rows))
            with conn.cursor() as cur:
                cur.execute(f"SHOW CREATE TABLE {ident(schema)}.{ident(table)}")
                statement = str(cur.fetchone()[1])
            if schema not in created:
                created.add(schema)
                database = _show_create_database(conn, schema)
                if database is not None:
                    ddls.append(database)
            ddls.append(_create_if_missing(schema, table, statement))
        for schema in databases or ():
            if schema not in created:
                created.add(schema)
                database = _show_create_database(conn, schema)
                if database is not None:
                    ddls.append(database)
        self.progress = SnapshotProgress(
            request, tuple(tables), None, 0, (), tuple(estimates), started
        )
        self._pending = None
        return ddls

    def changed(self, tables: tuple[tuple[str, str], ...]) -> None:
        """A DDL changed ``tables``: their plans are stale; a chunk read before it is too."""
        names = {f"{schema}.{table}" for schema, table in tables}
        for name in names:
            self._plans.pop(name, None)
        pending = self._pending
        if pending is not None and f"{pending.plan.schema}.{pending.plan.table}" in names:
            self._pending = None
        progress = self.progress
        if progress is not None and progress.table in names and (progress.rows or progress.after):
            logger.warning(
                "snapshot: {} changed (DDL) while it was read: reading it again from its start",
                progress.table,
            )
            self.progress = replace(progress, after=None, rows=0)

    def _plan(self, name: str) -> TablePlan:
        plan = self._plans.get(name)
        if plan is None:
            schema, _, table = name.partition(".")
            plan = self._plans[name] = plan_table(self._control(), schema, table)
        return plan

    def due(self, at: Position) -> bool:
        """True when a chunk can be handed out now, with the stream at ``at`` (a transaction
        boundary): reads the next chunk first when none is pending."""
        if self.progress is None:
            return False
        if self._pending is None:
            self._read()
            if self._pending is None:
                return False
        pending = self._pending.position
        if _order(at) > _order(pending):
            # the stream passed the chunk's position without handing it out (it cannot
            # between boundaries): read it again at a later position, never out of order
            logger.warning(
                "snapshot: stream at {} passed chunk at {}; reading it again", at, pending
            )
            self._pending = None
            return False
        return _order(at) == _order(pending)

    def _read(self) -> None:
        progress = self.progress
        assert progress is not None
        self._before_read()
        while progress.tables:
            name = progress.tables[0]
            try:
                plan = self._plan(name)
                if plan.resumable:
                    after = decode_key(progress.after) if progress.after else None
                    chunk = self._reader.chunk(plan, after, self.chunk_rows)
                    pending = _Pending(plan, chunk.position, chunk.rows, chunk.keys, chunk.done)
                else:
                    if progress.rows:
                        logger.warning(
                            "snapshot: {} has no primary or unique NOT NULL key: it is read"
                            " again from its start (its rows before the restart are delivered"
                            " twice)",
                            name,
                        )
                        progress = self.progress = replace(progress, rows=0)
                    position, pieces = self._reader.whole(plan, self.batch_rows)
                    pending = _Pending(plan, position, pieces, [], True)
            except TableMissing:
                # dropped before its first or between two chunks (its DROP TABLE is in the
                # stream after the rows read so far: consumers see the rows, then the drop)
                logger.warning("snapshot: table {} no longer exists; skipped", name)
                self._plans.pop(name, None)
                progress = self.progress = _next_table(progress, name, progress.rows)
                continue
            self._pending = pending
            return
        self.progress = None

    def pieces(self, ts: float) -> Generator[Piece, None, None]:
        """Hand the pending chunk out as pieces of at most ``batch_rows`` rows, each at the
        chunk's position with the progress after its last row. The stream must wait
        until the iterator is exhausted."""
        pending, self._pending = self._pending, None
        assert pending is not None and self.progress is not None
        plan, at = pending.plan, pending.position
        name = f"{plan.schema}.{plan.table}"
        rows_iter = [pending.rows] if isinstance(pending.rows, list) else pending.rows
        for rows in rows_iter:
            for start in range(0, len(rows), self.batch_rows):
                part = rows[start : start + self.batch_rows]
                if not part:
                    continue
                progress = self.progress
                defn = self._definition(plan.schema, plan.table, list(plan.columns))
                meta = (
                    plan.schema,
                    plan.table,
                    plan.key,
                    ts,
                    at,
                    plan.columns,
                    progress.rows,
                    defn,
                )
                changes = Reads(meta, part, self.build_reads)
                end = start + len(part) - 1
                after = encode_key(pending.keys[end]) if pending.keys else None
                progress = replace(progress, after=after, rows=progress.rows + len(part))
                self.progress = progress
                yield Piece(changes, replace(at, snapshot=progress))
        if pending.done:
            self.progress = _next_table(self.progress, name, self.progress.rows)
            final = self.progress
            if not final.tables:
                self.progress = None
            yield Piece([], replace(at, snapshot=final))


def _next_table(progress: SnapshotProgress, name: str, rows: int) -> SnapshotProgress:
    logger.info("snapshot: {} done ({} rows)", name, rows)
    done = (*progress.done, (name, rows))
    return replace(progress, tables=progress.tables[1:], after=None, rows=0, done=done)


def _order(at: Position) -> tuple[str, int, int]:
    """Binlog order of a stream point (a row offset plays no part between transactions)."""
    return at.sort_key()[:3]


def _show_create_database(conn: Any, schema: str) -> DdlChange | None:
    """``schema``'s ``CREATE DATABASE IF NOT EXISTS`` with its character set and collation
    (SHOW CREATE DATABASE), or None when it was dropped meanwhile."""
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW CREATE DATABASE {ident(schema)}")
            statement = str(cur.fetchone()[1])
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] == _NO_DATABASE:
            logger.warning("snapshot: database {} no longer exists; not created", schema)
            return None
        raise
    sql = re.sub(r"^CREATE DATABASE ", "CREATE DATABASE IF NOT EXISTS ", statement, count=1)
    parsed = classify(sql, schema)
    return DdlChange(
        schema,
        sql,
        time.time(),
        Position("", 0),
        kind="database",
        tables=parsed.tables,
        names=references(sql, parsed),
        object="DATABASE",
        verb="CREATE",
    )


def _create_if_missing(schema: str, table: str, statement: str) -> DdlChange:
    sql = re.sub(r"^CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", statement, count=1)
    parsed = classify(sql, schema)
    return DdlChange(
        schema,
        sql,
        time.time(),
        Position("", 0),
        kind="table",
        tables=parsed.tables,
        session={"sql_mode": "NO_AUTO_VALUE_ON_ZERO", "foreign_key_checks": "0"},
        names=references(sql, parsed),
        object=parsed.object,
        verb=parsed.verb,
    )
