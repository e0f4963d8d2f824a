"""pipeline.dialect: what the selector and the sinks both know of MySQL, in one place."""

from __future__ import annotations

import pytest

from pipeline.dialect import (
    DATA_TYPES,
    NUMBER_TYPES,
    TEMPORAL_TYPES,
    TEXT_TYPES,
    Jdbc,
    base_type,
    ident,
    string_value,
    strip_quotes,
)
from pipeline.model import Column, DdlChange, Position


def test_jdbc_codes_are_java_sql_types() -> None:
    assert (Jdbc.CHAR, Jdbc.VARCHAR, Jdbc.NCHAR, Jdbc.NVARCHAR) == (1, 12, -15, -9)
    assert (Jdbc.BINARY, Jdbc.VARBINARY, Jdbc.BLOB, Jdbc.OTHER) == (-2, -3, 2004, 1111)
    assert Jdbc.TIMESTAMP_WITH_TIMEZONE == 2014 and Jdbc(93) is Jdbc.TIMESTAMP
    assert 12 in TEXT_TYPES and Jdbc.BIT not in NUMBER_TYPES


@pytest.mark.parametrize(
    ("name", "jdbc", "family"),
    [
        ("TINYTEXT", Jdbc.VARCHAR, TEXT_TYPES),
        ("NATIONAL VARCHAR", Jdbc.NVARCHAR, TEXT_TYPES),
        ("MEDIUMINT", Jdbc.INTEGER, NUMBER_TYPES),
        ("DOUBLE PRECISION", Jdbc.DOUBLE, NUMBER_TYPES),
        ("DATETIME", Jdbc.TIMESTAMP, TEMPORAL_TYPES),
        ("TIMESTAMP", Jdbc.TIMESTAMP_WITH_TIMEZONE, TEMPORAL_TYPES),
    ],
)
def test_type_names_map_to_their_jdbc_type_and_family(
    name: str, jdbc: Jdbc, family: frozenset[Jdbc]
) -> None:
    assert DATA_TYPES[name] is jdbc and jdbc in family


def test_identifiers_and_literals() -> None:
    assert ident("we`ird") == "`we``ird`"
    assert strip_quotes("'a''b'") == "a''b" and strip_quotes("`t`") == "t"
    assert strip_quotes("plain") == "plain"
    assert string_value("'it''s'") == "it's"
    assert string_value('"a\\nb\\Zc\\q"') == "a\nb\x1acq"
    assert string_value("unquoted ") == "unquoted "


@pytest.mark.parametrize(
    ("type_name", "base", "unsigned"),
    [
        ("INT UNSIGNED ZEROFILL", "INT", True),
        ("BIGINT ZEROFILL", "BIGINT", True),
        ("TINYINT SIGNED", "TINYINT", False),
        ("DOUBLE PRECISION", "DOUBLE", False),
        ("VARCHAR BINARY", "VARCHAR", False),
        ("DECIMAL UNSIGNED", "DECIMAL", True),
    ],
)
def test_columns_carry_their_base_type_and_signedness(
    type_name: str, base: str, unsigned: bool
) -> None:
    column = Column("c", type_name, Jdbc.INTEGER, 1)
    assert (column.base_type, column.unsigned) == (base, unsigned)
    assert base_type(type_name) == (base, unsigned)


def test_a_ddl_change_is_classified_however_it_is_built() -> None:
    built = DdlChange("shop", "ALTER TABLE other.t ADD c INT", 0.0, Position("b.000001", 4))
    assert (built.kind, built.object, built.verb) == ("table", "TABLE", "ALTER")
    assert built.tables == (("other", "t"),)
    database = DdlChange("", "CREATE DATABASE x", 0.0, Position("b.000001", 4))
    assert (database.kind, database.tables) == ("database", (("x", ""),))
