"""sinks.postgresql and sinks.pgtypes without a server: the type mapping, value conversion,
statement building, error classification and messages, config."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from pipeline.errors import FatalError, ResumableError, classify
from pipeline.model import Column, JsonText, TableSchema, ZeroDate
from selector.ddl import parse_create
from sinks.merge import Merged, merge
from sinks.pgtypes import (
    Cleaned,
    TypeOptions,
    ValueRefused,
    column_drops,
    column_renames,
    converter,
    create_table,
    enum_members,
    enum_type,
    pg_type,
    qi,
)
from sinks.postgresql import (
    PostgreSQLSink,
    PostgreSQLSinkConfig,
    groups,
    pg_resumable,
    without_values,
)
from sinks.registry import sink_class

DEFAULTS = TypeOptions()


def definition(sql: str) -> TableSchema:
    _, draft = parse_create(sql, "db")
    assert not isinstance(draft, tuple)
    return draft.build()


def mapped(column_sql: str, **options: Any) -> str:
    [column] = definition(f"CREATE TABLE t ({column_sql})").columns
    return pg_type(column, TypeOptions(**options), "db.t")


@pytest.mark.parametrize(
    ("mysql", "postgresql"),
    [
        ("c TINYINT", "smallint"),
        ("c BOOL", "smallint"),
        ("c TINYINT UNSIGNED", "smallint"),
        ("c SMALLINT UNSIGNED", "integer"),
        ("c MEDIUMINT UNSIGNED", "integer"),
        ("c INT", "integer"),
        ("c INT(10) UNSIGNED ZEROFILL", "bigint"),
        ("c INTEGER UNSIGNED", "bigint"),
        ("c BIGINT", "bigint"),
        ("c BIGINT UNSIGNED", "numeric(20,0)"),
        ("c SERIAL", "numeric(20,0)"),
        ("c DECIMAL(12,2)", "numeric(12,2)"),
        ("c DECIMAL", "numeric(10,0)"),
        ("c NUMERIC(65,30) UNSIGNED", "numeric(65,30)"),
        ("c FLOAT", "real"),
        ("c FLOAT(7,3)", "real"),
        ("c FLOAT(30)", "double precision"),
        ("c DOUBLE", "double precision"),
        ("c REAL", "double precision"),
        ("c BIT(9)", "bit varying(9)"),
        ("c BIT", "bit varying(1)"),
        ("c YEAR", "smallint"),
        ("c DATE", "date"),
        ("c DATETIME", "timestamp without time zone"),
        ("c DATETIME(3)", "timestamp(3) without time zone"),
        ("c TIMESTAMP", "timestamp with time zone"),
        ("c TIMESTAMP(6)", "timestamp(6) with time zone"),
        ("c TIME(2)", "interval"),
        ("c CHAR(3)", "character varying(3)"),
        ("c NATIONAL VARCHAR(10)", "character varying(10)"),
        ("c VARCHAR(255) CHARACTER SET latin1", "character varying(255)"),
        ("c MEDIUMTEXT", "text"),
        ("c ENUM('a','b')", "text"),
        ("c SET('a','b')", "text"),
        ("c JSON", "jsonb"),
        ("c BINARY(16)", "bytea"),
        ("c VARBINARY(10)", "bytea"),
        ("c LONGBLOB", "bytea"),
        ("c POINT", "bytea"),
    ],
)
def test_type_mapping(mysql: str, postgresql: str) -> None:
    assert mapped(mysql) == postgresql


def test_type_options() -> None:
    assert mapped("c TIME(3)", time="time") == "time(3) without time zone"
    assert mapped("c TIME", time="time") == "time without time zone"
    assert mapped("c INT", column_types={"db.t.c": "text"}) == "text"
    with pytest.raises(FatalError, match=r"db\.t\.c has type .* sink\.column_types"):
        pg_type(Column("c", "HYPERLOGLOG", 1111, 1), DEFAULTS, "db.t")


def test_create_table_keys_and_nullability() -> None:
    table = definition(
        'CREATE TABLE `Odd"Name` (id INT NOT NULL, d DATETIME NOT NULL, v VARCHAR(5) NOT NULL,'
        " PRIMARY KEY (id, d))"
    )
    sql = create_table(("s", 'Odd"Name'), table, DEFAULTS, str)
    # zero dates become NULL: a date column may hold NULL, so the key is UNIQUE
    assert sql == (
        'CREATE TABLE IF NOT EXISTS "s"."Odd""Name" ("id" integer NOT NULL,'
        ' "d" timestamp without time zone, "v" character varying(5) NOT NULL,'
        ' UNIQUE ("id", "d"))'
    )
    strict = create_table(("s", "t"), table, TypeOptions(zero_dates="error"), str.lower)
    assert strict.endswith(
        '"d" timestamp without time zone NOT NULL, "v" character varying(5)'
        ' NOT NULL, PRIMARY KEY ("id", "d"))'
    )
    assert qi("100%") == '"100%%"'  # statements always run with parameters


def test_create_table_unique_keys_generated_columns_and_enum_types() -> None:
    table = definition(
        "CREATE TABLE t (id INT PRIMARY KEY, e ENUM('a','it''s') NOT NULL, s SET('x'),"
        " g INT AS (id + 1) STORED, m VARCHAR(9) UNIQUE, UNIQUE KEY (e, m), UNIQUE (g))"
    )
    assert create_table(("s", "t"), table, DEFAULTS, str) == (
        'CREATE TABLE IF NOT EXISTS "s"."t" ("id" integer NOT NULL, "e" text NOT NULL,'
        ' "s" text, "g" integer, "m" character varying(9), PRIMARY KEY ("id"),'
        ' UNIQUE ("m"), UNIQUE ("e", "m"), UNIQUE ("g"))'
    )
    # skip: no generated column, and no unique key on one; the enum is a type of its own
    options = TypeOptions(generated_columns="skip", enums="enum_types")
    assert create_table(("s", "t"), table, options, str) == (
        'CREATE TABLE IF NOT EXISTS "s"."t" ("id" integer NOT NULL, "e" "s"."t_e" NOT NULL,'
        ' "s" text, "m" character varying(9), PRIMARY KEY ("id"), UNIQUE ("m"),'
        ' UNIQUE ("e", "m"))'
    )
    assert enum_members(table.columns[1]) == ["a", "it's"]
    # a prefix-indexed TEXT/BLOB column has no UNIQUE constraint (a btree holds ~2.7 kB)
    long = definition("CREATE TABLE l (id INT PRIMARY KEY, b TEXT, UNIQUE KEY (b(10)))")
    assert create_table(("s", "l"), long, DEFAULTS, str).endswith('PRIMARY KEY ("id"))')
    # PostgreSQL cuts names at 63 bytes: the type is named as the catalog will show it
    assert enum_type(("s", "t" * 60), "column") == f'"s"."{"t" * 60}_co"'


def convert(sql: str, value: Any, **options: Any) -> Any:
    [column] = definition(f"CREATE TABLE t ({sql})").columns
    made = converter(column, TypeOptions(**options), Cleaned())
    return value if made is None else made(value)


def test_value_conversion() -> None:
    cleaned = Cleaned()
    [json_column] = definition("CREATE TABLE t (j JSON)").columns
    to_json = converter(json_column, DEFAULTS, cleaned)
    assert to_json is not None
    assert (
        to_json(JsonText('{"a": "x\\u0000y", "b": "\\\\u0000"}')) == '{"a": "xy", "b": "\\\\u0000"}'
    )
    assert cleaned.json_nul
    assert to_json({"k": [1, None]}) == '{"k": [1, null]}'
    assert convert("c SET('z','a','m')", {"m", "z"}) == "z,m"  # the definition's order
    assert convert("c BIT(5)", 5) == "00101"
    assert convert("c VARCHAR(5)", "a\x00b") == "ab"
    assert convert("c DATE", ZeroDate("0000-00-00")) is None
    with pytest.raises(ValueRefused, match="zero"):
        convert("c DATETIME", ZeroDate("2015-00-21 00:00:00"), zero_dates="error")
    naive = dt.datetime(2024, 1, 1, 12)
    assert convert("c TIMESTAMP", naive) == naive.replace(tzinfo=dt.UTC)
    assert convert("c DATETIME", naive) == naive
    assert convert("c TIME", dt.timedelta(hours=-838)) == dt.timedelta(hours=-838)
    assert convert("c TIME(2)", dt.timedelta(hours=23, microseconds=10), time="time") == dt.time(
        23, 0, 0, 10
    )
    assert convert("c TIME", dt.timedelta(hours=24), time="time") == "24:00:00"
    with pytest.raises(ValueRefused, match="TIME outside"):
        convert("c TIME", dt.timedelta(hours=25), time="time")


def test_column_renames_in_alter_table() -> None:
    sql = "ALTER TABLE t CHANGE COLUMN `a b` c INT, CHANGE d d BIGINT, RENAME COLUMN e TO `f``g`"
    assert column_renames(sql) == [("a b", "c"), ("e", "f`g")]


def test_groups_follow_the_merge_and_drop_generated_columns() -> None:
    from pipeline.model import Position, RowChange

    position = Position("mysql-bin.000001", 4)

    def row(op: str, before: Any, after: Any, table: str = "t", pk: Any = ("id",)) -> RowChange:
        return RowChange("db", table, op, before, after, pk, 0.0, position)

    actions = merge(
        [
            row("insert", None, {"id": 1, "v": 1, "g": 2}),
            row("delete", {"id": 2, "v": 1, "g": 2}, None),
            row("insert", None, {"id": 3, "v": 1, "g": 2}),
            row("update", {"a": 1}, {"a": 2}, "nk", ()),
            row("update", {"a": 5}, {"a": 6}, "nk", ()),
        ]
    )
    out = groups(
        actions, lambda s, t: ("x", t), lambda tgt, cols: tuple(c for c in cols if c != "g")
    )
    assert [(g.kind, g.target, g.columns, len(g.actions)) for g in out] == [
        ("delete", ("x", "t"), ("id",), 1),
        ("upsert", ("x", "t"), ("id", "v"), 2),
        ("update_row", ("x", "nk"), ("a",), 1),
        ("update_row", ("x", "nk"), ("a",), 1),
    ]
    assert all(isinstance(a, Merged) for g in out for a in g.actions)


@pytest.mark.parametrize(
    ("error", "resumable"),
    [
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.DeadlockDetected("deadlock"), True),
        (psycopg.errors.SerializationFailure("could not serialize"), True),
        (psycopg.errors.TooManyConnections("too many"), True),
        (psycopg.errors.LockNotAvailable("lock"), True),
        (psycopg.errors.QueryCanceled("statement timeout"), True),
        (psycopg.OperationalError("connection to server failed: Connection refused"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (psycopg.OperationalError('password authentication failed for user "x"'), False),
        (psycopg.OperationalError('database "nope" does not exist'), False),
        (psycopg.errors.NumericValueOutOfRange("value out of range"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.UndefinedTable("no table"), False),
        (psycopg.errors.InsufficientPrivilege("denied"), False),
    ],
)
def test_psycopg_errors_are_classified(error: Exception, resumable: bool) -> None:
    assert pg_resumable(error) is resumable
    kind = ResumableError if resumable else FatalError
    assert isinstance(classify(error, "m"), kind)
    assert pg_resumable(ValueError("x")) is None


def test_server_messages_lose_their_values() -> None:
    message = 'value "2178774338" is out of range for type integer'
    assert without_values(message, ["t", "n"]) == 'value "***" is out of range for type integer'
    unique = 'duplicate key value violates unique constraint "kv_email_key"'
    assert without_values(unique, ["kv_email_key"]) == unique


def test_config_url_or_fields_and_registry() -> None:
    assert sink_class("postgresql") is PostgreSQLSink
    config = PostgreSQLSinkConfig.model_validate(
        {"type": "postgresql", "url": "postgresql://u:pw@db:6432/app"}
    )
    sink = PostgreSQLSink(config, "p")
    assert sink._where() == "PostgreSQL sink u@db:6432/app"  # no password
    with pytest.raises(ValidationError, match="either `url` or host, password"):
        PostgreSQLSinkConfig.model_validate(
            {"type": "postgresql", "url": "postgresql://db/app", "host": "h", "password": "x"}
        )
    with pytest.raises(ValidationError):
        PostgreSQLSinkConfig.model_validate({"type": "postgresql", "zero_dates": "zero"})


def test_names_are_mapped_then_folded() -> None:
    config = PostgreSQLSinkConfig.model_validate(
        {
            "type": "postgresql",
            "schema_map": {"Shop": "Replica"},
            "table_map": {"Shop.Old": "Other.New"},
            "identifiers": "lower",
        }
    )
    sink = PostgreSQLSink(config, "p")
    assert sink.target("Shop", "Orders") == ("replica", "orders")
    assert sink.target("Shop", "Old") == ("other", "new")
    assert sink.schema("Shop") == "replica"


def test_column_drops_in_alter_table() -> None:
    sql = "ALTER TABLE t DROP a, DROP COLUMN IF EXISTS `b c`, DROP PRIMARY KEY, DROP INDEX i"
    assert column_drops(sql) == {"a", "b c"}
    assert column_drops("ALTER TABLE t DROP FOREIGN KEY fk, DROP `key`") == {"key"}


def test_binary_charset_text_is_bytes() -> None:
    assert mapped("c CHAR(16) CHARACTER SET binary") == "bytea"
    assert convert("c VARCHAR(4) CHARACTER SET binary", b"\x00a") == b"\x00a"
