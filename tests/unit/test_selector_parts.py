"""Selector parts that need no server: filters, GTID tracking, value fixes."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

from pymysqlreplication.constants import FIELD_TYPE

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
    return SimpleNamespace(name=name, type=kind, unsigned=False, **extra)


def test_value_fixes() -> None:
    columns = [
        col("ts", FIELD_TYPE.TIMESTAMP2),
        col("bit", FIELD_TYPE.BIT),
        col("set", FIELD_TYPE.SET),
        col("bin", FIELD_TYPE.STRING, character_set_name="binary", max_length=4),
        col("blob", FIELD_TYPE.BLOB, character_set_name="binary", length_size=2),
        col("js", FIELD_TYPE.JSON),
        col("mj", FIELD_TYPE.BLOB, character_set_name="utf8mb4", length_size=4),
        col("u", FIELD_TYPE.LONG),
        col("plain", FIELD_TYPE.LONG),
    ]
    fixers = vals.fixers_for(columns, frozenset({"mj"}), frozenset({"u"}))
    assert [name for name, _ in fixers] == ["ts", "bit", "set", "bin", "blob", "js", "mj", "u"]
    row = {
        "ts": datetime.datetime(2024, 1, 1),
        "bit": "101",
        "set": None,
        "bin": b"\x01",
        "blob": "",
        "js": {b"k": [b"v", 1]},
        "mj": '{"a": 1}',
        "u": -1,
        "plain": -1,
    }
    vals.apply(fixers, row, {"set": "empty set"})
    assert row == {
        "ts": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "bit": 5,
        "set": set(),
        "bin": b"\x01\x00\x00\x00",
        "blob": b"",
        "js": {"k": ["v", 1]},
        "mj": {"a": 1},
        "u": 4294967295,
        "plain": -1,
    }
    null_set = {"set": None}
    vals.apply(fixers, null_set, {"set": "null"})
    assert null_set == {"set": None}  # SQL NULL stays NULL
    assert vals.may_hold_json_text(columns[6]) and not vals.may_hold_json_text(columns[4])
