"""Selector parts that need no server: filters, GTID tracking, the row-image decoder."""

from __future__ import annotations

import struct
from decimal import Decimal
from types import SimpleNamespace

from pymysqlreplication.constants import FIELD_TYPE

from pipeline.model import JsonText
from selector import values as vals
from selector.gtids import GtidTracker
from selector.tables import TableFilter


def test_table_filter_globs_and_exact_schemas() -> None:
    f = TableFilter(["shop.*", "crm.users"], ["shop.tmp_*"])
    assert f("shop", "orders") and f("crm", "users")
    assert not f("shop", "tmp_x") and not f("crm", "leads") and not f("other", "t")
    assert f.exact_schemas() == (["crm", "shop"], None)
    assert f.schema_wanted("shop") and not f.schema_wanted("other")
    g = TableFilter(["*.*"], ["mysql.*", "sys.*"])
    assert g.exact_schemas() == (None, ["mysql", "sys"])
    assert not g("mysql", "user") and g("app", "t") and not g.schema_wanted("mysql")


def test_mariadb_gtid_set_follows_commits_per_domain() -> None:
    t = GtidTracker(True, "0-1-5,1-2-9")
    t.begin("0-1-6")
    assert t.current() == "0-1-5,1-2-9"  # not executed before its commit
    t.commit()
    t.begin("2-3-1")
    t.commit()
    assert t.current() == "0-1-6,1-2-9,2-3-1" and t.last == "2-3-1"


def test_mysql_gtid_set_merges_intervals() -> None:
    sid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    t = GtidTracker(False, f"{sid}:1-5:7")
    for gno in (6, 8):
        t.begin(f"{sid}:{gno}")
        t.commit()
    assert t.current() == f"{sid}:1-8"


def test_unknown_gtid_set_stays_unknown() -> None:
    t = GtidTracker(False, None)
    t.begin("3e11fa47-71ca-11e1-9e33-c80aa9429562:9")
    t.commit()
    assert t.current() is None and t.last is not None


def col(name: str, kind: int, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(**{"name": name, "type": kind, "unsigned": False, **extra})


def test_decimal_as_the_mysql_manual_encodes_it() -> None:
    # "1234567890.1234 as DECIMAL(14,4)" and its negative, from MySQL's documentation
    plan = vals.plan_for([col("d", FIELD_TYPE.NEWDECIMAL, precision=14, decimals=4)])
    body = b"\x00" + bytes.fromhex("810DFB38D204D2") + b"\x00" + bytes.fromhex("7EF204C72DFB2D")
    rows = vals.decode_rows(plan, body, b"\x01")
    assert rows == [{"d": Decimal("1234567890.1234")}, {"d": Decimal("-1234567890.1234")}]


def test_nulls_widths_and_padding() -> None:
    plan = vals.plan_for(
        [
            col("u", FIELD_TYPE.LONG, unsigned=True),
            col("bin", FIELD_TYPE.STRING, character_set_name="binary", max_length=4),
            col("y", FIELD_TYPE.YEAR),
            col("bit", FIELD_TYPE.BIT, bytes=2),
            col("n", FIELD_TYPE.LONG),
        ]
    )
    body = (
        b"\x10"  # null bitmap: the 5th column is NULL
        + (4294967295).to_bytes(4, "little")
        + b"\x01\x07"  # BINARY(4) holding 0x07 0x00 0x00 0x00: the binlog drops the zeros
        + b"\x00"  # YEAR 0000
        + (513).to_bytes(2, "big")
    )
    [row] = vals.decode_rows(plan, body, b"\x1f")
    assert row == {"u": 4294967295, "bin": b"\x07\x00\x00\x00", "y": 0, "bit": 513, "n": None}


def test_float_is_the_shortest_decimal_of_the_single_precision_value() -> None:
    plan = vals.plan_for([col("f", FIELD_TYPE.FLOAT)])
    body = b"\x00" + struct.pack("<f", 3.14) + b"\x00" + struct.pack("<f", -3.4e38)
    assert vals.decode_rows(plan, body, b"\x01") == [{"f": 3.14}, {"f": -3.4e38}]


def test_json_text_is_kept_as_typed() -> None:
    column = col("j", FIELD_TYPE.BLOB, character_set_name="utf8mb4", length_size=4)
    assert vals.may_hold_json_text(column)
    plan = vals.plan_for([column], json_text_columns=frozenset({"j"}))
    text = b'{"b" :1,  "a": [1.0E+2]}'
    [row] = vals.decode_rows(plan, b"\x00" + len(text).to_bytes(4, "little") + text, b"\x01")
    assert row == {"j": '{"b" :1,  "a": [1.0E+2]}'} and isinstance(row["j"], JsonText)
