"""The shared vocabulary of ferry: positions, changes and batches.

This module imports nothing else from the project; `selector`, `arbitrate` and
`sinks` may import it (and `pipeline.errors`) but nothing else from `pipeline`.

Position semantics (the invariant every part relies on):

* ``file``/``pos`` is where the binlog stream must be (re)opened: the start of
  a transaction, never the middle of one.
* ``row_offset`` is how many row changes of the transaction that starts at
  ``file``/``pos`` were already delivered. It is non-zero only for the
  committed position of a piece of a transaction split by ``batch.max_rows``;
  a resume re-reads that transaction and skips exactly that many rows.
* ``gtid_set`` is the server's executed GTID set at that point, when the
  server has GTIDs (MySQL ``gtid_mode=ON`` UUID:interval sets, or MariaDB
  ``domain-server-seq`` lists).
"""

from __future__ import annotations

import json
import weakref
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipeline.dialect.types import base_type

Op = Literal["insert", "update", "delete", "read"]  # read: a row copied by a snapshot
OPS: tuple[Op, ...] = ("insert", "update", "delete", "read")


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """Where a running snapshot is; committed with the position, so a restart continues it.

    ``request`` names what asked for it (``initial``, or a ``ferry snapshot`` request
    id). ``tables`` are the ``schema.table`` names still to read, the one being read
    first; ``after`` is the key of its last row handed out (JSON text written by the
    selector; None: from its start); ``rows`` counts its rows handed out.
    ``done`` holds finished tables with their row counts, ``estimates`` the row
    estimates taken when the snapshot started (for progress), ``started`` its unix
    time.
    """

    request: str
    tables: tuple[str, ...]
    after: str | None = None
    rows: int = 0
    done: tuple[tuple[str, int], ...] = ()
    estimates: tuple[tuple[str, int], ...] = ()
    started: float = 0.0

    @property
    def table(self) -> str | None:
        """The table being read, None when every table is done."""
        return self.tables[0] if self.tables else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotProgress:
        return cls(
            request=str(data["request"]),
            tables=tuple(data.get("tables") or ()),
            after=data.get("after"),
            rows=int(data.get("rows") or 0),
            done=tuple((str(t), int(n)) for t, n in data.get("done") or ()),
            estimates=tuple((str(t), int(n)) for t, n in data.get("estimates") or ()),
            started=float(data.get("started") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A resumable point in the binlog (see the module docstring)."""

    file: str
    pos: int
    gtid_set: str | None = None
    row_offset: int = 0
    ts: float = 0.0  # event time (unix seconds) of the last change covered; 0 if unknown
    snapshot: SnapshotProgress | None = None  # a snapshot running at this point, if any

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.snapshot is None:
            del data["snapshot"]  # the form positions had before snapshots existed
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(
            file=str(data["file"]),
            pos=int(data["pos"]),
            gtid_set=data.get("gtid_set") or None,
            row_offset=int(data.get("row_offset") or 0),
            ts=float(data.get("ts") or 0.0),
            snapshot=SnapshotProgress.from_dict(data["snapshot"]) if data.get("snapshot") else None,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Position:
        return cls.from_dict(json.loads(text))

    def sort_key(self) -> tuple[str, int, int, int]:
        """Order of positions on one server.

        A binlog file name is ``<basename>.<sequence>``; the sequence is compared as a
        number, because it gains a digit after 999999 (``mysql-bin.999999`` is followed
        by ``mysql-bin.1000000``, which sorts first as a string).
        """
        stem, dot, sequence = self.file.rpartition(".")
        if dot and sequence.isdigit():
            return (stem, int(sequence), self.pos, self.row_offset)
        return (self.file, -1, self.pos, self.row_offset)

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional constructor call: half the pickling cost of a slots dataclass's default,
        # which matters because batches cross a process boundary (selector.process).
        fields = (self.file, self.pos, self.gtid_set, self.row_offset, self.ts, self.snapshot)
        return (Position, fields)

    def __str__(self) -> str:
        text = f"{self.file}:{self.pos}"
        if self.row_offset:
            text += f"+{self.row_offset}"
        if self.gtid_set:
            text += f" gtid={self.gtid_set}"
        if self.snapshot is not None and self.snapshot.table:
            text += f" snapshot={self.snapshot.table}+{self.snapshot.rows}"
        return text


class ZeroDate(str):
    """A DATE, DATETIME or TIMESTAMP value Python's ``datetime`` cannot hold, as MySQL writes it.

    Zero and partly zero dates (``'0000-00-00'``, ``'2015-00-21'``, ``'0000-01-21'``,
    ``'0000-00-00 00:00:00.000000'``), which MySQL stores unless ``NO_ZERO_DATE`` /
    ``NO_ZERO_IN_DATE`` forbid them. A ``str``, so a sink writes it back as it came.
    """

    __slots__ = ()


class JsonText(str):
    """A JSON column's document, as text: byte for byte what MariaDB stored (its JSON is
    LONGTEXT), or MySQL's own text form of its binary JSON. Formats may nest it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table's definition, as a DDL statement wrote it.

    The vocabulary is Debezium's (its ``tableChanges`` columns), because that is
    what consumers of schema changes already read: ``type_name`` is the type as
    spelled, upper case, with its modifiers (``INTEGER UNSIGNED``, ``BOOL``,
    ``VARCHAR BINARY``, ``DOUBLE PRECISION``), ``length``/``scale`` the written
    dimensions (DATETIME(6): length 6; DECIMAL without any: 10, 0; ENUM: 1; SET:
    2n-1), ``generated`` means auto-increment (Debezium's meaning, not a
    generated column), ``default`` the default value as written (string
    literals unquoted, ``CURRENT_TIMESTAMP`` as ``1970-01-01 00:00:00``; None when
    there is none, it is NULL or an expression) and ``enum_values`` the members
    of an ENUM or SET as written, quotes included (``'a'``). ``column_type`` is the
    type as the DDL wrote it, dimensions included (``INT(10) UNSIGNED``, ``VARCHAR(20)``).
    ``computed`` says whether the column is a generated column (``AS (expr)``):
    ``VIRTUAL`` or ``STORED`` (MariaDB's ``PERSISTENT``), None for a plain column or when
    unknown (a definition read from a table map).
    """

    name: str
    type_name: str
    jdbc_type: int  # java.sql.Types
    position: int  # 1-based
    length: int | None = None
    scale: int | None = None
    optional: bool = True
    charset: str | None = None
    auto_increment: bool = False
    generated: bool = False
    comment: str | None = None
    default: str | None = None
    enum_values: tuple[str, ...] = ()
    column_type: str = ""
    computed: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (Column, tuple(getattr(self, f) for f in Column.__slots__))

    @property
    def base_type(self) -> str:
        """The type without its modifiers: ``INT UNSIGNED ZEROFILL`` -> ``INT``."""
        return base_type(self.type_name)[0]

    @property
    def unsigned(self) -> bool:
        """``UNSIGNED`` (or ``ZEROFILL``, which implies it)."""
        return base_type(self.type_name)[1]


@dataclass(frozen=True, slots=True, weakref_slot=True)
class TableSchema:
    """A table's definition at one point of the binlog: its columns, key and charset.

    One object per table version, shared by every row change of that table (and
    pickled once per batch). ``primary_key`` is the key Debezium would use: the
    primary key, else the first unique key (see ``selector.schemas``). ``unique_keys``
    holds every UNIQUE key of the table as ``(index name, columns)``, in the order the
    DDL gave them (the one ``primary_key`` took included).
    """

    schema: str
    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    charset: str | None = None
    comment: str | None = None
    unique_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        args = (
            self.schema,
            self.table,
            self.columns,
            self.primary_key,
            self.charset,
            self.comment,
            self.unique_keys,
        )
        return (_interned_table, args)

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None


# Unpickled definitions are interned: every batch unpickles its own copy, and sinks cache
# per-table encoders by identity, so equal definitions must come back as one object.
_TABLES: weakref.WeakValueDictionary[tuple[Any, ...], TableSchema] = weakref.WeakValueDictionary()


def _interned_table(*args: Any) -> TableSchema:
    found = _TABLES.get(args)
    if found is None:
        found = TableSchema(*args)
        _TABLES[args] = found
    return found


@dataclass(slots=True)
class SourceEvent:
    """The binlog event a row change came from, for formats that name it (Debezium's
    ``source.pos``/``row``/``server_id``): where the rows event starts, the server
    that wrote it, and the transaction index of its first row. One object per rows
    event, shared by its rows; never changed once made (not frozen: a frozen dataclass
    takes three times as long to build, and one is built per rows event)."""

    pos: int
    server_id: int
    first_index: int = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (SourceEvent, (self.pos, self.server_id, self.first_index))


@dataclass(slots=True)
class RowChange:
    """One row changed by one binlog row event.

    ``before`` is None for inserts, ``after`` is None for deletes. Values are
    Python values as decoded from the binlog (int, float, Decimal, datetime,
    date, timedelta, str, bytes, set, ZeroDate, JsonText, None; the table at the
    top of ``selector.values`` says which type holds which column type).
    """

    schema: str
    table: str
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    primary_key: tuple[str, ...]
    ts: float  # event time, unix seconds (binlog header resolution: 1 s)
    # Where this change's transaction starts; shared by the rows of one rows event (one
    # object, not one per row: it is on the per-row hot path and pickles once per batch).
    position: Position
    gtid: str | None = None
    index: int = 0  # of this change in its transaction (what a row_offset counts)
    # The table's definition when the change was made (None: unknown, e.g. rows a test or
    # a transform built); formats that carry column types read it.
    definition: TableSchema | None = None
    event: SourceEvent | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.schema, self.table, self.op, self.before, self.after, self.primary_key)
        more = (self.ts, self.position, self.gtid, self.index, self.definition, self.event)
        return (RowChange, (*fields, *more))

    @property
    def row(self) -> dict[str, Any]:
        """The row image that identifies the change: after for insert/update, before for delete."""
        image = self.after if self.after is not None else self.before
        assert image is not None, "a row change has a before or an after image"
        return image

    def key(self) -> tuple[Any, ...]:
        """Primary-key values (from ``before`` for a delete); the whole row when no key."""
        image = self.row
        if self.primary_key:
            return tuple(image.get(column) for column in self.primary_key)
        return tuple(image.items())


DdlKind = Literal["database", "table", "routine"]


@dataclass(frozen=True, slots=True)
class TableChange:
    """What a DDL statement did to one table: ``CREATE``, ``ALTER`` (also a rename: the
    new name, with the definition) or ``DROP``, with the definition after it (None for
    ``DROP``, or when it could not be known)."""

    kind: Literal["CREATE", "ALTER", "DROP"]
    schema: str
    table: str
    definition: TableSchema | None = None


# -- the schema history's durable form (selector.schemas writes it, arbitrate keeps it) ------

_COLUMN_DEFAULTS = {
    "length": None,
    "scale": None,
    "optional": True,
    "charset": None,
    "auto_increment": False,
    "generated": False,
    "comment": None,
    "default": None,
    "enum_values": (),
    "column_type": "",
    "computed": None,
}


def table_to_dict(table: TableSchema) -> dict[str, Any]:
    """A definition as JSON-ready data: a column's fields at their defaults are left out."""
    columns = []
    for column in table.columns:
        data: dict[str, Any] = {
            "name": column.name,
            "type_name": column.type_name,
            "jdbc_type": column.jdbc_type,
        }
        for name, default in _COLUMN_DEFAULTS.items():
            value = getattr(column, name)
            if value != default:
                data[name] = list(value) if isinstance(value, tuple) else value
        columns.append(data)
    data = {"schema": table.schema, "table": table.table, "columns": columns}
    if table.primary_key:
        data["primary_key"] = list(table.primary_key)
    if table.charset is not None:
        data["charset"] = table.charset
    if table.comment is not None:
        data["comment"] = table.comment
    if table.unique_keys:
        data["unique_keys"] = [[name, list(columns)] for name, columns in table.unique_keys]
    return data


def table_from_dict(data: dict[str, Any]) -> TableSchema:
    """The definition :func:`table_to_dict` wrote (interned, as an unpickled one is)."""
    columns = []
    for k, column in enumerate(data["columns"]):
        extra = {name: column.get(name, default) for name, default in _COLUMN_DEFAULTS.items()}
        extra["enum_values"] = tuple(extra["enum_values"])
        columns.append(
            Column(
                name=str(column["name"]),
                type_name=str(column["type_name"]),
                jdbc_type=int(column["jdbc_type"]),
                position=k + 1,
                **extra,
            )
        )
    return _interned_table(
        str(data["schema"]),
        str(data["table"]),
        tuple(columns),
        tuple(data.get("primary_key") or ()),
        data.get("charset"),
        data.get("comment"),
        tuple((str(n), tuple(map(str, c))) for n, c in data.get("unique_keys") or ()),
    )


class HistoryCorrupt(ValueError):
    """A stored schema history record or snapshot does not read back as it was written."""


def _sealed(body: dict[str, Any]) -> str:
    """``body`` as JSON with a CRC-32 of its canonical text (``crc``), so that a record
    changed or cut short in storage is told from a good one."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return json.dumps({**body, "crc": f"{zlib.crc32(text.encode()):08x}"}, sort_keys=True)


def _unsealed(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
        crc = data.pop("crc")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise HistoryCorrupt(f"{what} is not the JSON ferry wrote ({exc})") from None
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    if f"{zlib.crc32(canonical.encode()):08x}" != crc:
        raise HistoryCorrupt(f"{what} does not match its checksum (crc {crc})")
    return data


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """One schema change of a pipeline's durable schema history.

    ``position`` is just after the statement (where a stream resumes past it); ``tables``
    holds the full definition after it of every table it changed (None: the table is gone,
    e.g. dropped, or renamed away), ``databases`` the default charset of each database it
    created or altered (``dropped``: a DROP DATABASE, which also drops its tables).
    ``seq`` numbers the records of one history (1, 2, …; given when stored), ``epoch`` is
    the node's that stored it.
    """

    position: Position
    schema: str
    statement: str
    kind: str = "table"
    verb: str = ""
    object: str = ""
    tables: tuple[tuple[str, str, TableSchema | None], ...] = ()
    databases: tuple[tuple[str, str | None, bool], ...] = ()
    seq: int = 0
    epoch: int | None = None

    def to_json(self) -> str:
        return _sealed(
            {
                "seq": self.seq,
                "epoch": self.epoch,
                "position": self.position.to_dict(),
                "schema": self.schema,
                "statement": self.statement,
                "kind": self.kind,
                "verb": self.verb,
                "object": self.object,
                "tables": [
                    [s, t, table_to_dict(d) if d is not None else None] for s, t, d in self.tables
                ],
                "databases": [[d, c, dropped] for d, c, dropped in self.databases],
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes, what: str = "schema history record") -> SchemaRecord:
        data = _unsealed(text, what)
        try:
            return cls(
                position=Position.from_dict(data["position"]),
                schema=str(data["schema"]),
                statement=str(data["statement"]),
                kind=str(data["kind"]),
                verb=str(data["verb"]),
                object=str(data["object"]),
                tables=tuple(
                    (str(s), str(t), table_from_dict(d) if d is not None else None)
                    for s, t, d in data["tables"]
                ),
                databases=tuple((str(d), c, bool(x)) for d, c, x in data["databases"]),
                seq=int(data["seq"]),
                epoch=data["epoch"],
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise HistoryCorrupt(f"{what} is not a record ferry wrote ({exc!r})") from None


@dataclass(slots=True)
class SchemaState:
    """Every known table's definition, and databases' default charsets, at ``position``
    (the schema history there): what a snapshot of the history stores, and what a node
    recovers (newest snapshot at or before its start + the records after it). ``seq`` is
    the last record it includes."""

    position: Position | None
    tables: dict[tuple[str, str], TableSchema] = field(default_factory=dict)
    charsets: dict[str, str | None] = field(default_factory=dict)
    seq: int = 0

    def copy(self) -> SchemaState:
        return SchemaState(self.position, dict(self.tables), dict(self.charsets), self.seq)

    def apply(self, record: SchemaRecord) -> None:
        """Move forward by one record."""
        for database, charset, dropped in record.databases:
            if dropped:
                self.charsets.pop(database, None)
                for key in [k for k in self.tables if k[0] == database]:
                    del self.tables[key]
            else:
                self.charsets[database] = charset
        for schema, table, definition in record.tables:
            if definition is None:
                self.tables.pop((schema, table), None)
            else:
                self.tables[(schema, table)] = definition
        self.position = record.position
        self.seq = max(self.seq, record.seq)

    def to_json(self) -> str:
        position = self.position.to_dict() if self.position is not None else None
        return _sealed(
            {
                "seq": self.seq,
                "position": position,
                "tables": [table_to_dict(t) for _, t in sorted(self.tables.items())],
                "charsets": self.charsets,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes, what: str = "schema history snapshot") -> SchemaState:
        data = _unsealed(text, what)
        try:
            tables = [table_from_dict(t) for t in data["tables"]]
            position = data["position"]
            return cls(
                Position.from_dict(position) if position is not None else None,
                {(t.schema, t.table): t for t in tables},
                {str(k): v for k, v in data["charsets"].items()},
                int(data["seq"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise HistoryCorrupt(f"{what} is not a snapshot ferry wrote ({exc!r})") from None


@dataclass(frozen=True, slots=True)
class NameRef:
    """Where a statement names a database or a table: spans ``[start, end)`` of its text.

    ``schema_span`` is None for an unqualified table name (the session's default
    database applies). For a database name, ``database`` is True and ``name`` is
    the database. A sink that maps names rewrites exactly these spans.
    """

    name: str
    span: tuple[int, int]
    schema: str = ""
    schema_span: tuple[int, int] | None = None
    database: bool = False


@dataclass(slots=True)
class DdlChange:
    """A schema change statement; always a batch of its own.

    ``kind`` says what it changes: a database, a table/view/index/sequence, or a
    routine (procedure, function, trigger, event), which sinks may treat
    differently. ``tables`` names what it changes, resolved against ``schema``
    (the session's default database): ``(schema, table)`` pairs, ``(database,
    "")`` for a database statement or a routine. ``session`` holds the source
    session settings the statement ran with (``sql_mode``, ``time_zone``,
    ``explicit_defaults_for_timestamp``, ...) that change what it does.
    ``names`` is every database and table reference in the text, with its
    position (for sinks that map names).
    """

    schema: str
    statement: str
    ts: float
    position: Position
    gtid: str | None = None
    kind: DdlKind = "table"
    tables: tuple[tuple[str, str], ...] = ()
    session: dict[str, str] = field(default_factory=dict)
    names: tuple[NameRef, ...] = ()
    # The tables' definitions after the statement (see selector.schemas for how they are
    # known), and the event itself: its start position and the server that wrote it.
    table_changes: tuple[TableChange, ...] = ()
    event: SourceEvent | None = None
    # what the statement works on, as the classifier names it: TABLE, INDEX, VIEW,
    # SEQUENCE, DATABASE, TRIGGER, PROCEDURE, ... ('' when unknown)
    object: str = ""
    verb: str = ""  # CREATE, ALTER, DROP, RENAME, TRUNCATE ('' when unknown)

    def __post_init__(self) -> None:
        # Only ever classified: the selector passes what it classified; a DdlChange built
        # elsewhere (a tool, a test) is classified here by the same classifier, so a
        # statement is never read two ways and no sink classifies one again.
        if self.verb:
            return
        from pipeline.dialect.statements import classify  # it imports this module

        statement = classify(self.statement, self.schema)
        if statement.is_ddl:
            self.kind = statement.kind  # type: ignore[assignment]  # a DDL kind (is_ddl)
            self.tables = statement.tables
            self.object = statement.object
            self.verb = statement.verb


Change = RowChange | DdlChange


#: The table of a statement-format DML that names none (``CALL``, ``DO``, ``WITH …``):
#: counted as ``<schema>.?`` (its session's database), or ``?`` without one.
UNKNOWN_TABLE = "?"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A statement read from the binlog and deliberately not passed on.

    Only what is safe to show is kept — never the statement text, which can
    carry a password: ``kind`` (``account``, ``dml``, ``other``), ``verb``
    (``INSERT``, ``GRANT``, ``CREATE USER``…) and, for statement-format DML,
    the ``schema.table`` it changed (one Skipped per table; ``schema.?`` when
    the statement names none, see :data:`UNKNOWN_TABLE`).
    """

    kind: str
    verb: str
    table: str = ""


Message = tuple[bytes | None, bytes | None]  # (key, value); a None value is a tombstone


@dataclass(slots=True)
class Encoded:
    """A batch's row changes already encoded as messages, by the decoder process.

    When rows pass the extract and transform stages untouched, the decoder process
    encodes them in the sink's format (on its core, not the node's); ``encoding``
    names that format (``sinks.formats.base.FormatSpec``), and a sink uses the messages
    only if it is its own. ``messages[i]`` belongs to ``changes[i]``; None leaves that
    change to the sink (a DDL, or a row the decoder could not encode: the sink
    encodes it again and reports the error where it always did).
    """

    encoding: Any
    messages: list[list[Message] | None]


@dataclass(slots=True)
class Batch:
    """A unit of select/ack/rollback (Otter's Message).

    ``position`` is what becomes committed once this batch is acked. A batch
    ends on a transaction boundary (or on a ``max_rows`` split, with
    ``position.row_offset`` set); a DDL is a batch of its own. An empty batch
    carries no change but may still move the position (e.g. past filtered
    transactions) and lets the node check its lock and ack in order.
    """

    batch_id: int
    changes: list[Change] = field(default_factory=list)
    position: Position | None = None
    first_event_ts: float | None = None  # unix seconds of the first change's event
    skipped: list[Skipped] = field(default_factory=list)  # statements not passed on (counted)
    encoded: Encoded | None = None  # the changes as messages, encoded ahead (see Encoded)
    # schema history records to store with this batch's position (a DDL's; see SchemaRecord)
    history: tuple[SchemaRecord, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def row_count(self) -> int:
        return sum(1 for change in self.changes if isinstance(change, RowChange))

    def exact(self, index: int) -> Change:
        """``changes[index]`` in full. The rows of a batch encoded ahead arrive in runs
        that share one RowChange (``selector.transport``): what a sink reads of them is
        their table, operation and messages; an error that names a row takes it here."""
        exact = getattr(self.changes, "exact", None)
        return exact(index) if exact is not None else self.changes[index]
