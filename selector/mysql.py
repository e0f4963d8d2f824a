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
  possibly mid-transaction) is disabled by :class:`selector.stream.Stream`; this selector
  reopens at a transaction start it knows (the last position handed out, or
  the committed one after a rollback) and raises ``ResumableError`` when that
  fails for ``connect_timeout_ms``.
* Filtering happens before rows are decoded: a ``TableMapEvent`` of an
  excluded table is removed from the reader's ``table_map``, which makes the
  reader drop that table's rows events without parsing their rows; exact
  schema lists also go to ``only_schemas``/``ignored_schemas`` so those table
  maps are not even parsed.

The parts: :mod:`selector.stream` (the shim over the library's reader),
:mod:`selector.events` (events → batches, with the query-event classifier of
:mod:`pipeline.dialect.statements`), :mod:`selector.tables` (filters and table
metadata). This module owns the life cycle, positions, reconnects and the
get/ack/rollback contract.

Positions follow ``pipeline.model``: a batch's position is the end of its last
transaction (= start of the next); a split transaction's piece is
``(transaction start, row_offset)``. Value types: see ``selector.values``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import pymysql
from loguru import logger
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)

from pipeline.dialect import connect_kwargs, session_tls
from pipeline.dialect.statements import classify as classify_statement
from pipeline.errors import FatalError, FerryError, NotActiveError, ResumableError, classify
from pipeline.model import Batch, Position, SchemaState, TableChange

from .base import PositionStore, Selector
from .batching import Assembler, Ledger, Piece
from .checks import (
    binlog_files,
    check_source,
    connect,
    connect_timeout_hint,
    master_status,
    require,
    row_metadata,
    server_checks,
)
from .config import FilePosStart, GtidStart, MySQLSourceConfig
from .events import EVENTS, Translator, replace_gtid
from .gtids import GtidTracker
from .identity import KickPolicy, describe, kicked, refuse_clash, registered, report_host
from .schemas import SchemaHistory
from .snapshot import Reader, Snapshotter
from .stream import (
    PURGED,
    Stream,
    StreamLost,
    connection_trouble,
    pymysql_connect,
)
from .tables import TableCatalog, TableFilter

__all__ = ["MySQLSelector", "check_source"]

# Events read in a row inside a transaction before the select loop looks at stop requests
# again (a transaction of an excluded table can be long and hand nothing out).
_EVENTS_PER_CHECK = 4096

_SYSTEM_SCHEMAS = "'mysql', 'information_schema', 'performance_schema', 'sys'"
_CAPTURE_ATTEMPTS = 5  # reads of a new pipeline's table definitions, while DDL runs
_USE = re.compile(r"^use [^;]*; ", re.IGNORECASE)  # SHOW BINLOG EVENTS' prefix of a query


# What the schema history's catch-up reads: a transaction's GTID event (MariaDB writes no
# BEGIN) and its XID tell where the reading is even when no statement is a query.
CATCH_UP_EVENTS = [
    QueryEvent,
    GtidEvent,
    MariadbGtidEvent,
    XidEvent,
    RotateEvent,
    HeartbeatLogEvent,
]
# how often a long catch-up says it goes on: well inside the decoder's start timeout
ALIVE_EVERY_S = 1.0
CATCH_UP_LOG_S = 10.0  # and how often it logs where it is


def queries_before(
    events: Iterable[Any],
    file: str,
    stop: Position,
    alive: Callable[[Position], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[QueryEvent, Position, Position]]:
    """The query events of ``events`` (a binlog stream opened in ``file``) that begin before
    ``stop``, each with where it begins and ends. Reading ends at the event that ends at
    ``stop`` or the first that begins at or after it (a transaction's GTID event, XID or
    COMMIT), not at the binlog's end: a source that goes on being written has none.
    ``alive`` is called with the position reached every ``ALIVE_EVERY_S`` while events come:
    a read of gigabytes (the position moved far forward) is long, not hung."""
    until = stop.sort_key()[:3]
    told = clock()
    reached = Position(file, 4)
    for event in events:
        if alive is not None and clock() - told >= ALIVE_EVERY_S:
            alive(reached)
            told = clock()
        if isinstance(event, HeartbeatLogEvent):
            return  # the binlog's end
        if isinstance(event, RotateEvent):
            file = event.next_binlog
            reached = Position(file, event.position)
            if reached.sort_key()[:3] >= until:
                return
            continue
        end = event.packet.log_pos
        reached = Position(file, end)
        begin = end - event.packet.event_size
        if Position(file, begin).sort_key()[:3] >= until:
            return
        if isinstance(event, QueryEvent):
            yield event, Position(file, begin), reached
        if reached.sort_key()[:3] >= until:
            return


class MySQLSelector(Selector):
    """get/ack/rollback over the binlog of one MySQL or MariaDB server."""

    def __init__(
        self,
        config: MySQLSourceConfig,
        batch_max_rows: int,
        batch_max_wait_ms: int,
        store: PositionStore,
        pipeline_id: str = "",
        build_reads: bool = True,
        holder: Callable[[], bool] | None = None,
        alive: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self.build_reads = build_reads  # False: snapshot rows ship as tuples (selector.process)
        self.max_rows = batch_max_rows
        self.max_wait_s = batch_max_wait_ms / 1000.0
        self.heartbeat_s = min(config.heartbeat_ms, batch_max_wait_ms) / 1000.0
        self.pipeline_id = pipeline_id
        self.server_id = config.dump_server_id(pipeline_id)
        self._report = (report_host(pipeline_id), "", "", 0)  # SHOW SLAVE HOSTS: this pipeline
        # asked before every dump this selector opens (selector.identity)
        self._holder = holder if holder is not None else store.holder_probe()
        # told now and then during a long read at start (the decoder process's parent)
        self._alive = alive
        self._kicks = KickPolicy(self.server_id, config.server_id is None, pipeline_id)
        self.filter = TableFilter(config.include, config.exclude)
        self._ledger = Ledger(store, None, pipeline_id)
        self._assembler = Assembler(batch_max_rows, None)
        self._stream: Stream | None = None
        self._translator: Translator | None = None  # one per opened stream
        self._ctl: Any = None  # control connection (positions, information_schema)
        self._mariadb = False
        self._metadata = "FULL"  # binlog_row_metadata: FULL, MINIMAL, NO_LOG or NONE
        # table definitions as the DDL read so far made them; outlives reconnects (rewound)
        self._history = SchemaHistory(self._query)
        self._stopping = threading.Event()
        self._started = False
        self._reader: Reader | None = None  # snapshot reads (selector.snapshot)
        self._snapshot: Snapshotter | None = None  # one per opened stream, like the translator
        self._emitting: Generator[Piece, None, None] | None = None  # a chunk being handed out
        self._streaming = True  # False once an initial_only snapshot is complete
        self._requests: deque[tuple[str, list[str]]] = deque()  # asked for, not yet started
        self._started_requests: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        conn = self._control()
        warnings = require(server_checks(conn, self.config.user))
        for warning in warnings:
            logger.warning("source: {}", warning)
        self._metadata = row_metadata(conn)
        self._refuse_clash()
        version = self._query_one("SELECT VERSION()")[0]
        flavor = self.config.flavor
        self._mariadb = (
            "mariadb" in str(version).lower() if flavor == "auto" else flavor == "mariadb"
        )
        committed = self._ledger.load()
        state = self._ledger.store.load_history()  # raises when it is missing or corrupt
        mode = self.config.snapshot_mode
        snapshot = committed is None and mode != "never"
        if committed is None:
            state = None  # a first start: the history starts with it (below)
        elif mode == "when_needed" and not self._available(committed):
            logger.warning(
                "the committed position {} is no longer on the source (purged);"
                " snapshot.mode when_needed: taking a new snapshot",
                committed,
            )
            self._ledger.committed = None
            state = None
            snapshot = True
        elif mode == "initial_only" and (
            committed.snapshot is None or not committed.snapshot.table
        ):
            # the snapshot was done (a complete one stays in the position: no table left)
            logger.info(
                "source.snapshot is initial_only and its snapshot is complete: no streaming"
            )
            self._streaming = False
        if self._ledger.committed is None:
            # a snapshot streams from where its first chunk is read: the binlog's end now
            self._ledger.origin, state = self._first_history(snapshot)
            self._ledger.store.start_history(state)
        at = self._ledger.resume_point
        assert at is not None
        if state is not None:
            self._history.load(state)
            if state.position is not None and state.position.sort_key() < at.sort_key():
                self._catch_up(state.position, at)
        elif self._metadata != "FULL":
            logger.warning(
                "no schema history was given: table definitions come from the source as it is"
                " now, which is right only if no DDL ran since {}",
                at,
            )
        logger.info(
            "selector start pipeline={} server={} flavor={} server_id={} tls={} ({})"
            " row_metadata={} at={} ({})",
            self.pipeline_id,
            version,
            "mariadb" if self._mariadb else "mysql",
            self.server_id,
            session_tls(self._control()) or "none",
            self.config.tls.mode,
            self._metadata,
            at,
            "committed"
            if committed is not None and not snapshot
            else "snapshot"
            if snapshot
            else f"start={self._start_text()}",
        )
        self._open(at)
        if snapshot:
            self._begin_snapshot("initial", self._included_tables(), self._included_databases())
        elif at.snapshot is not None and at.snapshot.table:
            self._started_requests.add(at.snapshot.request)
            logger.info(
                "snapshot {} continues: {} after {} rows ({} more tables)",
                at.snapshot.request,
                at.snapshot.table,
                at.snapshot.rows,
                len(at.snapshot.tables) - 1,
            )
        self._started = True

    # -- the schema history (selector.schemas) -------------------------------------------

    def _first_history(self, snapshot: bool) -> tuple[Position, SchemaState]:
        """A new pipeline's start position and its history there: every table of the
        captured databases, read so that no DDL ran between the position and the reads
        (else read again)."""
        captured = self.filter.schema_wanted
        if not snapshot and self.config.start != "latest":
            origin = self._resolve_start()
            latest = self._latest()
            state = self._history.capture(captured, origin)
            if (origin.file, origin.pos) != (latest.file, latest.pos):
                logger.warning(
                    "the stream starts at {}, before the binlog's end ({}): the schema history"
                    " starts with the definitions the source has now. Exact for every table"
                    " whose CREATE comes after {} or that no DDL changed since; rows of a table"
                    " altered since then are read with its later definition",
                    origin,
                    latest,
                    origin,
                )
            return origin, state
        for _ in range(_CAPTURE_ATTEMPTS):
            before = self._latest()
            state = self._history.capture(captured, before)
            after = self._latest()
            if not self._ddl_between(before, after):
                return before, state
            logger.info("DDL ran while the table definitions were read: reading them again")
        raise ResumableError(
            f"the source's DDL kept changing tables while ferry read their definitions"
            f" ({_CAPTURE_ATTEMPTS} attempts); the next start tries again",
            pipeline=self.pipeline_id or None,
        )

    def _ddl_between(self, first: Position, last: Position) -> bool:
        """Some DDL was written to the binlog between ``first`` and ``last``."""
        if (first.file, first.pos) == (last.file, last.pos):
            return False
        names = [name for name, _ in self._binlogs()]
        if first.file not in names or last.file not in names:
            return True  # rotated away meanwhile: assume the worst, read again
        for name in names[names.index(first.file) : names.index(last.file) + 1]:
            pos = first.pos if name == first.file else 4
            while True:
                rows = self._query(f"SHOW BINLOG EVENTS IN %s FROM {int(pos)} LIMIT 1000", (name,))
                for row in rows:
                    if name == last.file and int(row[1]) >= last.pos:
                        return False
                    if (
                        str(row[2]) == "Query"
                        and classify_statement(_USE.sub("", str(row[5])), "").is_ddl
                    ):
                        return True
                if len(rows) < 1000:
                    break
                pos = int(rows[-1][4])
        return False

    def _catch_up(self, since: Position, at: Position) -> None:
        """The stored history ends at ``since``, before the start position ``at`` (a start
        from a sink checkpoint ahead of Redis, or a position an operator moved forward):
        read the DDL in between from the binlog and store it in the history first."""
        logger.info("schema history: reading the DDL from {} up to the start {}", since, at)
        self._check_position(since)
        self._confirm_holder()
        probe = Stream(
            self._settings(),
            server_id=self.server_id,
            report_slave=self._report,
            blocking=True,
            resume_stream=True,
            log_file=since.file,
            log_pos=since.pos,
            is_mariadb=False,
            slave_heartbeat=self.heartbeat_s,
            only_events=CATCH_UP_EVENTS,
            enable_logging=False,
            pymysql_wrapper=pymysql_connect,
            skip_table_maps=True,
        )
        records = []
        logged = time.monotonic()

        def progress(reached: Position) -> None:
            nonlocal logged
            if self._alive is not None:
                self._alive()
            if time.monotonic() - logged >= CATCH_UP_LOG_S:
                logger.info("schema history: read up to {} of {}", reached, at)
                logged = time.monotonic()

        try:
            probe.open()
            events = iter(probe.fetchone, None)
            for event, begin, end in queries_before(events, since.file, at, progress):
                schema = event.schema
                schema = schema.decode() if isinstance(schema, bytes) else str(schema)
                statement = classify_statement(event.query, schema)
                if not statement.is_ddl:
                    continue
                self._history.apply(event.query, schema, begin)
                record = self._history.record(
                    event.query, schema, statement, end, self.filter.schema_wanted
                )
                if record is not None:
                    records.append(record)
        except pymysql.MySQLError as exc:
            raise self._stream_error(exc, since) from exc
        finally:
            probe.close()
        self._ledger.store.append_history(records, at)
        logger.info("schema history: {} records read up to {}", len(records), at)

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
        except FerryError:  # a TlsError: it names the setting already
            raise
        except Exception as exc:
            hint = connect_timeout_hint(self.config, exc)
            raise classify(exc, f"cannot connect to the source: {exc}{hint}") from exc
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
            return self._latest()
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
        self._confirm_holder()
        probe = Stream(
            settings,
            server_id=self.server_id,
            report_slave=self._report,
            blocking=True,
            auto_position=gtid,
            is_mariadb=self._mariadb,
            slave_heartbeat=self.heartbeat_s,
            only_events=[RotateEvent, GtidEvent, MariadbGtidEvent, HeartbeatLogEvent],
            enable_logging=False,
            pymysql_wrapper=pymysql_connect,
            skip_table_maps=True,
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
            # the reader's own control connection is built from these too (selector.stream)
            **connect_kwargs(self.config.tls, "source.tls"),
        }

    def _open(self, at: Position) -> None:
        """(Re)open the dump at ``at`` (a transaction start), with a fresh assembler."""
        self._close()
        self._check_position(at)
        gtids = GtidTracker(self._mariadb, self._gtid_state_at(at))
        self._assembler = Assembler(self.max_rows, replace_gtid(at, gtids.current()))
        self._history.rewind(at)  # DDL from here on is read again
        only, ignored = self.filter.exact_schemas()
        self._confirm_holder()
        stream = Stream(
            self._settings(),
            server_id=self.server_id,
            report_slave=self._report,
            blocking=True,
            resume_stream=True,
            log_file=at.file,
            log_pos=at.pos,
            is_mariadb=False,  # file/pos dump; see module docstring
            slave_heartbeat=self.heartbeat_s,
            only_events=EVENTS,
            only_schemas=only,
            ignored_schemas=ignored,
            use_column_name_cache=False,  # names come from the table map or the history
            enable_logging=False,
            pymysql_wrapper=pymysql_connect,
        )
        try:
            stream.open()
        except Exception as exc:
            stream.close()
            if isinstance(exc, pymysql.MySQLError):
                raise self._stream_error(exc, at) from exc
            raise  # e.g. a TlsError (fatal, names source.tls)
        self._stream = stream
        previous = self._translator
        self._translator = Translator(
            at=at,
            assembler=self._assembler,
            gtids=gtids,
            stream=stream,
            catalog=TableCatalog(self._query, self._mariadb, self._metadata, self._history),
            table_filter=self.filter,
            mariadb=self._mariadb,
            last_ts=previous.last_ts if previous is not None else None,
            on_ddl=self._on_ddl,
        )
        if self._emitting is not None:
            self._emitting.close()  # a chunk half handed out is read again from the position
            self._emitting = None
        if self._reader is None:
            self._reader = Reader(lambda **extra: connect(self.config, **extra), self._mariadb)
        self._snapshot = Snapshotter(
            self._reader,
            self._control,
            self.config.snapshot_chunk_rows,
            self.max_rows,
            at.snapshot,
            self._check_binlog_kept,
            self.build_reads,
            definition=self._history.definition,
        )

    # -- the replication identity (selector.identity) ------------------------------------

    def _refuse_clash(self) -> None:
        """Before the first dump: no replica that is not this pipeline's uses our id."""
        try:
            checked, found = refuse_clash(
                self._control(), self.server_id, self.config.server_id is None, self.pipeline_id
            )
        except pymysql.MySQLError as exc:
            raise classify(exc, f"source query failed (SHOW SLAVE HOSTS): {exc}") from exc
        if not checked:
            logger.warning("source: server id {}: {}", self.server_id, found)

    def _confirm_holder(self, doing: str = "not opening the binlog dump") -> None:
        """Before a dump opens (or reopens after a kick): a round trip says this node still
        holds the mainstem, else it would take the source's dump (one per server id) from
        the node that does."""
        if self._holder is not None and not self._holder():
            raise NotActiveError(
                f"{doing}: this node no longer holds the mainstem",
                pipeline=self.pipeline_id or None,
            )

    def _answer_kick(self, exc: BaseException) -> None:
        """Another client connected with our server id and the server dropped our dump:
        step down, pause for a clash, or wait a little and reconnect (``KickPolicy``)."""
        self._confirm_holder(
            f"another binlog client connected with server id {self.server_id}; the decoder stops"
        )
        try:
            kickers = registered(self._control(), self.server_id)
        except Exception as list_error:  # cannot tell who it was: the cautious policy
            logger.debug("cannot list the source's replicas: {}", list_error)
            kickers = None
        delay_s = self._kicks.after_kick(kickers)  # raises ServerIdClash
        logger.warning(
            "binlog dump dropped: {} connected with server id {} ({}); reconnecting in {:.1f}s",
            describe(kickers[0]) if kickers else "another client",
            self.server_id,
            exc,
            delay_s,
        )
        self._stopping.wait(delay_s)

    def _stream_error(self, exc: BaseException, at: Position) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code == PURGED:
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
            except (FatalError, NotActiveError):
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline or self._stopping.is_set():
                    raise ResumableError(
                        "cannot reconnect to the source binlog within"
                        f" source.connect_timeout_ms ({self.config.connect_timeout_ms} ms):"
                        f" {exc}",
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
                return self._hand_out(assembler.ready.popleft())
            if self._emitting is not None:  # a chunk: the stream waits until it is all out
                piece = next(self._emitting, None)
                if piece is not None:
                    return self._hand_out(piece)
                self._emitting = None
                self._chunk_done()
                continue
            if self._stopping.is_set():
                self._shutdown()
                return self._ledger.hand_out(Piece([], None))
            if not assembler.in_txn and self._start_requested():
                continue
            if self._chunk_due():
                assembler.flush()  # what the stream read before the chunk goes first
                assert self._snapshot is not None
                self._emitting = self._snapshot.pieces(time.time())
                continue
            if not self._streaming:
                self._stopping.wait(max(0.0, deadline - time.monotonic()))
                return self._hand_out(Piece([], None))
            if not assembler.in_txn and time.monotonic() >= deadline:
                assembler.flush()
                piece = assembler.ready.popleft() if assembler.ready else Piece([], None)
                return self._hand_out(piece)
            event = self._fetch()
            if event is None:  # translated by the compiled reader, reconnected, or stopping
                assembler = self._assembler
                continue
            assert self._translator is not None  # set with the stream it reads
            translate = self._translator.on_event
            translate(event)
            # Inside a transaction none of the checks above can change their answer (a
            # chunk, a snapshot start and the deadline wait for its end): read on.
            for _ in range(_EVENTS_PER_CHECK):
                if not assembler.in_txn or assembler.ready:
                    break
                event = self._fetch()
                if event is None:
                    break
                translate(event)

    def _fetch(self) -> Any:
        """The next event for the translator; None when the compiled reader translated
        rows events itself (``Stream.read``), after a lost connection was reopened (or a
        kick answered), or while stopping: the select loop checks everything again."""
        stream = self._stream
        try:
            if stream is None:
                raise StreamLost("no binlog connection")
            return stream.read(self._translator, _EVENTS_PER_CHECK)
        except FatalError:
            raise
        except Exception as exc:
            if self._stopping.is_set():
                return None
            if kicked(exc):
                self._answer_kick(exc)
                if self._stopping.is_set():
                    return None
            elif isinstance(exc, pymysql.MySQLError) and exc.args and exc.args[0] == PURGED:
                at = self._ledger.stream_point
                assert at is not None
                raise self._stream_error(exc, at) from exc
            elif not connection_trouble(exc):
                where = self._translator
                here = f"{where.file}:{where.pos}" if where is not None else "?"
                message = f"binlog decode failed at {here}: {exc}"
                raise classify(exc, message) from exc
            self._reconnect(exc)
            return None

    # -- snapshots ----------------------------------------------------------------------

    def request_snapshot(self, request: str, tables: list[str]) -> None:
        self._requests.append((request, list(tables)))  # started by select(), in its thread

    def _start_requested(self) -> bool:
        """Start the next requested snapshot, if none is running; True when one started."""
        snapshot = self._snapshot
        while self._requests and snapshot is not None and not snapshot.active:
            request, tables = self._requests.popleft()
            if request in self._started_requests:
                continue
            self._started_requests.add(request)
            wanted = [t for t in tables if self.filter(*t.split(".", 1))]
            self._begin_snapshot(request, wanted)
            return True
        return False

    def _begin_snapshot(
        self, request: str, tables: list[str], databases: list[str] | None = None
    ) -> None:
        """Start a snapshot at the stream's current point (see selector.snapshot)."""
        translator, snapshot = self._translator, self._snapshot
        assert translator is not None and snapshot is not None
        ddls = snapshot.begin(request, tables, time.time(), databases)
        translator.snapshot = snapshot.progress
        here = translator.here()
        logger.info("snapshot {} of {} tables from {}", request, len(tables), here)
        for ddl in ddls:  # databases and tables the target may lack come first, as DDL
            ddl.position = here
            if ddl.kind == "database":
                self._assembler.ready.append(Piece([ddl], here))
                continue
            ddl.verb, ddl.object = "CREATE", "TABLE"
            ddl.table_changes = tuple(
                TableChange("CREATE", schema, table, self._history.definition(schema, table))
                for schema, table in ddl.tables
            )
            self._assembler.ready.append(Piece([ddl], here))
        if not tables:
            self._chunk_done()

    def _chunk_due(self) -> bool:
        """A snapshot chunk is due: the stream is at a transaction boundary at its position."""
        translator, snapshot = self._translator, self._snapshot
        if snapshot is None or not snapshot.active or translator is None:
            return False
        return not self._assembler.in_txn and snapshot.due(translator.here())

    def _chunk_done(self) -> None:
        """A chunk is all out: the stream's positions carry the progress after it."""
        translator, snapshot = self._translator, self._snapshot
        assert translator is not None and snapshot is not None
        translator.snapshot = snapshot.progress
        if not snapshot.active and self.config.snapshot_mode == "initial_only":
            logger.info("snapshot complete; source.snapshot is initial_only: streaming stops")
            self._streaming = False
            self._close()

    def _on_ddl(self, tables: tuple[tuple[str, str], ...]) -> None:
        if self._snapshot is not None:
            self._snapshot.changed(tables)

    def _included_tables(self) -> list[str]:
        rows = self._query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
            f" WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN ({_SYSTEM_SCHEMAS})"
            " ORDER BY TABLE_SCHEMA, TABLE_NAME"
        )
        return [f"{schema}.{table}" for schema, table in rows if self.filter(schema, table)]

    def _included_databases(self) -> list[str]:
        """Databases whose DDL passes the filter: an initial snapshot creates them on the
        target even when they hold no table yet (a later CREATE TABLE needs them)."""
        rows = self._query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN"
            f" ({_SYSTEM_SCHEMAS}) ORDER BY SCHEMA_NAME"
        )
        return [str(schema) for (schema,) in rows if self.filter.schema_wanted(str(schema))]

    def _latest(self) -> Position:
        status = self._master_status()
        gtid = status[4] if not self._mariadb and len(status) > 4 and status[4] else None
        return Position(str(status[0]), int(status[1]), gtid or None)

    def _available(self, at: Position) -> bool:
        try:
            self._check_position(at)
        except FatalError:
            return False
        return True

    def _check_binlog_kept(self) -> None:
        """Before each chunk: the binlog a restart would need must still be there."""
        at = self._ledger.resume_point
        if at is not None and not self._available(at):
            raise FatalError(
                f"the binlog at the committed position {at} was purged during the snapshot:"
                " a restart could not resume from it. Keep binlogs longer"
                " (binlog_expire_logs_seconds / expire_logs_days) than the snapshot takes,"
                " then start it again (source.snapshot: when_needed does so by itself)",
                pipeline=self.pipeline_id or None,
                position=at,
            )

    def _hand_out(self, piece: Piece) -> Batch:
        if self._translator is not None:  # an unresolved prepared XA holds the position back
            piece.position = self._translator.cap(piece.position)
        return self._ledger.hand_out(piece)

    def ack(self, batch_id: int) -> Position | None:
        return self._ledger.ack(batch_id)

    def rollback(self) -> None:
        at = self._ledger.rollback()
        assert at is not None
        self._close()
        try:
            self._open(at)
        except (FatalError, NotActiveError):
            raise
        except Exception as exc:  # reopened lazily by the next select
            logger.warning("reopen after rollback failed ({}); the next select retries", exc)
            self._assembler = Assembler(self.max_rows, at)

    def last_entry_time(self) -> float | None:
        return self._translator.last_ts if self._translator is not None else None

    @property
    def committed(self) -> Position | None:
        return self._ledger.committed
