"""``debezium-json``: Debezium 3.x's MySQL connector output, through Kafka Connect's JsonConverter.

The encodings are in the table at the top of ``sinks.formats``; this module is how they are
made: one converter per column, built once per table definition (``pipeline.model.TableSchema``)
and options (:class:`DebeziumOptions`, Debezium's names), the envelope and the schema-change
events. ``tests/integration/test_debezium_compat.py`` compares it with Debezium 3.6.3 itself.

Two paths write a row image, with the same bytes (``tests/unit/test_debezium_writer.py``):
the reference (``DebeziumJson._row``: every column's value through ``_Encoder.value``, then
the JSON encoder), and the row writer generated per table definition (:func:`_row_writer`),
which writes the rows the decoder makes, and leaves any other to the reference.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import json
import math
import re
import struct
import uuid
from binascii import b2a_base64
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any, Literal

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dialect import SPATIAL_TYPES
from pipeline.errors import FatalError
from pipeline.model import (
    Change,
    Column,
    DdlChange,
    JsonText,
    RowChange,
    TableChange,
    TableSchema,
    ZeroDate,
)
from sinks.formats import (
    DEBEZIUM_OP,
    Format,
    Message,
    _b64,
    _dumps,
    _dumps_value,
    _encode_str,
    _encoded,
    _fast_default,
    _json_doc,
    classified,
    encode_timedelta,
    now_ns,
    utf8,
)

# -- options -----------------------------------------------------------------------------


class DebeziumOptions(BaseModel):
    """`sink.debezium` — Debezium's options for `format: debezium-json`, by Debezium's names.

    Each field is the connector (or JsonConverter) property of the same name, with the
    same values and default; a Debezium configuration can be copied over as is.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    decimal_handling_mode: Literal["precise", "string", "double"] = Field(
        "precise",
        alias="decimal.handling.mode",
        description="DECIMAL/NUMERIC: precise (base64 of the unscaled value, Connect Decimal),"
        ' string ("12.50") or double',
    )
    time_precision_mode: Literal["adaptive_time_microseconds", "connect"] = Field(
        "adaptive_time_microseconds",
        alias="time.precision.mode",
        description="DATETIME/TIME: adaptive_time_microseconds (ms or µs by the column's"
        " precision, TIME in µs) or connect (Connect's Date/Time/Timestamp, milliseconds)",
    )
    bigint_unsigned_handling_mode: Literal["long", "precise"] = Field(
        "long",
        alias="bigint.unsigned.handling.mode",
        description="BIGINT UNSIGNED: long (signed 64-bit, values above 2^63-1 wrap)"
        " or precise (Connect Decimal)",
    )
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = Field(
        "bytes",
        alias="binary.handling.mode",
        description="BINARY/VARBINARY/BLOB: bytes (base64 in JSON), base64, base64-url-safe"
        " or hex strings",
    )
    tombstones_on_delete: bool = Field(
        True,
        alias="tombstones.on.delete",
        description="a delete is followed by a tombstone (same key, null value; Kafka only)",
    )
    schemas_enable: bool = Field(
        False,
        alias="schemas.enable",
        description="JsonConverter's schemas.enable for key and value: each message is"
        ' {"schema":…,"payload":…} (what the JDBC sink and other schema-aware consumers read)',
    )
    replace_null_with_default: bool = Field(
        True,
        alias="replace.null.with.default",
        description="JsonConverter's replace.null.with.default: a NULL in a column with a"
        " DEFAULT is written as that default",
    )
    include_schema_comments: bool = Field(
        False,
        alias="include.schema.comments",
        description="table and column comments in schema-change events",
    )
    event_processing_failure_handling_mode: Literal["fail", "warn", "skip"] = Field(
        "fail",
        alias="event.processing.failure.handling.mode",
        description="a change these options cannot write (with time.precision.mode=connect: a"
        " TIME outside 0-24 h in a NOT NULL column): fail (the pipeline pauses), warn (left"
        " out, logged) or skip (left out)",
    )
    topic_prefix: str | None = Field(
        None,
        alias="topic.prefix",
        description="source.name and the prefix of schema names (<prefix>.<db>.<table>.Value);"
        " default: the pipeline id",
    )


# -- debezium-json -----------------------------------------------------------------------

try:
    _VERSION = f"ferry-{_dist_version('ferry-cdc')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    _VERSION = "ferry"

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DATETIME = dt.datetime
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)
_ONE_MS = dt.timedelta(milliseconds=1)
_DAY_US = 86_400_000_000
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


def _days(value: dt.date) -> int:
    return value.toordinal() - _EPOCH_ORDINAL


def _micros(value: dt.datetime) -> int:
    """µs since the epoch of a wall-clock (naive) or UTC datetime."""
    seconds = value.hour * 3600 + value.minute * 60 + value.second
    return (_days(value) * 86400 + seconds) * 1_000_000 + value.microsecond


def _time_micros(value: dt.timedelta) -> int:
    return (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds


def _zoned(value: dt.datetime, digits: int) -> str:
    """Debezium's ZonedTimestamp: ISO-8601 in UTC with exactly ``digits`` fraction digits."""
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if digits:
        text += "." + f"{value.microsecond:06d}"[:digits]
    return text + "Z"


def _twos_complement(value: int) -> bytes:
    """Java's BigInteger.toByteArray: the shortest big-endian two's complement."""
    length = (value if value >= 0 else ~value).bit_length() // 8 + 1  # ~value: -value - 1
    return value.to_bytes(length, "big", signed=True)


def _float32(value: float) -> float:
    """The float32 nearest ``value``, as the shortest decimal that reads back to it (how Java
    prints a float)."""
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(1, 10):
        shorter = float(f"{single:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shorter))[0] == single:
            return shorter
    return float(single)


def _widened(value: float) -> float:
    """A FLOAT column's value as a double, exactly as the float32 it is (5.61 -> 5.61000013…)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:  # not a float32 after all
        return value


def _enum_option(text: str) -> str:
    """An ENUM/SET member as Debezium writes it: commas escaped with a backslash."""
    return text.replace(",", "\\,")


def _sql_literal(text: str) -> str:
    """The value of a quoted SQL literal (``'c,\\'d'`` -> ``c,'d``)."""
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
    quote = text[0] if text and text[0] in "'\"" else "'"
    inner = inner.replace(quote * 2, quote)
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "0": "\0"}.get(m[1], m[1]), inner)


def _debezium_option(text: str) -> str:
    """An ENUM/SET option as Debezium reads it from the DDL (unquoted, escapes as it does)."""
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
    return inner.replace(",", "\\,").replace("\\'", "'").replace("''", "'")


_POINT = struct.Struct("<dd")


class _Field:
    """How one column is encoded: its Connect schema and a converter of non-null values
    (``_Encoder.value`` says how they are applied)."""

    __slots__ = (
        "convert",
        "converts",
        "default",
        "head",
        "name",
        "optional",
        "plain",
        "schema",
        "zero",
    )

    def __init__(
        self,
        name: str,
        schema: dict[str, Any],
        convert: Callable[[Any], Any] | None,
        optional: bool,
        zero: Any,
    ) -> None:
        self.name = name
        self.schema = schema  # JsonConverter's field schema, "field" last
        self.convert = convert  # None: the value is written as it is
        self.optional = optional
        self.zero = zero  # Debezium's fallback for a NULL in a NOT NULL column
        self.default: Any = None
        # the converter only checks the type: the binlog's values pass through as they are
        self.plain = convert in _CHECKS
        # whether _Encoder.value changes a value: a converter that is not plain, or a
        # default for NULL (set by _Encoder.field once the default is known)
        self.converts = False
        self.head = _dumps(name) + ":"  # the field's name in a JSON object

    def converter(self, read: bool) -> Callable[[Any], Any] | None:
        """The converter of a streamed row's values, or of a snapshot's (``read``)."""
        if read and self.convert is _latin1_text:  # a snapshot has the server's text
            return _text
        return self.convert


class _Untyped(Exception):
    """A value that does not fit its column's converter (a transform changed it)."""


class _Refused(Exception):
    """A change the options cannot write (see event.processing.failure.handling.mode)."""


class _Unrepresentable(ValueError):
    """A value the chosen options cannot write (a TIME beyond 24 h with ``connect``): NULL
    in a nullable column, else the event fails, as in Debezium."""


def _schema(kind: str, optional: bool, name: str | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, "optional": optional}
    if name is not None:
        schema["name"] = name
        schema["version"] = 1
    for key in ("doc", "parameters"):
        if key in more:
            schema[key] = more[key]
    return schema


class _Encoder:
    """Debezium's value converters for one set of options (see the module table)."""

    def __init__(self, options: DebeziumOptions) -> None:
        self.options = options
        self.connect = options.time_precision_mode == "connect"
        self.replace_null = options.replace_null_with_default

    # -- a column's field ----------------------------------------------------------

    def field(self, column: Column) -> _Field:
        base, unsigned = _base_type(column.type_name)
        optional = column.optional
        built = self._field(column, base, unsigned, optional)
        field = _Field(column.name, built[0], built[1], optional, built[2])
        if column.default is not None:
            try:
                default = self._default(column, base, field)
            except (ValueError, ArithmeticError, InvalidOperation, _Untyped, OverflowError):
                default = None
            if default is not None:
                field.default = default
                field.schema["default"] = default
        field.schema["field"] = column.name
        field.converts = (field.convert is not None and not field.plain) or (
            field.default is not None
        )
        return field

    def value(self, field: _Field, value: Any, read: bool = False) -> Any:
        """``value`` of ``field``'s column as Debezium writes it; ``read``: of a snapshot row.

        The converter's result; NULL is the column's default (as JsonConverter's
        replace.null.with.default), else NULL, else Debezium's zero for a NOT NULL column.
        A value of another type than the column's (a transform's) is written by its type.
        This is the reference the row writers (:func:`_row_writer`) follow.
        """
        if not field.converts:  # a plain column without default: the binlog's value as is
            return value
        convert = field.converter(read)
        if value is not None and convert is not None:
            try:
                value = convert(value)
            except _Untyped:
                value = _loose(value, self)
            except _Unrepresentable as exc:
                if not field.optional:
                    raise _Refused(f"column {field.name!r}: {exc}") from exc
                value = None
        if value is None:
            if field.default is not None and (self.replace_null or not field.optional):
                value = field.default
            elif not field.optional:
                value = field.zero
        return value

    def _field(
        self, column: Column, base: str, unsigned: bool, optional: bool
    ) -> tuple[dict[str, Any], Callable[[Any], Any] | None, Any]:
        options = self.options
        jdbc = column.jdbc_type
        if base in ("BOOL", "BOOLEAN"):
            return _schema("boolean", optional), _bool, False
        if base in ("TINYINT", "INT1", "SMALLINT", "INT2"):
            wide = unsigned and base in ("SMALLINT", "INT2")
            return _schema("int32" if wide else "int16", optional), _int, 0
        if base in ("MEDIUMINT", "INT3", "MIDDLEINT"):
            return _schema("int32", optional), _int, 0
        if base in ("INT", "INTEGER", "INT4"):
            return _schema("int64" if unsigned else "int32", optional), _int, 0
        if base in ("BIGINT", "INT8"):
            if unsigned and options.bigint_unsigned_handling_mode == "precise":
                return self._decimal(optional, 20, 0, precise=True)
            return _schema("int64", optional), _wrap64 if unsigned else _int, 0
        if base == "YEAR":
            return _schema("int32", optional, "io.debezium.time.Year"), _year, 0
        if base in ("REAL",):
            return _schema("float", optional), _to_float32, 0.0
        if base in ("FLOAT", "FLOAT4"):
            if column.scale is None and (column.length is None or column.length <= 24):
                return _schema("float", optional), _to_float32, 0.0
            # FLOAT(M,D) is stored as a float32 (Debezium widens it); FLOAT(p > 24) is a DOUBLE
            widen = _to_widened if column.scale is not None else _to_float
            return _schema("double", optional), widen, 0.0
        if base in ("DOUBLE", "FLOAT8"):
            return _schema("double", optional), _to_float, 0.0
        if base in ("DECIMAL", "DEC", "FIXED", "NUMERIC"):
            return self._decimal(optional, column.length or 10, column.scale or 0)
        if base == "BIT":
            length = column.length if column.length is not None else 1
            if length <= 1:
                return _schema("boolean", optional), _bool, False
            size = (length + 7) // 8
            schema = _schema(
                "bytes", optional, "io.debezium.data.Bits", parameters={"length": str(length)}
            )
            return schema, lambda v: _bits(v, size), ""
        if base == "DATE":
            name = "org.apache.kafka.connect.data.Date" if self.connect else "io.debezium.time.Date"
            return _schema("int32", optional, name), _date_days, 0
        if base == "TIME":
            if self.connect:
                schema = _schema("int32", optional, "org.apache.kafka.connect.data.Time")
                return schema, _time_millis, 0
            return _schema("int64", optional, "io.debezium.time.MicroTime"), _time_us, 0
        if base == "DATETIME":
            if self.connect:
                schema = _schema("int64", optional, "org.apache.kafka.connect.data.Timestamp")
                return schema, _datetime_ms, 0
            if (column.length or 0) <= 3:
                return _schema("int64", optional, "io.debezium.time.Timestamp"), _datetime_ms, 0
            return _schema("int64", optional, "io.debezium.time.MicroTimestamp"), _datetime_us, 0
        if base == "TIMESTAMP":
            digits = min(column.length or 0, 6)
            schema = _schema("string", optional, "io.debezium.time.ZonedTimestamp")
            return schema, lambda v: _timestamp(v, digits), _zoned(_EPOCH_UTC, digits)
        if base == "JSON":
            return _schema("string", optional, "io.debezium.data.Json"), _json_text, "{}"
        if base == "ENUM":
            allowed = ",".join(_debezium_option(o) for o in column.enum_values)
            schema = _schema(
                "string", optional, "io.debezium.data.Enum", parameters={"allowed": allowed}
            )
            return schema, _enum, ""
        if base == "SET":
            members = [_sql_literal(o) for o in column.enum_values]
            allowed = ",".join(_debezium_option(o) for o in column.enum_values)
            schema = _schema(
                "string", optional, "io.debezium.data.EnumSet", parameters={"allowed": allowed}
            )
            return schema, lambda v: _set(v, members), ""
        if base == "POINT":
            return _geometry_schema(True), _point, None
        if base in SPATIAL_TYPES:  # POINT is caught above
            return _geometry_schema(False), _geometry, None
        if base == "UUID":
            return _schema("string", optional, "io.debezium.data.Uuid"), _uuid, ""
        if base in ("INET4", "INET6"):
            return _schema("string", optional), _inet, ""
        if jdbc in (1, 12, -15, -9):  # CHAR, VARCHAR, NCHAR, NVARCHAR: text
            # a text column of charset binary holds bytes (written as Latin-1 text)
            text = _string if column.charset == "binary" else _text
            if column.charset == "latin1":
                text = _latin1_text  # as Java's windows-1252 reads the binlog's bytes
            return _schema("string", optional), text, ""
        if jdbc in (-2, -3, 2004):  # BINARY, VARBINARY, BLOB
            return self._binary(optional, column.length if jdbc == -2 else None)
        return _schema("string", optional), lambda v: _loose(v, self), ""  # unknown: by value

    def _decimal(
        self, optional: bool, precision: int, scale: int, precise: bool = False
    ) -> tuple[dict[str, Any], Callable[[Any], Any], Any]:
        mode = "precise" if precise else self.options.decimal_handling_mode
        if mode == "string":
            return _schema("string", optional), lambda v: _decimal_text(v, scale), "0"
        if mode == "double":
            return _schema("double", optional), lambda v: float(_scaled(v, scale)), 0.0
        parameters = {"scale": str(scale), "connect.decimal.precision": str(precision)}
        schema = _schema(
            "bytes", optional, "org.apache.kafka.connect.data.Decimal", parameters=parameters
        )
        convert = _decimal_bytes_at(scale)
        return schema, convert, convert(Decimal(0))

    def _binary(
        self, optional: bool, pad: int | None
    ) -> tuple[dict[str, Any], Callable[[Any], Any], Any]:
        mode = self.options.binary_handling_mode

        def raw(value: Any) -> bytes:
            if isinstance(value, str):
                value = value.encode("utf-8")
            elif not isinstance(value, bytes | bytearray):
                raise _Untyped
            if pad is not None and len(value) < pad:
                value = bytes(value).ljust(pad, b"\0")
            return bytes(value)

        if mode == "hex":
            return _schema("string", optional), lambda v: raw(v).hex(), ""
        if mode == "base64-url-safe":
            convert = lambda v: base64.urlsafe_b64encode(raw(v)).decode("ascii")  # noqa: E731
            return _schema("string", optional), convert, ""
        kind = "string" if mode == "base64" else "bytes"
        return _schema(kind, optional), lambda v: _b64(raw(v)), ""

    # -- defaults (Debezium's default value converter, then the column's converter) --

    def _default(self, column: Column, base: str, field: _Field) -> Any:
        text = column.default
        assert text is not None
        jdbc = column.jdbc_type
        number = jdbc in (-7, -6, 5, 4, -5, 6, 7, 8, 2, 3)
        if number or jdbc in (91, 93, 2014, 92, 16):
            text = text.strip()
        if number and text.lower() in ("true", "false"):
            text = "1" if text.lower() == "true" else "0"
        zero_date = re.fullmatch(r"\d{4}-\d{2}-00|\d{4}-00-\d{2}|0000-\d{2}-\d{2}", text)
        zero_ts = re.fullmatch(
            r"(\d{4}-\d{2}-00|\d{4}-00-\d{2}|0000-\d{2}-\d{2}) 00:00:00(\.\d{1,6})?", text
        )
        value: Any
        if base in ("DATE", "DATETIME"):
            epoch: Any = dt.date(1970, 1, 1) if base == "DATE" else dt.datetime(1970, 1, 1)
            zero = (zero_date and base == "DATE") or zero_ts or text == "0"
            try:
                value = None if zero else _parse_datetime(text, base == "DATE")
            except ValueError:  # Debezium: an invalid default is NULL, or the epoch
                value = None
            if value is None:
                return None if column.optional else field.convert(epoch)  # type: ignore[misc]
        elif base == "TIMESTAMP":
            if zero_ts or text == "0" or text == "1970-01-01 00:00:00":
                return None if column.optional else field.convert(_EPOCH_UTC)  # type: ignore[misc]
            value = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        elif base == "TIME":
            match = re.fullmatch(r"\S+ (\S+)", text)
            value = _parse_duration(match.group(1) if match else text)
        elif base in ("BOOL", "BOOLEAN"):
            try:
                value = int(text) != 0
            except ValueError:
                value = text.lower() == "true"
        elif base == "BIT":
            if (column.length or 1) > 1:
                value = int(text, 2) if re.fullmatch(r"[01]+", text) else int(text)
            else:
                try:
                    value = int(text) != 0
                except ValueError:
                    value = text.lower() == "true"
        elif base in ("DECIMAL", "DEC", "FIXED", "NUMERIC"):
            value = _scaled(Decimal(text), column.scale or 0)
        elif base in ("FLOAT", "FLOAT4", "DOUBLE", "FLOAT8", "REAL"):
            value = float(text)
        elif base == "YEAR":
            value = int(text)
            value = value + (2000 if value < 70 else 1900) if 0 <= value < 100 else value
        elif number:
            value = _java_round(float(text))
            if base in ("BIGINT", "INT8") and field.schema.get("type") == "bytes":
                value = int(Decimal(text))
        else:
            value = text
        return field.convert(value) if field.convert is not None else value


def _parse_datetime(text: str, date_only: bool) -> Any:
    """``yyyy-mm-dd[ hh:mm:ss[.f]]`` as a date or a datetime (ValueError if it is not one)."""
    match = re.fullmatch(
        r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d*))?)?", text
    )
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second, fraction = match.groups()
    date = dt.date(int(year), int(month), int(day))
    if date_only:
        return date
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return dt.datetime(
        date.year, date.month, date.day, int(hour or 0), int(minute or 0), int(second or 0), micros
    )


def _parse_duration(text: str) -> dt.timedelta:
    match = re.fullmatch(r"(-?)(\d*):(\d*)(?::(\d*))?(?:\.(\d*))?", text)
    if match is None:
        raise ValueError(f"not a TIME: {text!r}")
    sign, hours, minutes, seconds, fraction = match.groups()
    value = dt.timedelta(
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0")[:6].ljust(6, "0")),
    )
    return -value if sign else value


def _java_round(value: float) -> int:
    """Java's Math.round: floor(x + 0.5), clamped to the long range."""
    rounded = math.floor(value + 0.5)
    return max(-(2**63), min(2**63 - 1, rounded))


_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TYPE_SUFFIXES = (" UNSIGNED", " ZEROFILL", " SIGNED", " BINARY", " PRECISION")


def _base_type(type_name: str) -> tuple[str, bool]:
    """``INT UNSIGNED ZEROFILL`` -> (``INT``, unsigned)."""
    unsigned = " UNSIGNED" in type_name or " ZEROFILL" in type_name
    base = type_name
    for suffix in _TYPE_SUFFIXES:
        base = base.replace(suffix, "")
    return base, unsigned


def _geometry_schema(point: bool) -> dict[str, Any]:
    """Debezium's Geometry (``wkb``, ``srid``) and Point (``x``, ``y`` too) structs; optional
    whatever the column says, as Debezium's."""
    fields: list[dict[str, Any]] = [
        {"type": "bytes", "optional": point, "field": "wkb"},
        _opt("int32", "srid"),
    ]
    if point:
        xy = [{"type": "double", "optional": False, "field": axis} for axis in ("x", "y")]
        fields = xy + fields
    return {
        "type": "struct",
        "fields": fields,
        "optional": True,
        "name": f"io.debezium.data.geometry.{'Point' if point else 'Geometry'}",
        "version": 1,
        "doc": "Geometry (POINT)" if point else "Geometry",
    }


# value converters: each raises _Untyped when the value is not of its column's Python type


def _int(value: Any) -> int:
    if type(value) is not int:
        raise _Untyped
    return value


def _year(value: Any) -> int:
    """YEAR: 0000 is 1900 in Debezium (its binlog reader adds 1900 to the stored byte)."""
    return _int(value) or 1900


def _wrap64(value: Any) -> int:
    if type(value) is not int:
        raise _Untyped
    return value - (1 << 64) if value >= 1 << 63 else value


def _bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is not int:
        raise _Untyped
    return value != 0


def _to_float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Untyped
    return float(value)


def _to_float32(value: Any) -> float:
    return _float32(_to_float(value))


def _to_widened(value: Any) -> float:
    return _widened(_to_float(value))


# MySQL's DECIMAL has up to 65 digits: more than the default context's 28
_DECIMALS = decimal.Context(prec=200, rounding=ROUND_HALF_UP)


def _scaled(value: Any, scale: int) -> Decimal:
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise _Untyped
    return Decimal(value).quantize(Decimal(1).scaleb(-scale), context=_DECIMALS)


def _decimal_bytes_at(scale: int) -> Callable[[Any], str]:
    """The converter of a DECIMAL(p, ``scale``) to Connect's Decimal: the base64 of its
    unscaled value's two's complement (``_twos_complement``, inlined: this is the hottest
    converter)."""

    def convert(value: Any) -> str:
        text = str(value) if type(value) is Decimal else ""
        whole, _, fraction = text.partition(".")
        # the binlog's Decimal is at the column's scale: its digits are the unscaled value
        # (not so with another number of fraction digits, or an exponent: "1E+2", "1.5E-7")
        if text and len(fraction) == scale and "E" not in text:
            unscaled = int(whole + fraction)
        else:
            unscaled = int(_scaled(value, scale).scaleb(scale, context=_DECIMALS))
        length = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1
        return b2a_base64(unscaled.to_bytes(length, "big", signed=True), newline=False).decode()

    return convert


def _decimal_bytes(value: Any, scale: int) -> str:
    return _decimal_bytes_at(scale)(value)


def _decimal_text(value: Any, scale: int) -> str:
    return format(_scaled(value, scale), "f")


def _bits(value: Any, size: int) -> str:
    if type(value) is not int:
        raise _Untyped
    return _b64(value.to_bytes(size, "little"))


def _adjusted(value: Any) -> Any:
    """Debezium's time adjuster (``enable.time.adjuster``, on by default): years 0-69 are
    20xx, 70-99 are 19xx, as MySQL reads two-digit years."""
    year = value.year
    if year < 100:
        return value.replace(year=year + (2000 if year < 70 else 1900))
    return value


def _date_days(value: Any) -> int | None:
    if type(value) is dt.date:
        return _days(value if value.year >= 100 else _adjusted(value))
    if type(value) is ZeroDate:
        return None
    raise _Untyped


def _time_us(value: Any) -> int:
    if type(value) is not dt.timedelta:
        raise _Untyped
    return _time_micros(value)


def _time_millis(value: Any) -> int:
    micros = _time_us(value)
    if not 0 <= micros < _DAY_US:
        raise _Unrepresentable(f"TIME {encode_timedelta(value)} is outside 00:00:00-23:59:59")
    return micros // 1000


def _datetime_us(value: Any) -> int | None:
    if type(value) is _DATETIME and value.tzinfo is None and value.year >= 100:
        return (value - _EPOCH_NAIVE) // _ONE_US  # the binlog's: _micros(value), in C
    if type(value) is dt.datetime:
        return _micros(value if value.year >= 100 else _adjusted(value))
    if type(value) is ZeroDate:
        return None
    raise _Untyped


def _datetime_ms(value: Any) -> int | None:
    if type(value) is _DATETIME and value.tzinfo is None and value.year >= 100:
        return (value - _EPOCH_NAIVE) // _ONE_MS  # _datetime_us(value) // 1000, in C
    micros = _datetime_us(value)
    return None if micros is None else micros // 1000


def _timestamp(value: Any, digits: int) -> str | None:
    if type(value) is dt.datetime:
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(dt.UTC)
        return _zoned(value, digits)
    if type(value) is ZeroDate:
        return None
    raise _Untyped


def _json_text(value: Any) -> str | None:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict | list):
        return _dumps(_json_doc(value))
    raise _Untyped


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    raise _Untyped


def _text(value: Any) -> str:
    """A text column's value (the decoder gives str; a transform may give anything)."""
    return _string(value)


# MariaDB's latin1 has the C1 controls at 0x81, 0x8D, 0x8F, 0x90 and 0x9D (the server returns
# U+0081…, and so does ferry); Debezium decodes a latin1 column's binlog bytes with Java's
# windows-1252, which has nothing there and writes U+FFFD. Its snapshot reads the server's
# text through JDBC and keeps U+0081…: the converter is for streamed changes only.
_LATIN1_HOLES = re.compile("[\x81\x8d\x8f\x90\x9d]")
_JAVA_CP1252 = str.maketrans(dict.fromkeys((0x81, 0x8D, 0x8F, 0x90, 0x9D), 0xFFFD))


def _latin1_text(value: Any) -> str:
    """A latin1 column's value as Debezium streams it (see ``_LATIN1_HOLES``)."""
    if type(value) is str and value.isascii():  # the holes are not ASCII
        return value
    text = _string(value)
    if _LATIN1_HOLES.search(text) is None:
        return text
    return text.translate(_JAVA_CP1252)


def _enum(value: Any) -> str:
    return _enum_option(_string(value))


def _set(value: Any, members: list[str]) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, set | frozenset):
        raise _Untyped
    order = {m: k for k, m in enumerate(members)}
    return ",".join(_enum_option(m) for m in sorted(value, key=lambda m: order.get(m, len(order))))


def _spatial(value: Any) -> tuple[bytes, int | None]:
    if not isinstance(value, bytes | bytearray) or len(value) < 4:
        raise _Untyped
    srid = int.from_bytes(value[:4], "little")
    return bytes(value[4:]), (srid or None)


def _geometry(value: Any) -> dict[str, Any]:
    wkb, srid = _spatial(value)
    return {"wkb": _b64(wkb), "srid": srid}


def _point(value: Any) -> dict[str, Any]:
    wkb, srid = _spatial(value)
    if len(wkb) < 21:
        raise _Untyped
    x, y = struct.unpack("<dd" if wkb[0] == 1 else ">dd", wkb[5:21])
    return {"x": x, "y": y, "wkb": _b64(wkb), "srid": srid}


def _uuid(value: Any) -> str:
    if not isinstance(value, bytes) or len(value) != 16:
        raise _Untyped
    return str(uuid.UUID(bytes=value))


def _inet(value: Any) -> str:
    if not isinstance(value, bytes) or len(value) not in (4, 16):
        raise _Untyped
    return str(ipaddress.ip_address(value))


# converters that change nothing of a value of their column's own Python type
_CHECKS = frozenset({_int, _to_float, _text})


def _row_writer(
    fields: list[_Field], read: bool, encoder: _Encoder
) -> Callable[[Iterable[Any]], str]:
    """A function of a row's values, in the order of ``fields``, to the JSON object of what
    ``encoder.value`` makes of them (``_dumps({f.name: encoder.value(f, value, read)})``)
    for the values it has a case for. A value it has no case for (one a converter refuses:
    a transform's) raises, and the caller writes that row with the reference
    (``DebeziumJson._row``), which also raises whatever the reference raises.

    The function is generated once per table definition and format, as straight-line code:
    a loop with a call per value costs as much as converting the values. Its source, for
    ``(id BIGINT, b VARCHAR(32), c DECIMAL(12,2) NOT NULL)``::

        def write_row(values):
            v0, v1, v2, = values
            return "".join((
                head0, repr(v0) if type(v0) is int else dumps_value(v0),
                head1, encode_str(v1) if type(v1) is str else dumps_value(v1),
                head2, null2 if v2 is None or (x := convert2(v2)) is None
                    else repr(x) if type(x) is int else encode_str(x) if type(x) is str
                    else dumps_value(x),
                "}"))

    ``head0`` is ``{"id":``, ``head1`` ``,"b":`` and so on. A plain column (no converter but
    a type check, no default) writes its value as it is, through ``_dumps_value`` with its
    commonest case inline; a converted one writes its converter's result, and NULL (also a
    NULL result: a zero date) as ``null2``: the default, the zero or ``null``.
    """
    if not fields:
        return lambda values: "{}"
    # the source names values, heads and converters by their index only: nothing of the
    # definition (a column name) is ever part of the code
    scope: dict[str, Any] = {"dumps_value": _dumps_value, "encode_str": _encode_str}
    lines = []
    for k, field in enumerate(fields):
        v = f"v{k}"
        scope[f"head{k}"] = ("," if k else "{") + field.head
        if not field.converts:
            if field.convert is _int:
                write = f"repr({v}) if type({v}) is int else dumps_value({v})"
            elif field.convert is _text:
                write = f"encode_str({v}) if type({v}) is str else dumps_value({v})"
            else:
                write = f"dumps_value({v})"
        else:
            scope[f"null{k}"] = _dumps(encoder.value(field, None, read))
            scope[f"convert{k}"] = field.converter(read)
            write = (
                f"null{k} if {v} is None or (x := convert{k}({v})) is None"
                " else repr(x) if type(x) is int else encode_str(x) if type(x) is str"
                " else dumps_value(x)"
            )
        lines.append(f"        head{k}, {write},")
    values = ", ".join(f"v{k}" for k in range(len(fields)))
    head = ["def write_row(values):", f"    {values}, = values", '    return "".join((']
    source = "\n".join([*head, *lines, '        "}"))'])
    exec(compile(source, "<debezium-json row writer>", "exec"), scope)
    written: Callable[[Iterable[Any]], str] = scope["write_row"]
    return written


class _TableCodec:
    """One table definition's fields, key and schema names, for one Debezium format."""

    __slots__ = (
        "convert",
        "encoder",
        "fields",
        "int_key",
        "key_fields",
        "key_of",
        "key_schemas",
        "key_writers",
        "names",
        "schemas",
        "writers",
    )

    def __init__(self, definition: TableSchema, encoder: _Encoder) -> None:
        self.encoder = encoder
        self.fields = {c.name: encoder.field(c) for c in definition.columns}
        self.key_fields = [self.fields[n] for n in definition.primary_key if n in self.fields]
        # the columns that are not written as they are: a converter or a default
        self.convert = [f for f in self.fields.values() if f.converts]
        names = [f.name for f in self.key_fields]
        # a row's key values, to tell an update that changed the key (lists: compared
        # element by element, identity first); a one-column key without a comprehension
        self.key_of: Callable[[dict[str, Any]], list[Any]] = (
            (lambda row: [row.get(names[0])])
            if len(names) == 1
            else (lambda row: [row.get(n) for n in names])
        )
        # a row as the decoder makes it has these columns, in this order
        self.names = tuple(self.fields)
        # the row writers of streamed and snapshot rows ([read]), made when first needed
        self.writers: list[Callable[[Iterable[Any]], str] | None] = [None, None]
        self.key_writers: list[Callable[[Iterable[Any]], str] | None] = [None, None]
        # the key is most often one integer column: then (its name, ``b'{"id":%d}'``)
        single = self.key_fields[0] if len(self.key_fields) == 1 else None
        self.int_key: tuple[str, bytes] | None = None
        plain = single is not None and single.convert is _int and single.default is None
        if plain and not encoder.options.schemas_enable:
            assert single is not None
            template = "{" + single.head.replace("%", "%%") + "%d}"
            self.int_key = (single.name, template.encode())
        # with schemas.enable, the JSON of the value schema by the change's schema, table
        # and columns, and of the key schema by its schema and table
        self.schemas: dict[tuple[str, ...], str] = {}
        self.key_schemas: dict[tuple[str, str], str] = {}

    def writer(self, read: bool) -> Callable[[Iterable[Any]], str]:
        """The writer of a row with the definition's columns (see :func:`_row_writer`)."""
        found = self.writers[read]
        if found is None:
            fields = list(self.fields.values())
            found = self.writers[read] = _row_writer(fields, read, self.encoder)
        return found

    def key_writer(self, read: bool) -> Callable[[Iterable[Any]], str]:
        """The writer of the key columns' values."""
        found = self.key_writers[read]
        if found is None:
            found = self.key_writers[read] = _row_writer(self.key_fields, read, self.encoder)
        return found


class DebeziumJson(Format):
    """Debezium 3.x's MySQL connector output through JsonConverter (module docstring)."""

    name = "debezium-json"

    def __init__(
        self, pipeline: str, server_id: int | None = None, options: DebeziumOptions | None = None
    ) -> None:
        super().__init__(pipeline, server_id)
        self.options = options if options is not None else DebeziumOptions.model_validate({})
        self.prefix = self.options.topic_prefix or pipeline
        self._encoder = _Encoder(self.options)
        self._codecs: dict[int, tuple[TableSchema, _TableCodec]] = {}
        self._last_codec: tuple[TableSchema, _TableCodec] | None = None
        self._name = _dumps(self.prefix)
        self._schemas = self.options.schemas_enable
        self._tombstones = self.options.tombstones_on_delete
        self._last_row = 0
        # the source blocks up to "pos", by what they are made of (see _source), and the
        # last one used
        self._source_heads: dict[tuple[Any, ...], str] = {}
        self._last_source: tuple[tuple[Any, ...], str] = ((), "")
        # the envelope's processing time, its text: (ns, ``"ts_ms":…,"ts_us":…,"ts_ns":…}``)
        self._stamp = (-1, "")

    # -- the table's codec -----------------------------------------------------------

    def _codec(self, change: RowChange) -> _TableCodec:
        definition = change.definition
        found = self._last_codec  # most rows are of the last row's table
        if found is None or found[0] is not definition:
            if definition is None:
                definition = _guess_definition(change)
            found = self._codecs.get(id(definition))
            if found is None or found[0] is not definition:
                codec = _TableCodec(definition, self._encoder)
                if len(self._codecs) > 10_000:
                    self._codecs.clear()
                found = self._codecs[id(definition)] = (definition, codec)
            self._last_codec = found
        return found[1]

    def _row(self, codec: _TableCodec, row: dict[str, Any], read: bool = False) -> dict[str, Any]:
        """A row image in Debezium's values; ``read``: a snapshot row (op ``r``)."""
        out = dict(row)
        fields = codec.fields
        value_of = self._encoder.value
        for field in codec.convert:
            name = field.name
            if name in out:
                out[name] = value_of(field, out[name], read)
        if not out.keys() <= fields.keys():  # columns the definition lacks (a transform's)
            for name, value in out.items():
                if name not in fields and value is not None:
                    out[name] = _loose(value, self._encoder)
        return out

    def _row_json(self, codec: _TableCodec, row: dict[str, Any], read: bool = False) -> str:
        """``_dumps(self._row(codec, row, read))``: the JSON of a row image. A row with the
        definition's columns in its order (every row the decoder makes) is written by the
        table's row writer, without the dict of its Debezium values."""
        if tuple(row) == codec.names:
            try:
                return (codec.writers[read] or codec.writer(read))(row.values())
            except Exception:  # a value it has no case for: see _row_writer
                pass
        return _dumps(self._row(codec, row, read))

    def _key_json(self, codec: _TableCodec, row: dict[str, Any], read: bool) -> str | None:
        """The JSON of the key columns of ``row``: ``_row_json`` of ``{name: row.get(name)}``."""
        if not codec.key_fields:
            return None
        values = [row.get(f.name) for f in codec.key_fields]
        try:
            return codec.key_writer(read)(values)
        except Exception:  # as in _row_json
            key = {f.name: value for f, value in zip(codec.key_fields, values, strict=True)}
            return _dumps(self._row(codec, key, read))

    # -- messages --------------------------------------------------------------------

    def key(self, change: Change) -> bytes | None:
        if isinstance(change, DdlChange):
            return self._schema_change_key(_database_of(classified(change)))
        codec = self._codec(change)
        return self._key_bytes(codec, change.row, change)

    def _key_bytes(
        self, codec: _TableCodec, row: dict[str, Any], change: RowChange
    ) -> bytes | None:
        if codec.int_key is not None:
            value = row.get(codec.int_key[0])
            if type(value) is int:
                return codec.int_key[1] % value
        try:
            key = self._key_json(codec, row, change.op == "read")
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        if key is None:
            return None
        if self._schemas:
            table = (change.schema, change.table)  # a transform may have renamed it
            schema = codec.key_schemas.get(table)
            if schema is None:
                fields = [f.schema for f in codec.key_fields]
                name = f"{self._schema_name(change)}.Key"
                struct = {"type": "struct", "fields": fields, "optional": False, "name": name}
                schema = _dumps(struct)
                if len(codec.key_schemas) < 64:
                    codec.key_schemas[table] = schema
            return _envelope(schema, key)
        return utf8(key)

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        ns = now_ns() if now is None else now
        if isinstance(change, DdlChange):
            return self._ddl_messages(change, ns)
        try:
            codec = self._codec(change)
            op, before, after = change.op, change.before, change.after
            if op == "update" and codec.key_fields:
                assert before is not None and after is not None
                if codec.key_of(before) != codec.key_of(after):
                    return self._key_change(change, codec, ns)
            row = after if after is not None else before
            assert row is not None, "a row change has a before or an after image"
            key = self._key_bytes(codec, row, change)
            value = self._value(change, codec, before, after, DEBEZIUM_OP[op], ns)
        except _Refused as exc:
            return self._refused(change, exc)
        if op == "delete" and self._tombstones:
            return [(key, value), (key, None)]
        return [(key, value)]

    def _key_change(self, change: RowChange, codec: _TableCodec, ns: int) -> list[Message]:
        """An update that changed the key: a delete of the old row, its tombstone, a create
        of the new one."""
        before, after = change.before, change.after
        assert before is not None and after is not None
        old_key = self._key_bytes(codec, before, change)
        out: list[Message] = [(old_key, self._value(change, codec, before, None, "d", ns))]
        if self._tombstones:
            out.append((old_key, None))
        new_key = self._key_bytes(codec, after, change)
        out.append((new_key, self._value(change, codec, None, after, "c", ns)))
        return out

    def _refused(self, change: RowChange, exc: _Refused) -> list[Message]:
        """Debezium's event.processing.failure.handling.mode: fail | warn | skip."""
        where = f"{change.schema}.{change.table} at {change.position}"
        mode = self.options.event_processing_failure_handling_mode
        if mode == "fail":
            raise FatalError(
                f"debezium-json cannot write a change of {where}: {exc}"
                " (time.precision.mode=connect cannot hold it; use"
                " adaptive_time_microseconds, or event.processing.failure.handling.mode"
                " warn or skip to leave such changes out)"
            ) from None
        if mode == "warn":
            logger.warning("debezium-json left out a change of {}: {}", where, exc)
        return []

    def encode(self, change: Change, now: int | None = None) -> bytes:
        for _, value in self.messages(change, now):
            if value is not None:
                return value
        return b""

    def _value(
        self,
        change: RowChange,
        codec: _TableCodec,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        op: str,
        ns: int,
    ) -> bytes:
        stamp = self._stamp
        if stamp[0] != ns:  # one processing time per batch
            stamp = self._stamp = (
                ns,
                f'"ts_ms":{ns // 1_000_000},"ts_us":{ns // 1000},"ts_ns":{ns}}}',
            )
        try:
            read = change.op == "read"
            before_json = "null" if before is None else self._row_json(codec, before, read)
            after_json = "null" if after is None else self._row_json(codec, after, read)
            payload = (
                f'{{"before":{before_json},"after":{after_json},"source":{self._source(change)},'
                f'"transaction":null,"op":"{op}",{stamp[1]}'
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        if not self._schemas:
            try:
                return payload.encode()
            except UnicodeEncodeError:  # a lone surrogate: see sinks.formats.utf8
                return utf8(payload)
        image = after if after is not None else before
        assert image is not None
        names = (change.schema, change.table, *image)  # the schema's name, its fields
        schema = codec.schemas.get(names)
        if schema is None:
            schema = _dumps(self._value_schema(codec, names[2:], change))
            if len(codec.schemas) < 64:
                codec.schemas[names] = schema
        return _envelope(schema, payload)

    def _source(self, change: RowChange) -> str:
        """The source block. All of it but ``pos`` and ``row`` is the same for the rows of
        one transaction, table, op kind and second: that part is made once."""
        event = change.event
        if event is not None:
            pos, row, server_id = event.pos, change.index - event.first_index, event.server_id
        else:
            pos, row, server_id = change.position.pos, change.index, self.server_id or 0
        self._last_row = row
        made_of = (
            change.position.file,
            change.ts,
            change.gtid,
            change.op == "read",
            change.schema,
            change.table,
            server_id,
        )
        last = self._last_source
        if made_of == last[0]:  # the last row's: most often
            head = last[1]
        else:
            found = self._source_heads.get(made_of)
            if found is None:
                if len(self._source_heads) >= 1024:
                    self._source_heads.clear()
                found = self._source_heads[made_of] = self._source_head(*made_of)
            head = found
            self._last_source = (made_of, head)
        return f'{head}{pos},"row":{row},"thread":null,"query":null}}'

    def _source_head(
        self,
        file: str,
        ts: float,
        gtid: str | None,
        read: bool,
        schema: str,
        table: str,
        server_id: int,
    ) -> str:
        """The source block up to ``"pos":``."""
        # a row a snapshot copied: "true" (Debezium also marks its first and last rows
        # "first"/"last"; ferry's snapshot hands rows out in chunks and does not know them)
        snapshot = "true" if read else "false"
        ms = int(ts * 1000)
        return (
            f'{{"version":"{_VERSION}","connector":"mysql","name":{self._name},"ts_ms":{ms}'
            f',"snapshot":"{snapshot}","db":{_dumps(schema)},"sequence":null,"ts_us":{ms * 1000}'
            f',"ts_ns":{ms * 1_000_000},"table":{_dumps(table)},"server_id":{server_id}'
            f',"gtid":{_dumps(gtid)},"file":{_dumps(file)},"pos":'
        )

    def _schema_name(self, change: RowChange) -> str:
        return _BAD_NAME_CHARS.sub("_", f"{self.prefix}.{change.schema}.{change.table}")

    def _value_schema(
        self, codec: _TableCodec, names: tuple[str, ...], change: RowChange
    ) -> dict[str, Any]:
        name = self._schema_name(change)
        fields = [codec.fields[n].schema if n in codec.fields else _loose_schema(n) for n in names]
        row = {"type": "struct", "fields": fields, "optional": True, "name": f"{name}.Value"}
        return {
            "type": "struct",
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                _SOURCE_SCHEMA,
                _TRANSACTION_SCHEMA,
                _opt("string", "op", False),
                _opt("int64", "ts_ms"),
                _opt("int64", "ts_us"),
                _opt("int64", "ts_ns"),
            ],
            "optional": False,
            "name": f"{name}.Envelope",
            "version": 2,
        }

    # -- schema changes --------------------------------------------------------------

    def _schema_change_key(self, database: str) -> bytes:
        key = {"databaseName": database}
        if self.options.schemas_enable:
            return _envelope(_dumps(_SCHEMA_CHANGE_KEY_SCHEMA), _dumps(key))
        return _encoded(key)

    def _ddl_messages(self, change: DdlChange, ns: int) -> list[Message]:
        change = classified(change)
        what = _ddl_object(change)
        if change.kind == "routine" or what not in ("TABLE", "DATABASE", "INDEX"):
            return []  # Debezium writes no schema change for views, triggers and routines
        ansi_quotes = "ANSI_QUOTES" in change.session.get("sql_mode", "")
        ddl = normalize_ddl(change.statement, ansi_quotes)
        if what == "INDEX":
            # Debezium's event of CREATE/DROP INDEX names neither a table nor the statement's
            # database: the session's, an empty table, no table changes
            key = self._schema_change_key(change.schema)
            return [(key, self._ddl_value(change, ns, ddl, [], change.schema, ""))]
        database = _database_of(change)
        key = self._schema_change_key(database)
        drops = [c for c in change.table_changes if c.kind == "DROP"]
        if drops and len(drops) == len(change.table_changes):
            # one message per dropped table, the statement rewritten for that table alone
            exists = " IF EXISTS" if re.search(r"\bIF\s+EXISTS\b", change.statement, re.I) else ""
            names = _table_names(c for c in drops)
            return [
                (
                    key,
                    self._ddl_value(
                        change,
                        ns,
                        f"DROP TABLE{exists} {_quoted(drop.schema)}.{_quoted(drop.table)}",
                        [drop],
                        drop.schema,
                        names,
                    ),
                )
                for drop in drops
            ]
        table = None
        if change.kind == "table":
            changed = change.table_changes or tuple(TableChange("ALTER", *t) for t in change.tables)
            table = _table_names(changed)
        value = self._ddl_value(change, ns, ddl, list(change.table_changes), database, table)
        return [(key, value)]

    def _ddl_value(
        self,
        change: DdlChange,
        ns: int,
        ddl: str,
        changes: list[TableChange],
        database: str,
        table: str | None,
    ) -> bytes:
        event = change.event
        ms = int(change.ts * 1000)
        source = {
            "version": _VERSION,
            "connector": "mysql",
            "name": self.prefix,
            "ts_ms": ms,
            "snapshot": "false",
            "db": database,
            "sequence": None,
            "ts_us": ms * 1000,
            "ts_ns": ms * 1_000_000,
            "table": table,
            "server_id": event.server_id if event is not None else (self.server_id or 0),
            "gtid": change.gtid,
            "file": change.position.file,
            "pos": event.pos if event is not None else change.position.pos,
            # Debezium leaves the row number of the last rows event it read in its source
            # info: a schema change carries it too (0 after a restart, here and there)
            "row": self._last_row,
            "thread": None,
            "query": None,
        }
        payload = {
            "source": source,
            "ts_ms": ns // 1_000_000,
            "databaseName": database,
            "schemaName": None,
            "ddl": ddl,
            "tableChanges": [self._table_change(c) for c in changes],
        }
        if self.options.schemas_enable:
            return _envelope(_dumps(_SCHEMA_CHANGE_VALUE_SCHEMA), _dumps(payload))
        return _encoded(payload)

    def _table_change(self, change: TableChange) -> dict[str, Any]:
        comments = self.options.include_schema_comments
        table = change.definition
        body = None
        if table is not None:
            body = {
                "defaultCharsetName": table.charset,
                "primaryKeyColumnNames": list(table.primary_key),
                "columns": [_column_json(c, comments) for c in table.columns],
                "comment": table.comment if comments else None,
            }
        return {
            "type": change.kind,
            "id": f"{_double_quoted(change.schema)}.{_double_quoted(change.table)}",
            "table": body,
        }

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        parsed = json.loads(self.messages(change, now * 1_000_000)[0][1] or b"null")
        return parsed if isinstance(parsed, dict) else {}

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        found = self.messages(change, now * 1_000_000)
        return json.loads(found[0][1] or b"null") if found else {}


_EXECUTABLE = re.compile(r"\A\s*/\*!\d*\s(.*)\*/\s*\Z", re.DOTALL)
_LITERALS = re.compile(
    r"(--[^\n]*|#[^\n]*|/\*(?!!).*?\*/)|('(?:''|[^'\\]|\\.)*')"
    r'|"((?:[^"\\]|\\.|"")*)"|(`(?:``|[^`])*`)',
    re.DOTALL,
)
_WINDOW_WORDS = (
    "CUME_DIST|DENSE_RANK|FIRST_VALUE|JSON_TABLE|LAG|LAST_VALUE|LEAD|NTH_VALUE|NTILE"
    "|PERCENT_RANK|RANK|ROW_NUMBER"
)
_KEYWORD_FIXES = (
    (
        re.compile(
            r"\b(CREATE\s+TABLE|ALTER\s+TABLE|DROP\s+TABLE|FROM|JOIN|LEFT\s+JOIN|RIGHT\s+JOIN"
            rf"|INNER\s+JOIN|OUTER\s+JOIN|INTO)\s+({_WINDOW_WORDS})\b",
            re.I,
        ),
        r"\1 `\2`",
    ),
    (
        re.compile(
            rf"\b({_WINDOW_WORDS})\s+((?:VAR)?CHAR|INT|BIGINT|DECIMAL|NUMERIC|FLOAT|DOUBLE|JSON"
            r"|TEXT|BLOB|DATE|DATETIME|TIMESTAMP|TIME|YEAR|ENUM|SET|BINARY|VARBINARY|BIT|BOOL"
            r"|BOOLEAN)\b",
            re.I,
        ),
        r"`\1` \2",
    ),
    (re.compile(rf"\b({_WINDOW_WORDS})\s*:", re.I), r"`\1`:"),
)
_WINDOW_WORD = re.compile(rf"\b({_WINDOW_WORDS})\b")


def normalize_ddl(statement: str, ansi_quotes: bool = False) -> str:
    """The statement as Debezium's MySQL connector writes it in ``ddl``: a statement that
    is one executable comment (``/*!40000 ALTER TABLE t DISABLE KEYS */``) unwrapped,
    double-quoted strings single-quoted, window-function names used as identifiers
    backquoted (its DdlNormalizer)."""
    match = _EXECUTABLE.match(statement)
    if match:
        statement = match.group(1).strip()
    out = []
    last = 0
    for literal in _LITERALS.finditer(statement):
        out.append(_backquote_keywords(statement[last : literal.start()]))
        if literal.group(3) is not None and not ansi_quotes:
            out.append("'" + literal.group(3).replace("'", "''") + "'")
        else:
            out.append(literal.group(0))
        last = literal.end()
    out.append(_backquote_keywords(statement[last:]))
    return "".join(out)


def _backquote_keywords(text: str) -> str:
    if not _WINDOW_WORD.search(text):
        return text
    for pattern, replacement in _KEYWORD_FIXES:
        text = pattern.sub(replacement, text)
    return text


def _column_json(column: Column, comments: bool) -> dict[str, Any]:
    return {
        "name": column.name,
        "jdbcType": column.jdbc_type,
        "nativeType": None,
        "typeName": column.type_name,
        "typeExpression": column.type_name,
        "charsetName": column.charset,
        "length": column.length,
        "scale": column.scale,
        "position": column.position,
        "optional": column.optional,
        "autoIncremented": column.auto_increment,
        "generated": column.generated,
        "comment": column.comment if comments else None,
        "defaultValueExpression": column.default,
        "enumValues": list(column.enum_values) if column.enum_values else None,
    }


def _java_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as an unsigned 32-bit number."""
    value = 0
    data = text.encode("utf-16-be")
    for k in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[k : k + 2], "big")) & 0xFFFFFFFF
    return value


def _table_names(changes: Iterable[TableChange]) -> str:
    """``source.table`` of a schema change: the tables it changed, joined by commas in the
    order Debezium's HashSet of their ids gives (``DROP TABLE t1,t2,t3,t4`` -> t4,t3,t2,t1)."""
    names: dict[str, tuple[str, str]] = {}
    for change in changes:
        names.setdefault(f"{change.schema}.{change.table}", (change.schema, change.table))
    capacity = 16
    while len(names) > capacity * 3 // 4:
        capacity *= 2
    spread = {key: (h ^ (h >> 16)) & (capacity - 1) for key in names for h in [_java_hash(key)]}
    ordered = sorted(enumerate(names), key=lambda item: (spread[item[1]], item[0]))
    return ",".join(names[key][1] for _, key in ordered)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _double_quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _database_of(change: DdlChange) -> str:
    """The database a statement names (``db.t``), else the session's."""
    for schema, _ in change.tables:
        if schema:
            return schema
    return change.schema


def _ddl_object(change: DdlChange) -> str:
    """What ``change`` (classified: see :func:`sinks.formats.classified`) works on."""
    return "DATABASE" if change.kind == "database" else change.object


def _envelope(schema: str, payload: str) -> bytes:
    """JsonConverter's message with schemas.enable, of JSON texts."""
    return utf8(f'{{"schema":{schema},"payload":{payload}}}')


def _loose(value: Any, encoder: _Encoder) -> Any:
    """A value without a column to go by (see the module docstring): by its Python type."""
    kind = type(value)
    if kind is int or kind is str or kind is float or kind is bool or kind is JsonText:
        return value
    if kind is Decimal:
        mode = encoder.options.decimal_handling_mode
        if mode == "string":
            return format(value, "f")
        if mode == "double":
            return float(value)
        exponent = value.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return _decimal_bytes(value, scale)
    if kind is dt.datetime:
        if value.tzinfo is not None:
            return _zoned(value.astimezone(dt.UTC), 6 if value.microsecond else 0)
        return _micros(value) // (1000 if encoder.connect else 1)
    if kind is dt.date:
        return _days(value)
    if kind is dt.timedelta:
        micros = _time_micros(value)
        return micros // 1000 if encoder.connect else micros
    if kind is ZeroDate:
        return None
    if isinstance(value, bytes | bytearray):
        return _b64(bytes(value))
    if isinstance(value, set | frozenset):
        return ",".join(sorted(value))
    if isinstance(value, dict | list):
        return _dumps(_json_doc(value))
    return _fast_default(value)


def _loose_schema(name: str) -> dict[str, Any]:
    return {"type": "string", "optional": True, "field": name}


def _guess_definition(change: RowChange) -> TableSchema:
    """A stand-in definition for a change that carries none: every column untyped (one per
    table and set of columns)."""
    image = change.row
    args = (change.schema, change.table, tuple(image), change.primary_key)
    found = _GUESSED.get(args)
    if found is None:
        columns = tuple(
            Column(name, "", 1111, k + 1, optional=name not in change.primary_key)
            for k, name in enumerate(image)
        )
        if len(_GUESSED) > 1000:
            _GUESSED.clear()
        found = _GUESSED[args] = TableSchema(change.schema, change.table, columns, args[3])
    return found


_GUESSED: dict[tuple[Any, ...], TableSchema] = {}


def _opt(kind: str, name: str, optional: bool = True) -> dict[str, Any]:
    return {"type": kind, "optional": optional, "field": name}


def _array(items: str, name: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": items, "optional": False},
        "optional": True,
        "field": name,
    }


_SOURCE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _opt("string", "version", False),
        _opt("string", "connector", False),
        _opt("string", "name", False),
        _opt("int64", "ts_ms", False),
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Enum",
            "version": 1,
            "parameters": {
                "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,"
                "false,incremental"
            },
            "default": "false",
            "field": "snapshot",
        },
        _opt("string", "db", False),
        _opt("string", "sequence"),
        _opt("int64", "ts_us"),
        _opt("int64", "ts_ns"),
        _opt("string", "table"),
        _opt("int64", "server_id", False),
        _opt("string", "gtid"),
        _opt("string", "file", False),
        _opt("int64", "pos", False),
        _opt("int32", "row", False),
        _opt("int64", "thread"),
        _opt("string", "query"),
    ],
    "optional": False,
    "name": "io.debezium.connector.mysql.Source",
    "version": 1,
    "field": "source",
}
_TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _opt("string", "id", False),
        _opt("int64", "total_order", False),
        _opt("int64", "data_collection_order", False),
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}
_SCHEMA_CHANGE_KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [_opt("string", "databaseName", False)],
    "optional": False,
    "name": "io.debezium.connector.mysql.SchemaChangeKey",
    "version": 1,
}


_COLUMN_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _opt("string", "name", False),
        _opt("int32", "jdbcType", False),
        _opt("int32", "nativeType"),
        _opt("string", "typeName", False),
        _opt("string", "typeExpression"),
        _opt("string", "charsetName"),
        _opt("int32", "length"),
        _opt("int32", "scale"),
        _opt("int32", "position", False),
        _opt("boolean", "optional"),
        _opt("boolean", "autoIncremented"),
        _opt("boolean", "generated"),
        _opt("string", "comment"),
        _opt("string", "defaultValueExpression"),
        _array("string", "enumValues"),
    ],
    "optional": False,
    "name": "io.debezium.connector.schema.Column",
    "version": 1,
}
_SCHEMA_CHANGE_VALUE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        _SOURCE_SCHEMA,
        _opt("int64", "ts_ms", False),
        _opt("string", "databaseName"),
        _opt("string", "schemaName"),
        _opt("string", "ddl"),
        {
            "type": "array",
            "items": {
                "type": "struct",
                "fields": [
                    _opt("string", "type", False),
                    _opt("string", "id", False),
                    {
                        "type": "struct",
                        "fields": [
                            _opt("string", "defaultCharsetName"),
                            _array("string", "primaryKeyColumnNames"),
                            {
                                "type": "array",
                                "items": _COLUMN_SCHEMA,
                                "optional": False,
                                "field": "columns",
                            },
                            _opt("string", "comment"),
                        ],
                        "optional": True,
                        "name": "io.debezium.connector.schema.Table",
                        "version": 1,
                        "field": "table",
                    },
                ],
                "optional": False,
                "name": "io.debezium.connector.schema.Change",
                "version": 1,
            },
            "optional": False,
            "field": "tableChanges",
        },
    ],
    "optional": False,
    "name": "io.debezium.connector.mysql.SchemaChangeValue",
    "version": 1,
}
