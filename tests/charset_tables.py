"""What a MariaDB server returns for the bytes each character set can store.

Used twice: by ``tests/integration/test_charsets.py``, which checks ferry's codecs
(``selector.charsets``) against a live server, and as the generator of
``selector/charset_data.py``, the server's tables as ferry keeps them:

    python -m tests.charset_tables selector/charset_data.py   # starts a private MariaDB

"What the server returns" is what a ``SELECT`` through a utf8mb4 connection gives: the
stored bytes converted by the server's own table (``CONVERT(... USING utf8mb4)``, read as
hex, because for a few values, lone surrogates, that is not valid UTF-8).

* 8-bit charsets: all 256 bytes (every byte is storable in every 8-bit charset).
* multi-byte charsets (big5, sjis, cp932, ujis, eucjpms, euckr, gb2312, gbk): every
  one- and two-byte sequence with a lead byte >= 0x80, and for the EUC-JP sets every
  three-byte ``8F xx yy``, stored through ``INSERT IGNORE`` into a column of that charset;
  a sequence the server kept byte for byte as one character is storable, and its value
  is what the server returns for it.
"""

from __future__ import annotations

import codecs
import sys
from typing import Any

from selector import charsets

SINGLE_BYTE = charsets.SINGLE_BYTE_CHARSETS
MULTI_BYTE = charsets.MULTI_BYTE_CHARSETS


def _text(hex_utf8: str) -> str:
    """The server's UTF-8 (which may encode lone surrogates) as a Python string."""
    return bytes.fromhex(hex_utf8).decode("utf-8", "surrogatepass")


def single_byte_table(cur: Any, charset: str) -> str:
    """The 256 characters the server returns for the bytes 0x00-0xFF of ``charset``."""
    cur.execute(
        "SELECT "
        + ",".join(
            f"HEX(CONVERT(CONVERT(_binary X'{b:02X}' USING {charset}) USING utf8mb4))"
            for b in range(256)
        )
    )
    table = "".join(_text(h) for h in cur.fetchone())
    assert len(table) == 256, (charset, table)
    return table


def candidates(charset: str) -> list[bytes]:
    """The byte sequences tried for a multi-byte charset."""
    seqs = [bytes([b]) for b in range(256)]
    seqs += [bytes([a, b]) for a in range(0x80, 0x100) for b in range(0x100)]
    if charset in ("ujis", "eucjpms"):
        seqs += [bytes([0x8F, a, b]) for a in range(0x80, 0x100) for b in range(0x80, 0x100)]
    return seqs


def storable_characters(cur: Any, charset: str, schema: str = "ferry_charsets") -> dict[bytes, str]:
    """Every single character of a multi-byte ``charset`` the server stores as given,
    with the value the server returns for it."""
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{schema}`")
    cur.execute(f"DROP TABLE IF EXISTS `{schema}`.`src`, `{schema}`.`dst`")
    cur.execute(f"CREATE TABLE `{schema}`.`src` (k VARBINARY(4) PRIMARY KEY)")
    seqs = candidates(charset)
    for i in range(0, len(seqs), 5000):
        values = ",".join(f"(X'{s.hex()}')" for s in seqs[i : i + 5000])
        cur.execute(f"INSERT INTO `{schema}`.`src` VALUES {values}")
    cur.execute(
        f"CREATE TABLE `{schema}`.`dst` (k VARBINARY(4) PRIMARY KEY,"
        f" v VARCHAR(4) CHARACTER SET {charset})"
    )
    cur.execute(
        f"INSERT IGNORE INTO `{schema}`.`dst` SELECT k, CONVERT(k USING {charset})"
        f" FROM `{schema}`.`src`"
    )
    cur.execute(
        f"SELECT k, HEX(CONVERT(v USING utf8mb4)) FROM `{schema}`.`dst`"
        " WHERE k = CAST(v AS BINARY) AND CHAR_LENGTH(v) = 1"
    )
    found = {bytes(k): _text(h) for k, h in cur.fetchall()}
    cur.execute(f"DROP TABLE `{schema}`.`src`, `{schema}`.`dst`")
    return found


def _base(codec: str, seq: bytes) -> str | None:
    try:
        return codecs.decode(seq, codec)
    except UnicodeDecodeError:
        return None


def single_byte_overrides(charset: str, table: str) -> dict[int, str]:
    """Where the server's table differs from the base codec ferry builds it from: runs of
    consecutive bytes, ``{first byte: their characters}``."""
    base = charsets.SINGLE_BYTE_BASE[charset]
    differs = {b: table[b] for b in range(256) if _base(base, bytes([b])) != table[b]}
    return _runs(differs)


def multi_byte_overrides(charset: str, chars: dict[bytes, str]) -> dict[int, str]:
    """Where the server differs from the base codec, with "not decodable: ``?``" as the
    rule: runs of consecutive sequences (as big-endian numbers)."""
    base = charsets.MULTI_BYTE_BASE[charset]
    differs = {}
    for seq, value in chars.items():
        if (_base(base, seq) or "?") != value:
            differs[int.from_bytes(seq, "big")] = value
    return _runs(differs)


def _runs(values: dict[int, str]) -> dict[int, str]:
    runs: dict[int, str] = {}
    start = previous = -2
    for key in sorted(values):
        if key == previous + 1:
            runs[start] += values[key]
        else:
            start = key
            runs[start] = values[key]
        previous = key
    return runs


def _quoted(text: str) -> str:
    """``repr`` with double quotes where it can (the project's format)."""
    literal = repr(text)
    if literal[0] == "'" and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


def _item(run: str) -> str:
    """A run: its characters, or ``(first code point, count)`` when they are consecutive."""
    points = [ord(c) for c in run]
    if len(points) >= 8 and points == list(range(points[0], points[0] + len(points))):
        return f"(0x{points[0]:04X}, {len(points)})"
    return _quoted(run)


def _literal(runs: dict[int, str], width: int) -> str:
    if not runs:
        return "{}"
    items = [f"0x{k:0{width}X}: {_item(v)}" for k, v in runs.items()]
    return "{\n        " + ",\n        ".join(items) + ",\n    }"


def generate(cur: Any, version: str) -> str:
    """The source of ``selector/charset_data.py``."""
    lines = [
        "# ruff: noqa: E501, RUF001",
        f'"""MariaDB {version}\'s character set tables, where they differ from Python\'s codecs.',
        "",
        "Generated by ``python -m tests.charset_tables selector/charset_data.py`` (do not edit);",
        "read by :mod:`selector.charsets`, which says what the tables mean.",
        '"""',
        "",
        "# charset -> {first byte: the characters of it and the bytes after it}",
        "SINGLE_BYTE: dict[str, dict[int, str | tuple[int, int]]] = {",
    ]
    for charset in SINGLE_BYTE:
        runs = single_byte_overrides(charset, single_byte_table(cur, charset))
        lines.append(f"    {_quoted(charset)}: {_literal(runs, 2)},")
    lines += [
        "}",
        "",
        "# charset -> {first sequence (big-endian): the characters of it and the sequences",
        "# after it}, or (first code point, count) for consecutive code points; a sequence",
        "# not listed is the base codec's character, or ``?`` where it has none",
        "MULTI_BYTE: dict[str, dict[int, str | tuple[int, int]]] = {",
    ]
    for charset in MULTI_BYTE:
        runs = multi_byte_overrides(charset, storable_characters(cur, charset))
        lines.append(f"    {_quoted(charset)}: {_literal(runs, 4)},")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:  # pragma: no cover - a development tool
    import tempfile
    from pathlib import Path

    from tests.services import MariaDB

    if len(argv) != 1:
        print("usage: python -m tests.charset_tables OUTPUT.py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ferry-charsets-") as tmp:
        server = MariaDB(tmp).start()
        try:
            conn = server.connect()
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                version = str(cur.fetchone()[0]).split("-")[0]
                source = generate(cur, version)
            conn.close()
        finally:
            server.stop()
    Path(argv[0]).write_text(source, encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
