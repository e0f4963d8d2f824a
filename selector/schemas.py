"""The schema history: every table's definition as the binlog's DDL made them, like Debezium's.

Consumers of ``debezium-json`` need what the DDL said of a table (``selector.ddl`` reads
it), and without ``binlog_row_metadata=FULL`` the rows themselves can only be read with
the table's definition. So ferry keeps, like Debezium does, a history of every table's
definition, moved forward by each DDL statement read from the binlog
(:meth:`SchemaHistory.apply`) and read by every row change of the table
(:meth:`SchemaHistory.definition`).

How a definition is known, in order:

1. **The DDL in the binlog**, read by :mod:`selector.ddl`.
2. **The server, for a table the history has not seen** (a history not stored, a table
   brought in from a database that is not captured, a statement the reader could not
   follow): ``SHOW CREATE TABLE``, read by the same parser, as Debezium's schema snapshot
   does. That is the table as it is *now*: exact while the binlog being read is recent,
   wrong for rows older than a later ALTER (limit 1). A table created by a statement
   ferry cannot read (``CREATE TABLE … SELECT``) is seeded the same way.
3. **The table map**, without a stored history, when neither agrees with the row events'
   columns (with ``binlog_row_metadata=FULL`` only): names and binlog types
   (``selector.values`` still decodes every value exactly; only type spellings, defaults
   and comments are lost).

The history is durable (README, "The schema history"): a new pipeline starts it with
:meth:`SchemaHistory.capture` (every table of the captured databases), every DDL that
changes a captured database gives a ``pipeline.model.SchemaRecord``
(:meth:`SchemaHistory.record`) that the node stores with the DDL's position, and a node
that starts loads it back (:meth:`SchemaHistory.load`); it is then ``durable``: the truth,
which a table map that does not fit stops at (``selector.tables``). Without a stored
history (a store that keeps none), step 2 fills it as tables are met.

Limits: (1) a statement the reader cannot follow takes the server's definition when it is
read (step 2). (2) Views, triggers and routines have no definition here. (3) The database
charset of a database created before the start position comes from ``information_schema``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.dialect import Jdbc
from pipeline.dialect.statements import Statement, classify
from pipeline.model import Position, SchemaRecord, SchemaState, TableChange, TableSchema

from .ddl import (
    DdlUnreadable,
    alter_table,
    charset_of_collation,
    database_charset,
    dropped_index,
    from_table_map,
    parse_create,
    unique_index,
)
from .values import json_columns

Query = Callable[[str, Any], list[tuple[Any, ...]]]

__all__ = ["SchemaHistory", "charset_of_collation", "from_table_map"]


# -- the history -----------------------------------------------------------------------------


@dataclass
class _Undo:
    """How to take back one change of the history (for a stream reopened before it): a
    table's definition, or (``database``) a database's charset (``known``: it had one)."""

    at: tuple[str, int, int, int]
    key: tuple[str, str]
    previous: TableSchema | None
    database: bool = False
    charset: str | None = None
    known: bool = False


class SchemaHistory:
    """Every known table's definition, moved forward by the DDL read from the binlog.

    ``query`` runs a statement on the source (``SHOW CREATE TABLE`` and
    ``information_schema`` for the tables and databases it has not seen yet).
    """

    def __init__(self, query: Query | None = None) -> None:
        self._query = query
        self._tables: dict[tuple[str, str], TableSchema] = {}
        self._charsets: dict[str, str | None] = {}
        self._server_charset: str | None = None
        self._undo: list[_Undo] = []
        # (table, row image columns) neither the history nor the server fits, until a DDL
        self._misses: set[tuple[tuple[str, str], tuple[str, ...]]] = set()
        # True once the history started from a stored one (or its first capture): it is
        # then the truth, stored record by record (SchemaRecord), not guessed from the server
        self.durable = False
        self._touched: dict[tuple[str, str], None] = {}  # tables the last statement changed
        self._touched_databases: dict[str, bool] = {}  # ... databases (True: dropped)

    # -- the durable history -----------------------------------------------------------

    def load(self, state: SchemaState) -> None:
        """Start from a stored history: every definition at ``state.position``."""
        self._tables = dict(state.tables)
        self._charsets = dict(state.charsets)
        self._undo.clear()
        self._misses.clear()
        self.durable = True

    def capture(self, captured: Callable[[str], bool], at: Position) -> SchemaState:
        """Every table of the captured databases (``captured(database)``), and their
        charsets, as the source has them now: a new pipeline's history at ``at``."""
        if self._query is None:
            raise ValueError("capture needs a connection to the source")
        state = SchemaState(Position(at.file, at.pos, at.gtid_set))
        for name, charset in self._query(
            "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA", None
        ):
            if captured(str(name)):
                state.charsets[str(name)] = str(charset) if charset else None
        self._charsets.update(state.charsets)
        for schema, table in self._query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
            " WHERE TABLE_TYPE='BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
            None,
        ):
            if str(schema) in state.charsets:
                definition = self._fetch(str(schema), str(table))
                if definition is not None:
                    state.tables[(str(schema), str(table))] = definition
        self.load(state)
        return state

    def record(
        self,
        sql: str,
        schema: str,
        statement: Statement,
        at: Position,
        captured: Callable[[str], bool],
    ) -> SchemaRecord | None:
        """What the statement :meth:`apply` just applied did to the captured databases, as
        a record of the durable history (None: nothing of theirs changed)."""
        tables = tuple(
            (s, t, self._tables.get((s, t))) for s, t in self._touched if s and captured(s)
        )
        databases = tuple(
            (d, self._charsets.get(d), dropped)
            for d, dropped in self._touched_databases.items()
            if captured(d)
        )
        if not tables and not databases:
            return None
        return SchemaRecord(
            position=Position(at.file, at.pos, at.gtid_set, 0, at.ts),
            schema=schema,
            statement=sql,
            kind=statement.kind,
            verb=statement.verb,
            object=statement.object,
            tables=tables,
            databases=databases,
        )

    # -- reading ---------------------------------------------------------------------

    def get(self, schema: str, table: str) -> TableSchema | None:
        """The table's definition as the history has it (None: unknown)."""
        return self._tables.get((schema, table))

    def definition(
        self, schema: str, table: str, names: list[str] | None = None
    ) -> TableSchema | None:
        """The definition to give a row change whose row images have the columns ``names``
        (None: not known, e.g. without FULL row metadata): the history's, else the
        server's; None when neither has these columns (the caller falls back on the table
        map)."""
        key = (schema, table)
        known = self._tables.get(key)
        if known is not None and _fits(known, names):
            return known
        miss = (key, tuple(names or ()))
        if miss in self._misses:  # asked before since the last DDL of this table
            return None
        fetched = self._fetch(schema, table)
        if fetched is not None and _fits(fetched, names):
            self._tables[key] = fetched
            return fetched
        if known is None and fetched is not None:
            self._tables[key] = fetched  # later DDL builds on what the server has
        if len(self._misses) > 10_000:
            self._misses.clear()
        self._misses.add(miss)
        return None

    # -- moving forward ----------------------------------------------------------------

    def apply(
        self, sql: str, default_schema: str, at: Position | None = None
    ) -> tuple[TableChange, ...]:
        """Apply one DDL statement; the table changes it made, as Debezium reports them."""
        self._touched = {}
        self._touched_databases = {}
        statement = classify(sql, default_schema)
        if statement.kind == "database":
            self._database(sql, statement, at.sort_key() if at is not None else None)
            return ()
        if statement.kind != "table" or statement.object not in ("TABLE", "INDEX"):
            return ()
        mark = at.sort_key() if at is not None else None
        try:
            return self._table_statement(sql, statement, default_schema, mark)
        except (DdlUnreadable, IndexError, ValueError):
            return self._reseed(statement, mark)

    def rewind(self, at: Position) -> None:
        """Take back every change made at or after ``at`` (the stream reopens there)."""
        mark = at.sort_key()
        while self._undo and self._undo[-1].at >= mark:
            undo = self._undo.pop()
            if undo.database:
                if undo.known:
                    self._charsets[undo.key[0]] = undo.charset
                else:
                    self._charsets.pop(undo.key[0], None)
            elif undo.previous is None:
                self._tables.pop(undo.key, None)
            else:
                self._tables[undo.key] = undo.previous

    def _set(self, key: tuple[str, str], table: TableSchema | None, mark: Any) -> None:
        self._touched[key] = None
        self._misses = {m for m in self._misses if m[0] != key}
        if mark is not None:
            self._undo.append(_Undo(mark, key, self._tables.get(key)))
            if len(self._undo) > 10_000:
                del self._undo[:1000]
        if table is None:
            self._tables.pop(key, None)
        else:
            self._tables[key] = table

    def _table_statement(
        self, sql: str, statement: Statement, default_schema: str, mark: Any
    ) -> tuple[TableChange, ...]:
        verb = statement.verb
        if statement.object == "INDEX":
            return self._index(sql, statement, mark)
        if verb == "CREATE":
            name, body = parse_create(sql, default_schema, self.database_charset)
            if isinstance(body, tuple):
                original = self._tables.get(body) or self._seed(*body)
                if original is None:
                    raise DdlUnreadable("CREATE TABLE LIKE an unknown table")
                table = replace(original, schema=name[0], table=name[1])
            else:
                table = body.build()
            self._set(name, table, mark)
            return (TableChange("CREATE", *name, table),)
        if verb == "ALTER":
            return self._alter(sql, statement, default_schema, mark)
        if verb == "DROP":
            for key in statement.tables:
                self._set(key, None, mark)
            return tuple(TableChange("DROP", *key) for key in statement.tables)
        if verb == "RENAME":
            changes = []
            names = statement.tables
            for old, new in zip(names[::2], names[1::2], strict=False):
                known = self._tables.get(old) or self._seed(*old)
                self._set(old, None, mark)
                renamed = replace(known, schema=new[0], table=new[1]) if known else None
                self._set(new, renamed, mark)
                changes.append(TableChange("ALTER", *new, renamed))
            return tuple(changes)
        return ()  # TRUNCATE

    def _alter(
        self, sql: str, statement: Statement, default_schema: str, mark: Any
    ) -> tuple[TableChange, ...]:
        key = statement.tables[0]
        table = self._tables.get(key)
        if table is None:  # never seen: the server's definition is already the result
            table = self._seed(*key)
            return (TableChange("ALTER", *key, table),) if table is not None else ()
        result, renamed_to = alter_table(table, sql, default_schema)
        if renamed_to is not None:
            self._set(key, None, mark)
            key = renamed_to
        self._set(key, result, mark)
        return (TableChange("ALTER", *key, result),)

    def _index(self, sql: str, statement: Statement, mark: Any) -> tuple[TableChange, ...]:
        if not statement.tables:
            return ()
        key = statement.tables[0]
        table = self._tables.get(key) or self._seed(*key)
        if table is None:
            return ()
        keyed = (unique_index if statement.verb == "CREATE" else dropped_index)(table, sql)
        if keyed is not None:
            table = keyed
            self._set(key, table, mark)
        return (TableChange("ALTER", *key, table),)

    def _reseed(self, statement: Statement, mark: Any) -> tuple[TableChange, ...]:
        """A statement this reader cannot follow: the server's definitions of its tables."""
        changes = []
        for key in statement.tables:
            table = self._seed(*key)
            self._set(key, table, mark)
            kind = "CREATE" if statement.verb == "CREATE" else "ALTER"
            if table is not None:
                changes.append(TableChange(kind, *key, table))  # type: ignore[arg-type]
        return tuple(changes)

    def _database(self, sql: str, statement: Statement, mark: Any) -> None:
        for schema, _ in statement.tables:
            if statement.verb == "DROP":
                self._set_charset(schema, None, mark, dropped=True)
                for key in [k for k in self._tables if k[0] == schema]:
                    self._set(key, None, mark)
                continue
            charset = database_charset(sql)
            if charset is not None or statement.verb == "CREATE":
                # a database created without a charset has none in Debezium's history either
                self._set_charset(schema, charset, mark)

    def _set_charset(
        self, schema: str, charset: str | None, mark: Any, dropped: bool = False
    ) -> None:
        self._touched_databases[schema] = dropped
        if mark is not None:
            known = schema in self._charsets
            previous = self._charsets.get(schema)
            self._undo.append(_Undo(mark, (schema, ""), None, True, previous, known))
        if dropped:
            self._charsets.pop(schema, None)
        else:
            self._charsets[schema] = charset

    # -- the server ------------------------------------------------------------------

    def database_charset(self, schema: str) -> str | None:
        if schema not in self._charsets:
            charset = None
            if self._query is not None:
                rows = self._query(
                    "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA"
                    " WHERE SCHEMA_NAME=%s",
                    (schema,),
                )
                charset = str(rows[0][0]) if rows else None
            self._charsets[schema] = charset or self.server_charset()
        return self._charsets[schema]

    def server_charset(self) -> str | None:
        """The source's ``character_set_server`` (a database created without a charset)."""
        if self._server_charset is None and self._query is not None:
            rows = self._query("SELECT @@character_set_server", None)
            self._server_charset = str(rows[0][0]) if rows else None
        return self._server_charset

    def _seed(self, schema: str, table: str) -> TableSchema | None:
        """The server's definition of the table, kept as the history's (None: no table)."""
        fetched = self._fetch(schema, table)
        if fetched is not None:
            self._tables[(schema, table)] = fetched
            self._touched[(schema, table)] = None
        return fetched

    def _fetch(self, schema: str, table: str) -> TableSchema | None:
        """The table's definition from ``SHOW CREATE TABLE`` (None: no such table)."""
        if self._query is None or not schema or not table:
            return None
        quoted = "`" + schema.replace("`", "``") + "`.`" + table.replace("`", "``") + "`"
        try:
            rows = self._query(f"SHOW CREATE TABLE {quoted}", None)
        except Exception:  # no such table (dropped since), or a view
            return None
        if not rows or len(rows[0]) < 2:
            return None
        try:
            _, body = parse_create(str(rows[0][1]), schema, self.database_charset)
        except (DdlUnreadable, IndexError, ValueError):
            return None
        if isinstance(body, tuple):
            return None
        body.schema, body.table = schema, table
        return _json_columns(body.build(), self._query)


def _json_columns(table: TableSchema, query: Query) -> TableSchema:
    """MariaDB shows a JSON column as ``longtext … CHECK (json_valid(col))``: JSON again."""
    if not any(c.type_name == "LONGTEXT" for c in table.columns):
        return table
    rows = query(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
        " WHERE CONSTRAINT_SCHEMA=%s AND TABLE_NAME=%s",
        (table.schema, table.table),
    )
    found = json_columns(str(clause) for (clause,) in rows)
    if not found:
        return table
    columns = tuple(
        replace(c, type_name="JSON", jdbc_type=int(Jdbc.OTHER), charset=None)
        if c.name in found and c.type_name == "LONGTEXT"
        else c
        for c in table.columns
    )
    return replace(table, columns=columns)


def _fits(table: TableSchema, names: list[str] | None) -> bool:
    if names is None:
        return True
    return len(names) == len(table.columns) and all(
        c.name == n for c, n in zip(table.columns, names, strict=True)
    )
