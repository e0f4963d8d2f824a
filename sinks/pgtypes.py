"""MySQL types and values as PostgreSQL stores them: the PostgreSQL sink's dialect (pure).

The mapping (``sink: {type: postgresql}``; options in brackets):

=============================  =============================  ==============================
MySQL / MariaDB                PostgreSQL                     value
=============================  =============================  ==============================
TINYINT, SMALLINT, BOOL        smallint                       as is
TINYINT/SMALLINT UNSIGNED      smallint / integer             as is
MEDIUMINT (UNSIGNED), INT      integer                        as is
INT UNSIGNED, BIGINT           bigint                         as is
BIGINT UNSIGNED                numeric(20,0)                  as is (up to 2^64-1)
DECIMAL(p,s) / NUMERIC         numeric(p,s)                   exact
FLOAT                          real                           the same single-precision value
DOUBLE, REAL                   double precision               as is
BIT(n)                         bit varying(n)                 n binary digits
YEAR                           smallint                       2024 (YEAR 0000 is 0)
DATE                           date                           zero dates: NULL [zero_dates:
                                                              error pauses instead]
DATETIME(n)                    timestamp(n) without time      wall clock as stored; zero: NULL
                               zone
TIMESTAMP(n)                   timestamp(n) with time zone    the instant (UTC); zero: NULL
TIME(n)                        interval                       ±838:59:59 kept [time: time —
                                                              ``time(n)``; a value outside
                                                              00:00-24:00 pauses]
CHAR(n), VARCHAR(n)            character varying(n)           NUL characters removed
TINYTEXT … LONGTEXT            text                           NUL characters removed
ENUM                           text [enums: enum_types —      as is
                               ``<table>_<column>``, an enum
                               type in the target schema]
SET                            text                           'a,b' in definition order
JSON                           jsonb                          ``\\u0000`` removed (jsonb
                                                              refuses it), said once per table
BINARY, VARBINARY, BLOBs       bytea                          as is
GEOMETRY and subtypes          bytea                          SRID + WKB, as MySQL stores it
MariaDB UUID, INET4, INET6     bytea                          as the binlog carries them
=============================  =============================  ==============================

A column of a DATE/DATETIME/TIMESTAMP type is created nullable whatever the source
says while ``zero_dates`` is ``null`` (a NOT NULL zero date becomes NULL).
``column_types`` overrides the PostgreSQL type of single columns (``schema.table.column``:
type, in the source's names); values are converted as their MySQL type says.
Identifiers are quoted as MySQL spells them, or folded to lower case
(``identifiers: lower``), which is how unquoted names read in PostgreSQL.

Generated (VIRTUAL/STORED) columns arrive in row images like any column and are
written as plain columns; ``generated_columns: skip`` leaves them (but for key columns)
out of CREATE TABLE and of every write (:func:`skipped`). ``Column.computed`` says which
they are; a definition read from a table map cannot, so there they stay plain. A target
column that PostgreSQL itself generates is never written.

Keys (:func:`table_keys`): the definition's key, and every other UNIQUE key of the source
as a UNIQUE constraint.

Type names are produced exactly as PostgreSQL's ``format_type`` prints them, so a
table's columns on the target compare with a definition as strings (``ALTER`` sync).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.dialect import SPATIAL_TYPES
from pipeline.errors import FatalError
from pipeline.model import Column, TableSchema, ZeroDate

ZeroDates = Literal["null", "error"]
TimeAs = Literal["interval", "time"]
Identifiers = Literal["keep", "lower"]
GeneratedColumns = Literal["plain", "skip"]
Enums = Literal["text", "enum_types"]


class TypeOptions(BaseModel):
    """The type-mapping options of ``sink: {type: postgresql}`` (see the module docstring)."""

    zero_dates: ZeroDates = Field(
        "null",
        description="DATE/DATETIME/TIMESTAMP values PostgreSQL cannot hold ('0000-00-00',"
        " '2024-00-10'): null writes NULL (and creates those columns nullable); error pauses"
        " naming table, key and column",
    )
    time: TimeAs = Field(
        "interval",
        description="MySQL TIME (-838:59:59 to 838:59:59) as interval, or as time(n) (a value"
        " outside 00:00:00-24:00:00 then pauses)",
    )
    identifiers: Identifiers = Field(
        "keep",
        description="schema, table and column names: keep MySQL's spelling (quoted), or fold"
        " to lower case",
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        description="'schema.table.column' (source names) -> PostgreSQL type of that column"
        " when ferry creates or alters its table",
    )
    generated_columns: GeneratedColumns = Field(
        "plain",
        description="generated (VIRTUAL/STORED) source columns: plain creates and writes them"
        " as ordinary columns with the values MySQL computed; skip leaves them out of the"
        " tables ferry creates and of every write (a key column is always written)",
    )
    enums: Enums = Field(
        "text",
        description="ENUM columns as text, or as a PostgreSQL enum type <table>_<column> in"
        " the target schema (members added by ALTER TYPE … ADD VALUE when MySQL adds them);"
        " SET is text either way",
    )


# -- identifiers and literals --------------------------------------------------------------


def qi(name: str) -> str:
    """A double-quoted identifier, safe in a statement executed with parameters (``%``
    doubled: the sink always passes parameters, so psycopg always reads ``%%`` as ``%``)."""
    return '"' + name.replace('"', '""').replace("%", "%%") + '"'


def regname(schema: str, table: str) -> str:
    """A table's quoted name as a parameter value (``to_regclass(%s)``): ``%`` kept."""
    return ".".join('"' + n.replace('"', '""') + '"' for n in (schema, table))


def literal(text: str) -> str:
    """A string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


# -- types ----------------------------------------------------------------------------------

_INT_TYPES = {
    "TINYINT": ("smallint", "smallint"),
    "INT1": ("smallint", "smallint"),
    "BOOL": ("smallint", "smallint"),
    "BOOLEAN": ("smallint", "smallint"),
    "SMALLINT": ("smallint", "integer"),
    "INT2": ("smallint", "integer"),
    "MEDIUMINT": ("integer", "integer"),
    "INT3": ("integer", "integer"),
    "MIDDLEINT": ("integer", "integer"),
    "INT": ("integer", "bigint"),
    "INTEGER": ("integer", "bigint"),
    "INT4": ("integer", "bigint"),
    "BIGINT": ("bigint", "numeric(20,0)"),
    "INT8": ("bigint", "numeric(20,0)"),
    "SERIAL": ("numeric(20,0)", "numeric(20,0)"),
}
_DOUBLE = frozenset({"DOUBLE", "DOUBLE PRECISION", "FLOAT8", "FLOAT8 PRECISION", "REAL"})
_DECIMAL = frozenset({"DECIMAL", "DEC", "FIXED", "NUMERIC"})
_VARCHAR = frozenset(
    {
        "CHAR",
        "CHARACTER",
        "VARCHAR",
        "CHAR VARYING",
        "CHARACTER VARYING",
        "NCHAR",
        "NATIONAL CHARACTER",
        "NATIONAL CHAR",
        "NVARCHAR",
        "NCHAR VARYING",
        "NCHAR VARCHAR",
        "NATIONAL VARCHAR",
        "NATIONAL CHAR VARYING",
        "NATIONAL CHARACTER VARYING",
    }
)
_TEXT = frozenset({"TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT", "LONG", "LONG VARCHAR"})
_BINARY = frozenset(
    {
        "BINARY",
        "VARBINARY",
        "TINYBLOB",
        "BLOB",
        "MEDIUMBLOB",
        "LONGBLOB",
        "LONG VARBINARY",
        "UUID",
        "INET4",
        "INET6",
    }
    | SPATIAL_TYPES
)
_DATES = frozenset({"DATE", "DATETIME", "TIMESTAMP"})
#: types MySQL indexes only by a prefix (or MariaDB by a hash): a UNIQUE key on one is not
#: created, because a btree entry of PostgreSQL holds about 2.7 kB of a value, not more
_UNBOUNDED = _TEXT | {"TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB", "LONG VARBINARY", "JSON"}


def _fraction(kind: str, digits: int | None, suffix: str = "") -> str:
    if digits:
        return f"{kind}({min(digits, 6)}){suffix}"
    return kind + suffix


def pg_type(column: Column, options: TypeOptions, where: str = "", enum: str | None = None) -> str:
    """The PostgreSQL type of a MySQL column, as ``format_type`` prints it.

    ``where`` is ``schema.table`` (source names), for ``column_types`` and messages;
    ``enum`` the column's enum type (:func:`enum_type`) when ``enums`` is ``enum_types``.
    """
    override = options.column_types.get(f"{where}.{column.name}")
    if override:
        return override
    base, unsigned = column.base_type, column.unsigned
    if base == "ENUM" and options.enums == "enum_types" and enum is not None:
        return enum
    if base in _INT_TYPES:
        return _INT_TYPES[base][1 if unsigned else 0]
    if base in _DECIMAL:
        precision = column.length or 10
        scale = column.scale or 0
        return f"numeric({precision},{scale})"
    if base in ("FLOAT", "FLOAT4"):
        # FLOAT(p) with p > 24 is a DOUBLE in MySQL
        wide = column.length is not None and column.length > 24 and column.scale is None
        return "double precision" if wide else "real"
    if base in _DOUBLE:
        return "double precision"
    if base == "BIT":
        return f"bit varying({column.length or 1})"
    if base == "YEAR":
        return "smallint"
    if base == "DATE":
        return "date"
    if base == "DATETIME":
        return _fraction("timestamp", column.length, " without time zone")
    if base == "TIMESTAMP":
        return _fraction("timestamp", column.length, " with time zone")
    if base == "TIME":
        if options.time == "time":
            return _fraction("time", column.length, " without time zone")
        return "interval"
    if (base in _VARCHAR or base in _TEXT) and (column.charset or "").lower() == "binary":
        return "bytea"  # CHAR … CHARACTER SET binary is BINARY: its values are bytes
    if base in _VARCHAR:
        # a definition read from a table map has no length: unbounded
        return f"character varying({column.length})" if column.length else "character varying"
    if base in _TEXT or base in ("ENUM", "SET"):
        return "text"
    if base == "JSON":
        return "jsonb"
    if base in _BINARY:
        return "bytea"
    raise FatalError(
        f"PostgreSQL sink: column {where}.{column.name} has type {column.type_name}, which"
        " ferry does not map; give it one with sink.column_types"
        f" ({{'{where}.{column.name}': text}}, for instance)"
    )


_TYPMOD = re.compile(r"\(\d+(?:,\d+)?\)")


def cast_type(pg: str) -> str:
    """The type a parameter is cast to for a column of type ``pg``: without its modifier,
    because an explicit cast to ``character varying(5)`` truncates silently where the
    column's own assignment (or a comparison) must see the whole value."""
    return _TYPMOD.sub("", pg)


def nullable(column: Column, options: TypeOptions) -> bool:
    """Whether the target column allows NULL (zero dates become NULL by default)."""
    if column.optional:
        return True
    return options.zero_dates == "null" and column.base_type in _DATES


_NAMEDATALEN = 63  # bytes of a PostgreSQL identifier; longer ones are cut by the server


def enum_type(target: tuple[str, str], column: str) -> str:
    """The quoted enum type of a target column: ``<table>_<column>`` in the target's schema,
    cut to 63 bytes as PostgreSQL would (so it compares with the catalog's name)."""
    name = f"{target[1]}_{column}".encode()[:_NAMEDATALEN].decode("utf-8", "ignore")
    return f"{qi(target[0])}.{qi(name)}"


def enum_members(column: Column) -> list[str]:
    """An ENUM or SET column's members, unquoted, in definition order."""
    return [m[1:-1].replace("''", "'") for m in column.enum_values]


def skipped(definition: TableSchema, options: TypeOptions) -> frozenset[str]:
    """The source columns ``generated_columns: skip`` leaves out: generated columns that
    are not part of the key (the key is what rows are matched on, so it is written)."""
    if options.generated_columns != "skip":
        return frozenset()
    key = set(definition.primary_key)
    return frozenset(
        c.name for c in definition.columns if c.computed is not None and c.name not in key
    )


def create_table(
    target: tuple[str, str],
    definition: TableSchema,
    options: TypeOptions,
    name: Callable[[str], str],
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a source definition; ``name`` maps column names.

    The key is the definition's (the primary key, else the first unique key: see
    ``TableSchema``): a PRIMARY KEY, or UNIQUE when one of its columns may be NULL. Every
    other UNIQUE key of the source becomes a UNIQUE constraint (named by PostgreSQL), so
    conflicts and ``ON CONFLICT`` behave as on the source. ENUM columns take their enum
    type with ``enums: enum_types`` (:func:`enum_type`; the sink creates it first).
    """
    where = f"{definition.schema}.{definition.table}"
    left_out = skipped(definition, options)
    parts = []
    for c in definition.columns:
        if c.name in left_out:
            continue
        column = name(c.name)
        sql = f"{qi(column)} {pg_type(c, options, where, enum_type(target, column))}"
        parts.append(sql if nullable(c, options) else sql + " NOT NULL")
    for kind, columns in table_keys(definition, options):
        parts.append(f"{kind} ({', '.join(qi(name(k)) for k in columns)})")
    return f"CREATE TABLE IF NOT EXISTS {qi(target[0])}.{qi(target[1])} ({', '.join(parts)})"


def table_keys(
    definition: TableSchema, options: TypeOptions
) -> list[tuple[Literal["PRIMARY KEY", "UNIQUE"], tuple[str, ...]]]:
    """The keys a target table of ``definition`` has (source column names): its key first
    (PRIMARY KEY, or UNIQUE when a column of it may be NULL), then every other UNIQUE key
    of the source once, but those on a column ``generated_columns: skip`` leaves out or
    on a TEXT, BLOB or JSON column (see ``_UNBOUNDED``)."""
    out: list[tuple[Literal["PRIMARY KEY", "UNIQUE"], tuple[str, ...]]] = []
    key = definition.primary_key
    if key:
        columns = [definition.column(k) for k in key]
        primary = all(c is not None and not nullable(c, options) for c in columns)
        out.append(("PRIMARY KEY" if primary else "UNIQUE", key))
    left_out = set(skipped(definition, options))
    left_out.update(c.name for c in definition.columns if c.base_type in _UNBOUNDED | SPATIAL_TYPES)
    seen = {key}
    for _, unique in definition.unique_keys:
        if unique not in seen and not left_out.intersection(unique):
            seen.add(unique)
            out.append(("UNIQUE", unique))
    return out


_NUMERIC_PG = re.compile(r"^(smallint|integer|bigint|numeric|real|double precision)")


def added_default(column: Column, pg: str) -> str | None:
    """The default that fills existing rows when a NOT NULL column is added, as MySQL
    filled them: the column's own default, else its type's implicit one (0, ''); None
    when there is none to give (the column is then added nullable)."""
    if column.default is not None:
        if _NUMERIC_PG.match(pg):
            try:
                return str(Decimal(column.default))
            except ArithmeticError:
                return None
        if pg.startswith(("character varying", "text")):
            return literal(column.default)
        return None
    if _NUMERIC_PG.match(pg):
        return "0"
    if pg.startswith(("character varying", "text")):
        return "''"
    return None


# -- renames in an ALTER TABLE ------------------------------------------------------------

_NAME = r"(`(?:[^`]|``)+`|[\w$]+)"
_RENAMES = re.compile(
    rf"\b(?:CHANGE\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?{_NAME}\s+{_NAME}"
    rf"|RENAME\s+COLUMN\s+(?:IF\s+EXISTS\s+)?{_NAME}\s+TO\s+{_NAME})",
    re.IGNORECASE,
)


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


_DROPS = re.compile(rf"\bDROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?{_NAME}", re.IGNORECASE)
_NOT_COLUMNS = frozenset({"PRIMARY", "INDEX", "KEY", "FOREIGN", "CONSTRAINT", "CHECK", "PARTITION"})


def column_drops(statement: str) -> set[str]:
    """The column names an ALTER TABLE drops (``DROP [COLUMN] a``; not keys, indexes…)."""
    found = set()
    for match in _DROPS.finditer(statement):
        name = match.group(1)
        if name.startswith("`") or name.upper() not in _NOT_COLUMNS:
            found.add(_unquote(name))
    return found


def column_renames(statement: str) -> list[tuple[str, str]]:
    """``(old, new)`` column names an ALTER TABLE renames (``CHANGE a b …``, ``RENAME
    COLUMN a TO b``), in order; a CHANGE that keeps the name is left out."""
    found = []
    for match in _RENAMES.finditer(statement):
        old, new = match.group(1) or match.group(3), match.group(2) or match.group(4)
        old, new = _unquote(old), _unquote(new)
        if old != new:
            found.append((old, new))
    return found


# -- values ---------------------------------------------------------------------------------

Convert = Callable[[Any], Any]


class ValueRefused(ValueError):
    """A value the mapping cannot store (a zero date with ``zero_dates: error``, a TIME
    outside a day with ``time: time``); the message names the reason, not the value."""


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal | dt.datetime | dt.date | dt.timedelta):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ``\u0000`` not preceded by an escaping backslash (``\\u0000`` is a backslash and "u0000")
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


@dataclass(slots=True)
class Cleaned:
    """What conversions removed, so the sink can say so once per table (never the values)."""

    json_nul: bool = False
    text_nul: bool = False


def _text(cleaned: Cleaned) -> Convert:
    def convert(value: Any) -> Any:
        if type(value) is str and "\x00" in value:
            cleaned.text_nul = True
            return value.replace("\x00", "")
        return value

    return convert


def _json(cleaned: Cleaned) -> Convert:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, dict | list | int | float | bool):
            value = json.dumps(value, ensure_ascii=False, default=_json_default)
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if "\\u0000" in value:
            stripped = _JSON_NUL.sub(r"\1", value)
            if stripped != value:
                cleaned.json_nul = True
                value = stripped
        if "\x00" in value:  # a raw NUL (not valid JSON, but MariaDB's JSON is LONGTEXT)
            cleaned.json_nul = True
            value = value.replace("\x00", "")
        return value

    return convert


def _set(members: tuple[str, ...]) -> Convert:
    order = {m: k for k, m in enumerate(members)}

    def convert(value: Any) -> Any:
        if isinstance(value, set | frozenset | list | tuple):
            return ",".join(sorted(value, key=lambda m: (order.get(m, len(order)), m)))
        return value

    return convert


def _bits(width: int) -> Convert:
    def convert(value: Any) -> Any:
        if isinstance(value, bytes):
            value = int.from_bytes(value, "big")
        if isinstance(value, int):
            return format(value, f"0{width}b")[-width:] if width else format(value, "b")
        return value

    return convert


def _dates(options: TypeOptions, instant: bool) -> Convert:
    refuse = options.zero_dates == "error"

    def convert(value: Any) -> Any:
        if isinstance(value, ZeroDate) or (type(value) is str and value.startswith("0000")):
            if refuse:
                raise ValueRefused(
                    "a zero or partly zero date, which PostgreSQL cannot hold"
                    " (sink.zero_dates is 'error'; 'null' writes NULL)"
                )
            return None
        if instant and type(value) is dt.datetime and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)  # a TIMESTAMP is a UTC instant
        return value

    return convert


_DAY = dt.timedelta(days=1)


def _time_of_day(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        if value < dt.timedelta(0) or value > _DAY:
            raise ValueRefused(
                "a TIME outside 00:00:00-24:00:00, which PostgreSQL's time cannot hold"
                " (sink.time is 'time'; 'interval' keeps any MySQL TIME)"
            )
        if value == _DAY:
            return "24:00:00"  # PostgreSQL's time has it; Python's has not
        seconds = value.seconds
        return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, value.microseconds)
    return value


def converter(column: Column | None, options: TypeOptions, cleaned: Cleaned) -> Convert | None:
    """How a column's values are made ready for PostgreSQL; None: as they come."""
    if column is None:  # no definition (rows built by a transform or a test)
        return _generic(cleaned)
    base = column.base_type
    if (column.charset or "").lower() == "binary" and base != "SET":
        return None  # bytes, stored as bytea (see pg_type)
    if base in _VARCHAR or base in _TEXT or base == "ENUM":
        return _text(cleaned)
    if base == "SET":
        return _set(tuple(enum_members(column)))
    if base == "JSON":
        return _json(cleaned)
    if base == "BIT":
        return _bits(column.length or 1)
    if base in _DATES:
        return _dates(options, instant=base == "TIMESTAMP")
    if base == "TIME" and options.time == "time":
        return _time_of_day
    return None


def _generic(cleaned: Cleaned) -> Convert:
    """Values of a column whose type is unknown: by their Python type."""
    text, as_json = _text(cleaned), _json(cleaned)
    members = _set(())

    def convert(value: Any) -> Any:
        if isinstance(value, ZeroDate):
            return None
        if type(value) is str:
            return text(value)
        if isinstance(value, str):  # JsonText
            return as_json(value)
        if isinstance(value, set | frozenset):
            return members(value)
        if isinstance(value, dict | list):
            return as_json(value)
        return value

    return convert


def converters(
    columns: Iterable[str],
    definition: TableSchema | None,
    options: TypeOptions,
    cleaned: Cleaned,
) -> list[Convert | None]:
    """One converter (or None) per column of ``columns``, by the definition's types."""
    out: list[Convert | None] = []
    for name in columns:
        column = definition.column(name) if definition is not None else None
        out.append(converter(column, options, cleaned))
    return out
