"""Column values as ferry hands them out: its own decoder of binlog row images.

mysql-replication reads the protocol, the stream and the table maps; the row
images of WRITE/UPDATE/DELETE_ROWS events are decoded here, because the
library's decoding loses values a copy must keep (zero and partial dates
become ``None``, a zero TIMESTAMP becomes 1970-01-01, YEAR 0 becomes 1900,
negative TIME with fractions is wrong, FLOAT comes out as the nearest double,
BINARY loses trailing zero bytes, MariaDB JSON is re-encoded).

Every value is the exact value the source stored (checked against MariaDB
10.11 with ``binlog_row_metadata=FULL`` by tests/integration/test_values.py and
the real-world corpus test):

=========================  ==========================================================
column type                Python value in ``RowChange.before/after``
=========================  ==========================================================
TINYINT..BIGINT            ``int``; UNSIGNED is full range (BIGINT UNSIGNED max =
                           18446744073709551615): from the binlog's signedness
                           metadata, or from information_schema without FULL metadata
DECIMAL(p,s)               ``decimal.Decimal``, exact, with scale ``s``
FLOAT                      ``float``: the shortest decimal that is the same single-
                           precision value (``3.14``, not ``3.140000104904175``)
DOUBLE                     ``float``
YEAR                       ``int`` (2024; YEAR 0000 is ``0``)
DATE                       ``datetime.date``; zero, partial or year-0 dates (``0000-00-00``,
                           ``2015-00-21``) are ``ZeroDate`` strings as MySQL writes them
DATETIME(n)                naive ``datetime.datetime`` (wall clock as stored), µs kept;
                           zero/partial: ``ZeroDate`` (``'0000-00-00 00:00:00.000'``, with
                           ``n`` fraction digits)
TIMESTAMP(n)               aware ``datetime.datetime`` in UTC (an instant), µs kept;
                           the zero TIMESTAMP: ``ZeroDate('0000-00-00 00:00:00')``
TIME(n)                    ``datetime.timedelta``, negative and beyond 24 h
                           (``-838:59:59`` is ``-timedelta(hours=838, minutes=59, seconds=59)``)
CHAR/VARCHAR/TEXT          ``str``: what the server returns for the stored bytes, decoded
                           with the column's charset by :mod:`selector.charsets` (MariaDB's
                           latin1 is cp1252 with 0x81, 0x8D, 0x8F, 0x90, 0x9D as U+0081…);
                           CHAR has no trailing spaces (as MySQL returns it)
BINARY(n)                  ``bytes`` of length n (the binlog strips trailing 0x00: padded
                           back); MariaDB UUID and INET6 are BINARY(16) in the binlog,
                           INET4 (MariaDB 10.10+) BINARY(4)
VARBINARY / BLOB           ``bytes``
ENUM                       ``str`` (the invalid value, index 0, is ``''``); members decoded
                           from the table map's bytes with the column's charset
SET                        ``set[str]`` (empty set: ``set()``)
BIT(n)                     ``int``
JSON                       ``JsonText``: the document as text. MariaDB (LONGTEXT with a
                           ``json_valid`` check): byte for byte as stored; MySQL binary
                           JSON: MySQL's text form
GEOMETRY and subtypes      ``bytes``: 4-byte SRID (little-endian) + WKB, as stored
NULL                       ``None``
=========================  ==========================================================

:func:`plan_for` turns a table map into a :class:`TablePlan` once per table;
:func:`decode_rows` decodes a rows event's body with it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loguru import logger
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.json_binary import parse_json

from pipeline.model import JsonText, ZeroDate

from . import charsets

UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)

# How each column is read: one small integer per kind, checked in order of frequency.
(
    K_INT,
    K_VARCHAR,
    K_DATETIME2,
    K_DECIMAL,
    K_DOUBLE,
    K_BLOB,
    K_TIMESTAMP2,
    K_DATE,
    K_TIME2,
    K_FLOAT,
    K_ENUM,
    K_SET,
    K_BIT,
    K_YEAR,
    K_JSON,
    K_TIMESTAMP,
    K_DATETIME,
    K_TIME,
) = range(18)

_INT_FORMATS = {
    FIELD_TYPE.TINY: ("<b", "<B", 1),
    FIELD_TYPE.SHORT: ("<h", "<H", 2),
    FIELD_TYPE.LONG: ("<i", "<I", 4),
    FIELD_TYPE.LONGLONG: ("<q", "<Q", 8),
}
_FSP_BYTES = (0, 1, 1, 2, 2, 3, 3)
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


@dataclass(slots=True)
class Column:
    """How to read one column of a row image."""

    name: str
    kind: int
    width: int = 0  # bytes of a fixed-width value, or of the length prefix
    text: str | None = None  # codec of a text column (None: bytes): selector.charsets
    errors: str = "strict"  # the codec's error handler (``surrogatepass`` for UTF-8)
    charmap: str | None = None  # an 8-bit charset's 256 characters (the compiled decoder's)
    charset: str | None = None  # the column's MySQL charset, for error messages
    unpack: Callable[..., Any] | None = None  # struct unpack_from for fixed-width numbers
    fsp: int = 0  # fraction digits of a temporal type
    pad: int = 0  # BINARY(n): pad to n bytes
    members: tuple[str, ...] = ()  # ENUM (index 0 is '') / SET members
    precision: int = 0  # DECIMAL
    scale: int = 0
    unsigned: bool = False  # integers: UNSIGNED (``unpack`` already reads them so)


@dataclass(slots=True)
class TablePlan:
    columns: list[Column]
    # the compiled decoder's form of this plan (selector._rowimage), built on first use
    compiled: Any = field(default=None, compare=False, repr=False)


def _codec(column: Any, charset: str | None = None) -> charsets.Codec | None:
    """How a column's text decodes (None: bytes), from its MySQL ``charset`` or, without
    one, from what mysql-replication says of the column."""
    if charset is None:
        charset = charsets.charset_of_column(column)
    if charset is None:
        return None
    try:
        return charsets.codec_for(charset)
    except LookupError as exc:
        raise NotImplementedError(f"column {column.name!r}: {exc}") from None


def _text_column(
    name: str, kind: int, width: int, codec: charsets.Codec | None, pad: int = 0
) -> Column:
    if codec is None:
        return Column(name, kind, width, pad=pad)
    return Column(name, kind, width, codec.name, codec.errors, codec.charmap, codec.charset)


def members(values: Any, codec: charsets.Codec | None) -> tuple[str, ...]:
    """ENUM/SET members from a table map: decoded from their bytes with the column's
    charset (``selector.stream.RawMember``), else as the library read them."""
    out = []
    for value in values or ():
        raw = getattr(value, "raw", None)
        if raw is not None and codec is not None:
            out.append(raw.decode(codec.name, codec.errors))
        else:
            out.append(str(value))
    return tuple(out)


def _column(column: Any, json_text: bool, unsigned: bool, charset: str | None = None) -> Column:
    kind = column.type
    name = column.name
    if kind in _INT_FORMATS:
        signed, unsigned_fmt, width = _INT_FORMATS[kind]
        fmt = unsigned_fmt if unsigned else signed
        unpack = struct.Struct(fmt).unpack_from
        return Column(name, K_INT, width, unpack=unpack, unsigned=unsigned)
    if kind == FIELD_TYPE.INT24:
        int24 = _int24_unsigned if unsigned else _int24
        return Column(name, K_INT, 3, unpack=int24, unsigned=unsigned)
    if kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING):
        codec = _codec(column, charset)
        return _text_column(name, K_VARCHAR, 2 if column.max_length > 255 else 1, codec)
    if kind == FIELD_TYPE.STRING:
        codec = _codec(column, charset)
        width = 2 if column.max_length > 255 else 1
        pad = column.max_length if codec is None else 0
        return _text_column(name, K_VARCHAR, width, codec, pad)
    if kind == FIELD_TYPE.DATETIME2:
        return Column(name, K_DATETIME2, 5, fsp=column.fsp)
    if kind == FIELD_TYPE.NEWDECIMAL:
        return Column(name, K_DECIMAL, precision=column.precision, scale=column.decimals)
    if kind == FIELD_TYPE.DOUBLE:
        return Column(name, K_DOUBLE, 8, unpack=struct.Struct("<d").unpack_from)
    if kind == FIELD_TYPE.FLOAT:
        return Column(name, K_FLOAT, 4, unpack=struct.Struct("<f").unpack_from)
    if kind in (FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY):
        codec = _codec(column, charset) if kind == FIELD_TYPE.BLOB else None
        if json_text and codec is not None:
            return _text_column(name, K_JSON, column.length_size, codec)
        return _text_column(name, K_BLOB, column.length_size, codec)
    if kind == FIELD_TYPE.TIMESTAMP2:
        return Column(name, K_TIMESTAMP2, 4, fsp=column.fsp)
    if kind in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return Column(name, K_DATE, 3)
    if kind == FIELD_TYPE.TIME2:
        return Column(name, K_TIME2, 3, fsp=column.fsp)
    if kind in (FIELD_TYPE.ENUM, FIELD_TYPE.SET):
        codec = _codec(column, charset)
        named = codec.charset if codec is not None else None
        if kind == FIELD_TYPE.ENUM:
            enum = members(column.enum_values, codec) or ("",)
            return Column(name, K_ENUM, column.size, members=enum, charset=named)
        found = members(column.set_values, codec)
        return Column(name, K_SET, column.size, members=found, charset=named)
    if kind == FIELD_TYPE.BIT:
        return Column(name, K_BIT, column.bytes)
    if kind == FIELD_TYPE.YEAR:
        return Column(name, K_YEAR, 1)
    if kind == FIELD_TYPE.JSON:
        return Column(name, K_JSON, column.length_size)
    if kind == FIELD_TYPE.TIMESTAMP:
        return Column(name, K_TIMESTAMP, 4)
    if kind == FIELD_TYPE.DATETIME:
        return Column(name, K_DATETIME, 8)
    if kind == FIELD_TYPE.TIME:
        return Column(name, K_TIME, 3)
    raise NotImplementedError(f"column {name!r}: binlog column type {kind} is not supported")


def plan_for(
    columns: list[Any],
    json_text_columns: frozenset[str] = frozenset(),
    unsigned_columns: frozenset[str] = frozenset(),
    column_charsets: list[str | None] | None = None,
) -> TablePlan:
    """How to read one table's row images, from its binlog table map columns.

    ``json_text_columns`` are MariaDB JSON columns (found in information_schema);
    ``unsigned_columns`` come from information_schema when the binlog lacks
    signedness metadata; ``column_charsets`` are the MySQL charset of each column
    (``selector.tables``: from the collation ids), else what the library says.
    """
    if column_charsets is None:
        column_charsets = [None] * len(columns)
    return TablePlan(
        [
            _column(c, c.name in json_text_columns, c.unsigned or c.name in unsigned_columns, cs)
            for c, cs in zip(columns, column_charsets, strict=True)
        ]
    )


def json_columns(check_clauses: Iterable[str]) -> frozenset[str]:
    """MariaDB's JSON columns, from a table's check constraints: ``json_valid(`col`)``."""
    found = set()
    for clause in check_clauses:
        match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", clause)
        if match:
            found.add(match.group(1).replace("``", "`"))
    return frozenset(found)


def may_hold_json_text(column: Any) -> bool:
    """A MariaDB JSON column is LONGTEXT in the binlog (BLOB, 4-byte length, with a charset)."""
    return (
        column.type == FIELD_TYPE.BLOB
        and getattr(column, "length_size", 0) == 4
        and getattr(column, "character_set_name", None) not in (None, "binary")
    )


# -- decoding -----------------------------------------------------------------------------


def decode_rows(
    plan: TablePlan, body: bytes, present: bytes, present_after: bytes | None = None
) -> list[Any]:
    """Every row of a rows event's body: with the compiled decoder (``selector._rowimage``)
    when it was built, else with :func:`decode_rows_py` (the first call says so, once).

    ``present`` is the columns-present bitmap (of the before image for an
    update); ``present_after`` is given for updates. Returns a list of row
    dicts, or of ``(before, after)`` pairs for an update.
    """
    global _warned
    if _compiled is not None:
        return _compiled(plan, body, present, present_after)
    if not _warned:
        _warned = True
        logger.warning(
            "the compiled row decoder (selector._rowimage) is not available ({}): using the"
            " pure-Python one, which is slower",
            _compiled_error,
        )
    return decode_rows_py(plan, body, present, present_after)


def decode_rows_py(
    plan: TablePlan, body: bytes, present: bytes, present_after: bytes | None = None
) -> list[Any]:
    """Every row of a rows event's body, in pure Python: the reference the compiled decoder
    must match, and the fallback when it is not built.

    ``present`` is the columns-present bitmap (of the before image for an
    update); ``present_after`` is given for updates. Returns a list of row
    dicts, or of ``(before, after)`` pairs for an update.
    """
    rows: list[Any] = []
    pos = 0
    end = len(body)
    columns = plan.columns
    first = [c for i, c in enumerate(columns) if present[i >> 3] >> (i & 7) & 1]
    if present_after is None:
        while pos < end:
            row, pos = _image(first, body, pos)
            rows.append(row)
        return rows
    second = [c for i, c in enumerate(columns) if present_after[i >> 3] >> (i & 7) & 1]
    while pos < end:
        before, pos = _image(first, body, pos)
        after, pos = _image(second, body, pos)
        rows.append((before, after))
    return rows


@dataclass(slots=True)
class Undecodable:
    """The first value of a rows event that does not decode (:func:`find_undecodable`)."""

    column: Column
    error: UnicodeDecodeError
    images: list[dict[str, Any]]  # its row's images (the failed value as None)


def find_undecodable(
    plan: TablePlan, body: bytes, present: bytes, present_after: bytes | None = None
) -> Undecodable | None:
    """The first text value of a rows event that its charset cannot decode, with the
    rest of its row; None when there is none (or the body cannot be read at all)."""
    columns = plan.columns
    first = [c for i, c in enumerate(columns) if present[i >> 3] >> (i & 7) & 1]
    second = None
    if present_after is not None:
        second = [c for i, c in enumerate(columns) if present_after[i >> 3] >> (i & 7) & 1]
    pos = 0
    try:
        while pos < len(body):
            failed: list[tuple[Column, UnicodeDecodeError]] = []
            before, pos = _image(first, body, pos, failed)
            images = [before]
            if second is not None:
                after, pos = _image(second, body, pos, failed)
                images.append(after)
            if failed:
                return Undecodable(failed[0][0], failed[0][1], images)
    except Exception:
        return None
    return None


def _image(
    columns: list[Column],
    data: bytes,
    pos: int,
    failed: list[tuple[Column, UnicodeDecodeError]] | None = None,
) -> tuple[dict[str, Any], int]:
    nulls = data[pos : pos + (len(columns) + 7) // 8]
    pos += len(nulls)
    row: dict[str, Any] = {}
    for i, column in enumerate(columns):
        if nulls[i >> 3] >> (i & 7) & 1:
            row[column.name] = None
            continue
        kind = column.kind
        if kind in (K_INT, K_DOUBLE):
            assert column.unpack is not None
            row[column.name] = column.unpack(data, pos)[0]
            pos += column.width
        elif kind in (K_VARCHAR, K_BLOB, K_JSON):
            width = column.width
            length = data[pos] if width == 1 else int.from_bytes(data[pos : pos + width], "little")
            pos += width
            raw = data[pos : pos + length]
            pos += length
            try:
                row[column.name] = _text(column, raw)
            except UnicodeDecodeError as exc:
                if failed is None:
                    raise
                failed.append((column, exc))  # find_undecodable: note it, read on
                row[column.name] = None
        elif kind == K_DATETIME2:
            row[column.name], pos = _datetime2(column, data, pos)
        elif kind == K_DECIMAL:
            row[column.name], pos = _decimal(column, data, pos)
        elif kind == K_TIMESTAMP2:
            row[column.name], pos = _timestamp2(column, data, pos)
        elif kind == K_DATE:
            row[column.name] = _date(int.from_bytes(data[pos : pos + 3], "little"))
            pos += 3
        elif kind == K_TIME2:
            row[column.name], pos = _time2(column, data, pos)
        elif kind == K_FLOAT:
            assert column.unpack is not None
            row[column.name] = single_precision(column.unpack(data, pos)[0])
            pos += 4
        elif kind == K_ENUM:
            index = int.from_bytes(data[pos : pos + column.width], "little")
            pos += column.width
            members = column.members
            row[column.name] = members[index] if index < len(members) else ""
        elif kind == K_SET:
            bits = int.from_bytes(data[pos : pos + column.width], "little")
            pos += column.width
            row[column.name] = {m for k, m in enumerate(column.members) if bits >> k & 1}
        elif kind == K_BIT:
            row[column.name] = int.from_bytes(data[pos : pos + column.width], "big")
            pos += column.width
        elif kind == K_YEAR:
            year = data[pos]
            pos += 1
            row[column.name] = year + 1900 if year else 0
        elif kind == K_TIMESTAMP:
            seconds = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
            row[column.name] = _instant(seconds, 0, 0)
        elif kind == K_DATETIME:
            row[column.name] = _datetime_v1(int.from_bytes(data[pos : pos + 8], "little"))
            pos += 8
        else:  # K_TIME
            row[column.name] = _time_v1(int.from_bytes(data[pos : pos + 3], "little", signed=True))
            pos += 3
    return row, pos


def _text(column: Column, raw: bytes) -> Any:
    kind = column.kind
    if kind == K_JSON:
        if column.text is not None:  # MariaDB: LONGTEXT holding the document as typed
            return JsonText(raw.decode(column.text, column.errors))
        return _mysql_json(raw)
    if column.text is None:
        if column.pad and len(raw) < column.pad:
            return raw.ljust(column.pad, b"\0")
        return bytes(raw)
    return raw.decode(column.text, column.errors)


def _mysql_json(raw: bytes) -> JsonText | None:
    """MySQL's binary JSON, as MySQL writes it as text (``{"a": 1, "b": [1, 2]}``)."""
    if not raw:
        return None
    value = _decode_json(parse_json(raw[0], raw[1:]))
    return JsonText(json.dumps(value, ensure_ascii=False))


def _decode_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, dict):
        return {_decode_json(k): _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def single_precision(value: float) -> float:
    """The shortest decimal whose single-precision value is ``value`` (a FLOAT column)."""
    for digits in (6, 7, 8):
        shorter = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shorter))[0] == value:
            return shorter
    return value  # 9 significant digits always round-trip: value itself is that decimal


def _fraction(column: Column, data: bytes, pos: int) -> tuple[int, int]:
    """Microseconds of a temporal value's fractional part, and the position after it."""
    size = _FSP_BYTES[column.fsp]
    if not size:
        return 0, pos
    frac = int.from_bytes(data[pos : pos + size], "big")
    return frac * 10 ** (6 - 2 * size), pos + size


def _zero_text(text: str, micros: int, fsp: int) -> ZeroDate:
    if fsp:
        text += "." + f"{micros:06d}"[:fsp]
    return ZeroDate(text)


def _date(value: int) -> datetime.date | ZeroDate:
    day, month, year = value & 31, value >> 5 & 15, value >> 9
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return ZeroDate(f"{year:04d}-{month:02d}-{day:02d}")


def _datetime2(column: Column, data: bytes, pos: int) -> tuple[Any, int]:
    packed = int.from_bytes(data[pos : pos + 5], "big") - 0x8000000000
    micros, pos = _fraction(column, data, pos + 5)
    year_month = packed >> 22 & 0x1FFFF
    year, month = divmod(year_month, 13)
    day = packed >> 17 & 31
    hour, minute, second = packed >> 12 & 31, packed >> 6 & 63, packed & 63
    try:
        return datetime.datetime(year, month, day, hour, minute, second, micros), pos
    except ValueError:
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        return _zero_text(text, micros, column.fsp), pos


def _timestamp2(column: Column, data: bytes, pos: int) -> tuple[Any, int]:
    seconds = int.from_bytes(data[pos : pos + 4], "big")
    micros, pos = _fraction(column, data, pos + 4)
    return _instant(seconds, micros, column.fsp), pos


def _instant(seconds: int, micros: int, fsp: int) -> datetime.datetime | ZeroDate:
    if seconds == 0 and micros == 0:  # the zero TIMESTAMP, not 1970-01-01 00:00:00 UTC
        return _zero_text("0000-00-00 00:00:00", 0, fsp)
    return _EPOCH + datetime.timedelta(seconds=seconds, microseconds=micros)


def _time2(column: Column, data: bytes, pos: int) -> tuple[datetime.timedelta, int]:
    """TIME(n): one packed signed value, integer part and fraction together (MySQL's
    my_time_packed_from_binary): a negative fraction borrows from the integer part."""
    size = _FSP_BYTES[column.fsp]
    intpart = int.from_bytes(data[pos : pos + 3], "big") - 0x800000
    frac = int.from_bytes(data[pos + 3 : pos + 3 + size], "big") if size else 0
    pos += 3 + size
    if size == 3:
        packed = (intpart << 24) + frac
    else:
        if intpart < 0 and frac:
            intpart += 1
            frac -= 1 << (8 * size)
        packed = (intpart << 24) + frac * 10 ** (6 - 2 * size)
    negative = packed < 0
    if negative:
        packed = -packed
    hms, micros = packed >> 24, packed & 0xFFFFFF
    hours, minutes, seconds = hms >> 12 & 0x3FF, hms >> 6 & 63, hms & 63
    value = datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micros)
    return (-value if negative else value), pos


def _decimal(column: Column, data: bytes, pos: int) -> tuple[Decimal, int]:
    """DECIMAL(p,s) in MySQL's binary format: groups of 9 digits in 4 bytes, big-endian,
    the sign in the first bit, negative numbers with every bit inverted."""
    integral = column.precision - column.scale
    int_full, int_rest = divmod(integral, 9)
    frac_full, frac_rest = divmod(column.scale, 9)
    size = int_full * 4 + _DIG2BYTES[int_rest] + frac_full * 4 + _DIG2BYTES[frac_rest]
    raw = bytearray(data[pos : pos + size])
    pos += size
    negative = not raw[0] & 0x80
    raw[0] ^= 0x80
    if negative:
        raw = bytearray(b ^ 0xFF for b in raw)
    digits = []
    at = 0
    if _DIG2BYTES[int_rest]:
        n = _DIG2BYTES[int_rest]
        digits.append(str(int.from_bytes(raw[at : at + n], "big")))
        at += n
    for _ in range(int_full):
        digits.append(f"{int.from_bytes(raw[at : at + 4], 'big'):09d}")
        at += 4
    fraction = []
    for _ in range(frac_full):
        fraction.append(f"{int.from_bytes(raw[at : at + 4], 'big'):09d}")
        at += 4
    if _DIG2BYTES[frac_rest]:
        n = _DIG2BYTES[frac_rest]
        fraction.append(f"{int.from_bytes(raw[at : at + n], 'big'):0{frac_rest}d}")
    text = ("-" if negative else "") + ("".join(digits) or "0")
    if column.scale:
        text += "." + "".join(fraction)
    return Decimal(text), pos


def _datetime_v1(value: int) -> datetime.datetime | ZeroDate:
    """DATETIME of tables created before MySQL 5.6: YYYYMMDDhhmmss as a number."""
    date, time = divmod(value, 1000000)
    year, month, day = date // 10000, date // 100 % 100, date % 100
    hour, minute, second = time // 10000, time // 100 % 100, time % 100
    try:
        return datetime.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return ZeroDate(f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}")


def _time_v1(value: int) -> datetime.timedelta:
    """TIME of tables created before MySQL 5.6: [-]HHMMSS as a number."""
    magnitude = -value if value < 0 else value
    hours, minutes, seconds = magnitude // 10000, magnitude // 100 % 100, magnitude % 100
    delta = datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return -delta if value < 0 else delta


def _int24(data: bytes, pos: int) -> tuple[int]:
    return (int.from_bytes(data[pos : pos + 3], "little", signed=True),)


def _int24_unsigned(data: bytes, pos: int) -> tuple[int]:
    return (int.from_bytes(data[pos : pos + 3], "little"),)


# -- the compiled decoder -----------------------------------------------------------------
# Imported last: selector._rowimage reads this module's kinds and helpers.

_compiled: Callable[..., list[Any]] | None = None
_compiled_error = ""
_warned = False
if os.environ.get("FERRY_ROW_DECODER", "").lower() == "python":  # A/B runs, or to rule it out
    _compiled_error = "FERRY_ROW_DECODER=python"
else:
    try:
        from selector import _rowimage  # type: ignore[attr-defined]

        _compiled = _rowimage.decode_rows
    except ImportError as exc:  # no C compiler at install time, or a source checkout not built
        _compiled_error = str(exc) or type(exc).__name__
