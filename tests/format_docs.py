"""docs/formats.md's value tables, made by the formats themselves: each row is one column
type and one value as the row decoder gives it, encoded by ferry-json, debezium-json and
canal-json, and the cells are what they wrote. tests/unit/test_format_docs.py fails when the
page and the code disagree.

    python -m tests.format_docs --write     refreshes docs/formats.md
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pipeline.model import JsonText, Position, RowChange, TableSchema, ZeroDate
from selector.schemas import SchemaHistory
from sinks.formats.base import get_format
from sinks.formats.debezium.options import DebeziumOptions

PAGE = Path(__file__).parents[1] / "docs" / "formats.md"

_POINT_WKB = bytes.fromhex("0101000000000000000000f03f0000000000000040")  # POINT(1 2)


@dataclass(frozen=True)
class Example:
    column: str  # the column's type as a CREATE TABLE writes it
    literal: str  # the value, as SQL (or a word) shows it
    value: Any  # the value as the row decoder gives it (selector/values.py)
    note: str = ""


BIGINT_UNSIGNED = Example(
    "BIGINT UNSIGNED",
    "18446744073709551615",
    2**64 - 1,
    "debezium-json wraps to signed 64 bit (`bigint.unsigned.handling.mode`)",
)
DECIMAL = Example(
    "DECIMAL(5,2)",
    "12.50",
    Decimal("12.50"),
    "debezium-json: base64 of the unscaled two's complement (`decimal.handling.mode`)",
)
DATE = Example("DATE", "'2024-05-01'", dt.date(2024, 5, 1), "debezium-json: days since 1970-01-01")
DATETIME6 = Example(
    "DATETIME(6)",
    "'2024-05-01 13:45:00.123456'",
    dt.datetime(2024, 5, 1, 13, 45, 0, 123456),
    "debezium-json: µs (n > 3)",
)
VARBINARY = Example("VARBINARY(8)", "0xfbff", b"\xfb\xff", "debezium-json: `binary.handling.mode`")
NULL_DEFAULT = Example(
    "INT DEFAULT 7",
    "NULL",
    None,
    "debezium-json: the column's DEFAULT (JsonConverter's `replace.null.with.default`)",
)

VALUES = [
    Example("INT", "42", 42),
    Example("INT UNSIGNED", "4294967295", 4294967295),
    BIGINT_UNSIGNED,
    Example("BOOLEAN", "1", 1, "BOOL/BOOLEAN in the DDL"),
    DECIMAL,
    Example("FLOAT", "3.14", 3.14, "the shortest decimal of the float32"),
    Example(
        "FLOAT(10,2)", "5.61", 5.61, "FLOAT(M,D): debezium-json widens the float32 to a double"
    ),
    Example("DOUBLE", "1e20", 1e20),
    Example("REAL", "1/3", 1 / 3, "REAL: a float32 in debezium-json"),
    DATE,
    Example(
        "DATE",
        "'0024-05-01'",
        dt.date(24, 5, 1),
        "years 1-99: as stored, debezium-json as Debezium's time adjuster (20xx/19xx)",
    ),
    Example("DATE", "'0000-00-00'", ZeroDate("0000-00-00"), "a zero date"),
    Example("DATE NOT NULL", "'2015-00-21'", ZeroDate("2015-00-21"), "a partial date, NOT NULL"),
    Example(
        "DATETIME(3)",
        "'2024-05-01 13:45:00.123'",
        dt.datetime(2024, 5, 1, 13, 45, 0, 123000),
        "debezium-json: ms since the epoch (n ≤ 3)",
    ),
    DATETIME6,
    Example(
        "DATETIME(3)",
        "'0000-00-00 00:00:00.000'",
        ZeroDate("0000-00-00 00:00:00.000"),
        "a zero DATETIME, as MySQL writes it",
    ),
    Example(
        "DATETIME(2) NOT NULL",
        "'2013-00-00 10:11:12.34'",
        ZeroDate("2013-00-00 10:11:12.34"),
        "a partial DATETIME, NOT NULL",
    ),
    Example(
        "TIMESTAMP(3) NULL",
        "'2024-05-01 11:45:00.123' (UTC)",
        dt.datetime(2024, 5, 1, 11, 45, 0, 123000, tzinfo=dt.UTC),
        "an instant, written in UTC",
    ),
    Example(
        "TIMESTAMP(3) NOT NULL",
        "'0000-00-00 00:00:00.000'",
        ZeroDate("0000-00-00 00:00:00.000"),
        "the zero TIMESTAMP, NOT NULL",
    ),
    Example("TIME", "'-838:59:59'", -dt.timedelta(hours=838, minutes=59, seconds=59)),
    Example(
        "TIME(2)",
        "'-00:00:00.01'",
        -dt.timedelta(microseconds=10000),
        "ferry-json: 6 fraction digits, only when not zero; debezium-json: µs",
    ),
    Example("YEAR", "2024", 2024),
    Example("YEAR", "0000", 0, "debezium-json: 1900, as Debezium's binlog reader"),
    Example("VARCHAR(20)", "'héllo'", "héllo"),
    Example(
        "VARCHAR(10) CHARACTER SET latin1",
        "0x81",
        "\x81",
        "MariaDB's latin1 byte 0x81; a streamed debezium-json row has U+FFFD (Java's"
        " windows-1252), a snapshot row U+0081",
    ),
    Example("VARCHAR(8) CHARACTER SET binary", "'ab'", b"ab", "text of charset binary"),
    Example("ENUM('a,b','c')", "'a,b'", "a,b", "canal-json: its index, as Canal's reader keeps it"),
    Example("ENUM('a,b','c')", "'' (invalid)", "", "the invalid value (index 0)"),
    Example(
        "SET('a','b','c')",
        "'a,c'",
        {"a", "c"},
        "debezium-json in DDL order; canal-json: the bit mask",
    ),
    Example("BIT(1)", "b'1'", 1),
    Example("BIT(10)", "b'1000000001'", 513, "debezium-json: base64 of the bytes, little endian"),
    Example(
        "BINARY(3)", "0x6100", b"a\x00\x00", "all n bytes: the binlog's trailing zeros put back"
    ),
    VARBINARY,
    Example("BLOB", "'hi'", b"hi"),
    Example(
        "JSON",
        """'{"b" :1,  "a": [1.0E+2]}'""",
        JsonText('{"b" :1,  "a": [1.0E+2]}'),
        "MariaDB: the text as stored, byte for byte (MySQL's binary JSON: MySQL's text form)",
    ),
    Example("POINT", "POINT(1 2)", b"\0\0\0\0" + _POINT_WKB, "SRID (4 bytes) + WKB as stored"),
    Example(
        "GEOMETRY",
        "ST_GeomFromText('POINT(1 2)', 4326)",
        (4326).to_bytes(4, "little") + _POINT_WKB,
    ),
    Example(
        "UUID",
        "'0e0a7b2c-…'",
        bytes.fromhex("0e0a7b2c41a44b7fa05e3f6f4bbd6a10"),
        "MariaDB; Debezium itself cannot read tables with UUID, INET6 or INET4",
    ),
    Example("INET6", "'::1'", bytes(15) + b"\1", "MariaDB"),
    Example("INET4", "'192.168.0.1'", bytes([192, 168, 0, 1]), "MariaDB 10.10+"),
    Example("INT", "NULL", None),
    NULL_DEFAULT,
]

# debezium-json's options that change values: (option, its value, an example)
OPTIONS: list[tuple[str, str, Example]] = [
    ("decimal.handling.mode", "string", DECIMAL),
    ("decimal.handling.mode", "double", DECIMAL),
    ("time.precision.mode", "connect", DATE),
    ("time.precision.mode", "connect", DATETIME6),
    (
        "time.precision.mode",
        "connect",
        Example("TIME(3)", "'13:45:00.5'", dt.timedelta(hours=13, minutes=45, seconds=0.5)),
    ),
    (
        "time.precision.mode",
        "connect",
        Example(
            "TIME",
            "'25:00:00'",
            dt.timedelta(hours=25),
            "outside 0-24 h: NULL; in a NOT NULL column the change fails, or is left out"
            " (`event.processing.failure.handling.mode`)",
        ),
    ),
    ("bigint.unsigned.handling.mode", "precise", BIGINT_UNSIGNED),
    ("binary.handling.mode", "base64", VARBINARY),
    ("binary.handling.mode", "base64-url-safe", VARBINARY),
    ("binary.handling.mode", "hex", VARBINARY),
    ("replace.null.with.default", "false", NULL_DEFAULT),
]


def _definition(column: str) -> TableSchema:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets["shop"] = "utf8mb4"
    [change] = history.apply(f"CREATE TABLE t (c {column})", "shop")
    definition = change.definition
    assert definition is not None
    return definition


def _change(example: Example) -> RowChange:
    after = {"c": example.value}
    position = Position("mysql-bin.000001", 4)
    return RowChange(
        "shop",
        "t",
        "insert",
        None,
        after,
        (),
        1.0,
        position,
        definition=_definition(example.column),
    )


def _after(name: str, example: Example, debezium: DebeziumOptions | None = None) -> str:
    """What format ``name`` writes for the example's column, as a table cell."""
    value = get_format(name, "p", debezium=debezium).encode(_change(example), 0)
    message = json.loads(value)
    if name == "canal-json":
        cell = _code(message["data"][0]["c"])
        return f"{cell} ({message['sqlType']['c']})"
    return _code(message["after"]["c"])


def _code(value: Any) -> str:
    """``value`` as compact JSON in a code span; characters that print as nothing (C1
    controls) as their JSON escape, ``|`` escaped for the table."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return "`" + text.replace("|", "\\|") + "`"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def value_table() -> str:
    lines = [
        _row(
            ["column type", "value", "ferry-json", "debezium-json", "canal-json (sqlType)", "notes"]
        ),
        _row(["---"] * 6),
    ]
    for example in VALUES:
        cells = [_after(name, example) for name in ("ferry-json", "debezium-json", "canal-json")]
        lines.append(_row([f"`{example.column}`", f"`{example.literal}`", *cells, example.note]))
    return "\n".join(lines) + "\n"


def option_table() -> str:
    lines = [_row(["`sink.debezium`", "column type", "value", "debezium-json", "notes"])]
    lines.append(_row(["---"] * 5))
    for option, value, example in OPTIONS:
        options = DebeziumOptions.model_validate(
            {option: value == "true" if value in ("true", "false") else value}
        )
        cell = _after("debezium-json", example, options)
        setting = f"`{option}: {value}`"
        note = example.note if example not in VALUES else ""
        lines.append(_row([setting, f"`{example.column}`", f"`{example.literal}`", cell, note]))
    return "\n".join(lines) + "\n"


TABLES = {"values": value_table, "debezium-options": option_table}


def render(page: str) -> str:
    """``page`` with each generated table between its markers made anew."""
    for name, make in TABLES.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        before, found, rest = page.partition(start)
        assert found, f"docs/formats.md has no {start}"
        _, found, after = rest.partition(end)
        assert found, f"docs/formats.md has no {end}"
        page = f"{before}{start}\n{make()}{end}{after}"
    return page


def main() -> int:
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(render(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    print(value_table())
    print(option_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
