"""``canal-json``: Canal's FlatMessage, as Canal 1.1's Kafka/RocketMQ producer writes it.

One message per row change, every value a string as Canal's binlog reader makes it (ENUM
its index, SET its bit mask), ``sqlType`` and ``mysqlType`` per column, ``old`` with the
changed columns. The message, each value, where ferry follows Canal and where Canal's own
output is ambiguous: ``docs/formats.md`` (canal-json).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pipeline.dialect import SPATIAL_TYPES
from pipeline.model import (
    Change,
    Column,
    DdlChange,
    Message,
    RowChange,
    TableSchema,
    ZeroDate,
)
from sinks.formats.base import Format, ddl_tables, now_ns, register
from sinks.formats.encoder import dumps, encode_key
from sinks.formats.values import (
    encode_timedelta,
    float32,
    guess_definition,
    ms,
    sql_literal,
)

# a row a snapshot copied is an INSERT, as Canal's own full-copy tools write it
_CANAL_TYPE = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE", "read": "INSERT"}
# sqlType of the integer types, and the type an UNSIGNED value above the signed range gets
_INTEGERS = {
    "TINYINT": (-6, 5, 1 << 7),
    "INT1": (-6, 5, 1 << 7),
    "BOOL": (-6, 5, 1 << 7),
    "BOOLEAN": (-6, 5, 1 << 7),
    "SMALLINT": (5, 4, 1 << 15),
    "INT2": (5, 4, 1 << 15),
    "MEDIUMINT": (4, 4, 1 << 23),
    "INT3": (4, 4, 1 << 23),
    "MIDDLEINT": (4, 4, 1 << 23),
    "INT": (4, -5, 1 << 31),
    "INTEGER": (4, -5, 1 << 31),
    "INT4": (4, -5, 1 << 31),
    "BIGINT": (-5, 3, 1 << 63),
    "INT8": (-5, 3, 1 << 63),
}
_TEXTS = frozenset({"TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "LONG", "LONG VARCHAR", "JSON"})
_BLOBS = frozenset({"TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB", "LONG VARBINARY"})


def java_double(value: float) -> str:
    """``Double.toString``: plain from 10^-3 to 10^7 (always a fraction digit), else
    ``d.dddE±n``; the digits are the shortest that read back to the value."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    shown = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + exponent
    mantissa = shown[0] + "." + (shown[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{power}"


def _fraction(micros: int, digits: int) -> str:
    return "." + f"{micros:06d}"[:digits] if digits else ""


class _Field:
    """One column: its mysqlType, its sqlType (for a value and for NULL), its text."""

    __slots__ = ("mysql_type", "null_type", "sql_type", "text")

    def __init__(
        self,
        mysql_type: str,
        sql_type: Callable[[Any], int],
        null_type: int,
        text: Callable[[Any], str],
    ) -> None:
        self.mysql_type = mysql_type
        self.sql_type = sql_type
        self.null_type = null_type
        self.text = text


def _fixed(kind: int) -> Callable[[Any], int]:
    return lambda _: kind


def _field(column: Column) -> _Field:
    base, unsigned = column.base_type, column.unsigned
    mysql_type = column.column_type or base.lower()
    digits = min(column.length or 0, 6)
    if base in _INTEGERS or base == "SERIAL":
        kind, wider, limit = _INTEGERS.get(base, (-5, 3, 1 << 63))
        if unsigned or base == "SERIAL":
            sql_type = lambda v: wider if isinstance(v, int) and v >= limit else kind  # noqa: E731
            return _Field(mysql_type, sql_type, kind, _text)
        return _Field(mysql_type, _fixed(kind), kind, _text)
    if base in ("DECIMAL", "DEC", "FIXED", "NUMERIC"):
        return _Field(mysql_type, _fixed(3), 3, _decimal)
    if base in ("FLOAT", "FLOAT4") and (column.scale is not None or (column.length or 0) <= 24):
        return _Field(mysql_type, _fixed(7), 7, _float)
    if base in ("FLOAT", "FLOAT4", "DOUBLE", "FLOAT8", "REAL"):
        return _Field(mysql_type, _fixed(8), 8, _double)
    if base == "BIT":
        return _Field(mysql_type, _fixed(-7), -7, _text)
    if base == "DATE":
        return _Field(mysql_type, _fixed(91), 91, _text)
    if base in ("DATETIME", "TIMESTAMP"):
        return _Field(mysql_type, _fixed(93), 93, lambda v: _datetime(v, digits))
    if base == "TIME":
        return _Field(mysql_type, _fixed(92), 92, lambda v: _time(v, digits))
    if base == "YEAR":
        return _Field(mysql_type, _fixed(12), 12, lambda v: f"{v:04d}" if v == 0 else _text(v))
    if base == "ENUM":
        members = [sql_literal(o) for o in column.enum_values]
        return _Field(mysql_type, _fixed(4), 4, lambda v: _enum_index(v, members))
    if base == "SET":
        members = [sql_literal(o) for o in column.enum_values]
        return _Field(mysql_type, _fixed(-7), -2, lambda v: _set_mask(v, members))
    if base in SPATIAL_TYPES:
        return _Field(mysql_type, _fixed(2004), -2, _latin1)
    if base in ("UUID", "INET4", "INET6"):
        return _Field(mysql_type, _fixed(1), 1, _address if base != "UUID" else _uuid)
    small = base.startswith("TINY")
    if base in _TEXTS:
        return _Field(mysql_type, _fixed(2005), -3 if small else -4, _text)
    if base in _BLOBS:
        return _Field(mysql_type, _fixed(2004), -3 if small else -4, _latin1)
    if base == "BINARY":
        return _Field(mysql_type, _fixed(-2), -2, _latin1)
    if base == "VARBINARY":
        return _Field(mysql_type, _fixed(-3), -3, _latin1)
    char = base in ("CHAR", "CHARACTER", "NCHAR", "NATIONAL CHAR", "NATIONAL CHARACTER")
    return _Field(mysql_type, _fixed(1 if char else 12), 1 if char else 12, _text)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return _datetime(value, 6 if value.microsecond else 0)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return encode_timedelta(value)
    if isinstance(value, set | frozenset):
        return ",".join(sorted(value))
    return str(value)


def _latin1(value: Any) -> str:
    return bytes(value).decode("latin-1") if isinstance(value, bytes | bytearray) else _text(value)


def _decimal(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else _text(value)


def _float(value: Any) -> str:
    return java_double(float32(value)) if isinstance(value, float) else _text(value)


def _double(value: Any) -> str:
    return java_double(value) if isinstance(value, float) else _text(value)


def _datetime(value: Any, digits: int) -> str:
    if type(value) is ZeroDate:
        return str(value)
    if not isinstance(value, dt.datetime):
        return _text(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    return text + _fraction(value.microsecond, digits)


def _time(value: Any, digits: int) -> str:
    if not isinstance(value, dt.timedelta):
        return _text(value)
    negative = value < dt.timedelta(0)
    magnitude = -value if negative else value
    seconds = magnitude.days * 86400 + magnitude.seconds
    hours, rest = divmod(seconds, 3600)
    text = f"{'-' if negative else ''}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + _fraction(magnitude.microseconds, digits)


def _enum_index(value: Any, members: list[str]) -> str:
    if not isinstance(value, str):
        return _text(value)
    return str(members.index(value) + 1) if value in members else "0"


def _set_mask(value: Any, members: list[str]) -> str:
    if not isinstance(value, set | frozenset):
        return _text(value)
    return str(sum(1 << members.index(m) for m in value if m in members))


def _uuid(value: Any) -> str:
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes=value))
    return _text(value)


def _address(value: Any) -> str:
    if isinstance(value, bytes) and len(value) in (4, 16):
        return str(ipaddress.ip_address(value))
    return _text(value)


@register
class CanalJson(Format):
    """Canal's FlatMessage (see the module docstring)."""

    name = "canal-json"

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        super().__init__(pipeline, server_id)
        self._fields: dict[int, tuple[TableSchema, dict[str, _Field]]] = {}

    def _table(self, change: RowChange) -> dict[str, _Field]:
        definition = change.definition or guess_definition(change)
        found = self._fields.get(id(definition))
        if found is None or found[0] is not definition:
            if len(self._fields) > 10_000:
                self._fields.clear()
            fields = {c.name: _field(c) for c in definition.columns}
            self._fields[id(definition)] = found = (definition, fields)
        return found[1]

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        return [(encode_key(change), self._value(change, now, batch_id))]

    def _value(self, change: Change, now: int | None, batch_id: int) -> bytes:
        ns = now_ns() if now is None else now
        if isinstance(change, DdlChange):
            return dumps(self.ddl_message(change, ns // 1_000_000, batch_id))
        return dumps(self.row_message(change, ns // 1_000_000, batch_id))

    def encode(self, change: Change, now: int | None = None) -> bytes:
        return self._value(change, now, 0)

    def row_message(self, change: RowChange, now: int, batch_id: int = 0) -> dict[str, Any]:
        fields = self._table(change)
        image = change.row
        data: dict[str, str | None] = {}
        sql_types: dict[str, int] = {}
        mysql_types: dict[str, str] = {}
        for name, value in image.items():
            field = fields.get(name) or _field(Column(name, "", 1111, 0))
            mysql_types[name] = field.mysql_type
            if value is None:
                data[name] = None
                sql_types[name] = field.null_type
            else:
                data[name] = field.text(value)
                sql_types[name] = field.sql_type(value)
        old = None
        if change.op == "update" and change.before is not None:
            old = {}
            for name, value in change.before.items():
                field = fields.get(name) or _field(Column(name, "", 1111, 0))
                text = None if value is None else field.text(value)
                if name not in data or data[name] != text:
                    old[name] = text
        key = set(change.primary_key)
        return {
            "data": [data],
            "database": change.schema,
            "es": ms(change.ts),
            "gtid": change.gtid,
            "id": batch_id,
            "isDdl": False,
            "mysqlType": mysql_types,
            "old": [old] if old is not None else None,
            "pkNames": [name for name in image if name in key] or None,
            "sql": "",
            "sqlType": sql_types,
            "table": change.table,
            "ts": now,
            "type": _CANAL_TYPE[change.op],
        }

    def ddl_message(self, change: DdlChange, now: int, batch_id: int = 0) -> dict[str, Any]:
        database, table = ddl_tables(change)[0]
        database = database or change.schema
        if change.kind != "table":
            table = ""  # a trigger's table is where it fires, not what it changes
        return {
            "data": None,
            "database": database,
            "es": ms(change.ts),
            "gtid": change.gtid,
            "id": batch_id,
            "isDdl": True,
            "mysqlType": None,
            "old": None,
            "pkNames": None,
            "sql": change.statement,
            "sqlType": None,
            "table": table,
            "ts": now,
            "type": _ddl_type(change),
        }


def _ddl_type(change: DdlChange) -> str:
    """Canal's event type of a DDL statement."""
    verb, what = change.verb, change.object
    if what == "INDEX":
        return {"CREATE": "CINDEX", "DROP": "DINDEX"}.get(verb, "QUERY")
    if what == "TABLE" or verb == "TRUNCATE":
        return {"CREATE": "CREATE", "ALTER": "ALTER", "DROP": "ERASE"}.get(verb, verb or "QUERY")
    return "QUERY"
