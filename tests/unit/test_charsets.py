"""The charset -> codec table (selector.charsets), without a server.

The digests below are of what MariaDB 10.11.19 returned (``tests.charset_tables``): for an
8-bit charset its 256 characters, for a multi-byte one the characters of every sequence
it stores (in byte order). ``tests/integration/test_charsets.py`` checks the same against
a live server, and the binlog path besides.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from types import SimpleNamespace

import pytest

from selector import charsets
from tests.charset_tables import candidates

SERVER_DIGESTS = {
    "dec8": "2031c2f2913194fb",
    "cp850": "4e721f6806dbbff2",
    "hp8": "d59635b01cbb17ce",
    "koi8r": "fb0243455e64ef70",
    "latin1": "cc916e51644a12e8",
    "latin2": "a5871b0f978b840b",
    "swe7": "5c6aa8ecd2caaa04",
    "ascii": "9a7e3259415eef15",
    "hebrew": "313e415089352ed4",
    "tis620": "49af1f7364397570",
    "koi8u": "1c3ccd793a4335f5",
    "greek": "39e875f97b7e2a6b",
    "cp1250": "9cc761968c5d2781",
    "latin5": "99a8e5b10c9d2f49",
    "armscii8": "fbc628c566079836",
    "cp866": "09f6cf466cc129e5",
    "keybcs2": "d43a8b257b0bfc57",
    "macce": "a3e9390d6e0dd8ac",
    "macroman": "54112bce885d7b1a",
    "cp852": "a5798618e5ecfe1b",
    "latin7": "4426f6d2f1b025cd",
    "cp1251": "0d28315865ad998b",
    "cp1256": "b8e59432781c5ac9",
    "cp1257": "1f40d8f00f4af3a9",
    "geostd8": "7b60fecf116b793a",
    "big5": "04ae83a18aa37960",
    "sjis": "620a1dab59c27888",
    "cp932": "e231fbf418229c99",
    "ujis": "c793787e736ad9a8",
    "eucjpms": "7d706e375aaa61d6",
    "euckr": "931b26de6417fabf",
    "gb2312": "893ece8d9694185c",
    "gbk": "83e12d80de4a4c5c",
}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def decode(charset: str, raw: bytes) -> str:
    codec = charsets.codec_for(charset)
    assert codec is not None
    return raw.decode(codec.name, codec.errors)


def test_every_server_charset_has_a_codec() -> None:
    for charset in charsets.SERVER_CHARSETS:
        codec = charsets.codec_for(charset)
        if charset == "binary":
            assert codec is None
            continue
        assert codec is not None, charset
        assert codec.charset == charset
        codecs.lookup(codec.name)  # registered (or Python's own)
    assert set(charsets.SINGLE_BYTE_CHARSETS) | set(charsets.MULTI_BYTE_CHARSETS) <= set(
        charsets.SERVER_CHARSETS
    )
    assert set(SERVER_DIGESTS) == set(charsets.SINGLE_BYTE_CHARSETS + charsets.MULTI_BYTE_CHARSETS)


@pytest.mark.parametrize("charset", charsets.SINGLE_BYTE_CHARSETS)
def test_an_8_bit_table_is_the_servers(charset: str) -> None:
    codec = charsets.codec_for(charset)
    assert codec is not None and codec.charmap is not None
    assert len(codec.charmap) == 256 and "\ufffe" not in codec.charmap
    assert decode(charset, bytes(range(256))) == codec.charmap
    assert digest(codec.charmap) == SERVER_DIGESTS[charset]


@pytest.mark.parametrize("charset", charsets.MULTI_BYTE_CHARSETS)
def test_a_multi_byte_charset_decodes_every_stored_character_as_the_server(charset: str) -> None:
    character = re.compile(charsets.CHARACTER[charset])
    stored = sorted(s for s in candidates(charset) if character.fullmatch(s))
    chars = [decode(charset, s) for s in stored]
    assert all(len(c) == 1 for c in chars)
    assert digest("".join(chars)) == SERVER_DIGESTS[charset]
    # the fast path (the whole value at once) and the slow one (a character at a time) agree
    assert decode(charset, b"".join(stored)) == "".join(chars)


def test_latin1_is_cp1252_with_its_five_holes_as_c1_controls() -> None:
    table = decode("latin1", bytes(range(256)))
    for b in range(256):
        if b in (0x81, 0x8D, 0x8F, 0x90, 0x9D):
            assert table[b] == chr(b)
        else:
            assert table[b] == bytes([b]).decode("cp1252")
    assert decode("latin1", b"\xc3\x81") == "Ã\x81"  # UTF-8 'Á' written through latin1
    assert "Ã\x81".encode("mysql_latin1") == b"\xc3\x81"


def test_bytes_a_charset_leaves_undefined_are_what_the_server_returns() -> None:
    assert decode("ascii", b"a\x80\xff") == "a??"
    assert decode("cp1250", b"\x81") == "?"
    assert decode("tis620", b"\xdb") == "\ufffd"
    assert decode("big5", b"\xa3\xe1") == "?"  # well-formed, mapped to nothing
    assert decode("swe7", b"@[\\]") == "ÉÄÖÅ"  # no Python codec: the server's table
    assert decode("dec8", b"\xd7") == "Œ"


def test_where_the_server_differs_from_pythons_codec() -> None:
    assert decode("sjis", b"\x81\x5f") == "\\"  # Python's shift_jis: U+FF3C
    assert decode("sjis", b"a\x81\x5fb") == "a\\b"  # found on the fast path too
    assert decode("ujis", b"\xf5\xa1\x8f\xf5\xa1") == "\ue000\ue3ac"  # user-defined rows
    assert decode("big5", b"\xf9\xd6") == "碁"
    assert decode("eucjpms", b"\xad\xa1") == "①"
    assert decode("euckr", b"\x81\x41") == "갂"  # cp949's extension, which MariaDB reads


def test_bytes_no_server_stores_raise() -> None:
    with pytest.raises(UnicodeDecodeError, match="not a character of big5"):
        decode("big5", b"ok\xa1")
    with pytest.raises(UnicodeDecodeError):
        decode("utf8mb4", b"\xff")
    with pytest.raises(UnicodeDecodeError):
        decode("ucs2", b"\x00a\x00")


def test_unicode_charsets_keep_what_mariadb_stores() -> None:
    assert decode("utf8mb4", b"\xed\xa0\x80") == "\ud800"  # a surrogate, as the server has it
    assert decode("utf8mb3", "日本".encode()) == "日本"
    assert decode("ucs2", b"\xd8\x3d\xde\x00") == "\ud83d\ude00"  # two UCS-2 characters
    assert decode("utf16", b"\xd8\x3d\xde\x00") == "😀"
    assert decode("utf16le", b"\x3d\xd8\x00\xde") == "😀"
    assert decode("utf32", b"\x00\x00\xd8\x00\x00\x01\xf6\x00") == "\ud800😀"


def test_charset_names_from_collations_and_from_the_library() -> None:
    assert charsets.charset_of_collation("latin1_swedish_ci") == "latin1"
    assert charsets.charset_of_collation("utf16le_bin") == "utf16le"
    assert charsets.charset_of_collation("utf8mb4_uca1400_ai_ci") == "utf8mb4"
    assert charsets.charset_of_collation("binary") == "binary"
    assert charsets.charset_of_collation("nonsense") is None
    of = charsets.charset_of_column
    assert of(SimpleNamespace(collation_name="cp1250_czech_cs")) == "cp1250"
    # mysql-replication's own names (a Python encoding) when the collation is unknown
    assert of(SimpleNamespace(collation_name=None, character_set_name="cp1252")) == "latin1"
    assert of(SimpleNamespace(character_set_name="utf8")) == "utf8mb4"
    assert of(SimpleNamespace(character_set_name=None)) is None
    with pytest.raises(LookupError, match="unknown to ferry"):
        charsets.codec_for("klingon")
