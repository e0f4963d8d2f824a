"""debezium-json's column converters: per column type and options, its Connect schema, the
converter of its values, its default and its zero (``docs/formats.md`` has the values).

One :class:`Field` per column, built once per table definition by :class:`Encoder` (one per
set of options); :meth:`Encoder.value` is the reference of how a value is written, which
the generated row writers (``sinks.formats.debezium.writer``) follow.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import math
import re
import struct
import uuid
from binascii import b2a_base64
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pipeline.dialect import (
    BINARY_TYPES,
    NUMBER_TYPES,
    SPATIAL_TYPES,
    TEMPORAL_TYPES,
    TEXT_TYPES,
    Jdbc,
)
from pipeline.model import Column, JsonText, ZeroDate
from sinks.formats.debezium.connect import opt
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.encoder import b64, dumps_str, json_default, json_doc
from sinks.formats.values import encode_timedelta, float32, sql_literal

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DATETIME = dt.datetime
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)
_ONE_MS = dt.timedelta(milliseconds=1)
_DAY_US = 86_400_000_000


def _days(value: dt.date) -> int:
    return value.toordinal() - _EPOCH_ORDINAL


def epoch_micros(value: dt.datetime) -> int:
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


def twos_complement(value: int) -> bytes:
    """Java's BigInteger.toByteArray: the shortest big-endian two's complement."""
    length = (value if value >= 0 else ~value).bit_length() // 8 + 1  # ~value: -value - 1
    return value.to_bytes(length, "big", signed=True)


def _widened(value: float) -> float:
    """A FLOAT column's value as a double, exactly as the float32 it is (5.61 -> 5.61000013…)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:  # not a float32 after all
        return value


def _enum_option(text: str) -> str:
    """An ENUM/SET member as Debezium writes it: commas escaped with a backslash."""
    return text.replace(",", "\\,")


def _debezium_option(text: str) -> str:
    """An ENUM/SET option as Debezium reads it from the DDL (unquoted, escapes as it does)."""
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
    return inner.replace(",", "\\,").replace("\\'", "'").replace("''", "'")


class Field:
    """How one column is encoded: its Connect schema and a converter of non-null values
    (``Encoder.value`` says how they are applied)."""

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
        # whether Encoder.value changes a value: a converter that is not plain, or a
        # default for NULL (set by Encoder.field once the default is known)
        self.converts = False
        self.head = dumps_str(name) + ":"  # the field's name in a JSON object

    def converter(self, read: bool) -> Callable[[Any], Any] | None:
        """The converter of a streamed row's values, or of a snapshot's (``read``)."""
        if read and self.convert is latin1_text:  # a snapshot has the server's text
            return as_text
        return self.convert


class _Untyped(Exception):
    """A value that does not fit its column's converter (a transform changed it)."""


class Refused(Exception):
    """A change the options cannot write (see event.processing.failure.handling.mode)."""


class Unrepresentable(ValueError):
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


class Encoder:
    """Debezium's value converters for one set of options (docs/formats.md has the values)."""

    def __init__(self, options: DebeziumOptions) -> None:
        self.options = options
        self.connect = options.time_precision_mode == "connect"
        self.replace_null = options.replace_null_with_default

    # -- a column's field ----------------------------------------------------------

    def field(self, column: Column) -> Field:
        base, unsigned = column.base_type, column.unsigned
        optional = column.optional
        built = self._field(column, base, unsigned, optional)
        field = Field(column.name, built[0], built[1], optional, built[2])
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

    def value(self, field: Field, value: Any, read: bool = False) -> Any:
        """``value`` of ``field``'s column as Debezium writes it; ``read``: of a snapshot row.

        The converter's result; NULL is the column's default (as JsonConverter's
        replace.null.with.default), else NULL, else Debezium's zero for a NOT NULL column.
        A value of another type than the column's (a transform's) is written by its type.
        This is the reference the row writers (``writer.row_writer``) follow.
        """
        if not field.converts:  # a plain column without default: the binlog's value as is
            return value
        convert = field.converter(read)
        if value is not None and convert is not None:
            try:
                value = convert(value)
            except _Untyped:
                value = loose(value, self)
            except Unrepresentable as exc:
                if not field.optional:
                    raise Refused(f"column {field.name!r}: {exc}") from exc
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
            return _schema("int32" if wide else "int16", optional), as_int, 0
        if base in ("MEDIUMINT", "INT3", "MIDDLEINT"):
            return _schema("int32", optional), as_int, 0
        if base in ("INT", "INTEGER", "INT4"):
            return _schema("int64" if unsigned else "int32", optional), as_int, 0
        if base in ("BIGINT", "INT8"):
            if unsigned and options.bigint_unsigned_handling_mode == "precise":
                return self._decimal(optional, 20, 0, precise=True)
            return _schema("int64", optional), _wrap64 if unsigned else as_int, 0
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
                return schema, datetime_ms, 0
            if (column.length or 0) <= 3:
                return _schema("int64", optional, "io.debezium.time.Timestamp"), datetime_ms, 0
            return _schema("int64", optional, "io.debezium.time.MicroTimestamp"), datetime_us, 0
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
            members = [sql_literal(o) for o in column.enum_values]
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
        if jdbc in TEXT_TYPES:
            # a text column of charset binary holds bytes (written as Latin-1 text)
            text = _string if column.charset == "binary" else as_text
            if column.charset == "latin1":
                text = latin1_text  # as Java's windows-1252 reads the binlog's bytes
            return _schema("string", optional), text, ""
        if jdbc in BINARY_TYPES:
            return self._binary(optional, column.length if jdbc == Jdbc.BINARY else None)
        return _schema("string", optional), lambda v: loose(v, self), ""  # unknown: by value

    def _decimal(
        self, optional: bool, precision: int, scale: int, precise: bool = False
    ) -> tuple[dict[str, Any], Callable[[Any], Any], Any]:
        mode = "precise" if precise else self.options.decimal_handling_mode
        if mode == "string":
            return _schema("string", optional), lambda v: _decimal_text(v, scale), "0"
        if mode == "double":
            return _schema("double", optional), lambda v: float(scaled(v, scale)), 0.0
        parameters = {"scale": str(scale), "connect.decimal.precision": str(precision)}
        schema = _schema(
            "bytes", optional, "org.apache.kafka.connect.data.Decimal", parameters=parameters
        )
        convert = decimal_bytes_at(scale)
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
        return _schema(kind, optional), lambda v: b64(raw(v)), ""

    # -- defaults (Debezium's default value converter, then the column's converter) --

    def _default(self, column: Column, base: str, field: Field) -> Any:
        text = column.default
        assert text is not None
        jdbc = column.jdbc_type
        number = jdbc == Jdbc.BIT or jdbc in NUMBER_TYPES
        if number or jdbc == Jdbc.BOOLEAN or jdbc in TEMPORAL_TYPES:
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
            value = scaled(Decimal(text), column.scale or 0)
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


def _geometry_schema(point: bool) -> dict[str, Any]:
    """Debezium's Geometry (``wkb``, ``srid``) and Point (``x``, ``y`` too) structs; optional
    whatever the column says, as Debezium's."""
    fields: list[dict[str, Any]] = [
        {"type": "bytes", "optional": point, "field": "wkb"},
        opt("int32", "srid"),
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


def as_int(value: Any) -> int:
    if type(value) is not int:
        raise _Untyped
    return value


def _year(value: Any) -> int:
    """YEAR: 0000 is 1900 in Debezium (its binlog reader adds 1900 to the stored byte)."""
    return as_int(value) or 1900


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
    return float32(_to_float(value))


def _to_widened(value: Any) -> float:
    return _widened(_to_float(value))


# MySQL's DECIMAL has up to 65 digits: more than the default context's 28
DECIMALS = decimal.Context(prec=200, rounding=ROUND_HALF_UP)


def scaled(value: Any, scale: int) -> Decimal:
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise _Untyped
    return Decimal(value).quantize(Decimal(1).scaleb(-scale), context=DECIMALS)


def decimal_bytes_at(scale: int) -> Callable[[Any], str]:
    """The converter of a DECIMAL(p, ``scale``) to Connect's Decimal: the base64 of its
    unscaled value's two's complement (``twos_complement``, inlined: this is the hottest
    converter)."""

    def convert(value: Any) -> str:
        text = str(value) if type(value) is Decimal else ""
        whole, _, fraction = text.partition(".")
        # the binlog's Decimal is at the column's scale: its digits are the unscaled value
        # (not so with another number of fraction digits, or an exponent: "1E+2", "1.5E-7")
        if text and len(fraction) == scale and "E" not in text:
            unscaled = int(whole + fraction)
        else:
            unscaled = int(scaled(value, scale).scaleb(scale, context=DECIMALS))
        length = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1
        return b2a_base64(unscaled.to_bytes(length, "big", signed=True), newline=False).decode()

    return convert


def _decimal_bytes(value: Any, scale: int) -> str:
    return decimal_bytes_at(scale)(value)


def _decimal_text(value: Any, scale: int) -> str:
    return format(scaled(value, scale), "f")


def _bits(value: Any, size: int) -> str:
    if type(value) is not int:
        raise _Untyped
    return b64(value.to_bytes(size, "little"))


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
        raise Unrepresentable(f"TIME {encode_timedelta(value)} is outside 00:00:00-23:59:59")
    return micros // 1000


def datetime_us(value: Any) -> int | None:
    if type(value) is _DATETIME and value.tzinfo is None and value.year >= 100:
        return (value - _EPOCH_NAIVE) // _ONE_US  # the binlog's: epoch_micros(value), in C
    if type(value) is dt.datetime:
        return epoch_micros(value if value.year >= 100 else _adjusted(value))
    if type(value) is ZeroDate:
        return None
    raise _Untyped


def datetime_ms(value: Any) -> int | None:
    if type(value) is _DATETIME and value.tzinfo is None and value.year >= 100:
        return (value - _EPOCH_NAIVE) // _ONE_MS  # datetime_us(value) // 1000, in C
    micros = datetime_us(value)
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
        return dumps_str(json_doc(value))
    raise _Untyped


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    raise _Untyped


def as_text(value: Any) -> str:
    """A text column's value (the decoder gives str; a transform may give anything)."""
    return _string(value)


# MariaDB's latin1 has the C1 controls at 0x81, 0x8D, 0x8F, 0x90 and 0x9D (the server returns
# U+0081…, and so does ferry); Debezium decodes a latin1 column's binlog bytes with Java's
# windows-1252, which has nothing there and writes U+FFFD. Its snapshot reads the server's
# text through JDBC and keeps U+0081…: the converter is for streamed changes only.
_LATIN1_HOLES = re.compile("[\x81\x8d\x8f\x90\x9d]")
_JAVA_CP1252 = str.maketrans(dict.fromkeys((0x81, 0x8D, 0x8F, 0x90, 0x9D), 0xFFFD))


def latin1_text(value: Any) -> str:
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
    return {"wkb": b64(wkb), "srid": srid}


def _point(value: Any) -> dict[str, Any]:
    wkb, srid = _spatial(value)
    if len(wkb) < 21:
        raise _Untyped
    x, y = struct.unpack("<dd" if wkb[0] == 1 else ">dd", wkb[5:21])
    return {"x": x, "y": y, "wkb": b64(wkb), "srid": srid}


def _uuid(value: Any) -> str:
    if not isinstance(value, bytes) or len(value) != 16:
        raise _Untyped
    return str(uuid.UUID(bytes=value))


def _inet(value: Any) -> str:
    if not isinstance(value, bytes) or len(value) not in (4, 16):
        raise _Untyped
    return str(ipaddress.ip_address(value))


_CHECKS = frozenset({as_int, _to_float, as_text})


def loose(value: Any, encoder: Encoder) -> Any:
    """A value without a column to go by (a transform's, docs/formats.md): by its Python type."""
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
        return epoch_micros(value) // (1000 if encoder.connect else 1)
    if kind is dt.date:
        return _days(value)
    if kind is dt.timedelta:
        micros = _time_micros(value)
        return micros // 1000 if encoder.connect else micros
    if kind is ZeroDate:
        return None
    if isinstance(value, bytes | bytearray):
        return b64(bytes(value))
    if isinstance(value, set | frozenset):
        return ",".join(sorted(value))
    if isinstance(value, dict | list):
        return dumps_str(json_doc(value))
    return json_default(value)


def loose_schema(name: str) -> dict[str, Any]:
    return {"type": "string", "optional": True, "field": name}
