"""Value helpers more than one format uses: a column type's base and sign, TIME as text,
float32's shortest decimal, a quoted SQL literal's value, the stand-in definition of a
change that carries none, Debezium's op letters and the event time in ms.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from typing import Any

from pipeline.model import Column, RowChange, TableSchema

# the op letter of Debezium's envelope, which ferry-json writes too
DEBEZIUM_OP = {"insert": "c", "update": "u", "delete": "d", "read": "r"}


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


def ms(seconds: float) -> int:
    """An event time (seconds since the epoch) in whole ms."""
    return int(seconds * 1000)


def sql_literal(text: str) -> str:
    """The value of a quoted SQL literal (``'c,\\'d'`` -> ``c,'d``)."""
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
    quote = text[0] if text and text[0] in "'\"" else "'"
    inner = inner.replace(quote * 2, quote)
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "0": "\0"}.get(m[1], m[1]), inner)


def float32(value: float) -> float:
    """The float32 nearest ``value``, as the shortest decimal that reads back to it (how Java
    prints a float)."""
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(1, 10):
        shorter = float(f"{single:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", shorter))[0] == single:
            return shorter
    return float(single)


def guess_definition(change: RowChange) -> TableSchema:
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
