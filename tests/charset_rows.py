"""Text that only decodes right when ferry reads it as the server does: a workload.

One database (``SCHEMA`` by default) with

* ``legacy``: a latin1 table as old PHP applications fill it: every byte 0x00-0xFF in
  CHAR, VARCHAR and TEXT (0x81, 0x8D, 0x8F, 0x90, 0x9D are the C1 controls that Python's
  cp1252 refuses), all 256 bytes in one value, ENUM and SET members outside ASCII, and
  UTF-8 text written through a latin1 connection (``SET NAMES latin1`` from a UTF-8
  client: ``Á`` is stored as the bytes C3 81); then updates and deletes of such rows;
* ``cs_<charset>`` for every charset of the server but binary: the bytes it can store that
  are hard to decode (8-bit: every byte; multi-byte: where the server departs from
  Python's codec, characters it maps to nothing, a mixed string; Unicode: astral
  characters, and the surrogates MariaDB keeps);
* ``uca1400`` (MariaDB 10.10+): Unicode columns with the ``uca1400`` collations, whose
  ids (2048 and up) mysql-replication does not know (it reads them as utf8).

``round_trip_only`` leaves out what a copy through a utf8mb4 connection cannot store back
byte for byte (a byte the charset does not define reads as ``?``; a lone surrogate is not
UTF-8 to pymysql), for the tests that compare a MySQL target with ``CHECKSUM TABLE``.

``server_values`` reads what the server returns for every text value (as hex, so lone
surrogates survive): the values ferry must hand out.
"""

from __future__ import annotations

import re
from typing import Any

import pymysql

from selector import charsets

SCHEMA = "ferry_charsets"
HOLES = (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # bytes MariaDB's latin1 has and Python's cp1252 has not

LEGACY = """CREATE TABLE `{schema}`.legacy (
    id INT PRIMARY KEY, c CHAR(3), v VARCHAR(300), t TEXT,
    e ENUM('café', '\x81x', 'b'), s SET('é', '\x90', 'z')
) DEFAULT CHARSET latin1"""


def _hex(raw: bytes) -> str:
    return f"_binary X'{raw.hex()}'" if raw else "''"


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _legacy(cur: Any, schema: str) -> None:
    cur.execute(LEGACY.format(schema=schema))
    rows = []
    for b in range(256):
        byte = _hex(bytes([b]))
        rows.append(f"({b}, {byte}, {byte}, {byte}, {1 + b % 3}, {b % 8})")
    cur.execute(f"INSERT INTO `{schema}`.legacy VALUES " + ",".join(rows))
    every = _hex(bytes(range(256)))
    cur.execute(f"INSERT INTO `{schema}`.legacy (id, v, t) VALUES (256, {every}, {every})")
    # a UTF-8 client on a latin1 connection: the server stores the UTF-8 bytes as latin1
    cur.execute("SET NAMES latin1")
    cur.execute(
        f"INSERT INTO `{schema}`.legacy (id, c, v, t) VALUES"
        " (300, 'Á', 'Ársgjöld \u2013 \u201cquoted\u201d €', 'Ünïcødé ✓ 😀'), (301, 'é', 'ŝ', 'Ð')"
    )
    cur.execute("SET NAMES utf8mb4")
    holes = "".join(chr(b) for b in HOLES)  # sent as UTF-8: the server stores the 5 bytes
    cur.execute(
        f"UPDATE `{schema}`.legacy SET v = CONCAT(v, %s), e = 2, s = 'é,\x90' WHERE id < 16",
        (holes,),
    )
    cur.execute(f"UPDATE `{schema}`.legacy SET t = CONCAT(t, _binary X'C381') WHERE id = 300")
    cur.execute(f"DELETE FROM `{schema}`.legacy WHERE id IN (129, 141, 143, 144, 157, 301)")


def tricky(charset: str) -> list[bytes]:
    """The stored bytes the ``cs_<charset>`` table holds, one value per row."""
    if charset in charsets.SINGLE_BYTE_CHARSETS:
        return [bytes([b]) for b in range(256)] + [bytes(range(256))]
    if charset in charsets.MULTI_BYTE_CHARSETS:
        return _multi_byte(charset)
    codec, texts = UNICODE[charset]
    return [text.encode(codec, "surrogatepass") for text in texts]


# the Unicode charsets: their byte order in a row image, and what to store
UNICODE = {
    "utf8mb4": ("utf-8", ["é", "😀", "\ud800", "\ud83d\ude00", "a\udc81b"]),
    "utf8mb3": ("utf-8", ["é", "日本", "\ud800", "\uffff"]),
    "ucs2": ("utf-16-be", ["é", "\uffff", "\ud800", "\ud83d\ude00", "\udc81"]),
    "utf16": ("utf-16-be", ["é", "😀", "\U0010ffff"]),
    "utf16le": ("utf-16-le", ["é", "😀", "\U0010ffff"]),
    "utf32": ("utf-32-be", ["é", "😀", "\ud800", "\U0010ffff"]),
}


def _multi_byte(charset: str) -> list[bytes]:
    """Where the server and Python's codec differ (the first and last of every run of
    charset_data), characters the server maps to nothing, plain ones, and all of it in
    one value."""
    from selector import charset_data

    codec = charsets.codec_for(charset)
    assert codec is not None
    picked: list[bytes] = [b"A"]
    for first, run in charset_data.MULTI_BYTE[charset].items():
        count = run[1] if isinstance(run, tuple) else len(run)
        size = max(1, (first.bit_length() + 7) // 8)
        picked += [first.to_bytes(size, "big"), (first + count - 1).to_bytes(size, "big")]
    character = re.compile(charsets.CHARACTER[charset])
    unmapped = plain = 0
    for lead in range(0x81, 0x100):
        for trail in range(0x40, 0x100):
            seq = bytes([lead, trail])
            if not character.fullmatch(seq):
                continue
            value = seq.decode(codec.name)
            if value == "?" and unmapped < 4:
                picked.append(seq)
                unmapped += 1
            elif value != "?" and plain < 2:
                picked.append(seq)
                plain += 1
    picked = list(dict.fromkeys(picked))
    return [*picked, b"".join(picked[:20])]


def _round_trips(cur: Any, charset: str, raw: bytes) -> bool:
    cur.execute(
        f"SELECT HEX(CONVERT(CONVERT(CONVERT({_hex(raw)} USING {charset}) USING utf8mb4)"
        f" USING {charset})), HEX(CONVERT(CONVERT({_hex(raw)} USING {charset}) USING utf8mb4))"
    )
    back, utf8 = cur.fetchone()
    text = bytes.fromhex(utf8).decode("utf-8", "surrogatepass")
    return bytes.fromhex(back) == raw and not _has_surrogate(text)


def _charset_table(cur: Any, schema: str, charset: str, round_trip_only: bool) -> None:
    values = tricky(charset)
    if round_trip_only:
        values = [v for v in values if _round_trips(cur, charset, v)]
    cur.execute(
        f"CREATE TABLE `{schema}`.`cs_{charset}` (id INT PRIMARY KEY,"
        f" v VARCHAR(300) CHARACTER SET {charset}, c CHAR(4) CHARACTER SET {charset},"
        f" t TEXT CHARACTER SET {charset})"
    )
    rows = []
    for i, raw in enumerate(values):
        single = len(raw) <= 4 and raw not in (b"",)
        char = _hex(raw) if single and i < 256 else "NULL"
        rows.append(f"({i}, {_hex(raw)}, {char}, {_hex(raw)})")
    for k in range(0, len(rows), 100):
        cur.execute(f"INSERT INTO `{schema}`.`cs_{charset}` VALUES " + ",".join(rows[k : k + 100]))
    cur.execute(f"UPDATE `{schema}`.`cs_{charset}` SET t = CONCAT(t, v) WHERE id % 7 = 0")
    cur.execute(f"DELETE FROM `{schema}`.`cs_{charset}` WHERE id % 11 = 5")


def _uca1400(cur: Any, schema: str) -> None:
    columns = {"u8": "utf8mb4", "u3": "utf8mb3", "u2": "ucs2", "u16": "utf16", "u32": "utf32"}
    try:
        cur.execute(
            f"CREATE TABLE `{schema}`.uca1400 (id INT PRIMARY KEY, "
            + ", ".join(
                f"{name} VARCHAR(20) CHARACTER SET {cs} COLLATE {cs}_uca1400_ai_ci"
                for name, cs in columns.items()
            )
            + ")"
        )
    except pymysql.err.MySQLError as exc:
        if exc.args and exc.args[0] == 1273:  # unknown collation: before MariaDB 10.10
            return
        raise
    cur.execute(
        f"INSERT INTO `{schema}`.uca1400 VALUES (1, 'é😀', 'é', 'é', 'é😀', 'é😀'),"
        " (2, 'ascii', 'ascii', 'ascii', 'ascii', 'ascii')"
    )
    cur.execute(f"UPDATE `{schema}`.uca1400 SET u16 = 'ü' WHERE id = 2")


def load(server: Any, schema: str = SCHEMA, *, round_trip_only: bool = False) -> None:
    """Create ``schema`` with the workload (see the module docstring)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4")
            _legacy(cur, schema)
            for charset in charsets.SERVER_CHARSETS:
                if charset != "binary":
                    _charset_table(cur, schema, charset, round_trip_only)
            _uca1400(cur, schema)
    finally:
        conn.close()


def tables(server: Any, schema: str = SCHEMA) -> list[str]:
    rows = server.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s ORDER BY 1",
        (schema,),
    )
    return [str(name) for (name,) in rows]


def server_values(server: Any, schema: str, table: str) -> dict[int, dict[str, Any]]:
    """What the server returns for each row's text columns (the ENUM/SET as text), by id."""
    columns = [
        str(name)
        for (name,) in server.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s AND COLUMN_NAME <> 'id' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
    ]
    shown = ", ".join(f"HEX(CONVERT(`{c}` USING utf8mb4))" for c in columns)
    found = {}
    for row in server.execute(f"SELECT id, {shown} FROM `{schema}`.`{table}`"):
        values = {}
        for column, value in zip(columns, row[1:], strict=True):
            values[column] = (
                None if value is None else bytes.fromhex(value).decode("utf-8", "surrogatepass")
            )
        found[int(row[0])] = values
    return found


def stored_hex(server: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
    """Every row's stored bytes, as hex, in id order (to compare a copy byte for byte)."""
    columns = [
        str(name)
        for (name,) in server.execute(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
    ]
    shown = ", ".join(f"HEX(`{c}`)" for c in columns)
    return list(server.execute(f"SELECT {shown} FROM `{schema}`.`{table}` ORDER BY id"))
