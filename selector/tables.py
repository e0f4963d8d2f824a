"""Table metadata the selector needs: include/exclude filters, key columns, row-image plans,
and the table's definition that travels with its row changes.

A table map always has the binlog types of the columns and their lengths (the row
images' layout); what else it carries depends on the server's ``binlog_row_metadata``:

* ``FULL``: column names, signedness, charsets, ENUM/SET members, the key. The rows are
  read from the table map alone; the definition (``pipeline.model.TableSchema``) comes from
  the schema history (``selector.schemas``), and when the history is the stored one
  (``SchemaHistory.durable``) a table map whose names or types differ from it stops the
  pipeline (:class:`SchemaMismatch`) instead of carrying a wrong definition. MariaDB's JSON
  columns (LONGTEXT with a ``json_valid`` check) come from the history's types, or from
  ``information_schema`` without a stored history.
* ``MINIMAL`` (MySQL 8's default): signedness and charsets, no names. Names, ENUM/SET
  members, JSON columns and the key come from the history's definition as of the rows'
  position; signedness and the binlog types are compared with it.
* ``NO_LOG`` (MariaDB's default), or a server without the variable: nothing but types.
  Everything else comes from the history's definition; the types are compared with it.

A table map whose types do not fit the history's definition (a column count, a binlog
type, a DECIMAL's precision, signedness) raises :class:`SchemaMismatch`, naming the table,
the position and the difference: reading its rows with that definition would give wrong
values. TableInfo is cached per table id and forgotten on every DDL, rotation and
reconnect, since ids and columns change then.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from loguru import logger
from pymysqlreplication import row_event as lib_row_event
from pymysqlreplication.constants import CHARSET as LIB_CHARSETS
from pymysqlreplication.constants import FIELD_TYPE as F

from pipeline.dialect import SPATIAL_TYPES, TEXT_TYPES, string_value, strip_quotes
from pipeline.errors import FatalError, ResumableError, classify
from pipeline.model import Position, TableSchema

from . import charsets
from . import values as vals
from .ddl import from_table_map
from .schemas import SchemaHistory
from .stream import collation_ids

_GLOB_CHARS = re.compile(r"[*?\[]")

Query = Callable[[str, Any], list[tuple[Any, ...]]]


class TableFilter:
    """include/exclude globs on ``schema.table`` (fnmatch, case-sensitive), memoised."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = include
        self.exclude = exclude
        self._memo: dict[tuple[str, str], bool] = {}

    def __call__(self, schema: str, table: str) -> bool:
        key = (schema, table)
        verdict = self._memo.get(key)
        if verdict is None:
            name = f"{schema}.{table}"
            verdict = any(fnmatch.fnmatchcase(name, g) for g in self.include) and not any(
                fnmatch.fnmatchcase(name, g) for g in self.exclude
            )
            self._memo[key] = verdict
        return verdict

    def schema_wanted(self, schema: str) -> bool:
        """Some table of ``schema`` may be included (for DDL whose table is unknown)."""
        if any(
            g.split(".", 1)[1] == "*" and fnmatch.fnmatchcase(schema, g.split(".", 1)[0])
            for g in self.exclude
        ):
            return False
        return any(fnmatch.fnmatchcase(schema, g.split(".", 1)[0]) for g in self.include)

    def wanted(self, tables: tuple[tuple[str, str], ...]) -> bool:
        """Any of ``(schema, table)`` is included; ``(schema, "")`` asks about the schema."""
        return any(
            self(schema, table) if table else self.schema_wanted(schema)
            for schema, table in tables
            if schema
        )

    def exact_schemas(self) -> tuple[list[str] | None, list[str] | None]:
        """(only_schemas, ignored_schemas) where the globs make them exact, else None."""
        only = None
        schemas = [g.split(".", 1)[0] for g in self.include]
        if not any(_GLOB_CHARS.search(s) for s in schemas):
            only = sorted(set(schemas))
        ignored = sorted(
            {
                g.split(".", 1)[0]
                for g in self.exclude
                if g.split(".", 1)[1] == "*" and not _GLOB_CHARS.search(g.split(".", 1)[0])
            }
        )
        return only, ignored or None


def unique_key(query: Query, schema: str, table: str) -> tuple[str, ...]:
    """A table's first unique index whose columns are all NOT NULL (by index name), or ().

    A table without a primary key but with such an index has rows that index
    identifies: ferry uses it as the key (Kafka message keys, the MySQL sink's
    upserts and deletes, snapshot chunks) instead of the whole row.
    """
    # two plain queries, not a join: information_schema joins go through internal temporary
    # tables, and MariaDB 10.11 was seen crashing while dropping one (ha_maria::drop_table)
    rows = query(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
        " WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s AND NON_UNIQUE=0"
        " ORDER BY INDEX_NAME='PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
        (schema, table),
    )
    if not rows:
        return ()
    nullable = {
        str(column)
        for column, null in query(
            "SELECT COLUMN_NAME, IS_NULLABLE FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, table),
        )
        if str(null) == "YES"
    }
    indexes: dict[str, list[str]] = {}
    for index, column in rows:
        indexes.setdefault(str(index), []).append(str(column))
    for columns in indexes.values():
        if not nullable.intersection(columns):
            return tuple(columns)
    return ()


class TableInfo:
    """What the selector needs per table: key columns, how to read its row images, and
    the table's definition (``selector.schemas``) that travels with its row changes."""

    __slots__ = ("definition", "plan", "primary_key")

    def __init__(
        self, primary_key: tuple[str, ...], plan: vals.TablePlan, definition: TableSchema
    ) -> None:
        self.primary_key = primary_key
        self.plan = plan
        self.definition = definition


class SchemaMismatch(FatalError):
    """A table map that does not fit the schema history's definition of its table."""


class TableCatalog:
    """TableInfo per binlog table id, built from table maps (+ information_schema), with
    definitions from the schema history. ``metadata`` is the server's
    ``binlog_row_metadata`` (``FULL``, ``MINIMAL``, ``NO_LOG``, or ``NONE``: no such
    variable)."""

    def __init__(
        self,
        query: Query,
        mariadb: bool,
        metadata: str = "FULL",
        history: SchemaHistory | None = None,
    ) -> None:
        self._query = query
        self.mariadb = mariadb
        self.metadata = metadata
        self.full_metadata = metadata == "FULL"
        self.history = history if history is not None else SchemaHistory(query)
        self._tables: dict[int, TableInfo] = {}
        self._collations: dict[int, str | None] = {}  # collation id -> charset (server's)
        self._warned: set[tuple[str, str]] = set()

    def get(
        self, table_id: int, table: Any, table_map: Any = None, at: Position | None = None
    ) -> TableInfo:
        """The table's TableInfo; ``at`` (the table map's position) is named by a
        SchemaMismatch."""
        info = self._tables.get(table_id)
        if info is None:
            try:
                info = self._tables[table_id] = self._info(table, table_map)
            except SchemaMismatch as exc:
                exc.context(position=at)
                raise
        return info

    def forget(self, table_id: int | None = None) -> None:
        """Forget one table id, or (None) every table: ids and columns may have changed."""
        if table_id is not None:
            self._tables.pop(table_id, None)
            return
        self._tables.clear()
        lib_row_event._COLUMN_NAME_CACHE.clear()

    def _info(self, table: Any, table_map: Any) -> TableInfo:
        if not self.full_metadata:
            return self._info_from_history(table, table_map)
        columns = table.columns
        pk = table.primary_key  # in column order; the metadata has the key's own order
        primary_key: tuple[str, ...] = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
        meta = getattr(table_map, "optional_metadata", None)
        if meta is not None:
            order = list(meta.simple_primary_key_list or ()) or list(
                (meta.primary_keys_with_prefix or {}).keys()
            )
            if order and all(i < len(columns) for i in order):
                primary_key = tuple(columns[i].name for i in order)
        json_text: frozenset[str] = frozenset()
        if not primary_key:  # a unique NOT NULL key identifies rows as well
            primary_key = unique_key(self._query, table.schema, table.table)
        names = [c.name for c in columns]
        known = self.history.get(table.schema, table.table)
        durable = self.history.durable and known is not None
        if durable:
            assert known is not None
            signed = [bool(c.unsigned) for c in columns]
            differences = _differences(known, columns, names, signed)
            if differences:
                raise _mismatch(table.schema, table.table, known, differences)
            json_text = frozenset(c.name for c in known.columns if c.type_name == "JSON")
        elif self.mariadb and any(vals.may_hold_json_text(c) for c in columns):
            json_text = self._json_columns(table.schema, table.table)
        column_charsets = self._charsets(table_map, columns)
        plan = self._plan(table, columns, json_text, frozenset(), column_charsets)
        definition = known if durable else self.history.definition(table.schema, table.table, names)
        if definition is None:
            definition = from_table_map(
                table.schema,
                table.table,
                columns,
                primary_key,
                json_text,
                _nullable(getattr(table_map, "null_bitmask", None)),
                plan,
            )
        return TableInfo(primary_key, plan, definition)

    def _info_from_history(self, table: Any, table_map: Any) -> TableInfo:
        """A table map without names (MINIMAL, NO_LOG): read with the history's definition."""
        schema, name, columns = table.schema, table.table, table.columns
        definition = self.history.get(schema, name)
        if definition is None:
            definition = self.history.definition(schema, name)  # the server's, as it is now
            if definition is None:
                raise FatalError(
                    f"the schema history has no definition of {schema}.{name}, and the source"
                    f" has no such table now: its rows cannot be read without"
                    f" binlog_row_metadata=FULL"
                )
            if self.history.durable and (schema, name) not in self._warned:
                self._warned.add((schema, name))
                logger.warning(
                    "{}.{} is not in the schema history: its rows are read with the definition"
                    " the source has now",
                    schema,
                    name,
                )
        minimal = self.metadata == "MINIMAL"
        meta = getattr(table_map, "optional_metadata", None)
        signed = (
            [bool(u) for u in getattr(meta, "unsigned_column_list", None) or ()] if minimal else []
        )
        differences = _differences(definition, columns, None, signed or None)
        if differences:
            raise _mismatch(schema, name, definition, differences)
        unsigned = set()
        for k, (column, defined) in enumerate(zip(columns, definition.columns, strict=True)):
            column.name = defined.name
            if signed:
                column.unsigned = bool(signed[k])
            elif _unsigned(defined):
                column.unsigned = True
            if column.unsigned:
                unsigned.add(defined.name)
            if column.type in (F.ENUM, F.SET):
                members = [_member(m) for m in defined.enum_values]
                if column.type == F.ENUM:
                    column.enum_values = ["", *members]
                else:
                    column.set_values = members
        json_text = frozenset(c.name for c in definition.columns if c.type_name == "JSON")
        if minimal:
            column_charsets = self._charsets(table_map, columns)
        else:
            column_charsets = [
                self._decode_charset(defined, column)
                for defined, column in zip(definition.columns, columns, strict=True)
            ]
        plan = self._plan(table, columns, json_text, frozenset(unsigned), column_charsets)
        nullable = _nullable(getattr(table_map, "null_bitmask", None))
        primary_key = definition.primary_key
        index = {c.name: k for k, c in enumerate(definition.columns)}
        if not primary_key or any(k not in index or nullable(index[k]) for k in primary_key):
            primary_key = ()  # a unique key on nullable columns identifies nothing
        return TableInfo(primary_key, plan, definition)

    def _plan(
        self,
        table: Any,
        columns: list[Any],
        json_text: frozenset[str],
        unsigned: frozenset[str],
        column_charsets: list[str | None],
    ) -> vals.TablePlan:
        try:
            return vals.plan_for(columns, json_text, unsigned, column_charsets)
        except (NotImplementedError, UnicodeDecodeError) as exc:
            raise FatalError(
                f"cannot read the rows of {table.schema}.{table.table}: {exc}"
            ) from exc

    def _decode_charset(self, defined: Any, column: Any) -> str | None:
        """The charset a column's text is stored in, by the history's definition (NO_LOG)."""
        if column.type not in _TEXT_BINLOG_TYPES:
            return None
        if defined.type_name == "JSON":
            return "utf8mb4"  # MariaDB's JSON: LONGTEXT CHARACTER SET utf8mb4
        charset = defined.charset
        if charset is None:
            if defined.jdbc_type not in TEXT_TYPES and column.type not in (F.ENUM, F.SET):
                return "binary"  # BINARY, VARBINARY, BLOB
            charset = self.history.server_charset()  # a database created without one
        return strip_quotes(charset).lower() if charset else "binary"

    def _charsets(self, table_map: Any, columns: list[Any]) -> list[str | None]:
        """Each column's MySQL charset, from the collation ids of its table map: the
        library names the ids it knows (it reads any other as utf8); the server, the rest
        (MariaDB 10.10+'s ``uca1400`` collations have ids from 2048)."""
        ids = collation_ids(table_map) if table_map is not None else [None] * len(columns)
        if len(ids) != len(columns):
            ids = [None] * len(columns)
        dbms = getattr(table_map, "dbms", None) or ("mariadb" if self.mariadb else "mysql")
        found: list[str | None] = []
        for column, collation in zip(columns, ids, strict=True):
            if collation is None:  # no metadata: what the library says of the column
                found.append(charsets.charset_of_column(column))
                continue
            known = LIB_CHARSETS.charset_by_id(collation, dbms)
            if known is not None:
                found.append(str(known.name))
                continue
            if collation not in self._collations:
                self._collations[collation] = self._server_charset(collation)
            charset = self._collations[collation]
            if charset is None:
                raise FatalError(
                    f"column {column.name!r}: collation id {collation} is unknown to the"
                    " source server's information_schema"
                )
            found.append(charset)
        return found

    def _server_charset(self, collation: int) -> str | None:
        """The charset of a collation id, as the source's information_schema says."""
        for sql in (
            "SELECT CHARACTER_SET_NAME FROM"  # MariaDB 10.10+: every collation, with its id
            " information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID=%s",
            "SELECT CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID=%s",
        ):
            try:
                rows = self._query(sql, (collation,))
            except Exception as exc:  # MySQL has no ID in the first table
                if isinstance(classify(exc), ResumableError):
                    raise
                continue
            if rows and rows[0][0]:
                return str(rows[0][0])
        return None

    def _json_columns(self, schema: str, table: str) -> frozenset[str]:
        """MariaDB JSON columns: LONGTEXT with a ``json_valid(col)`` check constraint."""
        rows = self._query(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s",
            (schema, table),
        )
        return vals.json_columns(str(clause) for (clause,) in rows)


def _nullable(bitmask: bytes | None) -> Callable[[int], bool]:
    """Whether column ``i`` may be NULL, from a table map's null bitmap."""
    if not bitmask:
        return lambda _: True
    return lambda i: bool(bitmask[i >> 3] >> (i & 7) & 1) if i >> 3 < len(bitmask) else True


# -- comparing a table map with the history's definition -------------------------------------

_TEXT_BINLOG_TYPES = frozenset({F.VARCHAR, F.VAR_STRING, F.STRING, F.BLOB, F.ENUM, F.SET})
_INTEGERS = {F.TINY: "TINYINT", F.SHORT: "SMALLINT", F.INT24: "MEDIUMINT", F.LONG: "INT"}
_INTEGERS[F.LONGLONG] = "BIGINT"
# the binlog types a column of each spelled type is written with
_BINLOG_TYPES: dict[str, frozenset[int]] = {
    **dict.fromkeys(("TINYINT", "INT1", "BOOL", "BOOLEAN"), frozenset({F.TINY})),
    **dict.fromkeys(("SMALLINT", "INT2"), frozenset({F.SHORT})),
    **dict.fromkeys(("MEDIUMINT", "INT3", "MIDDLEINT"), frozenset({F.INT24})),
    **dict.fromkeys(("INT", "INTEGER", "INT4"), frozenset({F.LONG})),
    **dict.fromkeys(("BIGINT", "INT8", "SERIAL"), frozenset({F.LONGLONG})),
    **dict.fromkeys(
        ("FLOAT", "FLOAT4", "DOUBLE", "FLOAT8", "REAL"), frozenset({F.FLOAT, F.DOUBLE})
    ),
    **dict.fromkeys(("DECIMAL", "DEC", "FIXED", "NUMERIC"), frozenset({F.NEWDECIMAL})),
    "DATE": frozenset({F.DATE, F.NEWDATE}),
    "DATETIME": frozenset({F.DATETIME2, F.DATETIME}),
    "TIMESTAMP": frozenset({F.TIMESTAMP2, F.TIMESTAMP}),
    "TIME": frozenset({F.TIME2, F.TIME}),
    "YEAR": frozenset({F.YEAR}),
    "BIT": frozenset({F.BIT}),
    **dict.fromkeys(("CHAR", "CHARACTER", "NCHAR", "BINARY"), frozenset({F.STRING})),
    **dict.fromkeys(("VARCHAR", "NVARCHAR", "VARBINARY"), frozenset({F.VARCHAR, F.VAR_STRING})),
    **dict.fromkeys(
        (
            "TINYTEXT",
            "TEXT",
            "MEDIUMTEXT",
            "LONGTEXT",
            "LONG",
            "TINYBLOB",
            "BLOB",
            "MEDIUMBLOB",
            "LONGBLOB",
        ),
        frozenset({F.BLOB}),
    ),
    "JSON": frozenset({F.BLOB, F.JSON}),
    "ENUM": frozenset({F.ENUM}),
    "SET": frozenset({F.SET}),
    **dict.fromkeys(SPATIAL_TYPES, frozenset({F.GEOMETRY})),
}
_TYPE_NAMES = {
    value: name
    for name, value in vars(F).items()
    if name.isupper() and isinstance(value, int) and name != "INTERVAL"
}


def _base_type(type_name: str) -> str:
    """The word of a spelled type that decides its binlog type (``CHAR VARYING``: VARCHAR)."""
    words = type_name.split()
    if not words:
        return ""
    if "VARYING" in words or (len(words) > 1 and words[1] == "VARCHAR"):
        return "VARCHAR"
    if words[0] == "NATIONAL" and len(words) > 1:
        return "NCHAR" if words[1] in ("CHAR", "CHARACTER") else words[1]
    if words[0] == "LONG":
        return "LONG"
    return words[0]


def _unsigned(column: Any) -> bool:
    """The history's column is an unsigned number (ZEROFILL makes one)."""
    words = column.type_name.split()
    return "UNSIGNED" in words or "ZEROFILL" in words


def _binlog_type(column: Any) -> str:
    name = _TYPE_NAMES.get(column.type, str(column.type))
    if column.type == F.NEWDECIMAL:
        return f"DECIMAL({column.precision},{column.decimals})"
    return name


def _differences(
    definition: TableSchema,
    columns: list[Any],
    names: list[str] | None,
    signed: list[bool] | None,
) -> list[str]:
    """How a table map (its library columns; ``names`` with FULL metadata, ``signed`` with
    MINIMAL or FULL) differs from the history's definition; empty when it fits."""
    defined = definition.columns
    if len(defined) != len(columns):
        listed = ", ".join(c.name for c in defined)
        return [
            f"the binlog's table map has {len(columns)} columns, the history {len(defined)}"
            f" ({listed})"
        ]
    found = []
    for k, (column, mapped) in enumerate(zip(defined, columns, strict=True)):
        where = f"column {k + 1} ({column.name})"
        if names is not None and names[k] != column.name:
            found.append(
                f"column {k + 1} is {names[k]!r} in the binlog, {column.name!r} in the history"
            )
            continue
        expected = _BINLOG_TYPES.get(_base_type(column.type_name))
        if expected is None:  # a type this check does not know (UUID, INET6, ...)
            continue
        said = column.column_type or column.type_name
        decimal = (mapped.precision, mapped.decimals) if mapped.type == F.NEWDECIMAL else None
        if mapped.type not in expected or (
            decimal is not None and decimal != (column.length, column.scale or 0)
        ):
            found.append(f"{where} is {said} in the history, {_binlog_type(mapped)} in the binlog")
        elif signed is not None and mapped.type in _INTEGERS and _unsigned(column) != signed[k]:
            binlog = "UNSIGNED" if signed[k] else "signed"
            found.append(f"{where} is {said} in the history, {binlog} in the binlog")
    return found


def _mismatch(
    schema: str, table: str, definition: TableSchema, differences: list[str]
) -> SchemaMismatch:
    shown = "; ".join(differences[:5])
    more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
    return SchemaMismatch(
        f"the binlog's table map of {schema}.{table} does not fit the schema history's"
        f" definition of it: {shown}{more}. Reading its rows with that definition would give"
        f" wrong values, so the pipeline stops. If the history is wrong (e.g. a DDL it could"
        f" not follow), `ferry schema show -c FILE {schema}.{table}` shows it and"
        f" `ferry schema rebuild -c FILE` replaces it with the source's current definitions"
    )


def _member(text: str) -> str:
    """An ENUM or SET member as the DDL wrote it (``'it''s'``) as the server stores it: the
    quotes and escapes undone, trailing spaces dropped (MySQL drops them)."""
    return string_value(text).rstrip(" ")
