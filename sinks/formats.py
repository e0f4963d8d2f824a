"""Message formats: ``debezium-json`` and ``canal-json``, with one shared value encoder.

Every sink that writes JSON (Kafka, JSONL, stdout ``json``) goes through this
module, so a value is encoded the same way everywhere.

Value encoding (both formats, keys included)
============================================

Every value decodes back to the exact value the source stored, given the
column's type (``selector.values`` says which Python type each column type
becomes):

=============================  =========================================================
Python value (column type)     JSON
=============================  =========================================================
``None``                       ``null``
``int`` (integers, YEAR, BIT)  number, exact (BIGINT UNSIGNED up to 2^64-1 is written as
                               is; JavaScript readers lose precision above 2^53). YEAR
                               0000 is ``0``; BIT(n) is the bits as an unsigned number
``float`` (FLOAT, DOUBLE)      number; a FLOAT is written as the shortest decimal of its
                               single-precision value (``3.14``), which reads back to
                               the same FLOAT
``bool``                       ``true``/``false``
``Decimal`` (DECIMAL)          string, exact, never in exponent form: ``"12.50"``
``datetime`` (DATETIME,        ISO-8601 string, microseconds kept when non-zero:
TIMESTAMP)                     ``"2024-05-01T13:45:00.123456"``; a TIMESTAMP is an
                               instant in UTC and carries ``+00:00``
``date`` (DATE)                ``"2024-05-01"``
``ZeroDate`` (zero or partial  the string MySQL shows: ``"0000-00-00"``,
DATE/DATETIME/TIMESTAMP)       ``"2015-00-21"``, ``"0000-00-00 00:00:00"`` (a space, no
                               ``T``: not a valid ISO date, on purpose)
``timedelta`` (TIME)           ``"HH:MM:SS[.ffffff]"``, hours may exceed 24 and the value
                               may be negative: ``"-838:59:59"``, ``"-00:00:00.010000"``
``time``                       ``"HH:MM:SS[.ffffff]"``
``str`` (CHAR/TEXT/ENUM)       string; 4-byte UTF-8 (emoji) kept as is, not escaped
``JsonText`` (JSON)            a string holding the document's text exactly as stored
                               (MariaDB) or as MySQL prints it: parse it to get the value
``bytes`` (BINARY, VARBINARY,  base64 string (standard alphabet, padded); BINARY(n) has
BLOB, MariaDB UUID/INET6,      all n bytes. Spatial values are MySQL's internal format:
GEOMETRY and subtypes)         a 4-byte little-endian SRID, then the WKB
``set`` (SET)                  JSON array of the members, sorted
``dict``/``list``              nested JSON (values a transform built; the binlog gives
                               JSON columns as ``JsonText``)
=============================  =========================================================

Any other type raises ``FatalError`` naming the type.

Keys
====

The message key is the primary-key values as a compact JSON array, in key
column order: ``[42]``, ``["eu",7]``. Equal keys give equal bytes, so one key
always lands in one partition. A table without a primary key gets the key ``[]``:
all its changes go to one partition and keep their order. DDL messages are keyed
``[schema]``.

debezium-json
=============

Debezium's JSON envelope without the schema part::

    {"before": {...}|null, "after": {...}|null, "op": "c"|"u"|"d", "ts_ms": <now ms>,
     "source": {"connector": "mysql", "name": <pipeline>, "server_id": <id, if known>,
                "ts_ms": <event ms>, "db": ..., "table": ..., "file": ..., "pos": ...,
                "row": <row offset in the transaction>, "gtid": ...|null,
                "snapshot": "false"},
     "transaction": null}

DDL (Debezium's schema-change message)::

    {"source": {... "table": <parsed table or null>}, "ts_ms": <now ms>,
     "databaseName": <schema>, "ddl": <statement>, "tableChanges": []}

canal-json
==========

Canal's flat message (``FlatMessage``), one row per message::

    {"data": [{...}], "old": [{<changed columns: old values>}]|null,
     "type": "INSERT"|"UPDATE"|"DELETE", "database": ..., "table": ...,
     "pkNames": [...]|null, "isDdl": false, "sql": "", "es": <event ms>,
     "ts": <now ms>, "mysqlType": null, "sqlType": null}

Differences from Canal, on purpose: values keep their JSON types and use the
encoding table above (Canal writes every value as a string), and ``mysqlType`` /
``sqlType`` are ``null`` because the row changes carry no column types. For a
delete, ``data`` holds the deleted row. DDL::

    {"data": null, "old": null, "type": "CREATE"|"ALTER"|"DROP"|"RENAME"|"TRUNCATE"|
     "QUERY"…, "database": ..., "table": <parsed table or "">, "pkNames": null,
     "isDdl": true, "sql": <statement>, "es": ..., "ts": ..., "mysqlType": null,
     "sqlType": null}
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pipeline.errors import FatalError
from pipeline.model import Change, DdlChange, RowChange

FORMATS = ("debezium-json", "canal-json")

_DEBEZIUM_OP = {"insert": "c", "update": "u", "delete": "d", "read": "r"}
_CANAL_TYPE = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE", "read": "INSERT"}


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
    """json.dumps hook for the types JSON lacks (see the module table)."""
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
    return base64.b64encode(value).decode("ascii")


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


def dumps(value: Any) -> bytes:
    """Encode any message or value with the shared encoder, as compact UTF-8 JSON."""
    try:
        return _dumps(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise FatalError(f"cannot encode message: {exc}") from exc


def encode_key(change: Change) -> bytes:
    """Message key: primary-key values as a compact JSON array (``[schema]`` for DDL)."""
    if isinstance(change, DdlChange):
        return dumps([change.schema])
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


_DDL_TABLE = re.compile(
    r"^\s*(?:/\*.*?\*/\s*)*(?P<verb>\w+)\s+(?:(?:TEMPORARY|ONLINE|OFFLINE|IGNORE)\s+)*"
    r"(?P<what>TABLE|VIEW|INDEX|DATABASE|SCHEMA)?\s*(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"(?P<name>(?:`[^`]+`|\w+)(?:\s*\.\s*(?:`[^`]+`|\w+))?)?",
    re.IGNORECASE | re.DOTALL,
)


def ddl_info(statement: str) -> tuple[str, str | None]:
    """(verb, table) of a DDL statement: ``("ALTER", "orders")``; table None if not a table."""
    match = _DDL_TABLE.match(statement)
    if not match:
        return "QUERY", None
    verb = match.group("verb").upper()
    what = (match.group("what") or "").upper()
    name = match.group("name")
    if verb not in ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"):
        return "QUERY", None
    if what not in ("TABLE", "") or name is None or (verb != "TRUNCATE" and what != "TABLE"):
        return verb, None
    table = name.split(".")[-1].strip().strip("`")
    return verb, table


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Format:
    """Encodes changes into message values; one instance per sink."""

    name = ""

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        self.pipeline = pipeline
        self.server_id = server_id

    def encode(self, change: Change, now: int | None = None) -> bytes:
        """The message value of ``change``; ``now`` (ms) defaults to the current time."""
        ts = now_ms() if now is None else now
        if isinstance(change, RowChange):
            return dumps(self.row_message(change, ts))
        return dumps(self.ddl_message(change, ts))

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        raise NotImplementedError

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        raise NotImplementedError


class DebeziumJson(Format):
    name = "debezium-json"

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
        ts = now_ms() if now is None else now
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
                f'"op":"{_DEBEZIUM_OP[change.op]}","ts_ms":{int(ts)},"source":'
                f"{self._head}{int(change.ts * 1000)}{table}{file}"
                f',"pos":{int(position.pos)},"row":{int(change.index)},'
                f'"gtid":{"null" if gtid is None else _dumps(gtid)},'
                f'"snapshot":"{"true" if change.op == "read" else "false"}"}},'
                '"transaction":null}'
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        return text.encode("utf-8")

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
            "op": _DEBEZIUM_OP[change.op],
            "ts_ms": now,
            "source": self._source(change, change.table, change.index),
            "transaction": None,
        }

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        _, table = ddl_info(change.statement)
        return {
            "source": self._source(change, table, 0),
            "ts_ms": now,
            "databaseName": change.schema,
            "ddl": change.statement,
            "tableChanges": [],
        }


class CanalJson(Format):
    name = "canal-json"

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        old = None
        if change.op == "update" and change.before is not None and change.after is not None:
            after = change.after
            changed = {k: v for k, v in change.before.items() if k not in after or after[k] != v}
            old = [_image(changed)]
        return {
            "data": [_image(change.row)],
            "old": old,
            "type": _CANAL_TYPE[change.op],
            "database": change.schema,
            "table": change.table,
            "pkNames": list(change.primary_key) or None,
            "isDdl": False,
            "sql": "",
            "es": _ms(change.ts),
            "ts": now,
            "mysqlType": None,
            "sqlType": None,
        }

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        verb, table = ddl_info(change.statement)
        return {
            "data": None,
            "old": None,
            "type": verb,
            "database": change.schema,
            "table": table or "",
            "pkNames": None,
            "isDdl": True,
            "sql": change.statement,
            "es": _ms(change.ts),
            "ts": now,
            "mysqlType": None,
            "sqlType": None,
        }


_FORMATS: dict[str, Callable[..., Format]] = {
    "debezium-json": DebeziumJson,
    "canal-json": CanalJson,
}


def get_format(name: str, pipeline: str, server_id: int | None = None) -> Format:
    """The formatter called ``name`` (one of FORMATS)."""
    try:
        return _FORMATS[name](pipeline, server_id)
    except KeyError:
        raise FatalError(f"unknown message format {name!r}; known: {', '.join(FORMATS)}") from None
