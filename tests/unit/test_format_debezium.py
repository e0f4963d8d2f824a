"""debezium-json: Debezium 3.6.3's values and envelope, from a table's definition.

The expected values are Debezium's own, recorded over the same column types
(tests/debezium_notes.md; the issue's table); tests/integration/test_debezium_compat.py
compares whole streams with Debezium itself.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import FatalError
from pipeline.model import DdlChange, JsonText, Position, RowChange, SourceEvent, ZeroDate
from selector.schemas import SchemaHistory
from sinks.formats.debezium.envelope import DebeziumJson
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.debezium.schema_changes import normalize_ddl

POS = Position("mysql-bin.000003", 1000)
TYPES = """CREATE TABLE shop.t (
    id INT PRIMARY KEY, ti TINYINT, b BOOLEAN, si SMALLINT UNSIGNED, iu INT UNSIGNED,
    bu BIGINT UNSIGNED, m DECIMAL(20,6), f FLOAT, f2 FLOAT(10,2), r REAL, d DATE,
    dt0 DATETIME, dt6 DATETIME(6), ts3 TIMESTAMP(3) NULL, tm3 TIME(3), y YEAR,
    s SET('a','b','c'), e ENUM('x','a,b'), b1 BIT(1), b10 BIT(10), j JSON,
    v VARCHAR(10), vb VARCHAR(4) CHARACTER SET binary, bin BINARY(3), bl BLOB,
    g GEOMETRY, p POINT, dflt FLOAT DEFAULT 5.6, nn DATE NOT NULL
)"""
ROW: dict[str, Any] = {
    "id": 1,
    "ti": -128,
    "b": 1,
    "si": 65535,
    "iu": 4294967295,
    "bu": 18446744073709551615,
    "m": Decimal("12345678901234.567891"),
    "f": 3.14,
    "f2": 5.61,
    "r": 1796137730.5,
    "d": dt.date(2024, 5, 1),
    "dt0": dt.datetime(2024, 5, 1, 13, 45),
    "dt6": dt.datetime(2024, 5, 1, 13, 45, 0, 123456),
    "ts3": dt.datetime(2024, 5, 1, 11, 45, 0, 123000, tzinfo=dt.UTC),
    "tm3": -dt.timedelta(hours=838, minutes=59, seconds=59),
    "y": 0,
    "s": {"c", "a"},
    "e": "a,b",
    "b1": 1,
    "b10": 513,
    "j": JsonText('{"a": 2}'),
    "v": "héllo",
    "vb": b"\x00\xff",
    "bin": b"\x0a\x00\x00",
    "bl": b"\x00\x01",
    "g": (4326).to_bytes(4, "little") + bytes.fromhex("0101000000000000000000f03f000000000000f03f"),
    "p": bytes(4) + bytes.fromhex("0101000000000000000000f03f0000000000000040"),
    "dflt": None,
    "nn": ZeroDate("0000-00-00"),
}
EXPECTED = {
    "id": 1,
    "ti": -128,
    "b": True,
    "si": 65535,
    "iu": 4294967295,
    "bu": -1,  # bigint.unsigned.handling.mode=long wraps
    "m": "AKtUqYzrHwrT",  # precise: base64 of the unscaled two's complement
    "f": 3.14,
    "f2": 5.610000133514404,  # FLOAT(M,D) is widened to double
    "r": 1.7961377e9,  # REAL is a Connect float
    "d": 19844,
    "dt0": 1714571100000,  # ms
    "dt6": 1714571100123456,  # µs
    "ts3": "2024-05-01T11:45:00.123Z",
    "tm3": -3020399000000,
    "y": 1900,  # YEAR 0000: Debezium's reader adds 1900 to the stored byte
    "s": "a,c",
    "e": "a\\,b",
    "b1": True,
    "b10": "AQI=",  # little-endian
    "j": '{"a": 2}',
    "v": "héllo",
    "vb": "\u0000ÿ",  # a text column of binary charset: the bytes as Latin-1
    "bin": "CgAA",
    "bl": "AAE=",
    "g": {"wkb": "AQEAAAAAAAAAAADwPwAAAAAAAPA/", "srid": 4326},
    "p": {"x": 1.0, "y": 2.0, "wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA", "srid": None},
    "dflt": 5.6,  # NULL in a column with a DEFAULT: the default (replace.null.with.default)
    "nn": 0,  # a zero date in a NOT NULL column: the epoch
}


def definition(sql: str = TYPES) -> Any:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets["shop"] = "utf8mb4"
    [change] = history.apply(sql, "shop")
    return change.definition


def row_change(op: str = "insert", before: Any = None, after: Any = None, **kw: Any) -> RowChange:
    fields: dict[str, Any] = {
        "schema": "shop",
        "table": "t",
        "op": op,
        "before": before,
        "after": after,
        "primary_key": ("id",),
        "ts": 1_714_571_100.0,
        "position": POS,
        "gtid": "0-1-7",
        "index": 5,
        "definition": definition(),
        "event": SourceEvent(2000, 11, 3),
    }
    fields.update(kw)
    return RowChange(**fields)


def decoded(messages: list[tuple[bytes | None, bytes | None]]) -> list[tuple[Any, Any]]:
    return [
        (None if k is None else json.loads(k), None if v is None else json.loads(v))
        for k, v in messages
    ]


def fmt(**options: Any) -> DebeziumJson:
    return DebeziumJson("pipe", options=DebeziumOptions.model_validate(options))


def test_values_and_envelope_with_default_options() -> None:
    [(key, value)] = decoded(
        fmt().messages(row_change(after=dict(ROW)), now=1_700_000_000_123_456_789)
    )
    assert key == {"id": 1}
    assert value["after"] == EXPECTED
    assert list(value) == [
        "before",
        "after",
        "source",
        "transaction",
        "op",
        "ts_ms",
        "ts_us",
        "ts_ns",
    ]
    assert (value["op"], value["ts_ms"], value["ts_us"], value["ts_ns"]) == (
        "c",
        1_700_000_000_123,
        1_700_000_000_123_456,
        1_700_000_000_123_456_789,
    )
    source = value["source"]
    assert source["version"].startswith("ferry")
    assert {k: v for k, v in source.items() if k != "version"} == {
        "connector": "mysql",
        "name": "pipe",
        "ts_ms": 1_714_571_100_000,
        "snapshot": "false",
        "db": "shop",
        "sequence": None,
        "ts_us": 1_714_571_100_000_000,
        "ts_ns": 1_714_571_100_000_000_000,
        "table": "t",
        "server_id": 11,
        "gtid": "0-1-7",
        "file": "mysql-bin.000003",
        "pos": 2000,  # the rows event
        "row": 2,  # index 5 in the transaction, 3 rows before it in other rows events
        "thread": None,
        "query": None,
    }
    assert value["transaction"] is None


def test_delete_is_followed_by_a_tombstone() -> None:
    messages = decoded(fmt().messages(row_change("delete", before=dict(ROW))))
    assert [(k, v and v["op"]) for k, v in messages] == [({"id": 1}, "d"), ({"id": 1}, None)]
    assert (
        decoded(fmt(**{"tombstones.on.delete": False}).messages(row_change("delete", before=ROW)))[
            0
        ][1]["before"]
        == EXPECTED
    )


def test_key_change_is_delete_tombstone_create() -> None:
    update = row_change("update", before=dict(ROW), after={**ROW, "id": 2})
    messages = decoded(fmt().messages(update))
    assert [(k, v and v["op"]) for k, v in messages] == [
        ({"id": 1}, "d"),
        ({"id": 1}, None),
        ({"id": 2}, "c"),
    ]
    assert messages[0][1]["after"] is None and messages[2][1]["before"] is None
    same = decoded(fmt().messages(row_change("update", before=dict(ROW), after={**ROW, "v": "x"})))
    assert [v["op"] for _, v in same] == ["u"]


def test_table_without_a_key_has_a_null_key() -> None:
    change = row_change(
        after={"a": 1}, primary_key=(), definition=definition("CREATE TABLE t (a INT)")
    )
    assert fmt().messages(change)[0][0] is None


@pytest.mark.parametrize(
    "options,column,value,expected",
    [
        (
            {"decimal.handling.mode": "string"},
            "m",
            Decimal("12345678901234.567891"),
            "12345678901234.567891",
        ),
        ({"decimal.handling.mode": "double"}, "m", Decimal("1234.5"), 1234.5),
        ({"bigint.unsigned.handling.mode": "precise"}, "bu", 2**64 - 1, "AP//////////"),
        ({"binary.handling.mode": "hex"}, "bl", b"\x00\xff\x10", "00ff10"),
        ({"binary.handling.mode": "base64"}, "bin", b"\x0a\x00\x00", "CgAA"),
        (
            {"time.precision.mode": "connect"},
            "dt6",
            dt.datetime(2024, 5, 1, 13, 45, 0, 123456),
            1714571100123,
        ),
        (
            {"time.precision.mode": "connect"},
            "tm3",
            dt.timedelta(hours=1, microseconds=1500),
            3600001,
        ),
        ({"time.precision.mode": "connect"}, "d", dt.date(2024, 5, 1), 19844),
        ({"replace.null.with.default": False}, "dflt", None, None),
    ],
)
def test_options(options: dict[str, Any], column: str, value: Any, expected: Any) -> None:
    [(_, message)] = decoded(fmt(**options).messages(row_change(after={"id": 1, column: value})))
    assert message["after"][column] == expected


def test_a_null_after_drop_default_stays_null() -> None:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets["shop"] = "utf8mb4"
    history.apply("CREATE TABLE t (id INT PRIMARY KEY, a INT DEFAULT 1, b INT DEFAULT 2)", "shop")
    [change] = history.apply("ALTER TABLE t ALTER a DROP DEFAULT, ALTER b SET DEFAULT 9", "shop")
    row = row_change(after={"id": 1, "a": None, "b": None}, definition=change.definition)
    [(_, message)] = decoded(fmt().messages(row))
    # replace.null.with.default: the default the table has now, and none after DROP DEFAULT
    assert message["after"] == {"id": 1, "a": None, "b": 9}
    [change] = history.apply("ALTER TABLE t MODIFY b INT", "shop")  # a new column: no default
    row = row_change(after={"id": 1, "a": None, "b": None}, definition=change.definition)
    [(_, message)] = decoded(fmt().messages(row))
    assert message["after"] == {"id": 1, "a": None, "b": None}


def test_connect_time_outside_a_day() -> None:
    far = {"id": 1, "tm3": dt.timedelta(hours=25)}
    table = definition("CREATE TABLE t (id INT PRIMARY KEY, tm3 TIME(3), nn TIME NOT NULL)")
    connect = fmt(**{"time.precision.mode": "connect"})
    [(_, value)] = decoded(connect.messages(row_change(after=far, definition=table)))
    assert value["after"]["tm3"] is None  # nullable: NULL, as Debezium (with a WARN)
    refused = row_change(after={"id": 1, "nn": dt.timedelta(hours=-1)}, definition=table)
    with pytest.raises(FatalError, match="outside 00:00:00"):
        connect.messages(refused)
    skip = fmt(
        **{"time.precision.mode": "connect", "event.processing.failure.handling.mode": "skip"}
    )
    assert skip.messages(refused) == []


def test_schemas_enabled() -> None:
    messages = fmt(**{"schemas.enable": True, "topic.prefix": "dbz"}).messages(
        row_change(after={"id": 1, "m": Decimal("4.99"), "dflt": None})
    )
    [(key, value)] = decoded(messages)
    assert key == {
        "schema": {
            "type": "struct",
            "fields": [{"type": "int32", "optional": False, "field": "id"}],
            "optional": False,
            "name": "dbz.shop.t.Key",
        },
        "payload": {"id": 1},
    }
    schema = value["schema"]
    assert (schema["name"], schema["version"]) == ("dbz.shop.t.Envelope", 2)
    after = schema["fields"][1]
    assert (after["field"], after["name"], after["optional"]) == ("after", "dbz.shop.t.Value", True)
    assert after["fields"] == [
        {"type": "int32", "optional": False, "field": "id"},
        {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "6", "connect.decimal.precision": "20"},
            "field": "m",
        },
        {"type": "float", "optional": True, "default": 5.6, "field": "dflt"},
    ]
    assert value["payload"]["after"] == {"id": 1, "m": "TCQw", "dflt": 5.6}
    assert schema["fields"][2]["name"] == "io.debezium.connector.mysql.Source"


def test_change_without_a_definition_is_encoded_by_value() -> None:
    change = row_change(
        after={
            "id": 1,
            "n": Decimal("1.50"),
            "at": dt.datetime(2024, 1, 1, 0, 0, 1),
            "tags": {"b", "a"},
        },
        definition=None,
    )
    [(key, value)] = decoded(fmt().messages(change))
    assert key == {"id": 1}
    assert value["after"] == {"id": 1, "n": "AJY=", "at": 1704067201000000, "tags": "a,b"}


DDL_TABLE = (
    "CREATE TABLE shop.orders (id INT NOT NULL, note VARCHAR(20) COMMENT 'n', PRIMARY KEY (id))"
)


def ddl_change(statement: str, **kw: Any) -> DdlChange:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets["shop"] = "utf8mb4"
    from pipeline.dialect.statements import classify

    classified = classify(statement, "other")
    fields: dict[str, Any] = {
        "schema": "other",
        "statement": statement,
        "ts": 1_714_571_100.0,
        "position": POS,
        "kind": classified.kind,
        "tables": classified.tables,
        "table_changes": history.apply(statement, "other"),
        "event": SourceEvent(3000, 11),
        "object": classified.object,
        "verb": classified.verb,
    }
    fields.update(kw)
    return DdlChange(**fields)


def test_schema_change_event() -> None:
    [(key, value)] = decoded(fmt().messages(ddl_change(DDL_TABLE)))
    assert key == {"databaseName": "shop"}  # from the statement, not the session's "other"
    assert value["databaseName"] == "shop" and value["schemaName"] is None
    assert value["source"]["table"] == "orders" and value["source"]["pos"] == 3000
    [change] = value["tableChanges"]
    assert (change["type"], change["id"]) == ("CREATE", '"shop"."orders"')
    assert change["table"]["primaryKeyColumnNames"] == ["id"]
    assert change["table"]["defaultCharsetName"] == "utf8mb4"
    assert change["table"]["columns"][1] == {
        "name": "note",
        "jdbcType": 12,
        "nativeType": None,
        "typeName": "VARCHAR",
        "typeExpression": "VARCHAR",
        "charsetName": "utf8mb4",
        "length": 20,
        "scale": None,
        "position": 2,
        "optional": True,
        "autoIncremented": False,
        "generated": False,
        "comment": None,  # include.schema.comments=false
        "defaultValueExpression": None,
        "enumValues": None,
    }
    with_comments = fmt(**{"include.schema.comments": True}).messages(ddl_change(DDL_TABLE))
    assert (
        json.loads(with_comments[0][1] or b"")["tableChanges"][0]["table"]["columns"][1]["comment"]
        == "n"
    )


def test_drop_of_several_tables_is_one_event_per_table() -> None:
    messages = decoded(
        fmt().messages(ddl_change("DROP TABLE shop.a, shop.b /* generated by server */"))
    )
    assert [v["ddl"] for _, v in messages] == ["DROP TABLE `shop`.`a`", "DROP TABLE `shop`.`b`"]
    assert [v["tableChanges"] for _, v in messages] == [
        [{"type": "DROP", "id": '"shop"."a"', "table": None}],
        [{"type": "DROP", "id": '"shop"."b"', "table": None}],
    ]
    assert {v["source"]["table"] for _, v in messages} == {"b,a"}


def test_views_and_routines_have_no_schema_change_event() -> None:
    assert fmt().messages(ddl_change("CREATE VIEW v AS SELECT 1")) == []
    assert fmt().messages(ddl_change("DROP PROCEDURE p")) == []


@pytest.mark.parametrize(
    "statement,expected",
    [
        ("/*!40000 ALTER TABLE `staff` DISABLE KEYS */", "ALTER TABLE `staff` DISABLE KEYS"),
        (
            'CREATE TABLE a (d DATE DEFAULT "0000-00-00")',
            "CREATE TABLE a (d DATE DEFAULT '0000-00-00')",
        ),
        (
            "CREATE TABLE a (s VARCHAR(3) DEFAULT 'say \"x\"')",
            "CREATE TABLE a (s VARCHAR(3) DEFAULT 'say \"x\"')",
        ),
        ("CREATE TABLE RANK (a INT)", "CREATE TABLE `RANK` (a INT)"),
        ("CREATE TABLE rank (a INT)", "CREATE TABLE rank (a INT)"),  # its guard is case-sensitive
    ],
)
def test_ddl_text_as_debezium_writes_it(statement: str, expected: str) -> None:
    assert normalize_ddl(statement) == expected


def test_source_table_lists_tables_in_debeziums_set_order() -> None:
    """Recorded: ``DROP TABLE t1,t2,t3,t4`` gives ``t4,t3,t2,t1``, ``ck, copy2`` keeps its order."""
    from pipeline.model import TableChange
    from sinks.formats.debezium.schema_changes import table_names

    tables = [TableChange("DROP", "dbz_multitable_dbz_871", f"t{n}") for n in range(1, 5)]
    assert table_names(tables) == "t4,t3,t2,t1"
    pair = [TableChange("DROP", "compat_types", t) for t in ("ck", "copy2")]
    assert table_names(pair) == "ck,copy2"


def test_index_statements_name_the_sessions_database_only() -> None:
    [(key, value)] = decoded(
        fmt().messages(ddl_change("CREATE UNIQUE INDEX u ON shop.orders (id)"))
    )
    assert key == {"databaseName": "other"}
    assert (value["source"]["table"], value["tableChanges"]) == ("", [])


def test_a_row_a_snapshot_copied_is_a_read() -> None:
    [(key, value)] = decoded(fmt().messages(row_change("read", after={"id": 1})))
    assert key == {"id": 1}
    assert (value["op"], value["source"]["snapshot"], value["before"]) == ("r", "true", None)


def test_latin1_text_is_what_debezium_streams_and_what_its_snapshot_reads() -> None:
    # MariaDB's latin1 has the C1 controls at 0x81, 0x8D, 0x8F, 0x90, 0x9D; Debezium's stream
    # decodes the binlog with Java's windows-1252 (U+FFFD there), its snapshot reads the
    # server's text (recorded in tests/debezium_notes.md)
    sql = """CREATE TABLE t (id INT, k VARCHAR(8), t TEXT, e ENUM('a\x81', 'b'),
        u VARCHAR(4) CHARACTER SET utf8mb4, PRIMARY KEY (id, k)) DEFAULT CHARSET latin1"""
    row = {"id": 1, "k": "A\x81\x8d\x8f\x90\x9dB", "t": "é\x9d", "e": "a\x81", "u": "x\x81"}
    streamed = {"id": 1, "k": "A\ufffd\ufffd\ufffd\ufffd\ufffdB", "t": "é\ufffd"}
    change = row_change(after=dict(row), definition=definition(sql), primary_key=("id", "k"))
    [(key, value)] = decoded(fmt().messages(change))
    assert key == {"id": 1, "k": streamed["k"]}
    assert value["after"] == {**row, **streamed}  # ENUM members and utf8mb4: as they are
    read = replace(change, op="read")
    [(key, value)] = decoded(fmt().messages(read))
    assert key == {"id": 1, "k": row["k"]} and value["after"] == row
