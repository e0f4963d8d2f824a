"""PostgreSQL sink: merged, idempotent apply through COPY, with a fenced checkpoint row.

Per batch (see ``PostgreSQLSink.load``), one transaction:

1. ``SELECT epoch … FOR UPDATE`` on this pipeline's row of
   ``<checkpoint_schema>.ferry_checkpoint``: a stored epoch newer than the batch's
   rolls back and raises ``FencedError`` (as the MySQL sink);
2. every target table the batch writes is made ready: a missing schema or table is
   created from the rows' definition (``RowChange.definition``, the schema history's),
   with the source's key and UNIQUE keys (and, with ``enums: enum_types``, its enum
   types first), so a snapshot or a table created mid-stream needs nothing on the target
   first; a column the target lacks is added (with ``ddl: apply``);
3. the row changes, merged per (table, key) by :mod:`sinks.merge` exactly as the MySQL
   sink merges them (deletes before writes per table), go per table and kind through
   ``COPY`` into a temporary staging table (one per target table and connection,
   ``ON COMMIT DELETE ROWS``), then one ``DELETE … USING`` for the deleted keys and one
   ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE`` for the written rows;
4. the checkpoint row (epoch, position); COMMIT.

A constraint violation of the merged apply (a unique value moved between rows inside
the batch) rolls it back and applies the batch once more unmerged, in binlog order,
statement by statement (:func:`sinks.merge.in_order`), which also names the row when
it fails again. Idempotent on replay: every write is an upsert or a delete by key.
Tables without a key follow ``no_primary_key`` as in the MySQL sink: ``match_row``
inserts (COPY straight into the table) and matches a whole row (``IS NOT DISTINCT
FROM``, one row by ``ctid``) for an update or delete — at-least-once; ``reject``
pauses.

Types and values: :mod:`sinks.pgtypes` (the mapping table and its options).

DDL (``ddl: apply | skip | fail``): translated from the table's definition after the
statement (``DdlChange.table_changes``, the schema history), not from its text —
CREATE TABLE (a snapshot's too: it carries the definition), ALTER TABLE (columns added,
dropped, renamed, changed in type or nullability, the key, unique keys, enum members
added), CREATE UNIQUE INDEX, DROP INDEX, RENAME TABLE, TRUNCATE, DROP TABLE, CREATE/DROP
DATABASE (a schema). PostgreSQL's DDL is transactional, so a statement is applied in the
transaction that writes the checkpoint after it: a replay never finds it half done.
Any other statement (views, non-unique indexes, routines, …) is not translated: ``untranslated:
skip`` logs it and moves on, ``fail`` pauses; both name the statement (credentials
masked).

Faults: a lost connection, a PostgreSQL restart or shutdown, a deadlock or
serialization failure, too many connections are resumable (:func:`pg_resumable`); a
constraint violation, a value out of range, a missing table without a definition are
fatal and name the table, the key (masked) and the column — never a value.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from loguru import logger
from pydantic import ConfigDict, Field, SecretStr, model_validator

from pipeline.errors import FatalError, FerryError, classify, raised_from, register_classifier
from pipeline.model import Batch, DdlChange, Position, RowChange, TableSchema
from sinks.base import SinkCheckpoint
from sinks.merge import Merged, in_order, merge
from sinks.pgtypes import (
    Cleaned,
    Convert,
    TypeOptions,
    ValueRefused,
    added_default,
    cast_type,
    column_drops,
    column_renames,
    converters,
    create_table,
    enum_members,
    enum_type,
    literal,
    nullable,
    pg_type,
    qi,
    regname,
    skipped,
    table_keys,
)
from sinks.redact import masked_row, shown_statement
from sinks.sqlapply import Kind, columns_of, key_text, kind_of
from sinks.tablesink import (
    CheckpointSchema,
    EmptyCheckpointInterval,
    NoPrimaryKey,
    SchemaMap,
    TableMap,
    TableSink,
)

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgreSQLSinkConfig(TypeOptions):
    """`sink: {type: postgresql}` — COPY-merged, idempotent apply with a fenced checkpoint."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["postgresql"]
    url: SecretStr | None = Field(
        None,
        description="libpq connection URI (postgresql://user:password@host:port/database?…);"
        " instead of host/port/user/password/database",
    )
    host: str = Field("127.0.0.1", description="target server host")
    port: int = Field(5432, ge=1, le=65535, description="target server port")
    user: str = Field("postgres", description="target user (CREATE on the database, writes)")
    password: SecretStr = Field(SecretStr(""), description="password of `user`")
    database: str = Field("postgres", description="target database (MySQL databases -> schemas)")
    sslmode: SslMode = Field("prefer", description="libpq sslmode of the target connection")
    sslrootcert: str | None = Field(
        None, description="CA certificate file for sslmode verify-ca / verify-full"
    )
    ddl: Literal["apply", "skip", "fail"] = Field(
        "apply", description="what to do with DDL of replicated databases and tables"
    )
    untranslated: Literal["skip", "fail"] = Field(
        "skip",
        description="with ddl: apply, a statement ferry does not translate (views, indexes,"
        " routines, …): skip it (logged, naming it) or pause",
    )
    schema_map: SchemaMap
    table_map: TableMap
    no_primary_key: NoPrimaryKey
    checkpoint_schema: CheckpointSchema
    timeout_s: float = Field(
        120.0,
        gt=0,
        description="connect timeout, statement timeout and TCP user timeout of the target"
        " connection, seconds",
    )
    empty_checkpoint_interval_ms: EmptyCheckpointInterval

    @model_validator(mode="after")
    def _url_or_fields(self) -> PostgreSQLSinkConfig:
        if self.url is not None:
            both = {"host", "port", "user", "password", "database"} & self.model_fields_set
            if both:
                raise ValueError(
                    f"give either `url` or {', '.join(sorted(both))}, not both (the URL"
                    " carries host, port, user, password and database)"
                )
        return self


# --- errors --------------------------------------------------------------------------------

#: SQLSTATE classes that mean "try again": connection exception, transaction rollback
#: (serialization failure, deadlock), insufficient resources (too many connections, disk
#: full), operator intervention (shutdown, restart, statement timeout), system error.
RESUMABLE_CLASSES = ("08", "40", "53", "57", "58")
RESUMABLE_STATES = frozenset({"55P03"})  # lock not available
FATAL_STATES = frozenset({"57P04"})  # the database was dropped
#: What libpq says when a connection is refused for good (no SQLSTATE at connect time).
_REFUSED = re.compile(
    r"authentication failed|no pg_hba\.conf entry|does not exist|certificate|SSL error"
    r"|server does not support SSL|invalid (?:URI|connection option|sslmode)",
    re.IGNORECASE,
)


def pg_resumable(exc: BaseException) -> bool | None:
    """psycopg's verdict: True resumable, False fatal, None not a psycopg error.

    The PostgreSQL sink's classifier, registered in ``pipeline.errors``'s hook below.
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a runtime dependency
        return None
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if state:
        if state in FATAL_STATES:
            return False
        return state in RESUMABLE_STATES or state.startswith(RESUMABLE_CLASSES)
    if isinstance(exc, psycopg.InterfaceError):  # the client's connection is closed
        return True
    if isinstance(exc, psycopg.OperationalError):  # connection refused, lost, timed out
        return not _REFUSED.search(str(exc))
    return False


register_classifier(pg_resumable)


def _fields_target(config: PostgreSQLSinkConfig) -> str:
    """``user@host:port/database`` of a config given by fields (no URL)."""
    return f"{config.user}@{config.host}:{config.port}/{config.database}"


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of ``exc`` or of what it was raised from."""
    for error in raised_from(exc):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
#: a statement that drops a unique key (ALTER TABLE … DROP INDEX/KEY/CONSTRAINT, DROP INDEX)
_DROPS_KEY = re.compile(r"\bDROP\s+(?:INDEX|KEY|CONSTRAINT)\b", re.IGNORECASE)
_COPY_AT = re.compile(r"line (\d+), column ([^:]+):")


def without_values(message: str, names: Iterable[str]) -> str:
    """A server message with every quoted text that is not a known name hidden: PostgreSQL
    quotes values the same way as identifiers (``value "2178774338" is out of range``)."""
    known = {n for n in names if n}
    return _QUOTED.sub(lambda m: m.group(0) if m.group(1) in known else '"***"', message)


# --- what a batch writes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgTable:
    """A target table as its catalog says: column -> type (``format_type``; an enum type
    quoted and schema-qualified, as :func:`sinks.pgtypes.enum_type` writes it), the columns
    that are NOT NULL or generated by PostgreSQL, the primary key and its constraint, and
    the UNIQUE constraints (columns -> name)."""

    columns: dict[str, str]
    not_null: frozenset[str] = frozenset()
    generated: frozenset[str] = frozenset()
    key: tuple[str, ...] = ()
    key_constraint: str | None = None
    uniques: dict[tuple[str, ...], str] = field(default_factory=dict)


@dataclass(slots=True)
class Group:
    """Consecutive actions of one target table, kind and column list: one COPY (or one
    statement per action for a whole-row match)."""

    kind: Kind
    target: tuple[str, str]
    columns: tuple[str, ...]  # source names
    actions: list[Merged] = field(default_factory=list)


def groups(
    actions: Iterable[Merged],
    target: Callable[[str, str], tuple[str, str]],
    written: Callable[[tuple[str, str], tuple[str, ...]], tuple[str, ...]],
) -> list[Group]:
    """Actions in apply order, grouped; ``written(target, columns)`` drops the columns
    the target computes itself."""
    out: list[Group] = []
    targets: dict[tuple[str, str], tuple[str, str]] = {}
    shapes: dict[tuple[tuple[str, str], tuple[str, ...]], tuple[str, ...]] = {}
    for action in actions:  # per row: looked up once per table and column list
        kind = kind_of(action)
        source = (action.schema, action.table)
        tgt = targets.get(source)
        if tgt is None:
            tgt = targets[source] = target(*source)
        shape = (tgt, columns_of(action, kind))
        columns = shapes.get(shape)
        if columns is None:
            columns = shapes[shape] = written(*shape)
        last = out[-1] if out else None
        single = kind in ("update_row", "delete_row")
        if last is None or single or (last.kind, last.target, last.columns) != (kind, tgt, columns):
            out.append(Group(kind, tgt, columns))
        out[-1].actions.append(action)
    return out


# --- the sink ------------------------------------------------------------------------------


class PostgreSQLSink(TableSink):
    """Writes batches to PostgreSQL (see the module docstring)."""

    config_model = PostgreSQLSinkConfig
    config: PostgreSQLSinkConfig
    kind = "PostgreSQL sink"

    @classmethod
    def describe(cls, config: PostgreSQLSinkConfig) -> str:
        where = "url (secret)" if config.url else _fields_target(config)
        return f"postgresql {where} ddl={config.ddl}"

    def __init__(self, config: PostgreSQLSinkConfig, pipeline_id: str) -> None:
        super().__init__(config, pipeline_id)
        # read from the catalog once per connection (a DDL or a failure drops both)
        self._tables: dict[tuple[str, str], PgTable] = {}
        self._stages: dict[tuple[str, str], str] = {}
        self._staged: set[str] = set()  # staging tables written in this transaction
        self._converters: dict[tuple[Any, ...], tuple[Any, list[Convert | None]]] = {}
        # per target table, the source columns generated_columns: skip leaves out (set by
        # _prepare from the batch's definitions, before its rows are grouped)
        self._skipped: dict[tuple[str, str], frozenset[str]] = {}
        self._cleaned: dict[tuple[str, str], Cleaned] = {}
        self._said: set[tuple[tuple[str, str], str]] = set()
        self._ckpt = f"{qi(self._name(config.checkpoint_schema))}.{qi('ferry_checkpoint')}"

    # -- names

    def _name(self, name: str) -> str:
        return name.lower() if self.config.identifiers == "lower" else name

    def schema(self, database: str) -> str:
        """Target schema of a source database (``schema_map``)."""
        return self._name(self.config.schema_map.get(database, database))

    def target(self, schema: str, table: str) -> tuple[str, str]:
        """Target (schema, table): ``table_map`` first, then ``schema_map``."""
        mapped = self.config.table_map.get(f"{schema}.{table}")
        target_schema = self.config.schema_map.get(schema, schema)
        if mapped:
            first, dot, second = mapped.partition(".")
            target_schema, table = (first, second) if dot else (target_schema, first)
        return self._name(target_schema), self._name(table)

    def _where(self) -> str:
        cfg = self.config
        if cfg.url is not None:
            from psycopg.conninfo import conninfo_to_dict

            info = conninfo_to_dict(cfg.url.get_secret_value())
            host, port = info.get("host", "localhost"), info.get("port", 5432)
            return f"PostgreSQL sink {info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"
        return f"PostgreSQL sink {_fields_target(cfg)}"

    def _classify(self, exc: BaseException, message: str) -> FerryError:
        """``pipeline.errors.classify`` (psycopg's errors by :func:`pg_resumable`), naming the
        setting when the error is the sink's timeout."""
        timeout = sqlstate(exc) == "57014" or "timeout expired" in str(exc)
        if timeout:
            message += (
                f" (no answer within sink.timeout_s, {self.config.timeout_s:g} s: raise it when"
                " the target is slow or a statement, like an ALTER of a big table, runs longer)"
            )
        return classify(exc, message)

    # -- connection

    def open(self) -> None:
        self._connection()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._tables.clear()
        self._stages.clear()
        if conn is not None:
            with contextlib.suppress(Exception):  # already gone; nothing to release
                conn.close()

    def _connect_args(self) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        timeout_ms = int(cfg.timeout_s * 1000)
        args: dict[str, Any] = {
            "autocommit": False,
            "connect_timeout": max(1, int(cfg.timeout_s)),
            "application_name": f"ferry {self.pipeline_id}"[:63],
            # a server that stops answering (frozen, network gone) is noticed, not waited on
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": timeout_ms,
            "options": f"-c statement_timeout={timeout_ms} -c TimeZone=UTC",
        }
        if cfg.url is not None:
            return cfg.url.get_secret_value(), args
        args.update(
            host=cfg.host,
            port=cfg.port,
            user=cfg.user,
            password=cfg.password.get_secret_value(),
            dbname=cfg.database,
            sslmode=cfg.sslmode,
        )
        if cfg.sslrootcert:
            args["sslrootcert"] = cfg.sslrootcert
        return "", args

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        import psycopg

        where = self._where()
        conninfo, args = self._connect_args()
        try:
            conn = psycopg.connect(conninfo, **args)
        except Exception as exc:
            raise self._classify(exc, f"{where}: cannot connect: {exc}").context(
                pipeline=self.pipeline_id
            ) from exc
        try:
            with conn.cursor() as cur:
                self._ensure_checkpoint_table(cur)
            conn.commit()
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.close()
            message = f"{where}: session setup failed: {exc}"
            raise self._classify(exc, message).context(pipeline=self.pipeline_id) from exc
        logger.info("{}: connected, checkpoint table {}", where, self._ckpt)
        self._conn = conn
        return conn

    def _ensure_checkpoint_table(self, cur: Any) -> None:
        schema = self._name(self.config.checkpoint_schema)
        cur.execute("SELECT to_regclass(%s)", (regname(schema, "ferry_checkpoint"),))
        if cur.fetchone()[0] is None:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {qi(schema)}", ())
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self._ckpt} ("
                " pipeline_id varchar(191) PRIMARY KEY,"
                " epoch bigint NOT NULL,"
                " position jsonb NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())",
                (),
            )
        # One row per pipeline from the start, so the fencing read always locks a row.
        cur.execute(
            f"INSERT INTO {self._ckpt} (pipeline_id, epoch) VALUES (%s, 0)"
            " ON CONFLICT (pipeline_id) DO NOTHING",
            (self.pipeline_id,),
        )

    # -- checkpoint

    def checkpoint(self) -> SinkCheckpoint | None:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT epoch, position::text FROM {self._ckpt} WHERE pipeline_id=%s",
                    (self.pipeline_id,),
                )
                row = cur.fetchone()
            conn.commit()
        except Exception as exc:
            self._drop()
            message = f"{self._where()}: reading the checkpoint failed: {exc}"
            raise self._classify(exc, message).context(pipeline=self.pipeline_id) from exc
        if row is None or row[1] is None:
            return None
        return SinkCheckpoint(Position.from_json(row[1]), int(row[0]))

    def _write_checkpoint(self, cur: Any, epoch: int, position: Position | None) -> None:
        cur.execute(
            f"INSERT INTO {self._ckpt} AS c (pipeline_id, epoch, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (pipeline_id) DO UPDATE SET epoch=EXCLUDED.epoch,"
            " position=COALESCE(EXCLUDED.position, c.position), updated_at=now()",
            (self.pipeline_id, epoch, position.to_json() if position else None),
        )
        self._last_checkpoint_write = time.monotonic()

    # -- load

    def _write_rows(self, batch: Batch, epoch: int, rows: list[RowChange], merged: bool) -> int:
        definitions = {(c.schema, c.table): c.definition for c in rows if c.definition is not None}
        actions = merge(rows) if merged else in_order(rows)
        return self._transaction(batch, epoch, actions, definitions, merged)

    def _conflict(self, exc: FerryError) -> bool:
        return (sqlstate(exc) or "").startswith("23")  # integrity constraint violation

    def _transaction(
        self,
        batch: Batch,
        epoch: int,
        actions: list[Merged],
        definitions: dict[tuple[str, str], TableSchema],
        merged: bool,
    ) -> int:
        """Fence, prepare tables, apply, checkpoint, commit — or roll back and raise.
        Returns the statements sent."""
        context: dict[str, Any] = {
            "pipeline": self.pipeline_id,
            "batch_id": batch.batch_id,
            "position": batch.position,
        }
        conn = self._connection()
        self._staged.clear()
        at: list[Any] = [None, None]  # the group being applied, and its action if known
        sent = 0
        try:
            with conn.cursor() as cur:
                self._fence(cur, epoch, batch)
                self._prepare(cur, actions, definitions)
                for group in groups(actions, self.target, self._written):
                    at[:] = [group, None]
                    sent += self._apply(cur, group, definitions, merged, at)
                at[:] = [None, None]
                self._write_checkpoint(cur, epoch, batch.position)
            conn.commit()
        except FerryError as exc:
            self._drop()
            raise exc.context(**context) from exc.__cause__
        except Exception as exc:
            group, index = at
            if group is None:
                message = f"PostgreSQL sink: batch transaction failed: {type(exc).__name__}: {exc}"
            else:
                message = self._describe(group, index, exc)
            self._drop()
            raise self._classify(exc, message).context(**context) from exc
        return sent

    # -- target tables

    def _facts(self, cur: Any, target: tuple[str, str]) -> PgTable | None:
        """The target table's catalog entry (cached per connection); None: no such table."""
        facts = self._tables.get(target)
        if facts is not None:
            return facts
        cur.execute(
            "SELECT a.attname, CASE WHEN t.typtype = 'e' THEN"
            "  '\"' || replace(n.nspname, '\"', '\"\"') || '\".\"'"
            "  || replace(t.typname, '\"', '\"\"') || '\"'"
            "  ELSE format_type(a.atttypid, a.atttypmod) END,"
            " a.attnotnull, a.attgenerated <> ''"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"
            " ORDER BY a.attnum",
            (regname(*target),),
        )
        rows = cur.fetchall()
        if not rows:
            return None
        cur.execute(
            "SELECT c.conname, c.contype, ARRAY(SELECT a.attname FROM unnest(c.conkey)"
            "  WITH ORDINALITY k(num, o) JOIN pg_attribute a ON a.attrelid = c.conrelid"
            "  AND a.attnum = k.num ORDER BY k.o)"
            " FROM pg_constraint c WHERE c.conrelid = to_regclass(%s)"
            " AND c.contype IN ('p', 'u') ORDER BY c.conname",
            (regname(*target),),
        )
        constraints = cur.fetchall()
        primary = [(name, tuple(columns)) for name, kind, columns in constraints if kind == "p"]
        facts = PgTable(
            columns={r[0]: r[1] for r in rows},
            not_null=frozenset(r[0] for r in rows if r[2]),
            generated=frozenset(r[0] for r in rows if r[3]),
            key=primary[0][1] if primary else (),
            key_constraint=primary[0][0] if primary else None,
            uniques={tuple(cols): name for name, kind, cols in constraints if kind == "u"},
        )
        self._tables[target] = facts
        return facts

    def _written(self, target: tuple[str, str], columns: tuple[str, ...]) -> tuple[str, ...]:
        """``columns`` (source names) without those the target computes itself and those
        ``generated_columns: skip`` leaves out."""
        facts = self._tables.get(target)
        left_out = self._skipped.get(target, frozenset())
        if (facts is None or not facts.generated) and not left_out:
            return columns
        generated = facts.generated if facts is not None else frozenset()
        return tuple(c for c in columns if c not in left_out and self._name(c) not in generated)

    def _enum_types(self, cur: Any, target: tuple[str, str], definition: TableSchema) -> list[str]:
        """With ``enums: enum_types``, what makes each ENUM column's enum type hold the
        definition's members: CREATE TYPE, or ALTER TYPE … ADD VALUE for the members it
        lacks, in the definition's order (PostgreSQL cannot drop a member: those stay)."""
        if self.config.enums != "enum_types":
            return []
        out = []
        left_out = skipped(definition, self.config)
        where = f"{definition.schema}.{definition.table}"
        for column in definition.columns:
            enum = enum_type(target, self._name(column.name))
            if column.name in left_out or pg_type(column, self.config, where, enum) != enum:
                continue
            members = enum_members(column)
            cur.execute(
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = to_regtype(%s)"
                " ORDER BY enumsortorder",
                (enum.replace("%%", "%"),),
            )
            have = [r[0] for r in cur.fetchall()]
            if not have:
                cur.execute("SELECT to_regtype(%s) IS NOT NULL", (enum.replace("%%", "%"),))
                if not cur.fetchone()[0]:
                    labels = ", ".join(literal(m) for m in members)
                    out.append(f"CREATE TYPE {enum} AS ENUM ({labels})")
                    continue
            for k, member in enumerate(members):
                if member in have:
                    continue
                if k > 0:
                    place = f" AFTER {literal(members[k - 1])}"
                else:
                    place = f" BEFORE {literal(have[0])}" if have else ""
                out.append(f"ALTER TYPE {enum} ADD VALUE IF NOT EXISTS {literal(member)}{place}")
                have.insert(have.index(members[k - 1]) + 1 if k > 0 else 0, member)
        return out

    def _prepare(
        self,
        cur: Any,
        actions: list[Merged],
        definitions: dict[tuple[str, str], TableSchema],
    ) -> None:
        """Create the schemas and tables the actions need, add the columns they lack."""
        shapes: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        for action in actions:  # per row: the column lists, not every column
            shapes.setdefault((action.schema, action.table), set()).add(tuple(action.row))
        for source, lists in shapes.items():
            tgt = self.target(*source)
            definition = definitions.get(source)
            left_out = skipped(definition, self.config) if definition else frozenset()
            self._skipped[tgt] = left_out
            columns = set().union(*lists) - left_out
            facts = self._facts(cur, tgt)
            if facts is None:
                if definition is None:
                    raise FatalError(
                        f"PostgreSQL sink: target table {tgt[0]}.{tgt[1]} (of"
                        f" {source[0]}.{source[1]}) does not exist and the table's definition"
                        " is unknown: create it on the target"
                    )
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {qi(tgt[0])}", ())
                for sql in self._enum_types(cur, tgt, definition):
                    cur.execute(sql, ())
                cur.execute(create_table(tgt, definition, self.config, self._name), ())
                logger.info("PostgreSQL sink: created table {}.{}", *tgt)
                facts = self._facts(cur, tgt)
                assert facts is not None
            missing = sorted(c for c in columns if self._name(c) not in facts.columns)
            if not missing:
                continue
            known = [definition.column(c) for c in missing] if definition is not None else []
            if self.config.ddl != "apply" or not known or any(c is None for c in known):
                raise FatalError(
                    f"PostgreSQL sink: target table {tgt[0]}.{tgt[1]} has no column"
                    f" {', '.join(missing)} (of {source[0]}.{source[1]}): add it on the target"
                    + ("" if self.config.ddl == "apply" else f" (sink.ddl is {self.config.ddl})")
                )
            where = f"{source[0]}.{source[1]}"
            assert definition is not None
            for sql in self._enum_types(cur, tgt, definition):
                cur.execute(sql, ())
            adds = ", ".join(  # nullable: the rows there are have no value for it
                f"ADD COLUMN IF NOT EXISTS {qi(self._name(c.name))}"
                f" {pg_type(c, self.config, where, enum_type(tgt, self._name(c.name)))}"
                for c in known
                if c is not None
            )
            cur.execute(f"ALTER TABLE {qi(tgt[0])}.{qi(tgt[1])} {adds}", ())
            logger.info("PostgreSQL sink: added column(s) {} to {}.{}", missing, *tgt)
            self._tables.pop(tgt, None)
            self._facts(cur, tgt)

    def _stage(self, cur: Any, target: tuple[str, str]) -> str:
        """This connection's staging table of ``target`` (its columns and types, no
        constraints), emptied if this transaction used it already."""
        stage = self._stages.get(target)
        if stage is None:
            facts = self._tables[target]
            stage = f"ferry_stage_{len(self._stages) + 1}"
            columns = ", ".join(
                f"{qi(c)} {t}" for c, t in facts.columns.items() if c not in facts.generated
            )
            cur.execute(f"CREATE TEMP TABLE {stage} ({columns}) ON COMMIT DELETE ROWS", ())
            self._stages[target] = stage
        elif stage in self._staged:
            cur.execute(f"TRUNCATE {stage}", ())
        self._staged.add(stage)
        return stage

    # -- rows

    def _convert(
        self,
        group: Group,
        definitions: dict[tuple[str, str], TableSchema],
        columns: tuple[str, ...],
    ) -> list[Convert | None]:
        first = group.actions[0]
        source = (first.schema, first.table)
        definition = definitions.get(source)
        key = (source, columns)
        cached = self._converters.get(key)
        if cached is not None and cached[0] is definition:
            return cached[1]
        cleaned = self._cleaned.setdefault(source, Cleaned())
        made = converters(columns, definition, self.config, cleaned)
        self._converters[key] = (definition, made)
        return made

    def _values(
        self,
        group: Group,
        action: Merged,
        image: dict[str, Any],
        columns: tuple[str, ...],
        convs: list[Convert | None],
    ) -> list[Any]:
        out = []
        for column, conv in zip(columns, convs, strict=True):
            value = image.get(column)
            if conv is not None and value is not None:
                try:
                    value = conv(value)
                except ValueRefused as exc:
                    raise FatalError(
                        f"PostgreSQL sink: {action.schema}.{action.table} (target"
                        f" {group.target[0]}.{group.target[1]}): column {column}: {exc}; "
                        + self._row_text(action)
                    ) from None
            out.append(value)
        return out

    def _row_text(self, action: Merged) -> str:
        if action.primary_key:
            return f"key {key_text(action)}"
        return f"row {masked_row(action.row)}"

    def _say_cleaned(self, source: tuple[str, str]) -> None:
        cleaned = self._cleaned.get(source)
        if cleaned is None:
            return
        for flag, what in (
            (cleaned.json_nul, "JSON values had \\u0000 (jsonb refuses it): removed"),
            (cleaned.text_nul, "text values had NUL characters (PostgreSQL refuses them): removed"),
        ):
            if flag and (source, what) not in self._said:
                self._said.add((source, what))
                logger.warning("PostgreSQL sink: table {}.{}: {}", *source, what)

    def _apply(
        self,
        cur: Any,
        group: Group,
        definitions: dict[tuple[str, str], TableSchema],
        merged: bool,
        at: list[Any],
    ) -> int:
        """Write one group; returns the statements sent. ``at[1]`` follows the action a
        single statement is for (a COPY's failing row is in the server's message)."""
        table = f"{qi(group.target[0])}.{qi(group.target[1])}"
        facts = self._tables[group.target]
        first = group.actions[0]
        pk = first.primary_key
        names = [self._name(c) for c in group.columns]
        cols = ", ".join(qi(n) for n in names)
        convs = self._convert(group, definitions, group.columns)
        # a delete matches the key, a whole-row update or delete the row as it was
        by_before = group.kind in ("delete", "delete_row", "update_row")
        images = [(a, a.before if by_before else a.row) for a in group.actions]
        sent = 0
        if merged and group.kind in ("upsert", "delete", "insert"):
            into = table if group.kind == "insert" else self._stage(cur, group.target)
            with cur.copy(f"COPY {into} ({cols}) FROM STDIN", ()) as copy:
                for action, image in images:
                    assert image is not None
                    copy.write_row(self._values(group, action, image, group.columns, convs))
            sent += 1
            if group.kind == "upsert":
                cur.execute(self._upsert_sql(table, names, pk, f"SELECT {cols} FROM {into}"), ())
                sent += 1
            elif group.kind == "delete":
                match = " AND ".join(f"t.{qi(n)} = s.{qi(n)}" for n in names)
                cur.execute(f"DELETE FROM {table} t USING {into} s WHERE {match}", ())
                sent += 1
        else:
            types = [cast_type(facts.columns.get(n, "text")) for n in names]
            for k, (action, image) in enumerate(images):
                at[1] = k
                assert image is not None
                values = self._values(group, action, image, group.columns, convs)
                new: list[Any] = []
                if group.kind == "update_row":
                    assert action.after is not None
                    changed = self._written(group.target, tuple(action.after))
                    new_convs = self._convert(group, definitions, changed)
                    new = self._values(group, action, action.after, changed, new_convs)
                sql, args = self._row_statement(group, action, table, names, types, values, new)
                cur.execute(sql, args)
                sent += 1
            at[1] = None
        self._say_cleaned((first.schema, first.table))
        return sent

    def _upsert_sql(self, table: str, names: list[str], pk: tuple[str, ...], rows: str) -> str:
        keys = [self._name(k) for k in pk]
        update = [n for n in names if n not in keys]
        cols = ", ".join(qi(n) for n in names)
        conflict = ", ".join(qi(k) for k in keys)
        if not update:
            return f"INSERT INTO {table} ({cols}) {rows} ON CONFLICT ({conflict}) DO NOTHING"
        sets = ", ".join(f"{qi(n)} = EXCLUDED.{qi(n)}" for n in update)
        return f"INSERT INTO {table} ({cols}) {rows} ON CONFLICT ({conflict}) DO UPDATE SET {sets}"

    def _row_statement(
        self,
        group: Group,
        action: Merged,
        table: str,
        names: list[str],
        types: list[str],
        values: list[Any],
        new: list[Any],
    ) -> tuple[str, list[Any]]:
        """One action as one statement with parameters (cast to the column types); ``new``
        holds the values an update sets, in ``action.after``'s written columns."""
        placeholders = [f"%s::{t}" for t in types]
        if group.kind in ("upsert", "insert"):
            rows = f"VALUES ({', '.join(placeholders)})"
            if group.kind == "insert":
                cols = ", ".join(qi(n) for n in names)
                return f"INSERT INTO {table} ({cols}) {rows}", values
            return self._upsert_sql(table, names, action.primary_key, rows), values
        if group.kind == "delete":
            match = " AND ".join(f"{qi(n)} = {p}" for n, p in zip(names, placeholders, strict=True))
            return f"DELETE FROM {table} WHERE {match}", values
        # a whole-row match, one row (by ctid) of possibly several identical ones
        match = " AND ".join(
            f"{qi(n)} IS NOT DISTINCT FROM {p}" for n, p in zip(names, placeholders, strict=True)
        )
        one = f"ctid = (SELECT ctid FROM {table} WHERE {match} LIMIT 1)"
        if group.kind == "delete_row":
            return f"DELETE FROM {table} WHERE {one}", values
        assert action.after is not None
        facts = self._tables[group.target]
        set_names = [self._name(c) for c in self._written(group.target, tuple(action.after))]
        sets = ", ".join(
            f"{qi(n)} = %s::{cast_type(facts.columns.get(n, 'text'))}" for n in set_names
        )
        return f"UPDATE {table} SET {sets} WHERE {one}", [*new, *values]

    def _describe(self, group: Group, index: int | None, exc: BaseException) -> str:
        """Table, key, column and statement kind of a failed write — never a value."""
        first = group.actions[0]
        diag = getattr(exc, "diag", None)
        facts = self._tables.get(group.target)
        names = [
            *group.target,
            *(facts.columns if facts else ()),
            *(
                getattr(diag, f, None) or ""
                for f in ("constraint_name", "column_name", "table_name", "datatype_name")
            ),
        ]
        primary = (getattr(diag, "message_primary", None) or str(exc).splitlines()[0]).strip()
        state = getattr(exc, "sqlstate", None)
        text = without_values(primary, names)
        column = getattr(diag, "column_name", None)
        copied = _COPY_AT.search(getattr(diag, "context", None) or "")
        if copied and index is None:
            line = int(copied.group(1))
            column = column or copied.group(2).strip().strip('"')
            index = line - 1 if 0 < line <= len(group.actions) else None
        parts = [
            f"PostgreSQL sink: {first.schema}.{first.table} (target"
            f" {group.target[0]}.{group.target[1]}): " + (f"[{state}] " if state else "") + text
        ]
        if column:
            parts.append(f"column {column}")
        if index is not None and 0 <= index < len(group.actions):
            parts.append(self._row_text(group.actions[index]))
        elif first.primary_key:
            keys = [key_text(a) for a in group.actions[:5]]
            more = "…" if len(group.actions) > 5 else ""
            parts.append(f"one of {len(group.actions)} keys {', '.join(keys)}{more}")
        if state == "42P10":  # ON CONFLICT without a matching unique index
            parts.append(
                "the target table needs a primary key or unique constraint on the key columns"
                f" ({', '.join(first.primary_key)})"
            )
        parts.append(f"writing: {group.kind} of {len(group.actions)} row(s)")
        return "; ".join(parts)

    # -- DDL

    def _load_ddl(self, batch: Batch, ddl: DdlChange, epoch: int) -> None:
        context: dict[str, Any] = {"pipeline": self.pipeline_id, "batch_id": batch.batch_id}
        short = shown_statement(ddl.statement.strip())
        policy = self.config.ddl
        if policy == "fail":
            raise FatalError(
                f"PostgreSQL sink: {ddl.kind} DDL in schema {ddl.schema!r} and sink.ddl is"
                f" 'fail': {short}; apply it to the target yourself, then resume with"
                " sink.ddl: skip",
                position=ddl.position,
                **context,
            )
        conn = self._connection()
        statements: list[str] | None = []
        try:
            with conn.cursor() as cur:
                self._fence(cur, epoch, batch)
                if policy == "apply":
                    statements = self._translate(cur, ddl)
                    if statements is None and self.config.untranslated == "fail":
                        raise FatalError(
                            f"PostgreSQL sink: ferry does not translate this {ddl.kind} DDL"
                            f" (sink.untranslated is 'fail'): {short}; apply it to the target"
                            " yourself, then resume with sink.untranslated: skip",
                            position=ddl.position,
                            **context,
                        )
                    for sql in statements or ():
                        cur.execute(sql, ())
                self._write_checkpoint(cur, epoch, batch.position)
            conn.commit()
        except FerryError as exc:
            self._drop()
            raise exc.context(**context) from exc.__cause__
        except Exception as exc:
            self._drop()
            # what the server may quote: the names in the translated statements, or values
            names = _QUOTED.findall(" ".join(statements or ()))
            said = without_values(str(exc).splitlines()[0], [n.replace('""', '"') for n in names])
            message = f"PostgreSQL sink: DDL failed on the target: {said}; statement: {short}"
            raise self._classify(exc, message).context(position=ddl.position, **context) from exc
        if policy == "skip":
            logger.info("PostgreSQL sink: skipping {} DDL (sink.ddl=skip): {}", ddl.kind, short)
        elif statements is None:
            logger.warning(
                "PostgreSQL sink: not translated, skipped (sink.untranslated=skip): {}", short
            )
        else:
            logger.info(
                "PostgreSQL sink: applied {} DDL as {} statement(s): {}",
                ddl.kind,
                len(statements),
                short,
            )
        # the tables' columns and this connection's staging tables may be stale
        self.close()

    def _translate(self, cur: Any, ddl: DdlChange) -> list[str] | None:
        """PostgreSQL statements doing what ``ddl`` did; None: not translated."""
        verb, what = ddl.verb.upper(), ddl.object.upper()
        if ddl.kind == "database":
            database = ddl.tables[0][0] if ddl.tables else ddl.schema
            if verb == "CREATE":
                return [f"CREATE SCHEMA IF NOT EXISTS {qi(self.schema(database))}"]
            if verb == "DROP":
                schema = self.schema(database)
                if schema == self._name(self.config.checkpoint_schema):
                    raise FatalError(
                        f"PostgreSQL sink: DROP DATABASE {database} would drop schema {schema},"
                        " which holds ferry's checkpoint table: set sink.checkpoint_schema to a"
                        " schema of its own (the default, ferry), then resume"
                    )
                return [f"DROP SCHEMA IF EXISTS {qi(schema)} CASCADE"]
            if verb == "ALTER":
                return []  # a charset or collation: nothing to do in PostgreSQL
            return None
        if ddl.kind != "table" or what not in ("TABLE", "INDEX"):
            return None
        if what == "INDEX":
            if not (verb == "DROP" or re.match(r"\s*CREATE\s+UNIQUE\b", ddl.statement, re.I)):
                return None  # ferry creates no plain indexes on the target
            verb = "ALTER"  # a unique key added or dropped: the table as the definition says
        targets = [self.target(s, t) for s, t in ddl.tables]
        if verb == "DROP":
            return [f"DROP TABLE IF EXISTS {qi(s)}.{qi(t)}" for s, t in targets]
        if verb == "TRUNCATE":
            present = [t for t in targets if self._facts(cur, t) is not None]
            return (
                [f"TRUNCATE {', '.join(f'{qi(s)}.{qi(t)}' for s, t in present)}"] if present else []
            )
        if verb == "RENAME":
            out: list[str] = []
            for old, new in zip(targets[::2], targets[1::2], strict=False):
                out += self._rename_table(cur, old, new)
            return out
        if verb == "CREATE":
            out = []
            for change in ddl.table_changes:
                if change.definition is None:
                    return None
                tgt = self.target(change.schema, change.table)
                out.append(f"CREATE SCHEMA IF NOT EXISTS {qi(tgt[0])}")
                out += self._enum_types(cur, tgt, change.definition)
                out.append(create_table(tgt, change.definition, self.config, self._name))
            return out
        if verb == "ALTER":
            out = []
            for change in ddl.table_changes:
                if change.definition is None:
                    return None
                tgt = self.target(change.schema, change.table)
                # ALTER TABLE … RENAME TO: the statement's first table is the old name
                renamed = bool(ddl.tables) and tuple(ddl.tables[0]) != (change.schema, change.table)
                was = targets[0] if renamed else tgt
                out += self._alter(cur, was, tgt, change.definition, ddl.statement)
            return out
        return None

    def _rename_table(self, cur: Any, old: tuple[str, str], new: tuple[str, str]) -> list[str]:
        if self._facts(cur, old) is None or self._facts(cur, new) is not None:
            return []  # renamed already (a replay), or never created here
        out = []
        if old[0] != new[0]:
            out.append(f"CREATE SCHEMA IF NOT EXISTS {qi(new[0])}")
            out.append(f"ALTER TABLE {qi(old[0])}.{qi(old[1])} SET SCHEMA {qi(new[0])}")
        if old[1] != new[1]:
            out.append(f"ALTER TABLE {qi(new[0])}.{qi(old[1])} RENAME TO {qi(new[1])}")
        return out

    def _alter(
        self,
        cur: Any,
        was: tuple[str, str],
        target: tuple[str, str],
        definition: TableSchema,
        statement: str,
    ) -> list[str]:
        """Statements that bring the target table to ``definition`` (renamed from ``was``)."""
        facts = self._facts(cur, was) if was != target else None
        out = self._rename_table(cur, was, target) if facts is not None else []
        facts = facts or self._facts(cur, target)
        if facts is None:  # not on the target: create it as it is now
            return [
                f"CREATE SCHEMA IF NOT EXISTS {qi(target[0])}",
                *self._enum_types(cur, target, definition),
                create_table(target, definition, self.config, self._name),
            ]
        table = f"{qi(target[0])}.{qi(target[1])}"
        where = f"{definition.schema}.{definition.table}"
        have = dict(facts.columns)
        renamed: dict[str, str] = {}
        for old, new in column_renames(statement):
            o, n = self._name(old), self._name(new)
            if o in have and n not in have:
                out.append(f"ALTER TABLE {table} RENAME COLUMN {qi(o)} TO {qi(n)}")
                have[n] = have.pop(o)
                renamed[o] = n
        out += self._enum_types(cur, target, definition)
        left_out = skipped(definition, self.config)
        wanted = {self._name(c.name): c for c in definition.columns if c.name not in left_out}
        # only what the statement drops: a column added on the target stays
        dropped = {self._name(c) for c in column_drops(statement)}
        for name in have:
            if name not in wanted and name in dropped:
                out.append(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {qi(name)}")
        for name, column in wanted.items():
            pg = pg_type(column, self.config, where, enum_type(target, name))
            not_null = not nullable(column, self.config)
            if name not in have:
                default = added_default(column, pg) if not_null else None
                if default is None:
                    out.append(f"ALTER TABLE {table} ADD COLUMN {qi(name)} {pg}")
                else:  # fill the rows there are as MySQL did, then keep no default
                    out.append(
                        f"ALTER TABLE {table} ADD COLUMN {qi(name)} {pg} NOT NULL DEFAULT {default}"
                    )
                    out.append(f"ALTER TABLE {table} ALTER COLUMN {qi(name)} DROP DEFAULT")
                continue
            if have[name] != pg:
                # an enum type takes its values as text (there is no cast between two enums)
                via = "::text" if pg == enum_type(target, name) else ""
                out.append(
                    f"ALTER TABLE {table} ALTER COLUMN {qi(name)} TYPE {pg}"
                    f" USING {qi(name)}{via}::{pg}"
                )
            in_key = name in facts.key
            if not in_key and not_null != (name in facts.not_null):
                change = "SET" if not_null else "DROP"
                out.append(f"ALTER TABLE {table} ALTER COLUMN {qi(name)} {change} NOT NULL")
        return out + self._keys(table, facts, definition, statement, renamed)

    def _keys(
        self,
        table: str,
        facts: PgTable,
        definition: TableSchema,
        statement: str,
        renamed: dict[str, str],
    ) -> list[str]:
        """Statements that give the target table the definition's keys (``table_keys``):
        its primary key, and a UNIQUE constraint per unique key. A UNIQUE constraint that no
        key of the definition has is dropped only when the statement drops an index, a key
        or a constraint (one added on the target by hand stays otherwise); ``renamed``
        holds the columns renamed just before (PostgreSQL renames them in its constraints)."""
        out = []
        keys = [
            (kind, tuple(self._name(k) for k in columns))
            for kind, columns in table_keys(definition, self.config)
        ]
        primary = next((columns for kind, columns in keys if kind == "PRIMARY KEY"), ())
        uniques = [columns for kind, columns in keys if kind == "UNIQUE"]
        had = tuple(renamed.get(k, k) for k in facts.key)
        if had and had != primary and facts.key_constraint:
            out.append(f"ALTER TABLE {table} DROP CONSTRAINT {qi(facts.key_constraint)}")
        if primary and primary != had:
            out.append(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(map(qi, primary))})")
        have = {tuple(renamed.get(k, k) for k in c): name for c, name in facts.uniques.items()}
        if _DROPS_KEY.search(statement):
            for columns, name in have.items():
                if columns not in uniques:
                    out.append(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {qi(name)}")
        for columns in uniques:
            if columns not in have:
                out.append(f"ALTER TABLE {table} ADD UNIQUE ({', '.join(map(qi, columns))})")
        return out

    # -- ferry check

    def _reach(self) -> str:
        return f"({self._where()})"

    def _grant_hint(self) -> str:
        cfg = self.config
        return (
            f"grant {cfg.user} CREATE on database {cfg.database}, and USAGE, CREATE on schema"
            f" {cfg.checkpoint_schema}"
        )
