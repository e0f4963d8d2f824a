"""Every MySQL/MariaDB character set as a Python codec: the one table both row decoders use.

A text value decodes to exactly what the server returns for its bytes (what a
``SELECT`` through a utf8mb4 connection gives), checked against MariaDB 10.11 for
every byte of the 8-bit sets and every storable character of the multi-byte ones
(``tests/integration/test_charsets.py``):

===========================  ===================================================================
charset                      codec
===========================  ===================================================================
utf8mb4, utf8mb3 (utf8)      ``utf-8``, with ``surrogatepass``: MariaDB stores UTF-8-encoded
                             surrogates (``ED A0 80``) and returns them (U+D800)
utf16, utf16le               ``utf-16-be``, ``utf-16-le``
utf32                        ``utf-32-be`` with ``surrogatepass`` (it stores lone surrogates)
ucs2                         ``mysql_ucs2``: two bytes, one code point, surrogates included
                             (``D83D DE00`` is two characters, not an emoji)
latin1                       ``mysql_latin1``: cp1252 with the five bytes it leaves undefined
                             (0x81, 0x8D, 0x8F, 0x90, 0x9D) as the C1 controls U+0081...
every other 8-bit charset    ``mysql_<charset>``: the server's own table of 256 characters,
                             including the six Python has no codec for (dec8, hp8, swe7,
                             keybcs2, armscii8, geostd8). A byte the charset does not define
                             is what the server returns for it: ``?`` (tis620: U+FFFD)
big5, sjis, cp932, ujis,     ``mysql_<charset>``: Python's codec of that standard (fast path),
eucjpms, euckr, gb2312, gbk  with the server's differences: its own characters where they
                             differ (sjis ``81 5F`` is ``\\``, user-defined rows of ujis are
                             U+E000...), and ``?`` for a well-formed character it cannot map
gb18030 (MySQL 8 only)       ``gb18030`` (not checked against a server: MariaDB has no gb18030)
binary                       none: the value is ``bytes``
===========================  ===================================================================

The 8-bit tables and the multi-byte differences are the server's, generated into
:mod:`selector.charset_data` by ``python -m tests.charset_tables``. The codecs
``mysql_*`` are registered with :mod:`codecs` when this module is imported, so
``raw.decode(codec.name, codec.errors)`` (the pure-Python decoder) and the
compiled decoder (``selector/_rowimage.pyx``: 8-bit tables through
``PyUnicode_DecodeCharmap``, UTF-8 through ``PyUnicode_DecodeUTF8``, the rest through
``PyUnicode_Decode`` by name) give the same strings. A value that still cannot be
decoded (bytes no server stores in that charset) raises ``UnicodeDecodeError``; the
selector reports it with the table, column, key and binlog position.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from array import array
from typing import Any, NamedTuple

from . import charset_data


class Codec(NamedTuple):
    """How the values of one charset decode: ``raw.decode(name, errors)``."""

    charset: str  # the MySQL/MariaDB name
    name: str  # a Python codec (``mysql_*`` ones are registered here)
    errors: str = "strict"
    charmap: str | None = None  # 8-bit charsets: the 256 characters, byte by byte


#: The base codec each 8-bit charset's table starts from (charset_data lists the
#: differences): where MariaDB's table equals a Python codec, there are none.
SINGLE_BYTE_BASE: dict[str, str] = {
    "dec8": "latin-1",
    "cp850": "cp850",
    "hp8": "hp_roman8",
    "koi8r": "koi8_r",
    "latin1": "cp1252",
    "latin2": "iso8859_2",
    "swe7": "latin-1",
    "ascii": "ascii",
    "hebrew": "iso8859_8",
    "tis620": "tis_620",
    "koi8u": "koi8_u",
    "greek": "iso8859_7",
    "cp1250": "cp1250",
    "latin5": "iso8859_9",
    "armscii8": "latin-1",
    "cp866": "cp866",
    "keybcs2": "cp437",
    "macce": "mac_latin2",
    "macroman": "mac_roman",
    "cp852": "cp852",
    "latin7": "iso8859_13",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "geostd8": "cp1252",
}
SINGLE_BYTE_CHARSETS = tuple(SINGLE_BYTE_BASE)

#: The Python codec of the standard each multi-byte charset follows (the fast path).
MULTI_BYTE_BASE: dict[str, str] = {
    "big5": "big5",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc_jp",
    "eucjpms": "euc_jp",
    "euckr": "cp949",
    "gb2312": "gb2312",
    "gbk": "gbk",
}
MULTI_BYTE_CHARSETS = tuple(MULTI_BYTE_BASE)

# One character of each multi-byte charset, as the server reads it (MariaDB's
# strings/ctype-*.c, checked against what it stores): the slow path cuts a value into
# characters with these; anything else is a byte no server stores in that charset.
_EUC_JP = rb"[\x00-\x7f]|\x8e[\xa1-\xdf]|\x8f[\xa1-\xfe][\xa1-\xfe]|[\xa1-\xfe][\xa1-\xfe]"
_SJIS = rb"[\x00-\x7f\xa1-\xdf]|[\x81-\x9f\xe0-\xfc][\x40-\x7e\x80-\xfc]"
CHARACTER: dict[str, bytes] = {
    "big5": rb"[\x00-\x7f]|[\xa1-\xf9][\x40-\x7e\xa1-\xfe]",
    "sjis": _SJIS,
    "cp932": _SJIS,
    "ujis": _EUC_JP,
    "eucjpms": _EUC_JP,
    "euckr": rb"[\x00-\x7f]|[\x81-\xfe][\x41-\x5a\x61-\x7a\x81-\xfe]",
    "gb2312": rb"[\x00-\x7f]|[\xa1-\xf7][\xa1-\xfe]",
    "gbk": rb"[\x00-\x7f]|[\x81-\xfe][\x40-\x7e\x80-\xfe]",
}

#: The charsets a MariaDB 10.11 server has (``SHOW CHARACTER SET``), in its order.
SERVER_CHARSETS = (
    *("big5", "dec8", "cp850", "hp8", "koi8r", "latin1", "latin2", "swe7", "ascii", "ujis"),
    *("sjis", "hebrew", "tis620", "euckr", "koi8u", "gb2312", "greek", "cp1250", "gbk"),
    *("latin5", "armscii8", "utf8mb3", "ucs2", "cp866", "keybcs2", "macce", "macroman"),
    *("cp852", "latin7", "utf8mb4", "cp1251", "utf16", "utf16le", "cp1256", "cp1257", "utf32"),
    *("binary", "geostd8", "cp932", "eucjpms"),
)

_PREFIX = "mysql_"


def _chars(run: str | tuple[int, int]) -> str:
    """A run of charset_data: its characters, or (first code point, count)."""
    if isinstance(run, tuple):
        first, count = run
        return "".join(chr(first + k) for k in range(count))
    return run


def _single_byte_table(charset: str) -> str:
    base = SINGLE_BYTE_BASE[charset]
    chars = []
    for b in range(256):
        try:
            chars.append(bytes([b]).decode(base))
        except UnicodeDecodeError:
            chars.append("\ufffe")  # undefined (charmap_decode raises), unless charset_data has it
    for first, run in charset_data.SINGLE_BYTE.get(charset, {}).items():
        text = _chars(run)
        chars[first : first + len(text)] = text
    return "".join(chars)


def _multi_byte_overrides(charset: str) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for first, run in charset_data.MULTI_BYTE.get(charset, {}).items():
        size = max(1, (first.bit_length() + 7) // 8)
        for k, char in enumerate(_chars(run)):
            found[(first + k).to_bytes(size, "big")] = char
    return found


def _build() -> dict[str, Codec]:
    table: dict[str, Codec] = {}
    for charset in SINGLE_BYTE_CHARSETS:
        table[charset] = Codec(charset, _PREFIX + charset, "strict", _single_byte_table(charset))
    for charset in MULTI_BYTE_CHARSETS:
        table[charset] = Codec(charset, _PREFIX + charset)
    for charset in ("utf8mb4", "utf8mb3", "utf8"):
        table[charset] = Codec(charset, "utf-8", "surrogatepass")
    table["utf16"] = Codec("utf16", "utf-16-be")
    table["utf16le"] = Codec("utf16le", "utf-16-le")
    table["utf32"] = Codec("utf32", "utf-32-be", "surrogatepass")
    table["ucs2"] = Codec("ucs2", _PREFIX + "ucs2")
    table["gb18030"] = Codec("gb18030", "gb18030")  # MySQL 8 only: not checked against a server
    return table


#: MySQL/MariaDB charset name -> how its values decode (``binary`` is not here: bytes).
CODECS: dict[str, Codec] = _build()

# mysql-replication names a column's charset by its Python encoding
# (pymysqlreplication.constants.CHARSET.Charset.encoding): back to the MySQL name
_LIBRARY_NAMES = {"utf8": "utf8mb4", "cp1252": "latin1", "koi8_r": "koi8r", "koi8_u": "koi8u"}


def codec_for(charset: str | None) -> Codec | None:
    """How values of ``charset`` decode; None for ``binary`` (and no charset): bytes.

    Raises ``LookupError`` for a charset ferry does not know.
    """
    if charset is None or charset == "binary":
        return None
    found = CODECS.get(charset.lower())
    if found is None:
        raise LookupError(f"character set {charset!r} is unknown to ferry")
    return found


def charset_of_collation(collation: str) -> str | None:
    """The charset a collation belongs to (``latin1_swedish_ci`` -> ``latin1``), or None."""
    name = collation.lower()
    if name == "binary":
        return "binary"
    best = None
    for charset in (*CODECS, "binary"):
        if name.startswith(charset + "_") and (best is None or len(charset) > len(best)):
            best = charset
    return best


def charset_of_column(column: object) -> str | None:
    """A mysql-replication column's MySQL charset name, from its collation (or the Python
    encoding the library put in ``character_set_name``); None for a non-text column."""
    collation = getattr(column, "collation_name", None)
    if collation:
        found = charset_of_collation(str(collation))
        if found is not None:
            return found
    name = getattr(column, "character_set_name", None)
    if name is None:
        return None
    name = str(name).lower()
    return _LIBRARY_NAMES.get(name, name)


# -- the registered codecs ---------------------------------------------------------------


def _charmap_codec(charset: str, table: str) -> codecs.CodecInfo:
    encoding: dict[int, int] = {}
    for b in range(255, -1, -1):  # a character several bytes decode to encodes as the lowest
        encoding[ord(table[b])] = b

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.charmap_decode(data, errors, table)

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.charmap_encode(text, errors, encoding)

    return codecs.CodecInfo(encode, decode, name=_PREFIX + charset)


def _multi_byte_codec(charset: str) -> codecs.CodecInfo:
    base = MULTI_BYTE_BASE[charset]
    base_decode = codecs.getdecoder(base)
    character = re.compile(CHARACTER[charset] + rb"|(.)", re.DOTALL)
    overrides = _multi_byte_overrides(charset)
    # characters the fast path may give for a sequence the server reads otherwise
    suspects = set()
    for seq in overrides:
        with contextlib.suppress(UnicodeDecodeError):
            suspects.add(seq.decode(base))
    suspect = re.compile("[" + re.escape("".join(sorted(suspects))) + "]") if suspects else None
    name = _PREFIX + charset

    def slow(data: bytes, errors: str) -> str:
        out = []
        for match in character.finditer(data):
            if match.group(1) is not None:  # no character of this charset starts here
                start = match.start()
                error = UnicodeDecodeError(
                    name, data, start, start + 1, f"not a character of {charset}"
                )
                if errors == "strict":
                    raise error
                out.append(str(codecs.lookup_error(errors)(error)[0]))
                continue
            seq = match.group(0)
            char = overrides.get(seq)
            if char is None:
                try:
                    char = base_decode(seq)[0]
                except UnicodeDecodeError:
                    char = "?"  # well-formed, but the server maps it to nothing
            out.append(char)
        return "".join(out)

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        data = bytes(data)
        try:
            text = base_decode(data)[0]
        except UnicodeDecodeError:
            return slow(data, errors), len(data)
        if suspect is not None and suspect.search(text):
            return slow(data, errors), len(data)
        return text, len(data)

    reverse = {char: seq for seq, char in overrides.items() if char not in ("?", "\ufffd")}

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        try:
            return codecs.encode(text, base), len(text)
        except UnicodeEncodeError:
            out = [reverse.get(c) or codecs.encode(c, base, errors) for c in text]
            return b"".join(out), len(text)

    return codecs.CodecInfo(encode, decode, name=name)


def _ucs2_decode(data: Any, errors: str = "strict") -> tuple[str, int]:
    """UCS-2: every two bytes one code point; a surrogate pair stays two characters."""
    data = bytes(data)
    text, _ = codecs.utf_16_be_decode(data, "surrogatepass", True)
    if len(text) * 2 != len(data):  # a pair joined into one character, or an odd byte
        if len(data) % 2:
            error = UnicodeDecodeError(
                _PREFIX + "ucs2", data, len(data) - 1, len(data), "truncated data"
            )
            if errors == "strict":
                raise error
            replacement = str(codecs.lookup_error(errors)(error)[0])
            return _ucs2_decode(data[:-1])[0] + replacement, len(data)
        units = array("H", data)
        units.byteswap()  # big-endian in the row image
        text = "".join(map(chr, units))
    return text, len(data)


def _ucs2_encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return codecs.encode(text, "utf-16-be", "surrogatepass"), len(text)


def _search(name: str) -> codecs.CodecInfo | None:
    if not name.startswith(_PREFIX):
        return None
    charset = name[len(_PREFIX) :]
    if charset == "ucs2":
        return codecs.CodecInfo(_ucs2_encode, _ucs2_decode, name=name)
    codec = CODECS.get(charset)
    if codec is None or codec.name != name:
        return None
    if codec.charmap is not None:
        return _charmap_codec(charset, codec.charmap)
    return _multi_byte_codec(charset)


codecs.register(_search)
