"""ferry-json: the readable value encoder and its messages; the format registry.

debezium-json is tested in test_format_debezium.py, canal-json in test_format_canal.py."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal

import pytest

from pipeline.dialect.statements import classify
from pipeline.errors import FatalError
from pipeline.model import DdlChange, JsonText, Position, RowChange, ZeroDate
from sinks.formats.base import FORMATS, ddl_tables, get_format
from sinks.formats.encoder import dumps, encode_key
from sinks.formats.values import encode_timedelta

POS = Position("mysql-bin.000007", 4711, gtid_set="0-1-99")

# (python value, expected JSON value) for every type the binlog reader produces
VALUES = {
    "i": (-(2**63), -(2**63)),
    "u": (2**64 - 1, 2**64 - 1),
    "f": (1.5, 1.5),
    "dec": (Decimal("12345678901234567890.0123456789"), "12345678901234567890.0123456789"),
    "dec_exp": (Decimal("1E+3"), "1000"),
    "dec_zero": (Decimal("0.00"), "0.00"),
    "dtm": (dt.datetime(2024, 2, 29, 23, 59, 58, 123456), "2024-02-29T23:59:58.123456"),
    "dtm0": (dt.datetime(2024, 1, 1, 0, 0, 0), "2024-01-01T00:00:00"),
    "dtz": (dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "2024-01-01T00:00:00+00:00"),
    "d": (dt.date(1000, 1, 1), "1000-01-01"),
    "t": (dt.timedelta(hours=838, minutes=59, seconds=59), "838:59:59"),
    "tneg": (-dt.timedelta(hours=838, minutes=59, seconds=59), "-838:59:59"),
    "tfrac": (dt.timedelta(seconds=1, microseconds=5), "00:00:01.000005"),
    "tod": (dt.time(7, 8, 9, 10), "07:08:09.000010"),
    "s": ("héllo 😀 𝄞", "héllo 😀 𝄞"),
    "b": (b"\x00\x01\xfe\xff", base64.b64encode(b"\x00\x01\xfe\xff").decode()),
    "empty_b": (b"", ""),
    "set": ({"c", "a", "b"}, ["a", "b", "c"]),
    "json": (
        {b"k": [b"v", 1, None, True, {b"n": Decimal("1.25")}], b"emoji": b"\xf0\x9f\x98\x80"},
        {"k": ["v", 1, None, True, {"n": "1.25"}], "emoji": "😀"},
    ),
    "json_list": ([1, b"two"], [1, "two"]),
    "null": (None, None),
}
ROW = {name: value for name, (value, _) in VALUES.items()}
EXPECTED = {name: expected for name, (_, expected) in VALUES.items()}


def change(op: str = "insert", **kw: object) -> RowChange:
    before = dict(ROW) if op != "insert" else None
    after = dict(ROW) if op != "delete" else None
    if op == "update":
        assert before is not None
        before["s"] = "old"
        before["u"] = 1
    fields: dict = dict(
        schema="shop",
        table="orders",
        op=op,
        before=before,
        after=after,
        primary_key=("i", "s"),
        ts=1_700_000_000.25,
        position=POS,
        gtid="0-1-100",
        index=2,
    )
    fields.update(kw)
    return RowChange(**fields)


def test_every_value_type_ferry_json() -> None:
    msg = json.loads(get_format("ferry-json", "p1").encode(change(), now=5_000_000))
    assert msg["after"] == EXPECTED
    assert msg["before"] is None
    assert msg["op"] == "c"
    assert msg["ts_ms"] == 5


def test_four_byte_utf8_is_not_escaped() -> None:
    raw = get_format("ferry-json", "p").encode(change())
    assert "😀".encode() in raw
    assert b"\\u" not in raw


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_lone_surrogate_is_written_as_its_json_escape(name: str) -> None:
    # MariaDB stores U+D800 in utf8mb4/ucs2/utf32 columns and returns it; it has no UTF-8
    row = {"i": 1, "s": "a\ud800b\udc81 é"}
    made = change(after=row, before=None, primary_key=("i", "s"))
    for key, value in get_format(name, "p").messages(made, now=5_000_000):
        for raw in (key, value):
            if raw is not None:
                raw.decode("utf-8")  # valid UTF-8
                assert "a\ud800b\udc81 é" in json.dumps(json.loads(raw), ensure_ascii=False)
    assert json.loads(dumps(row)) == row


def test_compact_separators() -> None:
    assert dumps({"a": [1, 2]}) == b'{"a":[1,2]}'


@pytest.mark.parametrize("op,code", [("insert", "c"), ("update", "u"), ("delete", "d")])
def test_ferry_json_envelope(op: str, code: str) -> None:
    fmt = get_format("ferry-json", "orders-pipe", server_id=4201)
    msg = json.loads(fmt.encode(change(op), now=123_000_000))
    assert msg["op"] == code
    assert (msg["before"] is None) == (op == "insert")
    assert (msg["after"] is None) == (op == "delete")
    assert msg["source"] == {
        "connector": "mysql",
        "name": "orders-pipe",
        "server_id": 4201,
        "ts_ms": 1_700_000_000_250,
        "db": "shop",
        "table": "orders",
        "file": "mysql-bin.000007",
        "pos": 4711,
        "row": 2,
        "gtid": "0-1-100",
        "snapshot": "false",
    }
    if op == "update":
        assert msg["before"]["s"] == "old"
        assert msg["after"]["s"] == EXPECTED["s"]


def test_ferry_json_without_server_id_omits_it() -> None:
    msg = json.loads(get_format("ferry-json", "p").encode(change()))
    assert "server_id" not in msg["source"]


def test_key_is_compact_json_array_of_pk_values() -> None:
    assert (
        encode_key(change())
        == b'[-9223372036854775808,"h\xc3\xa9llo \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e"]'
    )
    assert encode_key(change("delete")) == encode_key(change())
    one = change(primary_key=("dec",))
    assert encode_key(one) == b'["12345678901234567890.0123456789"]'
    assert encode_key(change(primary_key=())) == b"[]"


def test_key_is_the_same_for_every_op_of_a_row() -> None:
    keys = {encode_key(change(op, primary_key=("i",))) for op in ("insert", "update", "delete")}
    assert keys == {b"[-9223372036854775808]"}


DDL = DdlChange("shop", "ALTER TABLE `shop`.`orders` ADD COLUMN note TEXT", 1_700_000_001.0, POS)


def test_ddl_ferry_json() -> None:
    msg = json.loads(get_format("ferry-json", "p").encode(DDL, now=7_000_000))
    assert msg["ddl"] == DDL.statement
    assert msg["databaseName"] == "shop"
    assert msg["source"]["table"] == "orders"
    assert msg["source"]["pos"] == 4711
    assert msg["source"]["ts_ms"] == 1_700_000_001_000
    assert msg["ts_ms"] == 7
    assert msg["tableChanges"] == []


def test_ddl_key() -> None:
    assert encode_key(DDL) == b'["shop"]'


#: DDL a sink files under the classifier's tables (run in session database `shop`):
#: staff; t; t (the trigger's table); a and b; other.t
FILED_DDL = [
    "/*!40000 ALTER TABLE `staff` DISABLE KEYS */",
    "CREATE OR REPLACE TABLE t (a INT)",
    "CREATE DEFINER=`u`@`%` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
    "DROP TABLE a, b",
    "CREATE TABLE other.t (a INT)",
]


def selected(sql: str, schema: str = "shop") -> DdlChange:
    """A DdlChange as the selector builds it: with the classifier's output."""
    statement = classify(sql, schema)
    assert statement.is_ddl
    return DdlChange(
        schema,
        sql,
        1.0,
        POS,
        kind=statement.kind,  # type: ignore[arg-type]
        tables=statement.tables,
        object=statement.object,
        verb=statement.verb,
    )


# (statement run in session database shop, where it is filed: (schema, table) pairs)
FILED = [
    ("/*!40000 ALTER TABLE `staff` DISABLE KEYS */", (("shop", "staff"),)),
    ("CREATE OR REPLACE TABLE t (a INT)", (("shop", "t"),)),
    (
        "CREATE DEFINER=`root`@`localhost` TRIGGER trg BEFORE INSERT ON t"
        " FOR EACH ROW SET NEW.a = 1",
        (("shop", "t"),),
    ),
    ("DROP TABLE a, b", (("shop", "a"), ("shop", "b"))),
    ("CREATE TABLE other.t (a INT)", (("other", "t"),)),
    ("drop table if exists `s`.`t 2`", (("s", "t 2"),)),
    ("TRUNCATE t3", (("shop", "t3"),)),
    ("RENAME TABLE a TO b", (("shop", "a"), ("shop", "b"))),
    ("CREATE INDEX i ON t (a)", (("shop", "t"),)),
    ("CREATE DATABASE d", (("d", ""),)),
    ("CREATE PROCEDURE other.p() SELECT 1", (("other", ""),)),
]


@pytest.mark.parametrize("sql,filed", FILED)
def test_a_ddl_is_filed_where_the_classifier_says(
    sql: str, filed: tuple[tuple[str, str], ...]
) -> None:
    assert ddl_tables(selected(sql)) == filed
    # a DdlChange built by hand is classified by the same classifier
    assert ddl_tables(DdlChange("shop", sql, 1.0, POS)) == filed
    database, table = filed[0]
    for change in (selected(sql), DdlChange("shop", sql, 1.0, POS)):
        msg = json.loads(get_format("ferry-json", "p").encode(change))
        assert msg["databaseName"] == database
        assert msg["source"]["db"] == "shop"  # the session's: unqualified names are in it
        assert msg["source"]["table"] == (table or None)
        assert encode_key(change) == dumps([database])
        canal = json.loads(get_format("canal-json", "p").encode(change))
        assert canal["database"] == database


def test_a_ddl_that_names_nothing_is_filed_under_the_session_database() -> None:
    change = selected("ALTER DATABASE CHARACTER SET utf8mb4", schema="")
    assert ddl_tables(change) == (("", ""),)


def test_timedelta_text() -> None:
    assert encode_timedelta(dt.timedelta(days=2, seconds=3)) == "48:00:03"
    assert encode_timedelta(dt.timedelta(microseconds=-1)) == "-00:00:00.000001"
    assert encode_timedelta(dt.timedelta(0)) == "00:00:00"


def test_unknown_type_is_fatal() -> None:
    bad = change()
    assert bad.after is not None
    bad.after["x"] = object()
    with pytest.raises(FatalError, match="object"):
        get_format("ferry-json", "p").encode(bad)


def test_every_format_is_known() -> None:
    assert {get_format(name, "p").name for name in FORMATS} == set(FORMATS)


def test_unknown_format_is_fatal() -> None:
    with pytest.raises(FatalError, match="avro"):
        get_format("avro", "p")


def test_the_values_easy_to_get_wrong() -> None:
    """The values the code is easy to get wrong about (docs/formats.md has them all): zero
    dates with fractions, TIME fractions, invalid ENUM, INET4, JSON."""
    from tests.unit.test_format_canal import definition

    table = definition(
        "CREATE TABLE z (id INT PRIMARY KEY, dt3 DATETIME(3), ts3 TIMESTAMP(3) NULL,"
        " ts3nn TIMESTAMP(3) NOT NULL, dtp DATETIME(2), d DATE NOT NULL, t2 TIME(2),"
        " t0 TIME, e ENUM('a','b'), i4 INET4, j JSON)"
    )
    row = {
        "id": 1,
        "dt3": ZeroDate("0000-00-00 00:00:00.000"),
        "ts3": ZeroDate("0000-00-00 00:00:00.000"),
        "ts3nn": ZeroDate("0000-00-00 00:00:00.000"),
        "dtp": ZeroDate("2013-00-00 10:11:12.34"),
        "d": ZeroDate("0000-00-00"),
        "t2": -dt.timedelta(microseconds=10000),
        "t0": dt.timedelta(hours=25),
        "e": "",
        "i4": bytes.fromhex("c0a80001"),
        "j": JsonText('{"b" :1,  "a": [1.0E+2]}'),
    }
    change = RowChange("s", "z", "insert", None, row, ("id",), 1.0, POS, definition=table)

    def after(name: str) -> dict[str, object]:
        message = json.loads(get_format(name, "p").encode(change))
        return message["after"] if "after" in message else message["data"][0]

    text = {k: v for k, v in row.items() if k not in ("t2", "t0", "i4", "e", "id")}
    assert after("ferry-json") == {
        **text,
        "id": 1,
        "t2": "-00:00:00.010000",  # 6 fraction digits, only when not zero
        "t0": "25:00:00",
        "e": "",
        "i4": "wKgAAQ==",
    }
    assert after("debezium-json") == {
        "id": 1,
        "dt3": None,
        "ts3": None,
        "ts3nn": "1970-01-01T00:00:00.000Z",
        "dtp": None,
        "d": 0,
        "t2": -10000,
        "t0": 90_000_000_000,
        "e": "",
        "i4": "192.168.0.1",
        "j": row["j"],
    }
    assert after("canal-json") == {
        **text,
        "id": "1",
        "t2": "-00:00:00.01",
        "t0": "25:00:00",
        "e": "0",
        "i4": "192.168.0.1",
    }
