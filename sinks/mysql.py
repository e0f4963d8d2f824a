"""MySQL/MariaDB sink: merged, idempotent apply with a fenced checkpoint in the same transaction.

Per batch (see ``MySQLSink.load``):

1. the row changes are merged per (table, primary key) by :mod:`sinks.merge`
   (10 updates of a key become one row; deletes before writes per table);
2. one transaction: ``SELECT epoch … FOR UPDATE`` on this pipeline's row of
   ``<checkpoint_schema>.ferry_checkpoint`` — a stored epoch newer than the
   batch's rolls back and raises ``FencedError``; then every table's deletes
   as ``DELETE … WHERE (pk) IN (…)`` and its rows as multi-row
   ``INSERT … ON DUPLICATE KEY UPDATE`` (chunked by ``max_rows_per_statement``
   and ``max_statement_bytes``); then the checkpoint row; then COMMIT. A
   failure anywhere leaves the target as it was.
3. if the merged apply hits a duplicate-key or foreign-key error (a unique
   value moved between rows inside the batch), the transaction is rolled back
   and the batch is applied once more unmerged, in binlog order
   (:func:`sinks.merge.in_order`); a second failure is raised.

Idempotence: every write is an upsert or a delete by key, so loading a batch
again gives the same table, and a batch loaded over a target that is already ahead
of it (a frozen node's last load, loads not acked before a rollback) leaves every
key it touches as the batch ends it (:mod:`sinks.merge`). Tables without a primary
key (``no_primary_key: match_row``) are applied change by change, matching the
full row with ``<=>`` and ``LIMIT 1``; they are at-least-once (a replayed insert
duplicates a row), and FLOAT or JSON columns may fail to match exactly. The sink never skips a
batch by comparing positions (an operator may rewind on purpose); the node
resumes from the later of its own and the sink's checkpoint.

Values are sent as driver parameters: SET values as comma-joined strings, JSON
text as is; the session runs with ``time_zone='+00:00'`` because TIMESTAMP
values are UTC instants. What the target's own columns require is read once
per table from its information_schema (:class:`TargetTable`): generated
columns are never written, FLOAT columns are matched and written so the same
single-precision value is stored.

DDL (``ddl`` for databases/tables/views/indexes, ``routines`` for triggers,
procedures, functions and events: ``apply``, ``skip`` or ``fail``): fenced by
a checkpoint read first, then run in the source session's settings
(``DdlChange.session``) after ``USE <mapped schema>`` (not for a database
statement, whose database may not exist yet), with mapped schema and table
names rewritten where the selector found them (:mod:`sinks.ddl`), then the
checkpoint is written (DDL commits implicitly, so it cannot share the
transaction). Errors that mean "already done" (table/column/index exists,
unknown table on DROP…) are logged and passed, so a DDL replayed after a
crash between its apply and the checkpoint does not stop the pipeline.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Literal

import pymysql
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.dialect import TlsConfig, connect_kwargs, describe, pymysql_errors, session_tls
from pipeline.dialect import connect as tls_connect
from pipeline.errors import (
    FatalError,
    FerryError,
    classify,
    raised_from,
    register_classifier,
    timed_out,
)
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.base import SinkCheckpoint
from sinks.ddl import rewrite
from sinks.merge import Merged, in_order, merge
from sinks.redact import shown_statement
from sinks.sqlapply import (
    PACKET_CODES,
    Statement,
    TargetTable,
    build_statements,
    describe_failure,
    ident,
    packet_reason,
    statement_bytes,
)
from sinks.tablesink import (
    CheckpointSchema,
    EmptyCheckpointInterval,
    NoPrimaryKey,
    SchemaMap,
    TableMap,
    TableSink,
)


class MySQLSinkConfig(BaseModel):
    """`sink: {type: mysql}` — merged, idempotent apply with a fenced checkpoint table."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mysql"]
    host: str = Field("127.0.0.1", description="target server host")
    port: int = Field(3306, ge=1, le=65535, description="target server port")
    user: str = Field(description="target user (needs write rights and CREATE for the checkpoint)")
    password: SecretStr = Field(SecretStr(""), description="password of `user`")
    tls: TlsConfig = Field(
        default_factory=TlsConfig,  # type: ignore[arg-type]
        description="TLS of the target connection, see sink.tls",
    )
    ddl: Literal["apply", "skip", "fail"] = Field(
        "apply",
        description="what to do with DDL of replicated databases, tables, views and indexes",
    )
    routines: Literal["apply", "skip", "fail"] = Field(
        "skip",
        description="what to do with CREATE/ALTER/DROP of triggers, procedures, functions and "
        "events: skipped by default, because replicated row changes already carry what "
        "triggers did on the source (a trigger on the target would do it twice)",
    )
    schema_map: SchemaMap
    table_map: TableMap
    no_primary_key: NoPrimaryKey
    checkpoint_schema: CheckpointSchema
    max_rows_per_statement: int = Field(
        1000, ge=1, description="rows per multi-row INSERT/DELETE statement, at most"
    )
    max_statement_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="estimated size of one statement, at most (also capped at half of the "
        "server's max_allowed_packet)",
    )
    foreign_key_checks: bool = Field(
        False,
        description="keep foreign-key checks on in the sink's session; off by default because "
        "the source already enforced them and merged batches do not keep cross-table order",
    )
    sql_mode: str = Field(
        "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION",
        description="session sql_mode on the target (strict: too-long data fails instead of "
        "being truncated; NO_AUTO_VALUE_ON_ZERO: a replicated id 0 stays 0)",
    )
    timeout_s: float = Field(
        120.0, gt=0, description="connect/read/write timeout of the target connection, seconds"
    )
    empty_checkpoint_interval_ms: EmptyCheckpointInterval


# --- MySQL's codes and session (statements are built in sinks.sqlapply) ----------------

#: Source session settings a DDL runs with on the target (see DdlChange.session).
_DDL_SESSION = frozenset(
    {
        "sql_mode",
        "time_zone",
        "foreign_key_checks",
        "unique_checks",
        "explicit_defaults_for_timestamp",
    }
)

#: Errors of a merged apply that the unmerged, in-order apply may not hit.
CROSS_KEY_CODES = frozenset({1062, 1451, 1452, 1586})  # duplicate entry, foreign key

#: DDL errors that mean "this was already applied" (a DDL replayed after a crash).
DDL_DONE_CODES = frozenset(
    {
        1007,  # database exists
        1008,  # can't drop database; doesn't exist
        1050,  # table exists
        1051,  # unknown table (DROP)
        1060,  # duplicate column name
        1061,  # duplicate key name
        1091,  # can't DROP column/key; check that it exists
        1826,  # duplicate foreign key constraint name
    }
)

register_classifier(pymysql_errors)  # lost connection, deadlock: resumable; the rest fatal


def _code(exc: BaseException | None) -> int | None:
    for error in raised_from(exc):
        if isinstance(error, pymysql.MySQLError) and error.args and isinstance(error.args[0], int):
            return error.args[0]
    return None


# --- the sink ------------------------------------------------------------------------


class MySQLSink(TableSink):
    """Writes batches to MySQL/MariaDB (see the module docstring).

    ``load`` commits data and checkpoint in one transaction and is idempotent
    by key; ``checkpoint()`` returns the stored (position, epoch). Errors:
    lost connection, deadlock, lock-wait timeout → ``ResumableError`` (the
    connection is dropped and reopened on the next call); anything else →
    ``FatalError`` naming table, key and statement.
    """

    config_model = MySQLSinkConfig
    config: MySQLSinkConfig
    kind = "MySQL sink"

    @classmethod
    def describe(cls, config: MySQLSinkConfig) -> str:
        return (
            f"mysql {config.user}@{config.host}:{config.port} tls={config.tls.mode}"
            f" ddl={config.ddl}"
        )

    def __init__(self, config: MySQLSinkConfig, pipeline_id: str) -> None:
        super().__init__(config, pipeline_id)
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._max_bytes = config.max_statement_bytes
        self._packet = 0  # the target's max_allowed_packet (0: not read yet)
        self._facts: dict[tuple[str, str], TargetTable] = {}  # read once per target table
        self.statements_executed = 0  # statements of row data sent (for tests and stats)
        ckpt = config.checkpoint_schema
        self._ckpt = f"{ident(ckpt)}.{ident('ferry_checkpoint')}"

    # -- connection

    def open(self) -> None:
        self._connection()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone; nothing to release
                conn.close()

    def _connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is not None:
            return self._conn
        cfg = self.config
        where = f"MySQL sink {cfg.user}@{cfg.host}:{cfg.port}"
        try:
            conn = tls_connect(
                host=cfg.host,
                port=cfg.port,
                user=cfg.user,
                password=cfg.password.get_secret_value(),
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=cfg.timeout_s,
                read_timeout=cfg.timeout_s,
                write_timeout=cfg.timeout_s,
                **connect_kwargs(cfg.tls, "sink.tls"),
            )
        except FerryError as exc:  # a TlsError: it names the setting already
            raise exc.context(pipeline=self.pipeline_id) from exc.__cause__
        except Exception as exc:
            raise classify(exc, f"{where}: cannot connect: {exc}{self._waited(exc)}").context(
                pipeline=self.pipeline_id
            ) from exc
        try:
            with conn.cursor() as cur:
                self._sink_session(cur)
                cur.execute("SELECT @@max_allowed_packet")
                row = cur.fetchone()
                packet = self._packet = int(row[0]) if row else 4 << 20
                self._max_bytes = max(1024, min(cfg.max_statement_bytes, packet // 2))
                self._ensure_checkpoint_table(cur)
            encrypted = session_tls(conn) or "not encrypted"
        except Exception as exc:
            conn.close()
            message = f"{where}: session setup failed: {exc}{self._waited(exc)}"
            raise classify(exc, message).context(pipeline=self.pipeline_id) from exc
        logger.info(
            "{}: connected, TLS {} ({}), checkpoint table {}",
            where,
            encrypted,
            cfg.tls.mode,
            self._ckpt,
        )
        self._conn = conn
        return conn

    def _ensure_checkpoint_table(self, cur: Any) -> None:
        schema = self.config.checkpoint_schema
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA=%s AND TABLE_NAME='ferry_checkpoint'",
            (schema,),
        )
        if cur.fetchone()[0] == 0:
            cur.execute("CREATE DATABASE IF NOT EXISTS " + ident(schema), ())
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._ckpt} ("
                " `pipeline_id` VARCHAR(191) NOT NULL PRIMARY KEY,"
                " `epoch` BIGINT NOT NULL,"
                " `position` JSON NULL,"
                " `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
                ") ENGINE=InnoDB",
                (),
            )
        # One row per pipeline from the start, so the fencing read always locks a row.
        cur.execute(
            f"INSERT INTO {self._ckpt} (`pipeline_id`, `epoch`) VALUES (%s, 0)"
            " ON DUPLICATE KEY UPDATE `pipeline_id`=`pipeline_id`",
            (self.pipeline_id,),
        )

    # -- checkpoint

    def checkpoint(self) -> SinkCheckpoint | None:
        try:
            with self._connection().cursor() as cur:
                cur.execute(
                    f"SELECT `epoch`, `position` FROM {self._ckpt} WHERE `pipeline_id`=%s",
                    (self.pipeline_id,),
                )
                row = cur.fetchone()
        except FerryError:
            raise
        except Exception as exc:
            self._drop()
            message = f"MySQL sink: reading the checkpoint failed: {exc}{self._waited(exc)}"
            raise classify(exc, message).context(pipeline=self.pipeline_id) from exc
        if row is None or row[1] is None:
            return None
        return SinkCheckpoint(Position.from_json(row[1]), int(row[0]))

    def _write_checkpoint(self, cur: Any, epoch: int, position: Position | None) -> None:
        cur.execute(
            f"INSERT INTO {self._ckpt} (`pipeline_id`, `epoch`, `position`) VALUES (%s,%s,%s)"
            " ON DUPLICATE KEY UPDATE `epoch`=VALUES(`epoch`),"
            " `position`=COALESCE(VALUES(`position`), `position`),"
            " `updated_at`=CURRENT_TIMESTAMP(6)",
            (self.pipeline_id, epoch, position.to_json() if position else None),
        )
        self._last_checkpoint_write = time.monotonic()

    # -- load

    def database(self, schema: str) -> str:
        """Target database of a source schema (``schema_map``)."""
        return self.config.schema_map.get(schema, schema)

    def target(self, schema: str, table: str) -> tuple[str, str]:
        """Target (schema, table) of a source table: ``table_map`` first, then ``schema_map``."""
        mapped = self.config.table_map.get(f"{schema}.{table}")
        target_schema = self.config.schema_map.get(schema, schema)
        if mapped:
            first, dot, second = mapped.partition(".")
            return (first, second) if dot else (target_schema, first)
        return target_schema, table

    def _write_rows(self, batch: Batch, epoch: int, rows: list[RowChange], merged: bool) -> int:
        return self._transaction(batch, epoch, merge(rows) if merged else in_order(rows))

    def _conflict(self, exc: FerryError) -> bool:
        return _code(exc) in CROSS_KEY_CODES

    def _transaction(
        self, batch: Batch, epoch: int, actions: list[Merged], write_checkpoint: bool = True
    ) -> int:
        """Fence, apply, checkpoint, commit — or roll back and raise. Returns statements sent.

        With ``write_checkpoint=False`` (and no actions) it only checks the fence.
        """
        statements = build_statements(
            actions,
            self.target,
            self.config.max_rows_per_statement,
            self._max_bytes,
            self._target_table,
        )
        context: dict[str, Any] = {
            "pipeline": self.pipeline_id,
            "batch_id": batch.batch_id,
            "position": batch.position,
        }
        conn = self._connection()
        stmt: Statement | None = None
        try:
            conn.begin()
            with conn.cursor() as cur:
                self._fence(cur, epoch, batch)
                for stmt in statements:
                    cur.execute(stmt.sql, stmt.args)
                    self.statements_executed += 1
                stmt = None
                if write_checkpoint:
                    self._write_checkpoint(cur, epoch, batch.position)
            conn.commit()
        except FerryError as exc:
            self._drop()
            raise exc.context(**context) from exc.__cause__
        except Exception as exc:
            reason = self._packet_reason(conn, stmt, exc) if stmt is not None else ""
            self._drop()
            if stmt is None:
                message = f"MySQL sink: batch transaction failed: {type(exc).__name__}: {exc}"
            else:
                message = describe_failure(stmt, exc, reason)
                if reason:  # fatal: a retry sends the same statement (a lost connection
                    # would otherwise be retried until pipeline.max_retries)
                    raise FatalError(message, **context) from exc
            raise classify(exc, message + self._waited(exc)).context(**context) from exc
        return len(statements)

    def _waited(self, exc: BaseException) -> str:
        """For an error that is the connection's timeout: the setting it came from."""
        if not timed_out(exc):
            return ""
        return (
            f" (no answer within sink.timeout_s, {self.config.timeout_s:g} s: raise it when"
            " the target is slow or a statement, like an ALTER of a big table, runs longer)"
        )

    def _packet_reason(self, conn: Any, stmt: Statement, exc: BaseException) -> str:
        """Ferry's words when ``stmt`` failed for being over the target's max_allowed_packet
        (the server's message names only its variable, or the connection just drops)."""
        code = _code(exc)
        dropped = code in (2006, 2013) or isinstance(exc, ConnectionError)
        if not self._packet or not (code in PACKET_CODES or dropped):
            return ""
        try:
            size = statement_bytes(conn, stmt)
        except Exception:  # the size is the evidence; without it, the server's text stands
            return ""
        if size <= self._packet and code != 1153:
            return ""  # a dropped connection for some other reason
        configured = self.config.max_statement_bytes
        return packet_reason(size, self._packet, len(stmt.actions), configured, code != 1153)

    # -- DDL

    def _load_ddl(self, batch: Batch, ddl: DdlChange, epoch: int) -> None:
        context: dict[str, Any] = {"pipeline": self.pipeline_id, "batch_id": batch.batch_id}
        statement = rewrite(ddl, self.target, self.database).strip()
        short = shown_statement(statement)
        routine = ddl.kind == "routine"
        policy = self.config.routines if routine else self.config.ddl
        setting = "sink.routines" if routine else "sink.ddl"
        if policy == "fail":
            raise FatalError(
                f"MySQL sink: {ddl.kind} DDL in schema {ddl.schema!r} and {setting} is 'fail':"
                f" {short}; apply it to the target yourself, then resume with {setting}: skip",
                position=ddl.position,
                **context,
            )
        if policy == "skip":
            logger.info("MySQL sink: skipping {} DDL ({}=skip): {}", ddl.kind, setting, short)
            self._transaction(batch, epoch, [])
            return
        self._transaction(batch, epoch, [], write_checkpoint=False)  # fence first
        conn = self._connection()
        # A database statement runs without a default database (it may not exist yet).
        home = self.database(ddl.schema) if ddl.schema and ddl.kind != "database" else ""
        try:
            with conn.cursor() as cur:
                if home:
                    cur.execute("USE " + ident(home), ())
                self._source_session(cur, ddl.session)
                try:
                    cur.execute(statement)  # no parameters: a '%' in the text is literal
                finally:
                    self._sink_session(cur)
            logger.info("MySQL sink: applied {} DDL in {}: {}", ddl.kind, home or "-", short)
        except Exception as exc:
            code = _code(exc)
            if code in DDL_DONE_CODES:
                logger.warning(
                    "MySQL sink: DDL already applied on the target ({}): {}",
                    shown_statement(str(exc)),
                    short,
                )
            else:
                self._drop()
                # the server may quote the statement (a syntax error near '…')
                said = shown_statement(str(exc), limit=1000)
                message = f"MySQL sink: DDL failed on the target: {said}; statement: {short}"
                if code == 1049 and home:
                    message += (
                        f"; the target has no database {home!r}: create it, or map the source"
                        " schema to an existing one with sink.schema_map"
                    )
                message += self._waited(exc)
                raise classify(exc, message).context(position=ddl.position, **context) from exc
        self._tables_changed()
        self._transaction(batch, epoch, [])

    def _target_table(self, table: tuple[str, str]) -> TargetTable:
        """What the target's information_schema says of ``table`` (see TargetTable), cached."""
        facts = self._facts.get(table)
        if facts is None:
            try:
                with self._connection().cursor() as cur:
                    cur.execute(
                        "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, EXTRA"
                        " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
                        table,
                    )
                    rows = cur.fetchall()
            except FerryError:
                raise
            except Exception as exc:
                self._drop()
                message = f"MySQL sink: reading the target's columns: {exc}{self._waited(exc)}"
                raise classify(exc, message) from exc
            generated = frozenset(str(r[0]) for r in rows if "GENERATED" in str(r[4]).upper())
            floats = {
                str(name): (int(m), int(d)) if d is not None else None
                for name, kind, m, d, _ in rows
                if str(kind).lower() == "float"
            }
            facts = self._facts[table] = TargetTable(generated, floats)
        return facts

    def _tables_changed(self) -> None:
        """A DDL ran: what was read of the target's tables may be stale."""
        self._facts.clear()

    def _source_session(self, cur: Any, session: dict[str, str]) -> None:
        """Run the next statement in the session settings the source ran it with."""
        settings = {name: value for name, value in session.items() if name in _DDL_SESSION}
        if settings:
            cur.execute(
                "SET " + ", ".join(f"SESSION {name}=%s" for name in settings),
                # flags are numbers: '1' as a string is refused for foreign_key_checks
                tuple(int(v) if v.isdigit() else v for v in settings.values()),
            )

    def _sink_session(self, cur: Any) -> None:
        """The sink's own session: strict, UTC, its foreign-key setting (see the config)."""
        cfg = self.config
        cur.execute(
            "SET SESSION time_zone='+00:00', sql_mode=%s, foreign_key_checks=%s, unique_checks=1",
            (cfg.sql_mode, 1 if cfg.foreign_key_checks else 0),
        )

    # -- ferry check

    def _reach(self) -> str:
        return f"at {self.config.host}:{self.config.port} as {self.config.user}"

    def _grant_hint(self) -> str:
        cfg = self.config
        return f"grant {cfg.user} CREATE, SELECT, INSERT, UPDATE on {cfg.checkpoint_schema}.*"

    def _session_checks(self, conn: Any) -> list[tuple[str, bool, str]]:
        try:
            return [describe(conn, self.config.tls, "sink.tls")]
        except Exception as exc:
            return [("sink TLS", False, f"cannot read Ssl_version/Ssl_cipher: {exc}")]

    def _begin(self, conn: Any) -> None:
        conn.begin()  # the sink's connection is in autocommit mode
