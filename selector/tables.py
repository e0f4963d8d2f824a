"""Table metadata the selector needs: include/exclude filters, key columns, row-image plans,
and the table's definition that travels with its row changes.

A table's metadata comes from its binlog table map (with
``binlog_row_metadata=FULL``: column names, signedness, charsets, key) and,
where the binlog says too little, from the source's ``information_schema``:
MariaDB's JSON columns (LONGTEXT with a ``json_valid`` check), and the key and
signedness when the metadata is MINIMAL. Its definition (``pipeline.model.TableSchema``)
comes from the schema history (``selector.schemas``), else from the table map. It is
cached per table id and forgotten on every DDL, rotation and reconnect, since ids and
columns change then.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from pymysqlreplication import row_event as lib_row_event
from pymysqlreplication.constants import CHARSET as LIB_CHARSETS

from pipeline.errors import FatalError, ResumableError, classify
from pipeline.model import TableSchema

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


class TableCatalog:
    """TableInfo per binlog table id, built from table maps (+ information_schema), with
    definitions from the schema history."""

    def __init__(
        self,
        query: Query,
        mariadb: bool,
        full_metadata: bool,
        history: SchemaHistory | None = None,
    ) -> None:
        self._query = query
        self.mariadb = mariadb
        self.full_metadata = full_metadata
        self.history = history if history is not None else SchemaHistory(query)
        self._tables: dict[int, TableInfo] = {}
        self._collations: dict[int, str | None] = {}  # collation id -> charset (server's)

    def get(self, table_id: int, table: Any, table_map: Any = None) -> TableInfo:
        info = self._tables.get(table_id)
        if info is None:
            info = self._tables[table_id] = self._info(table, table_map)
        return info

    def forget(self, table_id: int | None = None) -> None:
        """Forget one table id, or (None) every table: ids and columns may have changed."""
        if table_id is not None:
            self._tables.pop(table_id, None)
            return
        self._tables.clear()
        lib_row_event._COLUMN_NAME_CACHE.clear()

    def _info(self, table: Any, table_map: Any) -> TableInfo:
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
        unsigned: frozenset[str] = frozenset()
        if not self.full_metadata:
            primary_key, unsigned = self._schema_info(table.schema, table.table)
        if not primary_key:  # a unique NOT NULL key identifies rows as well
            primary_key = unique_key(self._query, table.schema, table.table)
        if self.mariadb and any(vals.may_hold_json_text(c) for c in columns):
            json_text = self._json_columns(table.schema, table.table)
        column_charsets = self._charsets(table_map, columns)
        try:
            plan = vals.plan_for(columns, json_text, unsigned, column_charsets)
        except (NotImplementedError, UnicodeDecodeError) as exc:
            raise FatalError(
                f"cannot read the rows of {table.schema}.{table.table}: {exc}"
            ) from exc
        names = [c.name for c in columns] if self.full_metadata else None
        definition = self.history.definition(table.schema, table.table, names)
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

    def _schema_info(self, schema: str, table: str) -> tuple[tuple[str, ...], frozenset[str]]:
        """Primary key and unsigned columns from information_schema (no FULL metadata)."""
        keys = self._query(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s AND CONSTRAINT_NAME='PRIMARY' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        unsigned = self._query(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s"
            " AND TABLE_NAME=%s AND COLUMN_TYPE LIKE '%%unsigned%%'",
            (schema, table),
        )
        return tuple(str(r[0]) for r in keys), frozenset(str(r[0]) for r in unsigned)

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
