"""MySQL's data types as the selector and the sinks both know them: JDBC type codes
(``java.sql.Types``, Debezium's ``jdbcType``, Canal's ``sqlType``), the families they
fall in, and the type names MySQL's grammar knows, each with its JDBC type.

A column carries its JDBC type (``pipeline.model.Column.jdbc_type``, an ``int``: a
:class:`Jdbc` member compares and hashes as its code).
"""

from __future__ import annotations

from enum import IntEnum


class Jdbc(IntEnum):
    """``java.sql.Types`` codes, the ones MySQL's types map to."""

    BIT = -7
    TINYINT = -6
    SMALLINT = 5
    INTEGER = 4
    BIGINT = -5
    FLOAT = 6
    REAL = 7
    DOUBLE = 8
    NUMERIC = 2
    DECIMAL = 3
    CHAR = 1
    VARCHAR = 12
    NCHAR = -15
    NVARCHAR = -9
    DATE = 91
    TIME = 92
    TIMESTAMP = 93
    TIMESTAMP_WITH_TIMEZONE = 2014
    BINARY = -2
    VARBINARY = -3
    BLOB = 2004
    BOOLEAN = 16
    OTHER = 1111


#: text: columns that carry a charset (the table's when they name none)
TEXT_TYPES = frozenset({Jdbc.CHAR, Jdbc.VARCHAR, Jdbc.NCHAR, Jdbc.NVARCHAR})
#: national text: always utf8
NATIONAL_TYPES = frozenset({Jdbc.NCHAR, Jdbc.NVARCHAR})
#: bytes
BINARY_TYPES = frozenset({Jdbc.BINARY, Jdbc.VARBINARY, Jdbc.BLOB})
#: integers (TINYINT is SMALLINT in Debezium's grammar, MEDIUMINT and YEAR INTEGER)
INTEGER_TYPES = frozenset({Jdbc.TINYINT, Jdbc.SMALLINT, Jdbc.INTEGER, Jdbc.BIGINT})
#: numbers: integers, floating point and fixed point (BIT is a bit string, not a number)
NUMBER_TYPES = INTEGER_TYPES | {Jdbc.FLOAT, Jdbc.REAL, Jdbc.DOUBLE, Jdbc.NUMERIC, Jdbc.DECIMAL}
#: dates and times (TIMESTAMP is TIMESTAMP_WITH_TIMEZONE, DATETIME TIMESTAMP)
TEMPORAL_TYPES = frozenset({Jdbc.DATE, Jdbc.TIME, Jdbc.TIMESTAMP, Jdbc.TIMESTAMP_WITH_TIMEZONE})

#: ``Column.type_name`` of the spatial types
SPATIAL_TYPES = frozenset(
    {
        "GEOMETRY",
        "POINT",
        "LINESTRING",
        "POLYGON",
        "MULTIPOINT",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "GEOMETRYCOLLECTION",
        "GEOMCOLLECTION",
    }
)

#: The data types Debezium's MySQL grammar knows: the words as written (joined by a space)
#: -> JDBC type. Suffix words (UNSIGNED, BINARY, …) are not part of the name.
DATA_TYPES: dict[str, Jdbc] = {
    **dict.fromkeys(("TINYINT", "INT1", "SMALLINT", "INT2"), Jdbc.SMALLINT),
    **dict.fromkeys(("MEDIUMINT", "INT3", "MIDDLEINT", "INT", "INTEGER", "INT4"), Jdbc.INTEGER),
    **dict.fromkeys(("BIGINT", "INT8", "SERIAL"), Jdbc.BIGINT),
    "REAL": Jdbc.REAL,
    **dict.fromkeys(("DOUBLE", "FLOAT8", "DOUBLE PRECISION", "FLOAT8 PRECISION"), Jdbc.DOUBLE),
    **dict.fromkeys(("FLOAT", "FLOAT4"), Jdbc.FLOAT),
    **dict.fromkeys(("DECIMAL", "DEC", "FIXED"), Jdbc.DECIMAL),
    "NUMERIC": Jdbc.NUMERIC,
    "BIT": Jdbc.BIT,
    "TIME": Jdbc.TIME,
    "TIMESTAMP": Jdbc.TIMESTAMP_WITH_TIMEZONE,
    "DATETIME": Jdbc.TIMESTAMP,
    "DATE": Jdbc.DATE,
    "YEAR": Jdbc.INTEGER,
    "BINARY": Jdbc.BINARY,
    "VARBINARY": Jdbc.VARBINARY,
    **dict.fromkeys(("BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "LONG VARBINARY"), Jdbc.BLOB),
    **dict.fromkeys(("BOOL", "BOOLEAN"), Jdbc.BOOLEAN),
    **dict.fromkeys(("CHAR", "CHARACTER"), Jdbc.CHAR),
    **dict.fromkeys(
        ("VARCHAR", "CHAR VARYING", "CHARACTER VARYING", "TINYTEXT", "TEXT", "MEDIUMTEXT"),
        Jdbc.VARCHAR,
    ),
    **dict.fromkeys(("LONGTEXT", "LONG", "LONG VARCHAR"), Jdbc.VARCHAR),
    "NCHAR": Jdbc.NCHAR,
    "NATIONAL CHARACTER": Jdbc.NCHAR,
    "NATIONAL CHAR": Jdbc.NCHAR,
    **dict.fromkeys(
        (
            "NVARCHAR",
            "NCHAR VARYING",
            "NCHAR VARCHAR",
            "NATIONAL VARCHAR",
            "NATIONAL CHAR VARYING",
            "NATIONAL CHARACTER VARYING",
        ),
        Jdbc.NVARCHAR,
    ),
    **dict.fromkeys(("ENUM", "SET"), Jdbc.CHAR),
    **dict.fromkeys((*SPATIAL_TYPES, "JSON"), Jdbc.OTHER),
}


#: words that modify a spelled type without changing its base
_MODIFIERS = frozenset(
    {"SIGNED", "UNSIGNED", "ZEROFILL", "BINARY", "ASCII", "UNICODE", "BYTE", "PRECISION"}
)


def base_type(type_name: str) -> tuple[str, bool]:
    """A spelled type's base and signedness: ``INT UNSIGNED ZEROFILL`` -> (``INT``, True),
    ``DOUBLE PRECISION`` -> (``DOUBLE``, False), ``VARCHAR(20) BINARY`` -> (``VARCHAR``,
    False) (``ZEROFILL`` implies ``UNSIGNED``; a lone ``BINARY`` is the type itself)."""
    words = type_name.upper().split("(")[0].split()
    unsigned = "UNSIGNED" in words or "ZEROFILL" in words
    return " ".join(w for w in words if w not in _MODIFIERS) or type_name.upper(), unsigned
