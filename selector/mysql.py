"""The binlog selector: MySQL 5.7/8.x and MariaDB 10.5+ through mysql-replication.

How it reads (facts about mysql-replication 1.0.17 this relies on):

* The dump is always by file/pos (``is_mariadb=False``): with ``is_mariadb=True``
  the reader ignores ``log_file``/``log_pos``. GTIDs are tracked alongside
  (MariaDB ``domain-server-seq`` per domain; MySQL ``uuid:interval`` sets).
* Blocking mode with ``slave_heartbeat``: the server sends a heartbeat when
  idle, so ``fetchone`` returns at least every heartbeat period and ``select``
  keeps its deadline. The period is at most ``batch_max_wait_ms``: at the end
  of the binlog the read blocks until the next event, so a longer period
  would hold the last batch before a pause in writes back by up to a period.
  ``read_timeout`` is a few heartbeats, so a dead TCP peer is noticed too.
* The reader's own reconnect (``fetchone`` silently reopens at its last event,
  possibly mid-transaction) is disabled by :class:`_Stream`; this selector
  reopens at a transaction start it knows (the last position handed out, or
  the committed one after a rollback) and raises ``ResumableError`` when that
  fails for ``connect_timeout_ms``.
* Filtering happens before rows are decoded: a ``TableMapEvent`` of an
  excluded table is removed from the reader's ``table_map``, which makes the
  reader drop that table's rows events without parsing their rows; exact
  schema lists also go to ``only_schemas``/``ignored_schemas`` so those table
  maps are not even parsed.

Positions follow ``pipeline.model``: a batch's position is the end of its last
transaction (= start of the next); a split transaction's piece is
``(transaction start, row_offset)``. Value types: see ``selector.values``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import socket
import threading
import time
from typing import Any

import pymysql
from loguru import logger
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import row_event as lib_row_event
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

from pipeline.errors import FatalError, ResumableError, classify
from pipeline.model import Batch, DdlChange, Position, RowChange

from . import values as vals
from .base import PositionStore, Selector
from .batching import Assembler, Ledger, Piece
from .checks import binlog_files, check_source, connect, master_status, require, server_checks
from .config import FilePosStart, GtidStart, MySQLSourceConfig
from .gtids import GtidTracker

__all__ = ["MySQLSelector", "check_source"]

_EVENTS = [
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
_PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone or invalid
_GLOB_CHARS = re.compile(r"[*?\[]")
_DDL_TABLE = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*(?:CREATE|ALTER|DROP|RENAME|TRUNCATE)\s+(?:OR\s+REPLACE\s+)?"
    r"(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"(`(?:[^`]|``)+`|\w+)(?:\s*\.\s*(`(?:[^`]|``)+`|\w+))?",
    re.IGNORECASE | re.DOTALL,
)


class _StreamLost(Exception):
    """The dump connection broke; the selector reopens it itself."""


class _Stream(BinLogStreamReader):
    """A BinLogStreamReader that connects once and never reconnects on its own.

    ``fetchone`` calls the (name-mangled) ``__connect_to_stream`` again after a
    lost connection and resumes at its last event, which may be inside a
    transaction; refusing the second call turns that into ``_StreamLost``.
    """

    _ferry_connected = False

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._ferry_connected:
            raise _StreamLost("binlog dump connection lost")
        self._ferry_connected = True
        BinLogStreamReader._BinLogStreamReader__connect_to_stream(self)

    def open(self) -> None:
        """Connect now (control and dump), so that connection errors surface here."""
        self._BinLogStreamReader__connect_to_ctl()
        self._BinLogStreamReader__connect_to_stream()

    def interrupt(self) -> None:
        """Wake a blocked read from another thread."""
        conn = getattr(self, "_stream_connection", None)
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _pymysql_connect(**settings: Any) -> Any:
    """pymysql.connect without the deprecated names the library passes (db, passwd)."""
    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return pymysql.connect(**settings)


class TableFilter:
    """include/exclude globs on ``schema.table`` (fnmatch, case-sensitive), memoised."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = include
        self.exclude = exclude
        self._memo: dict[tuple[str, str], bool] = {}

    def __call__(self, schema: str, table: str) -> bool:
        key = (schema, table)
        verdict = self._memo.get(key)
        if verdict is None:
            name = f"{schema}.{table}"
            verdict = any(fnmatch.fnmatchcase(name, g) for g in self.include) and not any(
                fnmatch.fnmatchcase(name, g) for g in self.exclude
            )
            self._memo[key] = verdict
        return verdict

    def schema_wanted(self, schema: str) -> bool:
        """Some table of ``schema`` may be included (for DDL whose table is unknown)."""
        if any(
            g.split(".", 1)[1] == "*" and fnmatch.fnmatchcase(schema, g.split(".", 1)[0])
            for g in self.exclude
        ):
            return False
        return any(fnmatch.fnmatchcase(schema, g.split(".", 1)[0]) for g in self.include)

    def exact_schemas(self) -> tuple[list[str] | None, list[str] | None]:
        """(only_schemas, ignored_schemas) where the globs make them exact, else None."""
        only = None
        schemas = [g.split(".", 1)[0] for g in self.include]
        if not any(_GLOB_CHARS.search(s) for s in schemas):
            only = sorted(set(schemas))
        ignored = sorted(
            {
                g.split(".", 1)[0]
                for g in self.exclude
                if g.split(".", 1)[1] == "*" and not _GLOB_CHARS.search(g.split(".", 1)[0])
            }
        )
        return only, ignored or None


class _TableInfo:
    """What the selector needs per table: key columns and value fixes."""

    __slots__ = ("fixers", "primary_key")

    def __init__(self, primary_key: tuple[str, ...], fixers: list[vals.Fixer]) -> None:
        self.primary_key = primary_key
        self.fixers = fixers


class MySQLSelector(Selector):
    """get/ack/rollback over the binlog of one MySQL or MariaDB server."""

    def __init__(
        self,
        config: MySQLSourceConfig,
        batch_max_rows: int,
        batch_max_wait_ms: int,
        store: PositionStore,
        pipeline_id: str = "",
    ) -> None:
        self.config = config
        self.max_rows = batch_max_rows
        self.max_wait_s = batch_max_wait_ms / 1000.0
        self.heartbeat_s = min(config.heartbeat_ms, batch_max_wait_ms) / 1000.0
        self.pipeline_id = pipeline_id
        self.filter = TableFilter(config.include, config.exclude)
        self._ledger = Ledger(store, None, pipeline_id)
        self._assembler = Assembler(batch_max_rows, None)
        self._stream: _Stream | None = None
        self._ctl: Any = None  # control connection (positions, information_schema)
        self._mariadb = False
        self._full_metadata = True
        self._tables: dict[int, _TableInfo] = {}
        self._gtids = GtidTracker(False, None)
        self._file = ""
        self._pos = 0
        self._last_ts: float | None = None
        self._stopping = threading.Event()
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        conn = self._control()
        warnings = require(server_checks(conn, self.config.user))
        for warning in warnings:
            logger.warning("source: {}", warning)
        self._full_metadata = not any("binlog_row_metadata" in w for w in warnings)
        version = self._query_one("SELECT VERSION()")[0]
        flavor = self.config.flavor
        self._mariadb = (
            "mariadb" in str(version).lower() if flavor == "auto" else flavor == "mariadb"
        )
        committed = self._ledger.load()
        if committed is None:
            self._ledger.origin = self._resolve_start()
        at = self._ledger.resume_point
        assert at is not None
        logger.info(
            "selector start pipeline={} server={} flavor={} at={} ({})",
            self.pipeline_id,
            version,
            "mariadb" if self._mariadb else "mysql",
            at,
            "committed" if committed is not None else f"start={self._start_text()}",
        )
        self._open(at)
        self._started = True

    @property
    def resume_point(self) -> Position | None:
        """Where a rollback reopens: the committed position, else the resolved start."""
        return self._ledger.resume_point

    def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.interrupt()

    def _shutdown(self) -> None:
        """After stop(): release both connections (the next start() reopens)."""
        self._close()
        ctl, self._ctl = self._ctl, None
        if ctl is not None:
            with contextlib.suppress(Exception):
                ctl.close()
        self._started = False

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            # a broken socket may fail to close; it is gone anyway
            with contextlib.suppress(Exception):
                stream.close()

    def _start_text(self) -> str:
        start = self.config.start
        return start if isinstance(start, str) else str(start.model_dump())

    # -- control connection ----------------------------------------------------------

    def _control(self) -> Any:
        if self._ctl is not None:
            try:
                self._ctl.ping(reconnect=False)
                return self._ctl
            except Exception:
                self._ctl = None
        try:
            self._ctl = connect(self.config)
        except Exception as exc:
            raise classify(exc, f"cannot connect to the source: {exc}") from exc
        return self._ctl

    def _query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        try:
            with self._control().cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise classify(exc, f"source query failed ({sql.split()[0]}): {exc}") from exc

    def _query_one(self, sql: str, args: Any = None) -> tuple[Any, ...]:
        rows = self._query(sql, args)
        return rows[0] if rows else ()

    def _binlogs(self) -> list[tuple[str, int]]:
        try:
            return binlog_files(self._control())
        except pymysql.MySQLError as exc:
            raise classify(exc, f"source query failed (SHOW BINARY LOGS): {exc}") from exc

    def _master_status(self) -> tuple[Any, ...]:
        try:
            return master_status(self._control())
        except pymysql.MySQLError as exc:
            raise classify(exc) from exc

    # -- positions -------------------------------------------------------------------

    def _resolve_start(self) -> Position:
        start = self.config.start
        if start == "latest":
            status = self._master_status()
            gtid = status[4] if not self._mariadb and len(status) > 4 and status[4] else None
            return Position(str(status[0]), int(status[1]), gtid or None)
        if start == "earliest":
            first = self._binlogs()[0][0]
            gtid = None
            if not self._mariadb:
                gtid = self._query_one("SELECT @@GLOBAL.gtid_purged")[0] or None
            return Position(first, 4, gtid)
        if isinstance(start, FilePosStart):
            return Position(start.file, start.pos)
        assert isinstance(start, GtidStart)
        return self._gtid_to_position(start.gtid)

    def _gtid_to_position(self, gtid: str) -> Position:
        """Find file/pos of the first transaction after ``gtid`` with a short GTID dump."""
        settings = self._settings()
        probe = _Stream(
            settings,
            server_id=self.config.server_id,
            blocking=True,
            auto_position=gtid,
            is_mariadb=self._mariadb,
            slave_heartbeat=self.heartbeat_s,
            only_events=[RotateEvent, GtidEvent, MariadbGtidEvent, HeartbeatLogEvent],
            enable_logging=False,
            pymysql_wrapper=_pymysql_connect,
        )
        file, pos = "", 4
        try:
            probe.open()
            deadline = time.monotonic() + self.config.connect_timeout_ms / 1000.0
            while time.monotonic() < deadline:
                event = probe.fetchone()
                if isinstance(event, RotateEvent):
                    file, pos = event.next_binlog, event.position
                elif isinstance(event, GtidEvent | MariadbGtidEvent):
                    pos = event.packet.log_pos - event.packet.event_size
                    return Position(file, pos, gtid)
                elif isinstance(event, HeartbeatLogEvent):
                    # caught up: nothing after the GTID yet; continue at the server's end
                    status = self._master_status()
                    return Position(str(status[0]), int(status[1]), gtid)
        except pymysql.MySQLError as exc:
            raise FatalError(f"start gtid {gtid!r} cannot be served by the source: {exc}") from exc
        finally:
            probe.close()
        raise ResumableError(f"could not locate start gtid {gtid!r} in time")

    def _check_position(self, at: Position) -> None:
        logs = self._binlogs()
        if not logs:
            raise FatalError("the source has no binary logs")
        sizes = dict(logs)
        if at.file not in sizes or at.pos > sizes[at.file]:
            raise FatalError(
                f"binlog position {at.file}:{at.pos} no longer exists on the source"
                f" (oldest available: {logs[0][0]}, newest: {logs[-1][0]}:{logs[-1][1]});"
                " the binlog was purged or the position is wrong: reset it with"
                " `ferry position --set` and re-snapshot the tables",
                pipeline=self.pipeline_id or None,
                position=at,
            )

    def _gtid_state_at(self, at: Position) -> str | None:
        if at.gtid_set is not None:
            return at.gtid_set
        if self._mariadb:
            row = self._query_one("SELECT BINLOG_GTID_POS(%s, %s)", (at.file, at.pos))
            return str(row[0]) if row and row[0] is not None else None
        return None

    # -- the stream ------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        heartbeat = self.config.heartbeat_ms / 1000.0
        return {
            "host": self.config.host,
            "port": self.config.port,
            "user": self.config.user,
            "password": self.config.password.get_secret_value(),
            "connect_timeout": max(1, self.config.connect_timeout_ms // 1000),
            # a silent peer is dead after a few missed heartbeats
            "read_timeout": max(2, int(heartbeat * 4 + 1)),
            "charset": "utf8mb4",
        }

    def _open(self, at: Position) -> None:
        """(Re)open the dump at ``at`` (a transaction start), with a fresh assembler."""
        self._close()
        self._check_position(at)
        self._tables.clear()
        self._gtids = GtidTracker(self._mariadb, self._gtid_state_at(at))
        self._file, self._pos = at.file, at.pos
        self._assembler = Assembler(self.max_rows, replace_gtid(at, self._gtids.current()))
        only, ignored = self.filter.exact_schemas()
        stream = _Stream(
            self._settings(),
            server_id=self.config.server_id,
            blocking=True,
            resume_stream=True,
            log_file=at.file,
            log_pos=at.pos,
            is_mariadb=False,  # file/pos dump; see module docstring
            slave_heartbeat=self.heartbeat_s,
            only_events=_EVENTS,
            only_schemas=only,
            ignored_schemas=ignored,
            use_column_name_cache=not self._full_metadata,
            enable_logging=False,
            pymysql_wrapper=_pymysql_connect,
        )
        try:
            stream.open()
        except pymysql.MySQLError as exc:
            stream.close()
            raise self._stream_error(exc, at) from exc
        self._stream = stream

    def _stream_error(self, exc: BaseException, at: Position) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code == _PURGED:
            oldest = ""
            with contextlib.suppress(Exception):
                oldest = f" (oldest available: {self._binlogs()[0][0]})"
            return FatalError(
                f"the source cannot serve binlog position {at.file}:{at.pos}{oldest}: {exc}",
                pipeline=self.pipeline_id or None,
                position=at,
            )
        return classify(exc)

    def _reconnect(self, cause: BaseException) -> None:
        """Reopen after a lost connection at the last position handed out, within the bound."""
        at = self._ledger.stream_point
        assert at is not None
        logger.warning("binlog connection lost ({}); reconnecting at {}", cause, at)
        self._close()
        deadline = time.monotonic() + self.config.connect_timeout_ms / 1000.0
        delay = 0.05
        while True:
            try:
                self._open(at)
                logger.info("binlog reconnected at {}", at)
                return
            except FatalError:
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline or self._stopping.is_set():
                    raise ResumableError(
                        f"cannot reconnect to the source binlog within"
                        f" {self.config.connect_timeout_ms} ms: {exc}",
                        pipeline=self.pipeline_id or None,
                        position=at,
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- Selector ----------------------------------------------------------------------

    def select(self) -> Batch:
        if self._stopping.is_set():  # stopped: nothing more, promptly
            self._shutdown()
            return self._ledger.hand_out(Piece([], None))
        if not self._started:
            raise FatalError("select() before start()")
        assembler = self._assembler
        deadline = time.monotonic() + self.max_wait_s
        while True:
            if assembler.ready:
                return self._ledger.hand_out(assembler.ready.popleft())
            if self._stopping.is_set():
                self._shutdown()
                return self._ledger.hand_out(Piece([], None))
            if not assembler.in_txn and time.monotonic() >= deadline:
                assembler.flush()
                piece = assembler.ready.popleft() if assembler.ready else Piece([], None)
                return self._ledger.hand_out(piece)
            stream = self._stream
            try:
                if stream is None:
                    raise _StreamLost("no binlog connection")
                event = stream.fetchone()
                if event is None:
                    raise _StreamLost("the server ended the binlog dump")
            except FatalError:
                raise
            except Exception as exc:
                if self._stopping.is_set():
                    continue
                if isinstance(exc, pymysql.MySQLError) and exc.args and exc.args[0] == _PURGED:
                    at = self._ledger.stream_point
                    assert at is not None
                    raise self._stream_error(exc, at) from exc
                if not _connection_trouble(exc):
                    message = f"binlog decode failed at {self._file}:{self._pos}: {exc}"
                    raise classify(exc, message) from exc
                self._reconnect(exc)
                assembler = self._assembler
                continue
            self._on_event(event, assembler)

    def ack(self, batch_id: int) -> Position | None:
        return self._ledger.ack(batch_id)

    def rollback(self) -> None:
        at = self._ledger.rollback()
        assert at is not None
        self._close()
        try:
            self._open(at)
        except FatalError:
            raise
        except Exception as exc:  # reopened lazily by the next select
            logger.warning("reopen after rollback failed ({}); the next select retries", exc)
            self._assembler = Assembler(self.max_rows, at)

    def last_entry_time(self) -> float | None:
        return self._last_ts

    @property
    def committed(self) -> Position | None:
        return self._ledger.committed

    # -- events ------------------------------------------------------------------------

    def _here(self, pos: int | None = None, ts: float = 0.0) -> Position:
        return Position(self._file, self._pos if pos is None else pos, self._gtids.current(), 0, ts)

    def _on_event(self, event: Any, assembler: Assembler) -> None:
        kind = type(event)
        if kind is HeartbeatLogEvent:
            return
        end = event.packet.log_pos
        ts = float(event.timestamp)
        if ts:
            self._last_ts = ts
        if kind is WriteRowsEvent or kind is UpdateRowsEvent or kind is DeleteRowsEvent:
            self._on_rows(event, assembler, ts)
        elif kind is TableMapEvent:
            if not self.filter(event.schema, event.table):
                # the reader drops rows events whose table_id is unknown, undecoded
                self._stream.table_map.pop(event.table_id, None)  # type: ignore[union-attr]
                self._tables.pop(event.table_id, None)
            elif event.table_id not in self._tables:
                self._tables[event.table_id] = self._table_info(event.get_table(), event)
        elif kind is XidEvent or kind is XAPrepareEvent:
            self._commit(assembler, end, ts)
        elif kind is MariadbGtidEvent or kind is GtidEvent:
            assembler.begin(self._here())
            self._gtids.begin(event.gtid)
        elif kind is QueryEvent:
            self._on_query(event, assembler, end, ts)
        elif kind is RotateEvent:
            if event.timestamp == 0 and event.next_binlog == self._file:
                return  # the fake rotate that opens a dump
            self._tables.clear()  # table ids are per server run; a rotate may follow a restart
            self._file, self._pos = event.next_binlog, event.position
            assembler.advance(self._here())

    def _on_query(self, event: Any, assembler: Assembler, end: int, ts: float) -> None:
        query = event.query
        head = query.lstrip()[:12].upper()
        if head.startswith(("BEGIN", "XA START")):
            if not assembler.in_txn:
                assembler.begin(self._here())
            return
        if head.startswith("COMMIT"):  # non-transactional engines end with a COMMIT query
            self._commit(assembler, end, ts)
            return
        if head.startswith(("SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEP", "XA ")):
            return  # inside a transaction; XA END/COMMIT carry no rows
        if head.startswith("ROLLBACK"):
            self._pos = end
            self._gtids.commit()
            assembler.abort()
            assembler.advance(self._here(ts=ts))
            return
        # DDL (or another standalone statement): its own batch; caches go stale
        start = assembler.txn_start if assembler.txn_start is not None else self._here()
        self._pos = end
        self._gtids.commit()
        self._forget_tables()
        schema = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema)
        if self._ddl_wanted(schema, query):
            ddl = DdlChange(schema, query, ts, start, self._gtids.last)
            assembler.ddl(ddl, self._here(ts=ts))
        else:
            assembler.abort()
            assembler.advance(self._here(ts=ts))

    def _commit(self, assembler: Assembler, end: int, ts: float) -> None:
        self._pos = end
        self._gtids.commit()
        assembler.commit(self._here(ts=ts))

    def _ddl_wanted(self, schema: str, query: str) -> bool:
        match = _DDL_TABLE.match(query)
        if match:
            first, second = (_unquote(g) if g else None for g in match.groups())
            table_schema, table = (first, second) if second else (schema, first)
            if table_schema and table:
                return self.filter(table_schema, table)
        return bool(schema) and self.filter.schema_wanted(schema)

    def _forget_tables(self) -> None:
        self._tables.clear()
        lib_row_event._COLUMN_NAME_CACHE.clear()

    def _on_rows(self, event: Any, assembler: Assembler, ts: float) -> None:
        info = self._tables.get(event.table_id)
        if info is None:  # table map seen before a reconnect/rotate cleared the cache
            info = self._tables[event.table_id] = self._table_info(
                self._stream.table_map[event.table_id]  # type: ignore[union-attr]
            )
        rows = event.rows
        if assembler.skip:
            rows = rows[assembler.take_skip(len(rows)) :]
            if not rows:
                return
        start = assembler.txn_start
        if start is None:  # rows without BEGIN/GTID: treat as a transaction of its own
            assembler.begin(self._here())
            start = assembler.txn_start
            assert start is not None
        index = assembler.txn_done + len(assembler.txn or ())
        schema, table, pk, fixers = event.schema, event.table, info.primary_key, info.fixers
        gtid = self._gtids.pending
        position = Position(start.file, start.pos, start.gtid_set, 0, ts)
        changes: list[RowChange] = []
        append = changes.append
        if type(event) is WriteRowsEvent:
            for row in rows:
                after = row["values"]
                if fixers:
                    vals.apply(fixers, after, row["none_sources"])
                append(
                    RowChange(
                        schema,
                        table,
                        "insert",
                        None,
                        after,
                        pk,
                        ts,
                        position,
                        gtid,
                        index,
                    )
                )
                index += 1
        elif type(event) is UpdateRowsEvent:
            for row in rows:
                before, after = row["before_values"], row["after_values"]
                if fixers:
                    vals.apply(fixers, before, row["before_none_sources"])
                    vals.apply(fixers, after, row["after_none_sources"])
                append(
                    RowChange(
                        schema,
                        table,
                        "update",
                        before,
                        after,
                        pk,
                        ts,
                        position,
                        gtid,
                        index,
                    )
                )
                index += 1
        else:
            for row in rows:
                before = row["values"]
                if fixers:
                    vals.apply(fixers, before, row["none_sources"])
                append(
                    RowChange(
                        schema,
                        table,
                        "delete",
                        before,
                        None,
                        pk,
                        ts,
                        position,
                        gtid,
                        index,
                    )
                )
                index += 1
        assembler.rows(changes)

    # -- table metadata ----------------------------------------------------------------

    def _table_info(self, table: Any, table_map: Any = None) -> _TableInfo:
        columns = table.columns
        pk = table.primary_key  # in column order; the metadata has the key's own order
        primary_key: tuple[str, ...] = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
        meta = getattr(table_map, "optional_metadata", None)
        if meta is not None:
            order = list(meta.simple_primary_key_list or ()) or list(
                (meta.primary_keys_with_prefix or {}).keys()
            )
            if order and all(i < len(columns) for i in order):
                primary_key = tuple(columns[i].name for i in order)
        json_text: frozenset[str] = frozenset()
        unsigned: frozenset[str] = frozenset()
        if not self._full_metadata:
            primary_key, unsigned = self._schema_info(table.schema, table.table)
        if self._mariadb and any(vals.may_hold_json_text(c) for c in columns):
            json_text = self._json_columns(table.schema, table.table)
        return _TableInfo(primary_key, vals.fixers_for(columns, json_text, unsigned))

    def _schema_info(self, schema: str, table: str) -> tuple[tuple[str, ...], frozenset[str]]:
        """Primary key and unsigned columns from information_schema (no FULL metadata)."""
        keys = self._query(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s AND CONSTRAINT_NAME='PRIMARY' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        unsigned = self._query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s AND COLUMN_TYPE LIKE '%%unsigned%%'",
            (schema, table),
        )
        return tuple(str(r[0]) for r in keys), frozenset(str(r[0]) for r in unsigned)

    def _json_columns(self, schema: str, table: str) -> frozenset[str]:
        """MariaDB JSON columns: LONGTEXT with a ``json_valid(col)`` check constraint."""
        rows = self._query(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, table),
        )
        found = set()
        for (clause,) in rows:
            match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause))
            if match:
                found.add(match.group(1).replace("``", "`"))
        return frozenset(found)


def replace_gtid(at: Position, gtid_set: str | None) -> Position:
    return Position(at.file, at.pos, gtid_set, at.row_offset, at.ts)


def _unquote(name: str) -> str:
    if name.startswith("`"):
        return name[1:-1].replace("``", "`")
    return name


def _connection_trouble(exc: BaseException) -> bool:
    if isinstance(exc, _StreamLost | OSError | EOFError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return isinstance(exc, (pymysql.err.OperationalError, ResumableError))
