"""Binlog events → batches: the translation between the stream and the assembler.

One :class:`Translator` per opened stream (it starts at a transaction start
and knows nothing of what came before). It keeps the stream's file/pos and
GTID set, turns rows events into ``RowChange``s, and hands every query event
to :func:`pipeline.dialect.statements.classify`, whose kind alone decides what
happens (see the table there).

Event groups. A transaction is GTID [+ BEGIN] … Xid|COMMIT; a DDL or an
account statement is a group of its own (the server commits implicitly
around it). MariaDB marks single-statement groups in the GTID event
(``FL_STANDALONE``); MySQL writes BEGIN for transactions. A statement that is
passed over (statement-format DML, ANALYZE, …) ends its group only when the
group is standalone, so rows around it in a MIXED-format transaction stay.

XA transactions (MariaDB: GTID with ``FL_PREPARED_XA``, rows, ``XA END``,
``XA_PREPARE`` event; later a group of its own with ``XA COMMIT`` or ``XA
ROLLBACK``; MySQL: ``XA START`` … likewise):

* rows of an XA transaction are held, never cut into pieces, until its ``XA
  COMMIT`` is read; they are then delivered as one transaction that commits
  at the end of that event (an idle source after it holds nothing back), and
  dropped on ``XA ROLLBACK``;
* while a prepared transaction is unresolved, every position handed out is
  capped at its start (:meth:`Translator.cap`): a restart re-reads it, so its
  rows are never skipped. The transactions read meanwhile are delivered again
  after such a restart (at-least-once, like any replay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from loguru import logger
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from pipeline.dialect.statements import Statement, classify, drop_tables, references
from pipeline.errors import FatalError, masked_key
from pipeline.model import (
    UNKNOWN_TABLE,
    DdlChange,
    Position,
    RowChange,
    SchemaRecord,
    Skipped,
    SourceEvent,
)

from . import values as vals
from .batching import Assembler
from .gtids import GtidTracker
from .stream import RowsBody, Stream
from .tables import TableCatalog, TableFilter

#: The events the translator understands: all the selector asks the server for.
EVENTS = [
    QueryEvent,
    XidEvent,
    GtidEvent,
    MariadbGtidEvent,
    RotateEvent,
    HeartbeatLogEvent,
    TableMapEvent,
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    XAPrepareEvent,
]

# MariaDB Gtid_log_event flags
_FL_STANDALONE = 1
_FL_PREPARED_XA = 64

# Query-event flags2 bits (the same in MySQL and MariaDB) → the session variable they set
_FLAGS2 = {
    1 << 26: ("foreign_key_checks", "0", "1"),  # OPTION_NO_FOREIGN_KEY_CHECKS
    1 << 27: ("unique_checks", "0", "1"),  # OPTION_RELAXED_UNIQUE_CHECKS
}
_MARIADB_EXPLICIT_DEFAULTS_TS = 1 << 24  # MariaDB: explicit_defaults_for_timestamp in flags2

# sql_mode bits shared by MySQL 5.7/8.x and MariaDB (a DDL runs on the target in the
# source session's mode: zero-date defaults, ANSI_QUOTES, NO_BACKSLASH_ESCAPES… change
# what a statement means). Combination modes (ANSI, TRADITIONAL, ORACLE…) are left out:
# their member bits are set too; NO_AUTO_CREATE_USER is gone in MySQL 8 and moot here.
_SQL_MODE_BITS = [
    "REAL_AS_FLOAT",
    "PIPES_AS_CONCAT",
    "ANSI_QUOTES",
    "IGNORE_SPACE",
    "",  # IGNORE_BAD_TABLE_OPTIONS (MariaDB) / NOT_USED
    "ONLY_FULL_GROUP_BY",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_DIR_IN_CREATE",
    "",  # POSTGRESQL
    "",  # ORACLE
    "",  # MSSQL
    "",  # DB2
    "",  # MAXDB
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_FIELD_OPTIONS",
    "",  # MYSQL323
    "",  # MYSQL40
    "",  # ANSI
    "NO_AUTO_VALUE_ON_ZERO",
    "NO_BACKSLASH_ESCAPES",
    "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE",
    "ALLOW_INVALID_DATES",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "",  # TRADITIONAL
    "",  # NO_AUTO_CREATE_USER
    "HIGH_NOT_PRECEDENCE",
    "NO_ENGINE_SUBSTITUTION",
    "PAD_CHAR_TO_FULL_LENGTH",
]


def sql_mode_names(bits: int) -> str:
    """The portable ``sql_mode`` names of a query event's sql_mode bitmask."""
    return ",".join(name for i, name in enumerate(_SQL_MODE_BITS) if name and bits >> i & 1)


def session_of(event: Any, mariadb: bool) -> dict[str, str]:
    """The source session settings a DDL ran with, from its query event's status variables."""
    session: dict[str, str] = {}
    sql_mode = getattr(event, "sql_mode", None)
    if sql_mode is not None:
        session["sql_mode"] = sql_mode_names(int(sql_mode))
    time_zone = getattr(event, "time_zone", None)
    if time_zone:
        session["time_zone"] = bytes(time_zone).decode("ascii", "replace")
    flags2 = getattr(event, "flags2", None)
    if flags2 is not None:
        for bit, (name, when_set, when_clear) in _FLAGS2.items():
            session[name] = when_set if flags2 & bit else when_clear
        if mariadb:
            explicit = flags2 & _MARIADB_EXPLICIT_DEFAULTS_TS
            session["explicit_defaults_for_timestamp"] = "1" if explicit else "0"
    explicit_ts = getattr(event, "explicit_defaults_ts", None)
    if explicit_ts is not None and not mariadb:
        session["explicit_defaults_for_timestamp"] = "1" if explicit_ts else "0"
    return session


@dataclass(slots=True)
class _Prepared:
    """An XA transaction read up to its PREPARE: rows held until COMMIT or ROLLBACK."""

    start: Position
    rows: list[RowChange]


def skipped_dml(statement: Statement, schema: str, wanted: TableFilter) -> list[Skipped]:
    """How a statement-format DML is counted: once under each included table it changes;
    one that names no table (``WITH … UPDATE``, ``CALL``, ``DO``) under ``<schema>.?``
    (``?`` without a default database: it may change any table), unless ``schema``
    holds no included table."""
    if statement.tables:
        return [
            Skipped("dml", statement.verb, f"{table_schema}.{table}")
            for table_schema, table in statement.tables
            if wanted(table_schema, table)
        ]
    if schema and not wanted.schema_wanted(schema):
        return []
    return [
        Skipped("dml", statement.verb, f"{schema}.{UNKNOWN_TABLE}" if schema else UNKNOWN_TABLE)
    ]


class Translator:
    """Feeds one opened stream's events into an assembler (see the module docstring)."""

    def __init__(
        self,
        *,
        at: Position,
        assembler: Assembler,
        gtids: GtidTracker,
        stream: Stream,
        catalog: TableCatalog,
        table_filter: TableFilter,
        mariadb: bool,
        last_ts: float | None = None,
        on_ddl: Callable[[tuple[tuple[str, str], ...]], None] | None = None,
    ) -> None:
        self.file, self.pos = at.file, at.pos
        # a running snapshot's progress as of this point of the stream: every position
        # made here carries it (selector.snapshot), so a commit says where to continue
        self.snapshot = at.snapshot
        self.on_ddl = on_ddl
        self.assembler = assembler
        self.gtids = gtids
        self.stream = stream
        self.catalog = catalog
        self.filter = table_filter
        self.mariadb = mariadb
        self.last_ts = last_ts  # event time of the last event read (for lag)
        self._standalone = False  # the open group is one statement (no BEGIN…COMMIT)
        self._xa_rows: list[RowChange] | None = None  # rows of an XA transaction being read
        self._prepared: dict[tuple[bytes, bytes, int], _Prepared] = {}
        self._at: Position | None = None  # the position rows carry: their transaction's start
        self._at_start: Position | None = None  # ... which this was made from
        # table id -> (schema, table, TableInfo) of the catalog: one lookup per rows event
        self._known: dict[int, tuple[str, str, Any]] = {}

    def here(self, pos: int | None = None, ts: float = 0.0) -> Position:
        at = self.pos if pos is None else pos
        return Position(self.file, at, self.gtids.current(), 0, ts, self.snapshot)

    def cap(self, position: Position | None) -> Position | None:
        """``position``, or the start of the oldest unresolved prepared XA transaction before it."""
        if position is None or not self._prepared:
            return position
        oldest = min((p.start for p in self._prepared.values()), key=Position.sort_key)
        return oldest if oldest.sort_key() < position.sort_key() else position

    # -- events --------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        kind = type(event)
        if kind is RowsBody:  # the hot path (selector.stream; its compiled reader translates
            # the common case itself: selector._binlog)
            ts = float(event.timestamp)
            if ts:
                self.last_ts = ts
            self._rows(
                event.op,
                event.table_id,
                event.body,
                event.present,
                event.present_after,
                ts,
                event.log_pos - event.event_size,
                event.server_id,
            )
            return
        if kind is HeartbeatLogEvent:
            return
        end = event.packet.log_pos
        ts = float(event.timestamp)
        if ts:
            self.last_ts = ts
        assembler = self.assembler
        if kind is WriteRowsEvent or kind is UpdateRowsEvent or kind is DeleteRowsEvent:
            self._on_rows(event, ts)
        elif kind is TableMapEvent:
            if not self.filter(event.schema, event.table):
                # the reader drops rows events whose table_id is unknown, undecoded
                self.stream.forget_table(event.table_id)
                self.catalog.forget(event.table_id)
                self._known.pop(event.table_id, None)
            else:
                at = Position(self.file, end - event.packet.event_size)
                self.catalog.get(event.table_id, event.get_table(), event, at)
            self.stream.remember_map(event)
        elif kind is XidEvent:
            self._commit(end, ts)
        elif kind is XAPrepareEvent:
            self._on_xa_prepare(event, end, ts)
        elif kind is MariadbGtidEvent or kind is GtidEvent:
            assembler.begin(self.here())
            self.gtids.begin(event.gtid)
            flags = getattr(event, "flags", 0) if kind is MariadbGtidEvent else 0
            self._standalone = bool(flags & _FL_STANDALONE) or kind is GtidEvent
            if flags & _FL_PREPARED_XA:
                self._xa_rows = []
        elif kind is QueryEvent:
            self._on_query(event, end, ts)
        elif kind is RotateEvent:
            if event.timestamp == 0 and event.next_binlog == self.file:
                return  # the fake rotate that opens a dump
            self._forget_tables()  # table ids are per server run; a rotate may follow a restart
            self.file, self.pos = event.next_binlog, event.position
            assembler.advance(self.here())

    def _on_query(self, event: Any, end: int, ts: float) -> None:
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        statement = classify(event.query, schema)
        kind = statement.kind
        if kind == "transaction":
            self._on_transaction(statement, end, ts)
        elif statement.is_ddl:
            self._on_ddl(event, statement, schema, end, ts)
        elif kind == "account":
            # the text may hold a password: only the kind and the position are ever shown
            verb = f"{statement.verb} {statement.object}".strip()
            logger.info(
                "skipped an account statement ({}) at {}:{}: account and privilege changes"
                " never leave the source",
                verb,
                self.file,
                end,
            )
            self.assembler.note_skipped(Skipped("account", verb))
            self._end_group(end, ts)
        else:  # statement-format DML, ANALYZE/OPTIMIZE/…, temporary tables, unknown
            if kind == "dml":
                for skipped in skipped_dml(statement, schema, self.filter):
                    self.assembler.note_skipped(skipped)
            elif kind == "other":
                self.assembler.note_skipped(Skipped("other", statement.verb))
            if self._standalone or not self.assembler.in_txn:
                self._end_group(end, ts)

    def _on_transaction(self, statement: Statement, end: int, ts: float) -> None:
        assembler = self.assembler
        verb, action = statement.verb, statement.object
        if verb in ("BEGIN", "START"):
            if not assembler.in_txn:
                assembler.begin(self.here())
            self._standalone = False
        elif verb == "COMMIT":  # non-transactional engines end with a COMMIT query
            self._commit(end, ts)
        elif verb == "ROLLBACK" and action != "TO":
            self._end_group(end, ts)
        elif verb == "XA" and action == "START":
            self._standalone = False
            self._xa_rows = []
        elif verb == "XA" and action in ("COMMIT", "ROLLBACK") and statement.xid is not None:
            self._on_xa_end(statement.xid, action == "COMMIT", end, ts)
        # SAVEPOINT, ROLLBACK TO, RELEASE SAVEPOINT, XA END: inside a transaction, no effect

    def _on_ddl(self, event: Any, statement: Statement, schema: str, end: int, ts: float) -> None:
        assembler = self.assembler
        start = assembler.txn_start if assembler.txn_start is not None else self.here()
        self.pos = end
        self.gtids.commit()
        self._forget_tables()  # columns and ids change with DDL
        # every DDL moves the schema history, also of tables not replicated: a CREATE TABLE
        # … LIKE or a RENAME may bring one in
        history = self.catalog.history
        changes = history.apply(event.query, schema, start)
        if self.on_ddl is not None:
            self.on_ddl(statement.tables)
        records: tuple[SchemaRecord, ...] = ()
        if history.durable:  # stored with the position just after the statement
            record = history.record(
                event.query, schema, statement, self.here(ts=ts), self.filter.schema_wanted
            )
            records = (record,) if record is not None else ()
        if not self.filter.wanted(statement.tables):
            assembler.abort()
            if records:
                assembler.schema_change(records, self.here(ts=ts))
            else:
                assembler.advance(self.here(ts=ts))
            return
        query = event.query
        if statement.verb == "DROP" and statement.object == "TABLE":
            # `DROP TABLE included, excluded` must not drop the excluded one on a target
            kept = tuple(name for name in statement.tables if self.filter(*name))
            if len(kept) < len(statement.tables):
                query = drop_tables(kept)
                statement = replace(statement, tables=kept)
        ddl = DdlChange(
            schema,
            query,
            ts,
            start,
            self.gtids.last,
            kind=statement.kind,  # type: ignore[arg-type]  # a DDL kind (is_ddl)
            tables=statement.tables,
            session=session_of(event, self.mariadb),
            names=references(query, statement),
            table_changes=changes,
            event=SourceEvent(end - event.packet.event_size, event.packet.server_id),
            object=statement.object,
            verb=statement.verb,
        )
        assembler.ddl(ddl, self.here(ts=ts), records)

    def _forget_tables(self) -> None:
        self.catalog.forget()
        self.stream.forget_maps()
        self._known.clear()

    def _commit(self, end: int, ts: float) -> None:
        self.pos = end
        self.gtids.commit()
        self._xa_rows = None
        self.assembler.commit(self.here(ts=ts))

    def _end_group(self, end: int, ts: float) -> None:
        """A group that delivers nothing ended: move on past it."""
        self.pos = end
        self.gtids.commit()
        self._xa_rows = None
        self.assembler.abort()
        self.assembler.advance(self.here(ts=ts))

    # -- XA ------------------------------------------------------------------------

    def _on_xa_prepare(self, event: Any, end: int, ts: float) -> None:
        if event.one_phase:  # MySQL: XA COMMIT … ONE PHASE is logged as a prepare that commits
            rows, self._xa_rows = self._xa_rows or [], None
            self.assembler.rows(rows, split=False)
            self._commit(end, ts)
            return
        start = self.assembler.txn_start or self.here()
        xid = (bytes(event.xid_gtrid), bytes(event.xid_bqual), int(event.xid_format_id))
        self._prepared[xid] = _Prepared(start, self._xa_rows or [])
        self._end_group(end, ts)

    def _on_xa_end(self, xid: tuple[bytes, bytes, int], commit: bool, end: int, ts: float) -> None:
        prepared = self._prepared.pop(xid, None)
        if prepared is None:
            if commit:
                logger.warning(
                    "XA COMMIT at {}:{} of a transaction prepared before this stream's start"
                    " position: its rows are not in the binlog read from there",
                    self.file,
                    end,
                )
            self._end_group(end, ts)
            return
        if not commit:
            self._end_group(end, ts)
            return
        # delivered whole, in the group of the XA COMMIT: a piece of it must never carry a
        # position (a restart there would not see the rows held since the prepare)
        self.assembler.rows(prepared.rows, split=False)
        self._commit(end, ts)

    # -- rows ----------------------------------------------------------------------

    def _on_rows(self, event: Any, ts: float) -> None:
        """A rows event as the library reads it (the reference path)."""
        kind = type(event)
        packet = event.packet
        # the rest of the event is its row images: decoded by ferry (selector.values)
        body = packet.read(event.event_size - packet.read_bytes)
        op = (
            "insert"
            if kind is WriteRowsEvent
            else "update"
            if kind is UpdateRowsEvent
            else "delete"
        )
        second = event.columns_present_bitmap2 if kind is UpdateRowsEvent else None
        start = packet.log_pos - packet.event_size
        present = event.columns_present_bitmap
        self._rows(op, event.table_id, body, present, second, ts, start, packet.server_id)

    def _rows(
        self,
        op: str,
        table_id: int,
        body: bytes,
        present: bytes,
        present_after: bytes | None,
        ts: float,
        event_pos: int,
        server_id: int,
    ) -> None:
        assembler = self.assembler
        known = self._known.get(table_id)
        if known is None:
            table = self.stream.table_map[table_id]
            known = (table.schema, table.table, self.catalog.get(table_id, table))
            self._known[table_id] = known
        schema, name, info = known
        try:
            rows = vals.decode_rows(info.plan, body, present, present_after)
        except Exception as exc:
            where = f"{schema}.{name}"
            error = self._undecodable(where, event_pos, info, body, present, present_after, exc)
            raise error from exc
        xa_rows = self._xa_rows
        skipped = 0  # rows of this event delivered before a restart inside its transaction
        if assembler.skip and xa_rows is None:
            skipped = assembler.take_skip(len(rows))
            rows = rows[skipped:]
            if not rows:
                return
        start = assembler.txn_start
        if start is None:  # rows without BEGIN/GTID: treat as a transaction of its own
            assembler.begin(self.here())
            start = assembler.txn_start
            assert start is not None
        if xa_rows is not None:
            index = len(xa_rows)
        else:
            index = assembler.txn_done + len(assembler.txn or ())
        pk = info.primary_key
        gtid = self.gtids.pending
        at = self._at
        if at is None or at.ts != ts or self._at_start is not start:
            # one object while the transaction and the second last: a batch pickles it once
            at = self._at = Position(start.file, start.pos, start.gtid_set, 0, ts)
            self._at_start = start
        # the event's first row, skipped or not: a row's place in its event stays the same
        ev = SourceEvent(event_pos, server_id, index - skipped)
        defn = info.definition
        if op == "insert":
            changes = [
                RowChange(schema, name, "insert", None, row, pk, ts, at, gtid, index + i, defn, ev)
                for i, row in enumerate(rows)
            ]
        elif op == "update":
            changes = [
                RowChange(schema, name, "update", old, new, pk, ts, at, gtid, index + i, defn, ev)
                for i, (old, new) in enumerate(rows)
            ]
        else:
            changes = [
                RowChange(schema, name, "delete", row, None, pk, ts, at, gtid, index + i, defn, ev)
                for i, row in enumerate(rows)
            ]
        if xa_rows is not None:
            xa_rows.extend(changes)
        else:
            assembler.rows(changes)

    def _undecodable(
        self,
        table: str,
        event_pos: int,
        info: Any,
        body: bytes,
        present: bytes,
        present_after: bytes | None,
        exc: Exception,
    ) -> FatalError:
        """A rows event that does not decode: which table, column, row (its key, masked)
        and where in the binlog. Never the value itself: only the codec's reason."""
        where = f"the rows event at {self.file}:{event_pos}"
        found = vals.find_undecodable(info.plan, body, present, present_after)
        if found is None:
            message = f"cannot decode a row of {table} in {where}: {type(exc).__name__}: {exc}"
        else:
            column, error = found.column, found.error
            key = info.primary_key
            shown = "(the table has no key)"
            for image in found.images:
                if key and all(k in image and image[k] is not None for k in key):
                    shown = masked_key(key, [image[k] for k in key])
                    break
            charset = column.charset or column.text
            at = f"byte {error.start}"
            if error.end - error.start > 1:
                at = f"bytes {error.start}-{error.end - 1}"
            message = (
                f"cannot decode column {column.name!r} of {table} ({charset}) in the row with"
                f" key {shown}, in {where}: codec {column.text} cannot decode {at} of the"
                f" value ({error.reason})"
            )
        return FatalError(message, position=Position(self.file, event_pos))


def replace_gtid(at: Position, gtid_set: str | None) -> Position:
    return replace(at, gtid_set=gtid_set)
