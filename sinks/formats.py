"""Message formats: ``debezium-json``, ``ferry-json`` and ``canal-json``.

Every sink that writes JSON (Kafka, JSONL, stdout ``json``) goes through this module,
so a value is encoded the same way everywhere. A format turns one change into one or
more messages, ``(key, value)`` byte strings (:meth:`Format.messages`); a value of
``None`` is a tombstone.

* ``debezium-json``: what Debezium 3.x's MySQL connector writes through Kafka Connect's
  JsonConverter, field for field and value for value (checked against Debezium 3.6.3 by
  ``tests/integration/test_debezium_compat.py``), with Debezium's options
  (:class:`DebeziumOptions`, the same names and values).
* ``ferry-json``: ferry's own readable encoding in Debezium's envelope: ISO dates,
  exact decimals as strings, JSON columns as text, keys as JSON arrays. Every value
  reads back to exactly what the source stored.
* ``canal-json``: Canal's ``FlatMessage``, every value a string as Canal writes it.

Value encodings
===============

One row per column type, one column per encoding (debezium-json with its default
options; the options change the columns marked ¹ ² ³ ⁴, see below). The Python value
is what ``selector.values`` decodes; "the DDL" is the table definition that travels
with each row change (``pipeline.model.TableSchema``, see ``selector.schemas``).

=====================  ====================  =========================  ======================
column type            ferry-json            debezium-json              canal-json (strings)
=====================  ====================  =========================  ======================
TINYINT…BIGINT         number, exact         number (int16/32/64)       ``"42"``
BIGINT UNSIGNED        number, up to 2^64-1  number, **wraps** to        ``"18446744073709551615"``
                                             signed 64 bit (``-1``) ³
BOOL/BOOLEAN (DDL)     number                ``true``/``false``         ``"1"``
DECIMAL(p,s)           ``"12.50"``           base64 of the unscaled     ``"12.50"``
                                             two's complement ¹
FLOAT                  shortest float32      the same; FLOAT(M,D)       ``"3.14"`` (Java's
                       decimal: ``3.14``     widened to double          Float.toString)
DOUBLE, REAL           number                number (REAL: a float32)   ``"1.0E20"`` (Java's)
DATE                   ``"2024-05-01"``      days since 1970-01-01 ²    ``"2024-05-01"``
DATETIME(n)            ``"2024-05-01T13:     ms since the epoch          ``"2024-05-01
                       45:00.123456"`` (6    (n ≤ 3), µs (n > 3) ²      13:45:00.123"`` (n digits)
                       fraction digits,
                       only when not zero)
TIMESTAMP(n)           ``"…T11:45:00+00:     ``"2024-05-01T11:45:       ``"2024-05-01
                       00"`` (UTC; fraction  00.123Z"`` (UTC, n digits) 11:45:00.123"`` (UTC)
                       as DATETIME)
TIME(n)                ``"-838:59:59"``,     µs, signed ²               ``"-838:59:59.00"``,
                       ``"-00:00:00.0100     (TIME(2)                   ``"-00:00:00.01"``
                       00"``: 6 fraction     ``-00:00:00.01``:          (n digits)
                       digits, only when     ``-10000``)
                       not zero
YEAR                   number (0000: ``0``)  number (0000: ``1900``)    ``"2024"``, ``"0000"``
zero/partial DATE      ``"0000-00-00"``,     ``null`` (NOT NULL:        ``"0000-00-00"``,
                       ``"2015-00-21"``      ``0``)                     ``"2015-00-21"``
zero/partial DATETIME  ``"0000-00-00         ``null`` (NOT NULL:        ``"0000-00-00
                       00:00:00.000"``,      DATETIME ``0``,            00:00:00.000"``, as
                       ``"2013-00-00         TIMESTAMP ``"1970-01-      ferry-json
                       10:11:12.34"``: as    01T00:00:00.000Z"``, n
                       MySQL writes them (a  fraction digits)
                       space, not ``T``; n
                       fraction digits);
                       the zero
                       TIMESTAMP(n) too
years 1-99             as stored             20xx / 19xx (Debezium's    as stored
                                             time adjuster)
CHAR/VARCHAR/TEXT      string                string                     string
… CHARACTER SET binary base64                string (bytes as Latin-1)  string (Latin-1)
ENUM                   ``"a,b"``; the        ``"a\\,b"`` (commas       ``"2"`` (its index, as
                       invalid value         escaped, as Debezium);     Canal's reader keeps it);
                       (index 0): ``""``     invalid: ``""``            invalid: ``"0"``
SET                    ``["a","c"]``         ``"a,c"`` (DDL order)      ``"5"`` (bit mask)
BIT(1) / BIT(n)        number                ``true`` / base64, little  ``"1"`` / ``"513"``
                                             endian
BINARY/VARBINARY/BLOB  base64                base64 ⁴                   string (Latin-1)
JSON                   MariaDB: the text     the same text              the same text
                       as stored, byte for
                       byte. MySQL: binary
                       JSON re-serialised
                       (``json.dumps``, as
                       MySQL prints it:
                       ``{"a": 1, "b":
                       [1, 2]}``), not byte
                       for byte
GEOMETRY, POINT…       base64 of SRID+WKB    ``{"wkb":…,"srid":…}``     SRID+WKB as Latin-1
                                             (POINT: also x, y)
MariaDB UUID           base64 (16 bytes)     ``"0e0a…-…"`` (Debezium    ``"0e0a…-…"``
                                             cannot read tables with
                                             UUID, INET6 or INET4)
MariaDB INET6          base64 (16 bytes)     ``"::1"``                  ``"::1"``
MariaDB INET4          base64 (4 bytes)      ``"192.168.0.1"``          ``"192.168.0.1"``
NULL                   ``null``              ``null``, or the column's  ``null``
                                             DEFAULT (JsonConverter's
                                             replace.null.with.default)
=====================  ====================  =========================  ======================

Options (``sink.debezium``, Debezium's names): ¹ ``decimal.handling.mode`` ``string``
→ ``"12.50"``, ``double`` → ``12.5``; ² ``time.precision.mode`` ``connect`` → DATE
days, DATETIME ms whatever ``n``, TIME ms of the day (``null`` outside 0-24 h, as
Debezium); ³ ``bigint.unsigned.handling.mode`` ``precise`` → Decimal (base64,
scale 0); ⁴ ``binary.handling.mode`` ``base64`` / ``base64-url-safe`` / ``hex`` →
strings. A value whose Python type does not fit its column (a transform masked it),
or a column the definition lacks, is encoded by its Python type (the ferry-json
column, with Debezium's temporal numbers).

debezium-json messages
======================

Key: the key columns as a JSON object (``{"id":1}``; the key is the primary key, else
the first unique key, as Debezium); ``null`` for a table without one. Value::

    {"before":…, "after":…, "source":{"version", "connector":"mysql", "name":<topic.prefix>,
     "ts_ms", "snapshot":"false", "db", "sequence":null, "ts_us", "ts_ns", "table",
     "server_id", "gtid", "file", "pos", "row", "thread":null, "query":null},
     "transaction":null, "op":"c"|"u"|"d", "ts_ms", "ts_us", "ts_ns"}

``source.pos`` is the start of the rows event, ``row`` the row's index in it,
``server_id`` the server that wrote the event, ``ts_*`` the event's time (whole
seconds); the envelope's ``ts_*`` are processing time. A delete is followed by a
tombstone (same key, value ``null``) unless ``tombstones.on.delete`` is false; an
update that changes the key becomes a delete of the old key, its tombstone, and a
create of the new key (compacted topics keep no stale row). With ``schemas.enable``
each key and value is ``{"schema":…,"payload":…}`` as JsonConverter writes it.

Schema changes (DDL of tables and databases; views, triggers and routines have none, as
in Debezium): key ``{"databaseName":db}``, value ``{"source":…, "ts_ms",
"databaseName", "schemaName":null, "ddl", "tableChanges":[{"type":"CREATE"|"ALTER"|
"DROP", "id":"\\"db\\".\\"t\\"", "table":{"defaultCharsetName", "primaryKeyColumnNames",
"columns":[{"name", "jdbcType", "nativeType", "typeName", "typeExpression",
"charsetName", "length", "scale", "position", "optional", "autoIncremented",
"generated", "comment", "defaultValueExpression", "enumValues"}], "comment"}}]}``.
``databaseName`` is the statement's database (``db.t`` names it), not the session's.
``DROP TABLE a, b`` is one message per table, each with the statement rewritten to
``DROP TABLE `db`.`a``` as Debezium does.

Where ferry differs from Debezium on purpose: ``source.version`` is ferry's,
``source.name`` is ``topic.prefix`` (default: the pipeline id), ``source.gtid``
holds the GTID ferry read (Debezium's MySQL connector reads no MariaDB GTIDs and
writes ``null``), and tables Debezium cannot read (MariaDB UUID, INET4, INET6
columns) are replicated.

ferry-json
==========

Debezium's envelope without the schema part, ferry's values (the table above)::

    {"before": {...}|null, "after": {...}|null, "op": "c"|"u"|"d", "ts_ms": <now ms>,
     "source": {"connector": "mysql", "name": <pipeline>, "server_id": <id, if known>,
                "ts_ms": <event ms>, "db": ..., "table": ..., "file": ..., "pos": ...,
                "row": <row offset in the transaction>, "gtid": ...|null,
                "snapshot": "false"},
     "transaction": null}

Keys: the primary-key values as a compact JSON array, in key column order (``[42]``,
``["eu",7]``); ``[]`` for a table without a primary key (all its changes land in one
partition, in order). DDL, keyed ``[<database>]``::

    {"source": {... "db": <session database>, "table": <table or null>},
     "ts_ms": <now ms>, "databaseName": <database>, "ddl": <statement>,
     "tableChanges": []}

``<database>`` and ``<table>`` are what the statement changes, as the selector's
classifier named them (:func:`ddl_tables`): ``CREATE TABLE other.t`` run in session
database ``shop`` is ``other``/``t``, a trigger names the table it is ON, a database
or routine statement has table ``null``; for several tables (``DROP TABLE a, b``) the
first. The session's database is the fallback when the statement names none.
``source.db`` is the session's database, the one unqualified names in the statement
refer to.

canal-json
==========

``sinks.canal`` has the message, and where ferry follows Canal and where Canal's own
output is ambiguous. debezium-json's converters are in ``sinks.debezium``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal, get_args

from pipeline.errors import FatalError
from pipeline.model import (
    Batch,
    Change,
    DdlChange,
    Encoded,
    Message,
    RowChange,
)

FormatName = Literal["debezium-json", "ferry-json", "canal-json"]  # sink.format
FORMATS: tuple[str, ...] = get_args(FormatName)

DEBEZIUM_OP = {"insert": "c", "update": "u", "delete": "d", "read": "r"}


# -- the JSON encoder --------------------------------------------------------------------


def _hms(seconds: int, micros: int, negative: bool) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{'-' if negative else ''}{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{text}.{micros:06d}" if micros else text


def encode_timedelta(value: dt.timedelta) -> str:
    """MySQL TIME text: ``[-]HH:MM:SS[.ffffff]`` (hours may exceed 24)."""
    negative = value < dt.timedelta(0)
    if negative:
        value = -value
    return _hms(value.days * 86400 + value.seconds, value.microseconds, negative)


def _default(value: Any) -> Any:
    """json.dumps hook for the types JSON lacks (ferry-json's column of the table)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return encode_timedelta(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def _json_doc(value: Any) -> Any:
    """A decoded JSON column: bytes keys and strings become text."""
    if isinstance(value, dict):
        return {_text(k): _json_doc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_doc(v) for v in value]
    return _text(value)


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


def _image(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row image ready for json.dumps (JSON documents normalised)."""
    if row is None:
        return None
    for value in row.values():
        kind = type(value)
        if kind is dict or kind is list:
            return {k: _json_doc(v) if type(v) in (dict, list) else v for k, v in row.items()}
    return row


def _fmt_decimal(value: Decimal) -> str:
    return format(value, "f")


def _b64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode("ascii")  # base64.b64encode


# The exact types the binlog reader produces, looked up before the isinstance chain.
_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    Decimal: _fmt_decimal,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    dt.timedelta: encode_timedelta,
    bytes: _b64,
    set: sorted,
}


def _fast_default(value: Any) -> Any:
    convert = _BY_TYPE.get(type(value))
    return convert(value) if convert is not None else _default(value)


# json.JSONEncoder.encode builds a new C encoder (and a circular-reference memo) on
# every call, about 3 us; one C encoder made once costs nothing per call. No memo:
# decoded binlog values cannot be circular. allow_nan=False, compact separators.
_c_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
assert _c_make_encoder is not None, "CPython's _json accelerator is required"
_c_encode = _c_make_encoder(
    None, _fast_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
)


def _dumps(value: Any) -> str:
    return "".join(_c_encode(value, 0))


_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # what _c_encode uses
_INF = float("inf")


def _dumps_value(value: Any) -> str:
    """``_dumps(value)``, with the scalars of a row written without the encoder's call (as
    the encoder writes them: ``int.__repr__``, its string escaper, ``float.__repr__`` of a
    finite float; NaN and infinities go to the encoder, which refuses them)."""
    kind = type(value)
    if kind is int:
        return repr(value)
    if kind is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if kind is float and -_INF < value < _INF:
        return repr(value)
    return _dumps(value)


def utf8(text: str) -> bytes:
    """JSON text as UTF-8. A lone surrogate (MariaDB keeps them in utf8mb3/utf8mb4, ucs2 and
    utf32 columns, and returns them) has no UTF-8: it is written as its JSON escape
    ``\\udXXX``, which a JSON reader turns back into the same string."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def dumps(value: Any) -> bytes:
    """Encode any message or value with the ferry-json encoder, as compact UTF-8 JSON."""
    try:
        return utf8(_dumps(value))
    except (TypeError, ValueError) as exc:
        raise FatalError(f"cannot encode message: {exc}") from exc


def _encoded(value: Any) -> bytes:
    try:
        return utf8(_dumps(value))
    except (TypeError, ValueError) as exc:
        raise FatalError(f"cannot encode message: {exc}") from exc


def encode_key(change: Change) -> bytes:
    """ferry-json's key: primary-key values as a compact JSON array (``[schema]`` for DDL)."""
    if isinstance(change, DdlChange):
        return dumps([ddl_tables(change)[0][0]])
    columns = change.primary_key
    if not columns:
        return b"[]"
    row = change.after if change.after is not None else change.before
    assert row is not None
    if len(columns) == 1:
        value = row.get(columns[0])
        if type(value) is int:  # the common key: no encoder call
            return b"[%d]" % value
    return dumps([row.get(column) for column in columns])


def classified(change: DdlChange) -> DdlChange:
    """``change`` with the classifier's kind, verb, object and tables.

    The selector fills them in (``selector.statements.classify``); only a DdlChange
    built by hand (tests, tools) lacks them, and it is classified here by the same
    classifier, so a statement is never read two ways.
    """
    if change.verb:
        return change
    from pipeline.dialect.statements import classify  # only for a DdlChange built by hand

    statement = classify(change.statement, change.schema)
    if not statement.is_ddl:
        return change
    return replace(
        change,
        kind=statement.kind,  # type: ignore[arg-type]  # a DDL kind (is_ddl)
        tables=statement.tables,
        object=statement.object,
        verb=statement.verb,
    )


def ddl_tables(change: DdlChange) -> tuple[tuple[str, str], ...]:
    """Where a DDL is filed: every ``(schema, table)`` it changes, as the classifier named
    them (``CREATE TABLE other.t`` → ``("other", "t")``; a trigger: the table it is ON;
    ``DROP TABLE a, b``: both); table ``""`` for a database or routine statement, and
    ``((change.schema, ""),)`` for one that names nothing."""
    return classified(change).tables or ((change.schema, ""),)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def now_ns() -> int:
    return time.time_ns()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- formats -----------------------------------------------------------------------------


class Format:
    """Encodes changes into messages; one instance per sink."""

    name = ""
    spec: FormatSpec | None = None  # what built it (get_format): the same spec, the same bytes

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        self.pipeline = pipeline
        self.server_id = server_id

    def each(self, batch: Batch, now: int) -> Iterator[tuple[Change, list[Message]]]:
        """Every change of ``batch`` with its messages: those the decoder process encoded
        ahead when it used this format's spec (:func:`encode_ahead`), else encoded now."""
        encoded = batch.encoded
        ahead = encoded.messages if encoded is not None and encoded.encoding == self.spec else None
        for i, change in enumerate(batch.changes):
            messages = ahead[i] if ahead is not None else None
            yield (
                change,
                (messages if messages is not None else self.messages(change, now, batch.batch_id)),
            )

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        """The messages of ``change`` in order; ``now`` (ns) defaults to the current time;
        ``batch_id`` is the batch's (canal-json's ``id``)."""
        ns = now_ns() if now is None else now
        return [(self.key(change), self.encode(change, ns))]

    def key(self, change: Change) -> bytes | None:
        return encode_key(change)

    def encode(self, change: Change, now: int | None = None) -> bytes:
        """The value of ``change``'s (first) message; ``now`` in ns."""
        ns = now_ns() if now is None else now
        if isinstance(change, RowChange):
            return dumps(self.row_message(change, ns // 1_000_000))
        return dumps(self.ddl_message(change, ns // 1_000_000))

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        raise NotImplementedError

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        raise NotImplementedError


class FerryJson(Format):
    """ferry's readable encoding in Debezium's envelope (see the module docstring)."""

    name = "ferry-json"

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        super().__init__(pipeline, server_id)
        head = f'{{"connector":"mysql","name":{_dumps(pipeline)},'
        if server_id is not None:
            head += f'"server_id":{int(server_id)},'
        self._head = head + '"ts_ms":'
        self._tables: dict[tuple[str, str], str] = {}  # ',"db":..,"table":..,"file":'
        self._files: dict[str, str] = {}

    def encode(self, change: Change, now: int | None = None) -> bytes:
        """Row changes: the same bytes as ``dumps(row_message(...))``, built from cached parts.

        Only the row images go through the JSON encoder; the envelope's fixed parts
        (connector, name, db, table, file) are encoded once per table or file.
        """
        if type(change) is not RowChange:
            return super().encode(change, now)
        ts = now_ms() if now is None else now // 1_000_000
        table_key = (change.schema, change.table)
        table = self._tables.get(table_key)
        if table is None:
            table = f',"db":{_dumps(change.schema)},"table":{_dumps(change.table)},"file":'
            self._tables[table_key] = table
        position = change.position
        file = self._files.get(position.file)
        if file is None:
            file = self._files[position.file] = _dumps(position.file)
        before, after, gtid = change.before, change.after, change.gtid
        try:
            text = (
                f'{{"before":{"null" if before is None else _dumps(_image(before))},'
                f'"after":{"null" if after is None else _dumps(_image(after))},'
                f'"op":"{DEBEZIUM_OP[change.op]}","ts_ms":{int(ts)},"source":'
                f"{self._head}{int(change.ts * 1000)}{table}{file}"
                f',"pos":{int(position.pos)},"row":{int(change.index)},'
                f'"gtid":{"null" if gtid is None else _dumps(gtid)},'
                f'"snapshot":"{"true" if change.op == "read" else "false"}"}},'
                '"transaction":null}'
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: see utf8()
            return utf8(text)

    def _source(self, change: Change, table: str | None, row: int) -> dict[str, Any]:
        source: dict[str, Any] = {"connector": "mysql", "name": self.pipeline}
        if self.server_id is not None:
            source["server_id"] = self.server_id
        source["ts_ms"] = _ms(change.ts)
        source["db"] = change.schema
        source["table"] = table
        source["file"] = change.position.file
        source["pos"] = change.position.pos
        source["row"] = row
        source["gtid"] = change.gtid
        source["snapshot"] = "true" if getattr(change, "op", "") == "read" else "false"
        return source

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        return {
            "before": _image(change.before),
            "after": _image(change.after),
            "op": DEBEZIUM_OP[change.op],
            "ts_ms": now,
            "source": self._source(change, change.table, change.index),
            "transaction": None,
        }

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        database, table = ddl_tables(change)[0]
        return {
            "source": self._source(change, table or None, 0),
            "ts_ms": now,
            "databaseName": database,
            "ddl": change.statement,
            "tableChanges": [],
        }


def get_format(
    name: str,
    pipeline: str,
    server_id: int | None = None,
    debezium: Any = None,
) -> Format:
    """The formatter called ``name`` (one of FORMATS); ``debezium``: its DebeziumOptions."""
    found: Format
    if name == "debezium-json":
        from sinks.debezium import DebeziumJson

        found = DebeziumJson(pipeline, server_id, debezium)
    elif name == "ferry-json":
        found = FerryJson(pipeline, server_id)
    elif name == "canal-json":
        from sinks.canal import CanalJson

        found = CanalJson(pipeline, server_id)
    else:
        raise FatalError(f"unknown message format {name!r}; known: {', '.join(FORMATS)}")
    found.spec = FormatSpec(name, pipeline, server_id, debezium)
    return found


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """The arguments of :func:`get_format`: equal specs build formats that write the same
    bytes, so the decoder process can encode rows for a sink (``Sink.encoding``)."""

    name: str
    pipeline: str
    server_id: int | None = None
    debezium: Any = None  # DebeziumOptions (a pydantic model: compared by value)

    def build(self) -> Format:
        return get_format(self.name, self.pipeline, self.server_id, self.debezium)


def encode_ahead(sink_format: Format, batch: Batch) -> Encoded:
    """The messages of ``batch``'s row changes, encoded in the decoder process (see
    ``pipeline.model.Encoded``); DDL is left to the sink."""
    now = now_ns()  # processing time, as the sink would have taken it
    messages: list[list[Message] | None] = []
    for change in batch.changes:
        found = None
        if isinstance(change, RowChange):
            try:
                found = sink_format.messages(change, now, batch.batch_id)
            except Exception:  # not swallowed: the sink encodes this row again and raises
                found = None
        messages.append(found)
    return Encoded(sink_format.spec, messages)
