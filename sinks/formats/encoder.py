"""The JSON encoder every format writes with, ferry-json's encoding of the values JSON
lacks (its hook), and the key ferry-json and canal-json write.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pipeline.errors import FatalError
from pipeline.model import Change, DdlChange
from sinks.formats.base import ddl_tables
from sinks.formats.values import encode_timedelta


def _default(value: Any) -> Any:
    """json.dumps hook for the types JSON lacks (ferry-json's values: docs/formats.md)."""
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


def json_doc(value: Any) -> Any:
    """A decoded JSON column: bytes keys and strings become text."""
    if isinstance(value, dict):
        return {_text(k): json_doc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_doc(v) for v in value]
    return _text(value)


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


def _fmt_decimal(value: Decimal) -> str:
    return format(value, "f")


def b64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode("ascii")  # base64.b64encode


# The exact types the binlog reader produces, looked up before the isinstance chain.
_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    Decimal: _fmt_decimal,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    dt.timedelta: encode_timedelta,
    bytes: b64,
    set: sorted,
}


def json_default(value: Any) -> Any:
    """The encoder's hook: what JSON value a value of a type JSON lacks becomes."""
    convert = _BY_TYPE.get(type(value))
    return convert(value) if convert is not None else _default(value)


# json.JSONEncoder.encode builds a new C encoder (and a circular-reference memo) on
# every call, about 3 us; one C encoder made once costs nothing per call. No memo:
# decoded binlog values cannot be circular. allow_nan=False, compact separators.
_c_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
assert _c_make_encoder is not None, "CPython's _json accelerator is required"
_c_encode = _c_make_encoder(
    None, json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
)


def dumps_str(value: Any) -> str:
    """``value`` as compact JSON text (TypeError/ValueError for what JSON cannot hold)."""
    return "".join(_c_encode(value, 0))


encode_str: Callable[[str], str] = json.encoder.encode_basestring  # what _c_encode uses
_INF = float("inf")


def dumps_value(value: Any) -> str:
    """``dumps_str(value)``, with the scalars of a row written without the encoder's call (as
    the encoder writes them: ``int.__repr__``, its string escaper, ``float.__repr__`` of a
    finite float; NaN and infinities go to the encoder, which refuses them)."""
    kind = type(value)
    if kind is int:
        return repr(value)
    if kind is str:
        return encode_str(value)
    if value is None:
        return "null"
    if kind is float and -_INF < value < _INF:
        return repr(value)
    return dumps_str(value)


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
        return utf8(dumps_str(value))
    except (TypeError, ValueError) as exc:
        raise FatalError(f"cannot encode message: {exc}") from exc


def encode_key(change: Change) -> bytes:
    """ferry-json's key, canal-json's too: primary-key values as a compact JSON array
    (``[schema]`` for DDL)."""
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
