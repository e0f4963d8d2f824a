"""Column values as ferry hands them out, and the fixes on top of mysql-replication.

Checked against MariaDB 10.11 with ``binlog_row_metadata=FULL`` (see
tests/integration/test_selector_types.py, which pins every line):

=========================  ==========================================================
column type                Python value in ``RowChange.before/after``
=========================  ==========================================================
TINYINT..BIGINT            ``int``; UNSIGNED is full range (BIGINT UNSIGNED max =
                           18446744073709551615) — from the binlog's signedness
                           metadata, or from information_schema without FULL metadata
DECIMAL(p,s)               ``decimal.Decimal``, exact, with scale ``s``
FLOAT / DOUBLE             ``float`` (FLOAT is single precision: 1.1 -> 1.100000023841858)
YEAR                       ``int`` (2024)
DATE                       ``datetime.date``; zero date ``0000-00-00`` -> ``None``
DATETIME(n)                naive ``datetime.datetime`` (wall clock as stored), µs kept;
                           zero datetime -> ``None``
TIMESTAMP(n)               aware ``datetime.datetime`` in UTC (an instant; the session
                           time zone of the writer does not matter), µs kept
TIME(n)                    ``datetime.timedelta``, negative and > 24 h allowed
                           (``-838:59:59`` -> ``-timedelta(hours=838, minutes=59, seconds=59)``)
CHAR/VARCHAR/TEXT          ``str`` decoded with the column's charset (utf8mb4 4-byte
                           characters kept); CHAR loses trailing spaces (as in MySQL)
BINARY(n)                  ``bytes`` of length n (the binlog strips trailing 0x00: padded back)
VARBINARY / BLOB           ``bytes`` (also when empty: the library returns ``''``)
ENUM                       ``str`` (the invalid-value index 0 -> ``''``)
SET                        ``set[str]``; empty set -> ``set()`` (the library says ``None``)
BIT(n)                     ``int`` (the library returns a '0101' string)
JSON                       parsed: ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``
                           (MySQL binary JSON: keys and strings decoded to ``str``;
                           MariaDB JSON is LONGTEXT + ``json_valid`` check: parsed from text)
GEOMETRY                   ``bytes`` (WKB with SRID prefix, as stored)
NULL                       ``None``
=========================  ==========================================================

A JSON document holding JSON ``null`` and an SQL NULL both come out as ``None``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

UTC = datetime.UTC

# (column name, fixer(value, none_source) -> value); applied only when the value
# needs it, so a table without such columns pays nothing per row.
Fixer = tuple[str, Callable[[Any, str | None], Any]]


def _timestamp(value: Any, _: str | None) -> Any:
    return value.replace(tzinfo=UTC) if value is not None else None


def _bit(value: Any, _: str | None) -> Any:
    return int(value, 2) if isinstance(value, str) else value


def _set(value: Any, source: str | None) -> Any:
    if value is None and source == "empty set":
        return set()
    return value


def _bytes(value: Any, _: str | None) -> Any:
    if isinstance(value, str):  # empty value: bytes.decode('binary') short-circuits to ''
        return value.encode("latin-1")
    return value


def _binary(width: int) -> Callable[[Any, str | None], Any]:
    def fix(value: Any, source: str | None) -> Any:
        value = _bytes(value, source)
        if isinstance(value, bytes) and len(value) < width:
            value = value.ljust(width, b"\0")
        return value

    return fix


def _json_binary(value: Any, _: str | None) -> Any:
    return _decode_json(value)


def _decode_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, dict):
        return {_decode_json(k): _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def _json_text(value: Any, _: str | None) -> Any:
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def _unsigned(bits: int) -> Callable[[Any, str | None], Any]:
    def fix(value: Any, _: str | None) -> Any:
        if isinstance(value, int) and value < 0:
            return value + (1 << bits)
        return value

    return fix


_INT_BITS = {
    FIELD_TYPE.TINY: 8,
    FIELD_TYPE.SHORT: 16,
    FIELD_TYPE.INT24: 24,
    FIELD_TYPE.LONG: 32,
    FIELD_TYPE.LONGLONG: 64,
}


def fixers_for(
    columns: list[Any],
    json_text_columns: frozenset[str] = frozenset(),
    unsigned_columns: frozenset[str] = frozenset(),
) -> list[Fixer]:
    """The fixes one table needs, from its binlog column metadata.

    ``json_text_columns`` are MariaDB JSON columns (found in information_schema);
    ``unsigned_columns`` come from information_schema when the binlog lacks
    signedness metadata.
    """
    fixers: list[Fixer] = []
    for column in columns:
        name = column.name
        kind = column.type
        charset = getattr(column, "character_set_name", None)
        if kind in (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2):
            fixers.append((name, _timestamp))
        elif kind == FIELD_TYPE.BIT:
            fixers.append((name, _bit))
        elif kind == FIELD_TYPE.SET:
            fixers.append((name, _set))
        elif kind == FIELD_TYPE.JSON:
            fixers.append((name, _json_binary))
        elif name in json_text_columns:
            fixers.append((name, _json_text))
        elif charset == "binary" and kind == FIELD_TYPE.STRING:
            fixers.append((name, _binary(column.max_length)))
        elif charset == "binary" and kind in (FIELD_TYPE.VARCHAR, FIELD_TYPE.BLOB):
            fixers.append((name, _bytes))
        elif name in unsigned_columns and kind in _INT_BITS and not column.unsigned:
            fixers.append((name, _unsigned(_INT_BITS[kind])))
    return fixers


def apply(fixers: list[Fixer], values: dict[str, Any], sources: dict[str, str]) -> dict[str, Any]:
    for name, fix in fixers:
        if name in values:
            values[name] = fix(values[name], sources.get(name))
    return values


def may_hold_json_text(column: Any) -> bool:
    """A MariaDB JSON column is LONGTEXT in the binlog (BLOB, 4-byte length, with a charset)."""
    return (
        column.type == FIELD_TYPE.BLOB
        and getattr(column, "length_size", 0) == 4
        and getattr(column, "character_set_name", None) not in (None, "binary")
    )
