"""pipeline.dialect: what the selector and the sinks both know of MySQL, in one place."""

from __future__ import annotations

import pytest

from pipeline.dialect import (
    DATA_TYPES,
    NUMBER_TYPES,
    TEMPORAL_TYPES,
    TEXT_TYPES,
    Jdbc,
    ident,
    string_value,
    strip_quotes,
)


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
