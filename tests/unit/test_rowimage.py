"""The compiled row-image decoder (selector._rowimage) against the pure-Python reference.

Every test decodes with both (``tests.rowimage.both``), requires identical values
(types included), and where the value is known, that value. The fuzz tests feed
random row images of every column kind, random NULL and columns-present bitmaps,
update pairs and truncated bodies. The fallback tests hide the extension: the
pure-Python decoder is used, and says so in one log line per process.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pymysqlreplication.constants import FIELD_TYPE

from pipeline.model import JsonText, ZeroDate
from selector import values as vals
from tests.rowimage import both, compiled, difference

ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.UTC
td = datetime.timedelta


def col(name: str, kind: int, **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"name": name, "type": kind, "unsigned": False, **extra})


# -- encoders of single values (MySQL's binary formats) --------------------------------------

_FSP_BYTES = (0, 1, 1, 2, 2, 3, 3)
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def frac_bytes(micros: int, fsp: int) -> bytes:
    size = _FSP_BYTES[fsp]
    return (micros // 10 ** (6 - 2 * size)).to_bytes(size, "big") if size else b""


def datetime2(y: int, mo: int, d: int, h: int, mi: int, s: int, us: int, fsp: int) -> bytes:
    ymd = ((y * 13 + mo) << 5) | d
    hms = (h << 12) | (mi << 6) | s
    return ((ymd << 17 | hms) + 0x8000000000).to_bytes(5, "big") + frac_bytes(us, fsp)


def date3(y: int, mo: int, d: int) -> bytes:
    return (y << 9 | mo << 5 | d).to_bytes(3, "little")


def timestamp2(seconds: int, us: int, fsp: int) -> bytes:
    return seconds.to_bytes(4, "big") + frac_bytes(us, fsp)


def time2(total_us: int, fsp: int) -> bytes:
    """MySQL's my_time_packed_to_binary (integer part floored, fraction truncated, as in C)."""
    magnitude = abs(total_us)
    seconds, us = divmod(magnitude, 10**6)
    h, rest = divmod(seconds, 3600)
    mi, s = divmod(rest, 60)
    packed = (((h << 12) | (mi << 6) | s) << 24) + us
    if total_us < 0:
        packed = -packed
    size = _FSP_BYTES[fsp]
    if size == 3:
        return (packed + 0x800000000000).to_bytes(6, "big")
    intpart = (packed >> 24) + 0x800000
    if not size:
        return intpart.to_bytes(3, "big")
    frac = -(abs(packed) % (1 << 24)) if packed < 0 else packed % (1 << 24)
    unit = 10 ** (6 - 2 * size)
    frac = -(-frac // unit) if frac < 0 else frac // unit  # C division truncates
    return intpart.to_bytes(3, "big") + (frac % (1 << (8 * size))).to_bytes(size, "big")


def decimal_bytes(text: str, precision: int, scale: int) -> bytes:
    negative = text.startswith("-")
    whole, _, fraction = text.lstrip("-").partition(".")
    integral = precision - scale
    whole = whole.rjust(integral, "0")[-integral:] if integral else ""
    fraction = fraction.ljust(scale, "0")[:scale]
    out = bytearray()
    rest = integral % 9
    if rest:
        out += int(whole[:rest]).to_bytes(_DIG2BYTES[rest], "big")
    for k in range(rest, integral, 9):
        out += int(whole[k : k + 9]).to_bytes(4, "big")
    for k in range(0, scale - scale % 9, 9):
        out += int(fraction[k : k + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(fraction[scale - scale % 9 :]).to_bytes(_DIG2BYTES[scale % 9], "big")
    if negative:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return bytes(out)


def one(column: SimpleNamespace, field: bytes, **plan_args: Any) -> Any:
    """The value of one non-NULL column holding ``field`` (decoded both ways)."""
    plan = vals.plan_for([column], **plan_args)
    rows = both(plan, b"\x00" + field, b"\x01")
    assert isinstance(rows, list), rows
    [row] = rows
    return row[column.name]


# -- the extension itself -----------------------------------------------------------------


def test_the_compiled_decoder_is_built_and_used() -> None:
    decode = compiled()
    assert vals.decode_rows(vals.plan_for([col("a", FIELD_TYPE.LONG)]), b"\x00\x07\0\0\0", b"\1")
    assert vals._compiled is decode


def test_a_compiled_plan_is_kept_on_the_plan() -> None:
    compiled()
    plan = vals.plan_for([col("a", FIELD_TYPE.LONG), col("b", FIELD_TYPE.DOUBLE)])
    body = b"\x00" + struct.pack("<id", -5, 2.5)
    assert vals.decode_rows(plan, body, b"\x03") == [{"a": -5, "b": 2.5}]
    assert plan.compiled is not None
    kept = plan.compiled
    assert both(plan, body, b"\x03") == [{"a": -5, "b": 2.5}] and plan.compiled is kept


# -- edge values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "unsigned", "raw", "value"),
    [
        (FIELD_TYPE.TINY, False, b"\x80", -128),
        (FIELD_TYPE.TINY, True, b"\xff", 255),
        (FIELD_TYPE.SHORT, False, b"\x00\x80", -32768),
        (FIELD_TYPE.SHORT, True, b"\xff\xff", 65535),
        (FIELD_TYPE.INT24, False, b"\x00\x00\x80", -8388608),
        (FIELD_TYPE.INT24, True, b"\xff\xff\xff", 16777215),
        (FIELD_TYPE.LONG, False, b"\x00\x00\x00\x80", -(2**31)),
        (FIELD_TYPE.LONG, True, b"\xff\xff\xff\xff", 2**32 - 1),
        (FIELD_TYPE.LONGLONG, False, b"\x00" * 7 + b"\x80", -(2**63)),
        (FIELD_TYPE.LONGLONG, False, b"\xff" * 7 + b"\x7f", 2**63 - 1),
        (FIELD_TYPE.LONGLONG, True, b"\xff" * 8, 18446744073709551615),
        (FIELD_TYPE.LONGLONG, False, b"\xff" * 8, -1),
    ],
)
def test_integers_signed_and_unsigned_at_their_limits(
    kind: int, unsigned: bool, raw: bytes, value: int
) -> None:
    got = one(col("n", kind, unsigned=unsigned), raw)
    assert got == value and type(got) is int


@pytest.mark.parametrize(
    ("fsp", "field", "value"),
    [
        (0, datetime2(0, 0, 0, 0, 0, 0, 0, 0), ZeroDate("0000-00-00 00:00:00")),
        (3, datetime2(0, 0, 0, 0, 0, 0, 0, 3), ZeroDate("0000-00-00 00:00:00.000")),
        (2, datetime2(2013, 0, 0, 10, 11, 12, 340000, 2), ZeroDate("2013-00-00 10:11:12.34")),
        (6, datetime2(0, 1, 21, 1, 2, 3, 4, 6), ZeroDate("0000-01-21 01:02:03.000004")),
        (1, datetime2(2024, 2, 30, 0, 0, 0, 0, 1), ZeroDate("2024-02-30 00:00:00.0")),
        (
            6,
            datetime2(9999, 12, 31, 23, 59, 59, 999999, 6),
            datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
        ),
        (0, datetime2(1000, 1, 1, 0, 0, 0, 0, 0), datetime.datetime(1000, 1, 1)),
        (
            4,
            datetime2(2024, 2, 29, 12, 0, 0, 123400, 4),
            datetime.datetime(2024, 2, 29, 12, 0, 0, 123400),
        ),
    ],
)
def test_datetimes_zero_partial_and_limits(fsp: int, field: bytes, value: Any) -> None:
    got = one(col("d", FIELD_TYPE.DATETIME2, fsp=fsp), field)
    assert type(got) is type(value) and got == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (date3(0, 0, 0), ZeroDate("0000-00-00")),
        (date3(2015, 0, 21), ZeroDate("2015-00-21")),
        (date3(2015, 5, 0), ZeroDate("2015-05-00")),
        (date3(0, 1, 21), ZeroDate("0000-01-21")),
        (date3(2023, 2, 29), ZeroDate("2023-02-29")),
        (date3(1000, 1, 1), datetime.date(1000, 1, 1)),
        (date3(9999, 12, 31), datetime.date(9999, 12, 31)),
    ],
)
def test_dates(field: bytes, value: Any) -> None:
    got = one(col("d", FIELD_TYPE.DATE), field)
    assert type(got) is type(value) and got == value


@pytest.mark.parametrize(
    ("fsp", "seconds", "us", "value"),
    [
        (0, 0, 0, ZeroDate("0000-00-00 00:00:00")),
        (3, 0, 0, ZeroDate("0000-00-00 00:00:00.000")),
        (6, 1, 1, datetime.datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)),
        (6, 0, 1, datetime.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        (0, 2**31 - 1, 0, datetime.datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC)),
        (2, 2**32 - 1, 990000, datetime.datetime(2106, 2, 7, 6, 28, 15, 990000, tzinfo=UTC)),
    ],
)
def test_timestamps_zero_and_instants(fsp: int, seconds: int, us: int, value: Any) -> None:
    got = one(col("t", FIELD_TYPE.TIMESTAMP2, fsp=fsp), timestamp2(seconds, us, fsp))
    assert type(got) is type(value) and got == value
    if isinstance(value, datetime.datetime):
        assert got.tzinfo == UTC


@pytest.mark.parametrize(
    ("fsp", "value"),
    [
        (2, -td(microseconds=10000)),
        (3, -td(hours=12, minutes=34, seconds=56, microseconds=789000)),
        (6, -td(seconds=1, microseconds=1)),
        (1, -td(hours=838, minutes=59, seconds=59, microseconds=900000)),
        (0, -td(hours=838, minutes=59, seconds=59)),
        (0, td(hours=838, minutes=59, seconds=59)),
        (4, td(hours=25, microseconds=100)),
        (5, -td(microseconds=10)),
        (0, td(0)),
        (6, -td(hours=1, microseconds=999999)),
    ],
)
def test_times_negative_fractions_and_beyond_a_day(fsp: int, value: td) -> None:
    total = (value.days * 86400 + value.seconds) * 10**6 + value.microseconds
    got = one(col("t", FIELD_TYPE.TIME2, fsp=fsp), time2(total, fsp))
    assert type(got) is td and got == value


DECIMALS = [
    (1, 0, "0"),
    (1, 0, "-9"),
    (1, 1, "0.5"),
    (1, 1, "-0.5"),
    (5, 2, "-0.00"),
    (9, 0, "999999999"),
    (10, 0, "-1"),
    (10, 0, "1234567890"),
    (12, 2, "-9999999999.99"),
    (14, 4, "1234567890.1234"),
    (18, 9, "123456789.123456789"),
    (18, 18, "0.000000000000000001"),
    (19, 10, "-123456789.0000000001"),
    (30, 15, "123456789012345.678901234567890"),
    (38, 0, "99999999999999999999999999999999999999"),
    (65, 30, "-99999999999999999999999999999999999.999999999999999999999999999999"),
    (65, 0, "1" + "0" * 64),
    (65, 30, "0.000000000000000000000000000001"),
]


@pytest.mark.parametrize(("precision", "scale", "text"), DECIMALS)
def test_decimals_of_many_precisions(precision: int, scale: int, text: str) -> None:
    column = col("m", FIELD_TYPE.NEWDECIMAL, precision=precision, decimals=scale)
    got = one(column, decimal_bytes(text, precision, scale))
    assert type(got) is Decimal and got == Decimal(text)
    assert -got.as_tuple().exponent == scale  # a DECIMAL(p,s) value keeps its scale


@pytest.mark.parametrize("value", [3.14, -3.4e38, 3.4028234663852886e38, 1e-45, 0.1, 64.1234, -0.0])
def test_floats_are_the_shortest_single_precision_decimal(value: float) -> None:
    got = one(col("f", FIELD_TYPE.FLOAT), struct.pack("<f", value))
    assert got == vals.single_precision(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.mark.parametrize("value", [1.7976931348623157e308, 5e-324, -0.0, 0.1, float("inf")])
def test_doubles(value: float) -> None:
    got = one(col("f", FIELD_TYPE.DOUBLE), struct.pack("<d", value))
    assert difference(got, value) is None


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf8mb4", "😀 ok, 日本語, é"),
        ("utf8mb3", "日本語"),
        ("latin1", "café € ‰"),  # MariaDB's latin1 is cp1252 …
        ("latin1", "\x81\x8d\x8f\x90\x9d"),  # … with its five holes as C1 controls
        ("latin2", "Příliš"),
        ("utf8mb4", ""),
        ("utf8mb4", "\ud800"),  # MariaDB stores UTF-8-encoded surrogates and returns them
        ("ucs2", "é\ud83d\ude00"),  # two bytes, one character: no pairs
        ("utf16", "é😀"),
        ("utf32", "é😀"),
        ("dec8", "Œ¤"),  # no Python codec: the server's table
        ("ascii", "a?"),
        ("big5", "碁"),
    ],
)
def test_text_in_its_charset(charset: str, text: str) -> None:
    codec = vals._codec(SimpleNamespace(name="v", character_set_name=charset))
    assert codec is not None
    raw = text.encode(codec.name, codec.errors)
    varchar = col("v", FIELD_TYPE.VARCHAR, max_length=1000, character_set_name=charset)
    assert one(varchar, len(raw).to_bytes(2, "little") + raw) == text
    blob = col("b", FIELD_TYPE.BLOB, length_size=4, character_set_name=charset)
    assert one(blob, len(raw).to_bytes(4, "little") + raw) == text
    char = col("c", FIELD_TYPE.STRING, max_length=40, character_set_name=charset)
    assert one(char, len(raw).to_bytes(1, "little") + raw) == text


def test_every_latin1_byte_decodes_as_mariadb_returns_it() -> None:
    raw = bytes(range(256))
    holes = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
    expected = "".join(chr(b) if b in holes else bytes([b]).decode("cp1252") for b in raw)
    for collation in ("latin1_swedish_ci", "latin1_bin", "latin1_german2_ci"):
        varchar = col("v", FIELD_TYPE.VARCHAR, max_length=300, collation_name=collation)
        assert one(varchar, (256).to_bytes(2, "little") + raw) == expected


def test_enum_and_set_members_decode_with_the_column_charset() -> None:
    from selector.stream import RawMember

    def member(raw: bytes) -> RawMember:
        found = RawMember("")  # what the library makes of a member that is not UTF-8
        found.raw = raw
        return found

    latin1 = {"collation_name": "latin1_swedish_ci"}
    enum = col("e", FIELD_TYPE.ENUM, size=1, enum_values=["", member(b"caf\xe9")], **latin1)
    assert one(enum, b"\x01") == "café"
    ucs2 = {"collation_name": "ucs2_general_ci"}
    members = [member(b"\x00\xfc"), member(b"\x00x")]
    assert one(col("s", FIELD_TYPE.SET, size=1, set_values=members, **ucs2), b"\x03") == {"ü", "x"}


def test_invalid_utf8_raises_the_same_error_both_ways() -> None:
    plan = vals.plan_for(
        [col("v", FIELD_TYPE.VARCHAR, max_length=10, character_set_name="utf8mb4")]
    )
    assert both(plan, b"\x00\x02\xff\xfe", b"\x01") == ("raised", "UnicodeDecodeError")


def test_binary_is_bytes_and_binary_n_is_padded() -> None:
    binary = col("b", FIELD_TYPE.STRING, max_length=16, character_set_name="binary")
    assert one(binary, b"\x02\x7b\x74") == b"\x7b\x74" + b"\0" * 14
    assert one(binary, b"\x00") == b"\0" * 16
    varbinary = col("v", FIELD_TYPE.VARCHAR, max_length=300, character_set_name="binary")
    assert one(varbinary, b"\x03\x00\x00\xff\x00") == b"\x00\xff\x00"
    blob = col("b", FIELD_TYPE.BLOB, length_size=2, character_set_name=None)
    assert one(blob, b"\x01\x00\x80") == b"\x80"
    geometry = col("g", FIELD_TYPE.GEOMETRY, length_size=4)
    wkb = bytes.fromhex("e6100000") + bytes.fromhex("0101000000000000000000f03f0000000000000040")
    assert one(geometry, len(wkb).to_bytes(4, "little") + wkb) == wkb


def test_enum_set_bit_year() -> None:
    enum = col("e", FIELD_TYPE.ENUM, size=1, enum_values=["", "a", "b,c"])
    assert one(enum, b"\x02") == "b,c"
    assert one(enum, b"\x00") == "" and one(enum, b"\x09") == ""
    big_enum = col("e", FIELD_TYPE.ENUM, size=2, enum_values=["", *(f"m{k}" for k in range(300))])
    assert one(big_enum, (300).to_bytes(2, "little")) == "m299"
    members = [f"s{k}" for k in range(64)]
    wide_set = col("s", FIELD_TYPE.SET, size=8, set_values=members)
    assert one(wide_set, (1 << 63 | 5).to_bytes(8, "little")) == {"s0", "s2", "s63"}
    assert one(col("s", FIELD_TYPE.SET, size=1, set_values=["x", "y"]), b"\x00") == set()
    assert one(col("b", FIELD_TYPE.BIT, bytes=8), b"\xff" * 8) == 2**64 - 1
    assert one(col("b", FIELD_TYPE.BIT, bytes=1), b"\x05") == 5
    assert one(col("y", FIELD_TYPE.YEAR), b"\x00") == 0
    assert one(col("y", FIELD_TYPE.YEAR), b"\xff") == 2155


def test_json_mariadb_text_and_mysql_binary() -> None:
    column = col("j", FIELD_TYPE.BLOB, character_set_name="utf8mb4", length_size=4)
    text = '{"b" :1,  "a": [1.0E+2, "é"]}'.encode()
    got = one(column, len(text).to_bytes(4, "little") + text, json_text_columns=frozenset({"j"}))
    assert type(got) is JsonText and got == text.decode()
    mysql = col("j", FIELD_TYPE.JSON, length_size=4)
    for doc, value in [(b"\x04\x01", "true"), (b"\x0c\x03abc", '"abc"'), (b"", None)]:
        got = one(mysql, len(doc).to_bytes(4, "little") + doc)
        assert got == value and (value is None or type(got) is JsonText)


def test_old_temporal_types() -> None:
    assert one(col("t", FIELD_TYPE.TIMESTAMP), (86400).to_bytes(4, "little")) == datetime.datetime(
        1970, 1, 2, tzinfo=UTC
    )
    assert one(col("t", FIELD_TYPE.TIMESTAMP), b"\0" * 4) == ZeroDate("0000-00-00 00:00:00")
    dt_v1 = col("d", FIELD_TYPE.DATETIME)
    assert one(dt_v1, (20240229123456).to_bytes(8, "little")) == datetime.datetime(
        2024, 2, 29, 12, 34, 56
    )
    assert one(dt_v1, b"\0" * 8) == ZeroDate("0000-00-00 00:00:00")
    time_v1 = col("t", FIELD_TYPE.TIME)
    assert one(time_v1, (-8385959).to_bytes(3, "little", signed=True)) == -td(
        hours=838, minutes=59, seconds=59
    )


def test_null_bitmaps_and_columns_present() -> None:
    columns = [col(f"c{k}", FIELD_TYPE.LONG) for k in range(10)]
    plan = vals.plan_for(columns)
    # every column present, c0, c8 and c9 NULL (the bitmap spans two bytes)
    body = bytes([0b00000001, 0b00000011]) + b"".join(k.to_bytes(4, "little") for k in range(1, 8))
    [row] = both(plan, body, b"\xff\x03")
    assert row == {"c0": None, **{f"c{k}": k for k in range(1, 8)}, "c8": None, "c9": None}
    # only c1, c3 and c9 present; c3 NULL: bit 1 of the image's own bitmap
    body = b"\x02" + (11).to_bytes(4, "little") + (99).to_bytes(4, "little")
    [row] = both(plan, body, b"\x0a\x02")
    assert row == {"c1": 11, "c3": None, "c9": 99}
    # an update: before image with all columns NULL but c2, after image with only c0
    before = b"\xfb\x03" + (5).to_bytes(4, "little")
    after = b"\x00" + (6).to_bytes(4, "little")
    [(old, new)] = both(plan, before + after, b"\xff\x03", b"\x01\x00")
    assert old == {f"c{k}": (5 if k == 2 else None) for k in range(10)} and new == {"c0": 6}


# -- fuzz: random images of every kind -----------------------------------------------------


def _kinds() -> list[tuple[SimpleNamespace, Any]]:
    """(column, random field generator) for every kind the decoder knows."""

    def fixed(n: int) -> Any:
        return lambda r: bytes(r.choice((0, 0xFF, r.randrange(256))) for _ in range(n))

    def prefixed(width: int, most: int, alphabet: bytes | None = None) -> Any:
        def gen(r: random.Random) -> bytes:
            n = r.randrange(most + 1)
            if alphabet is None:
                data = bytes(r.randrange(256) for _ in range(n))
            else:
                data = bytes(r.choice(alphabet) for _ in range(n))
            return n.to_bytes(width, "little") + data

        return gen

    def utf8(width: int, most: int) -> Any:
        def gen(r: random.Random) -> bytes:
            text = "".join(r.choice("aZ0 é€日😀\x00'\"\\") for _ in range(r.randrange(most)))
            raw = text.encode()
            return len(raw).to_bytes(width, "little") + raw

        return gen

    def decimal(p: int, s: int) -> Any:
        def gen(r: random.Random) -> bytes:
            if r.random() < 0.2:
                return fixed(len(decimal_bytes("0", p, s)))(r)
            whole = "".join(r.choice("0123456789") for _ in range(p - s)) or "0"
            frac = "".join(r.choice("0123456789") for _ in range(s))
            sign = r.choice(("", "-"))
            return decimal_bytes(f"{sign}{whole}.{frac}" if s else f"{sign}{whole}", p, s)

        return gen

    def dt2(fsp: int) -> Any:
        def gen(r: random.Random) -> bytes:
            if r.random() < 0.3:
                return fixed(5 + _FSP_BYTES[fsp])(r)
            return datetime2(
                r.choice((0, 1, 1970, 2024, 9999, r.randrange(10000))),
                r.randrange(13), r.randrange(32), r.randrange(24), r.randrange(60),
                r.randrange(60), r.randrange(10**6), fsp,
            )  # fmt: skip

        return gen

    def t2(fsp: int) -> Any:
        def gen(r: random.Random) -> bytes:
            if r.random() < 0.3:
                return fixed(3 + _FSP_BYTES[fsp])(r)
            return time2(r.randrange(-839 * 3600 * 10**6, 839 * 3600 * 10**6), fsp)

        return gen

    out: list[tuple[SimpleNamespace, Any]] = []
    for kind, width in ((FIELD_TYPE.TINY, 1), (FIELD_TYPE.SHORT, 2), (FIELD_TYPE.INT24, 3),
                        (FIELD_TYPE.LONG, 4), (FIELD_TYPE.LONGLONG, 8)):  # fmt: skip
        out.append((col("i", kind), fixed(width)))
        out.append((col("u", kind, unsigned=True), fixed(width)))
    out += [
        (col("f", FIELD_TYPE.FLOAT), fixed(4)),
        (col("d", FIELD_TYPE.DOUBLE), fixed(8)),
        (col("y", FIELD_TYPE.YEAR), fixed(1)),
        (col("date", FIELD_TYPE.DATE), fixed(3)),
        (col("ts", FIELD_TYPE.TIMESTAMP), fixed(4)),
        (col("dt1", FIELD_TYPE.DATETIME), lambda r: r.randrange(10**14).to_bytes(8, "little")),
        (col("t1", FIELD_TYPE.TIME), fixed(3)),
        (col("bit1", FIELD_TYPE.BIT, bytes=1), fixed(1)),
        (col("bit5", FIELD_TYPE.BIT, bytes=5), fixed(5)),
        (col("bit8", FIELD_TYPE.BIT, bytes=8), fixed(8)),
        (col("e", FIELD_TYPE.ENUM, size=1, enum_values=["", "a", "b"]), fixed(1)),
        (col("e2", FIELD_TYPE.ENUM, size=2, enum_values=["", "x"]), fixed(2)),
        (col("s", FIELD_TYPE.SET, size=1, set_values=["a", "b", "c"]), fixed(1)),
        (col("s8", FIELD_TYPE.SET, size=8, set_values=[f"m{k}" for k in range(64)]), fixed(8)),
        (col("vb", FIELD_TYPE.VARCHAR, max_length=200, character_set_name="binary"),
         prefixed(1, 40)),
        (col("vl", FIELD_TYPE.VARCHAR, max_length=300, character_set_name="latin1"),
         prefixed(2, 40, b"abc \xe9\x80\x89")),
        (col("vu", FIELD_TYPE.VARCHAR, max_length=300, character_set_name="utf8mb4"), utf8(2, 30)),
        (col("cu", FIELD_TYPE.STRING, max_length=40, character_set_name="utf8mb4"), utf8(1, 10)),
        (col("bn", FIELD_TYPE.STRING, max_length=8, character_set_name="binary"), prefixed(1, 8)),
        (col("tx", FIELD_TYPE.BLOB, length_size=2, character_set_name="utf8mb4"), utf8(2, 30)),
        (col("bl", FIELD_TYPE.BLOB, length_size=3, character_set_name=None), prefixed(3, 60)),
        (col("g", FIELD_TYPE.GEOMETRY, length_size=4), prefixed(4, 30)),
        (col("js", FIELD_TYPE.BLOB, length_size=4, character_set_name="utf8mb4"), utf8(4, 30)),
        (col("mj", FIELD_TYPE.JSON, length_size=4),
         lambda r: r.choice((b"\x02\x00\x00\x00\x04\x01", b"\x00\x00\x00\x00",
                             b"\x03\x00\x00\x00\x0c\x01a"))),
    ]  # fmt: skip
    for fsp in range(7):
        out.append((col(f"dt{fsp}", FIELD_TYPE.DATETIME2, fsp=fsp), dt2(fsp)))
        out.append((col(f"ts{fsp}", FIELD_TYPE.TIMESTAMP2, fsp=fsp), fixed(4 + _FSP_BYTES[fsp])))
        out.append((col(f"tm{fsp}", FIELD_TYPE.TIME2, fsp=fsp), t2(fsp)))
    for p, s in ((1, 0), (4, 2), (9, 9), (10, 0), (12, 2), (18, 4), (20, 10), (38, 19), (65, 30)):
        out.append(
            (col(f"m{p}_{s}", FIELD_TYPE.NEWDECIMAL, precision=p, decimals=s), decimal(p, s))
        )
    return out


def _random_image(r: random.Random, gens: list[Any], present: list[int], null_rate: float) -> bytes:
    nulls = bytearray((len(present) + 7) // 8)
    fields = b""
    for j, i in enumerate(present):
        if r.random() < null_rate:
            nulls[j >> 3] |= 1 << (j & 7)
        else:
            fields += gens[i](r)
    return bytes(nulls) + fields


def _bitmap(indexes: list[int], n: int) -> bytes:
    out = bytearray((n + 7) // 8)
    for i in indexes:
        out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def test_fuzz_every_kind_alone() -> None:
    compiled()
    r = random.Random(16)
    for column, gen in _kinds():
        plan = vals.plan_for([column], json_text_columns=frozenset({"js"}))
        for _ in range(300):
            rows = [_random_image(r, [gen], [0], 0.1) for _ in range(r.randrange(1, 4))]
            both(plan, b"".join(rows), b"\x01")


def test_fuzz_mixed_tables_updates_and_truncated_bodies() -> None:
    compiled()
    r = random.Random(1616)
    kinds = _kinds()
    for _ in range(400):
        chosen = r.sample(kinds, r.randrange(1, min(len(kinds), 30)))
        columns = [
            SimpleNamespace(**{**vars(c), "name": f"c{k}"}) for k, (c, _) in enumerate(chosen)
        ]
        gens = [g for _, g in chosen]
        json_names = frozenset(
            c.name for c, (orig, _) in zip(columns, chosen, strict=True) if orig.name == "js"
        )
        plan = vals.plan_for(columns, json_text_columns=json_names)
        n = len(columns)
        first = sorted(r.sample(range(n), r.randrange(1, n + 1)))
        second = sorted(r.sample(range(n), r.randrange(1, n + 1)))
        update = r.random() < 0.4
        body = b""
        for _ in range(r.randrange(1, 6)):
            body += _random_image(r, gens, first, r.choice((0.0, 0.2, 0.9)))
            if update:
                body += _random_image(r, gens, second, 0.2)
        after = _bitmap(second, n) if update else None
        both(plan, body, _bitmap(first, n), after)
        both(plan, body[: r.randrange(len(body) + 1)], _bitmap(first, n), after)  # truncated


# -- fallback: no extension ----------------------------------------------------------------


def test_without_the_extension_the_pure_python_decoder_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loguru import logger

    monkeypatch.setattr(vals, "_compiled", None)
    monkeypatch.setattr(vals, "_compiled_error", "No module named 'selector._rowimage'")
    monkeypatch.setattr(vals, "_warned", False)
    messages: list[str] = []
    sink = logger.add(messages.append, level="DEBUG", format="{level} {message}")
    try:
        plan = vals.plan_for([col("a", FIELD_TYPE.LONG)])
        for _ in range(3):
            assert vals.decode_rows(plan, b"\x00\x07\0\0\0", b"\x01") == [{"a": 7}]
    finally:
        logger.remove(sink)
    said = [m for m in messages if "compiled row decoder" in m]
    assert len(said) == 1 and said[0].startswith("WARNING") and "pure-Python" in said[0]
    assert plan.compiled is None


@pytest.mark.parametrize("how", ["no extension", "FERRY_ROW_DECODER=python"])
def test_a_process_without_the_extension_decodes_in_pure_python(how: str) -> None:
    script = """
import sys
if len(sys.argv) > 1:
    sys.modules["selector._rowimage"] = None  # what a build without a C compiler looks like
from types import SimpleNamespace
from pymysqlreplication.constants import FIELD_TYPE
from selector import values as vals
assert vals._compiled is None
plan = vals.plan_for([SimpleNamespace(name="a", type=FIELD_TYPE.LONG, unsigned=True)])
for _ in range(5):
    rows = vals.decode_rows(plan, b"\\x00\\xff\\xff\\xff\\xff", b"\\x01")
print(rows)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FERRY_ROW_DECODER", None)
    argv = [sys.executable, "-c", script]
    if how == "no extension":
        argv.append("hide")
    else:
        env["FERRY_ROW_DECODER"] = "python"
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().replace("'", '"')) == [{"a": 4294967295}]
    lines = [line for line in done.stderr.splitlines() if "compiled row decoder" in line]
    assert len(lines) == 1, done.stderr
    assert "pure-Python" in lines[0] and "slower" in lines[0]
