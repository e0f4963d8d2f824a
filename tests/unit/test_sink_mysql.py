"""sinks.mysql without a server: statement building, value conversion, messages, config."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from pydantic import ValidationError

from pipeline.errors import FatalError
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.merge import Merged, merge
from sinks.mysql import MySQLSink, MySQLSinkConfig
from sinks.redact import mask, shown_statement
from sinks.registry import sink_class
from sinks.sqlapply import Statement, build_statements, describe_failure, ident, to_db

POS = Position("mysql-bin.000001", 4)


def same(schema: str, table: str) -> tuple[str, str]:
    return schema, table


def up(id_: int, v: Any = "x", table: str = "t", pk: tuple[str, ...] = ("id",)) -> Merged:
    return Merged("db", table, "insert", pk, None, {"id": id_, "v": v})


def down(id_: int, table: str = "t", pk: tuple[str, ...] = ("id",)) -> Merged:
    return Merged("db", table, "delete", pk, {"id": id_, "v": "x"}, None)


def test_upsert_is_one_multi_row_statement_with_parameters() -> None:
    [stmt] = build_statements([up(1, "a"), up(2, "b"), up(3, "c")], same)
    assert stmt.sql == (
        "INSERT INTO `db`.`t` (`id`,`v`) VALUES (%s,%s),(%s,%s),(%s,%s)"
        " ON DUPLICATE KEY UPDATE `v`=VALUES(`v`)"
    )
    assert stmt.args == [1, "a", 2, "b", 3, "c"]
    assert stmt.kind == "upsert" and len(stmt.actions) == 3


def test_delete_by_single_and_composite_key() -> None:
    [single] = build_statements([down(1), down(2)], same)
    assert single.sql == "DELETE FROM `db`.`t` WHERE `id` IN (%s,%s)"
    assert single.args == [1, 2]
    pk = ("a", "b")
    rows = [Merged("db", "t", "delete", pk, {"a": i, "b": "k", "v": 0}, None) for i in (1, 2)]
    [composite] = build_statements(rows, same)
    assert composite.sql == "DELETE FROM `db`.`t` WHERE (`a`,`b`) IN ((%s,%s),(%s,%s))"
    assert composite.args == [1, "k", 2, "k"]


def test_groups_follow_table_and_kind_and_keep_order() -> None:
    actions = [down(9), up(1), up(2), up(1, table="u"), down(3)]
    kinds = [(s.kind, s.target[1], len(s.actions)) for s in build_statements(actions, same)]
    assert kinds == [("delete", "t", 1), ("upsert", "t", 2), ("upsert", "u", 1), ("delete", "t", 1)]


def test_chunking_by_rows_and_by_bytes() -> None:
    actions = [up(i) for i in range(2500)]
    assert [len(s.actions) for s in build_statements(actions, same, max_rows=1000)] == [
        1000,
        1000,
        500,
    ]
    big = [up(i, "x" * 1000) for i in range(10)]  # ~3 KB estimated per row
    sizes = [len(s.actions) for s in build_statements(big, same, max_bytes=10_000)]
    assert sum(sizes) == 10 and max(sizes) <= 3 and len(sizes) >= 4


def test_columns_differing_between_rows_split_the_statement() -> None:
    odd = Merged("db", "t", "insert", ("id",), None, {"id": 5, "v": 1, "w": 2})
    assert len(build_statements([up(1), odd, up(2)], same)) == 3


def test_all_key_table_updates_a_key_column_on_duplicate() -> None:
    [stmt] = build_statements([Merged("db", "t", "insert", ("id",), None, {"id": 1})], same)
    assert stmt.sql.endswith("ON DUPLICATE KEY UPDATE `id`=VALUES(`id`)")


def test_no_primary_key_rows_match_every_column_null_safe() -> None:
    before = {"a": 1, "b": None}
    after = {"a": 2, "b": "z"}
    actions = [
        Merged("db", "t", "insert", (), None, after),
        Merged("db", "t", "insert", (), None, after),
        Merged("db", "t", "update", (), before, after),
        Merged("db", "t", "delete", (), before, None),
        Merged("db", "t", "delete", (), before, None),
    ]
    stmts = build_statements(actions, same)
    assert [s.kind for s in stmts] == ["insert", "update_row", "delete_row", "delete_row"]
    assert stmts[0].sql == "INSERT INTO `db`.`t` (`a`,`b`) VALUES (%s,%s),(%s,%s)"
    assert stmts[1].sql == (
        "UPDATE `db`.`t` SET `a`=%s,`b`=%s WHERE `a` <=> %s AND `b` <=> %s LIMIT 1"
    )
    assert stmts[1].args == [2, "z", 1, None]
    assert stmts[2].sql == "DELETE FROM `db`.`t` WHERE `a` <=> %s AND `b` <=> %s LIMIT 1"


def test_identifiers_are_quoted_and_safe_for_parameter_formatting() -> None:
    assert ident("we`ird%col") == "`we``ird%%col`"
    weird = Merged("db", "t", "insert", ("id",), None, {"id": 1, "we`ird%col": 2})
    [stmt] = build_statements([weird], same)
    # the driver's `query % args` must leave exactly the quoted name behind
    rendered = stmt.sql % tuple("?" for _ in stmt.args)
    assert "`we``ird%col`" in rendered


def test_mapping_goes_into_the_statement() -> None:
    config = MySQLSinkConfig(
        type="mysql",
        user="u",
        schema_map={"db": "db2"},
        table_map={"db.t": "other.renamed", "db.u": "justname"},
    )
    sink = MySQLSink(config, "p1")
    assert sink.target("db", "t") == ("other", "renamed")
    assert sink.target("db", "u") == ("db2", "justname")
    assert sink.target("db", "v") == ("db2", "v")
    assert sink.target("x", "v") == ("x", "v")
    [stmt] = build_statements([up(1)], sink.target)
    assert stmt.sql.startswith("INSERT INTO `other`.`renamed` ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b", "a"}, "a,b"),
        (frozenset(), ""),
        ({"k": [1, "é"]}, '{"k": [1, "é"]}'),
        ([1, Decimal("1.5")], '[1, "1.5"]'),
        (Decimal("1.50"), Decimal("1.50")),
        (dt.timedelta(hours=-1), dt.timedelta(hours=-1)),
        (b"\x00\xff", b"\x00\xff"),
        (None, None),
    ],
)
def test_to_db(value: Any, expected: Any) -> None:
    assert to_db(value) == expected


def test_masking_of_secret_like_columns() -> None:
    assert mask("password", "hunter2") == "***"
    assert mask("api_key", "k") == "***"
    assert mask("AccessToken", "t") == "***"
    assert mask("name", "bob") == "'bob'"
    assert mask("name", "x" * 500).endswith("…") and len(mask("name", "x" * 500)) == 80


def test_failure_message_names_table_key_statement_and_masks() -> None:
    rows = [
        Merged("db", "users", "insert", ("id",), None, {"id": i, "name": "n", "password": "pw123"})
        for i in range(1, 4)
    ]
    [stmt] = build_statements(rows, lambda s, t: ("tgt", t))
    exc = pymysql.err.DataError(1406, "Data too long for column 'name' at row 2")
    text = describe_failure(stmt, exc)
    assert "db.users (target tgt.users)" in text
    assert "[1406]" in text and "key (id=2)" in text
    assert "password: ***" in text and "pw123" not in text
    assert "INSERT INTO `tgt`.`users`" in text and "3 row(s)" in text


def test_failure_message_scrubs_secret_values_quoted_by_the_server() -> None:
    row = {"id": 1, "api_token": "tok-secret-value"}
    stmt = Statement(
        "upsert", ("d", "t"), "INSERT …", [], [Merged("d", "t", "insert", ("id",), None, row)]
    )
    exc = pymysql.err.IntegrityError(1062, "Duplicate entry 'tok-secret-value' for key 'api_token'")
    text = describe_failure(stmt, exc)
    assert "tok-secret-value" not in text and "Duplicate entry '***'" in text


def test_registry_finds_the_sink_and_config_forbids_unknown_keys() -> None:
    assert sink_class("mysql") is MySQLSink
    assert MySQLSink.config_model is MySQLSinkConfig
    with pytest.raises(ValidationError):
        MySQLSinkConfig.model_validate({"type": "mysql", "user": "u", "bogus": 1})


def test_reject_policy_fails_before_touching_the_target() -> None:
    config = MySQLSinkConfig(type="mysql", user="u", port=1, no_primary_key="reject")
    sink = MySQLSink(config, "p1")
    change = RowChange("db", "nokey", "insert", None, {"a": 1}, (), 0.0, POS)
    with pytest.raises(FatalError, match="nokey has no primary key"):
        sink.load(Batch(1, [change], POS), epoch=1)


def test_a_batch_mixing_ddl_and_rows_is_refused() -> None:
    sink = MySQLSink(MySQLSinkConfig(type="mysql", user="u", port=1), "p1")
    ddl = DdlChange("db", "ALTER TABLE t ADD c INT", 0.0, POS)
    change = RowChange("db", "t", "insert", None, {"id": 1}, ("id",), 0.0, POS)
    with pytest.raises(FatalError, match="mixes DDL"):
        sink.load(Batch(3, [change, ddl], POS), epoch=1)


def test_merge_then_build_turns_ten_updates_into_one_statement() -> None:
    changes = [
        RowChange("db", "t", "update", {"id": 1, "v": i}, {"id": 1, "v": i + 1}, ("id",), 0.0, POS)
        for i in range(10)
    ]
    [stmt] = build_statements(merge(changes), same)
    assert stmt.args == [1, 10]


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        (
            "CREATE TABLE t (id INT) ENGINE=FEDERATED"
            " CONNECTION='mysql://repl:s3cr3t@db1:3306/shop/t'",
            "CREATE TABLE t (id INT) ENGINE=FEDERATED"
            " CONNECTION='mysql://repl:***@db1:3306/shop/t'",
        ),
        (
            "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'r', PASSWORD 'it''s')",
            "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'r', PASSWORD '***')",
        ),
        (
            "ALTER TABLE t ADD COLUMN password VARCHAR(64)",
            "ALTER TABLE t ADD COLUMN password VARCHAR(64)",
        ),
    ],
)
def test_a_statement_in_a_log_line_never_shows_a_credential(sql: str, shown: str) -> None:
    assert shown_statement(sql) == shown
    assert shown_statement("CREATE TABLE x (a INT) COMMENT '" + "y" * 400 + "'").endswith("…")
