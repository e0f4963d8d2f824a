"""debezium-json's schema-change events: the messages of a DDL (key ``{"databaseName":…}``,
``tableChanges`` with each table's definition), the statement as Debezium's DdlNormalizer
writes it, and the order Debezium names several tables in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.model import Column, DdlChange, Message, TableChange
from sinks.formats.debezium.connect import SOURCE_SCHEMA, VERSION, array, opt, with_schema
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.encoder import dumps, dumps_str


class SchemaChanges:
    """The schema-change events of one debezium-json format."""

    def __init__(self, options: DebeziumOptions, prefix: str, server_id: int | None) -> None:
        self.options = options
        self.prefix = prefix
        self.server_id = server_id

    def key(self, change: DdlChange) -> bytes:
        """The key of ``change``'s events: the database it names."""
        return self._key(_database_of(change))

    def _key(self, database: str) -> bytes:
        key = {"databaseName": database}
        if self.options.schemas_enable:
            return with_schema(dumps_str(_SCHEMA_CHANGE_KEY_SCHEMA), dumps_str(key))
        return dumps(key)

    def messages(self, change: DdlChange, ns: int, last_row: int) -> list[Message]:
        """The events of ``change``; ``last_row``: the row number of the last rows event
        written before it (see ``source.row`` below)."""
        what = _ddl_object(change)
        if change.kind == "routine" or what not in ("TABLE", "DATABASE", "INDEX"):
            return []  # Debezium writes no schema change for views, triggers and routines
        ansi_quotes = "ANSI_QUOTES" in change.session.get("sql_mode", "")
        ddl = normalize_ddl(change.statement, ansi_quotes)
        if what == "INDEX":
            # Debezium's event of CREATE/DROP INDEX names neither a table nor the statement's
            # database: the session's, an empty table, no table changes
            key = self._key(change.schema)
            return [(key, self._value(change, ns, last_row, ddl, [], change.schema, ""))]
        database = _database_of(change)
        key = self._key(database)
        drops = [c for c in change.table_changes if c.kind == "DROP"]
        if drops and len(drops) == len(change.table_changes):
            # one message per dropped table, the statement rewritten for that table alone
            exists = " IF EXISTS" if re.search(r"\bIF\s+EXISTS\b", change.statement, re.I) else ""
            names = table_names(c for c in drops)
            return [
                (
                    key,
                    self._value(
                        change,
                        ns,
                        last_row,
                        f"DROP TABLE{exists} {_quoted(drop.schema)}.{_quoted(drop.table)}",
                        [drop],
                        drop.schema,
                        names,
                    ),
                )
                for drop in drops
            ]
        table = None
        if change.kind == "table":
            changed = change.table_changes or tuple(TableChange("ALTER", *t) for t in change.tables)
            table = table_names(changed)
        value = self._value(change, ns, last_row, ddl, list(change.table_changes), database, table)
        return [(key, value)]

    def _value(
        self,
        change: DdlChange,
        ns: int,
        last_row: int,
        ddl: str,
        changes: list[TableChange],
        database: str,
        table: str | None,
    ) -> bytes:
        event = change.event
        ms = int(change.ts * 1000)
        source = {
            "version": VERSION,
            "connector": "mysql",
            "name": self.prefix,
            "ts_ms": ms,
            "snapshot": "false",
            "db": database,
            "sequence": None,
            "ts_us": ms * 1000,
            "ts_ns": ms * 1_000_000,
            "table": table,
            "server_id": event.server_id if event is not None else (self.server_id or 0),
            "gtid": change.gtid,
            "file": change.position.file,
            "pos": event.pos if event is not None else change.position.pos,
            # Debezium leaves the row number of the last rows event it read in its source
            # info: a schema change carries it too (0 after a restart, here and there)
            "row": last_row,
            "thread": None,
            "query": None,
        }
        payload = {
            "source": source,
            "ts_ms": ns // 1_000_000,
            "databaseName": database,
            "schemaName": None,
            "ddl": ddl,
            "tableChanges": [self._table_change(c) for c in changes],
        }
        if self.options.schemas_enable:
            return with_schema(dumps_str(_SCHEMA_CHANGE_VALUE_SCHEMA), dumps_str(payload))
        return dumps(payload)

    def _table_change(self, change: TableChange) -> dict[str, Any]:
        comments = self.options.include_schema_comments
        table = change.definition
        body = None
        if table is not None:
            body = {
                "defaultCharsetName": table.charset,
                "primaryKeyColumnNames": list(table.primary_key),
                "columns": [_column_json(c, comments) for c in table.columns],
                "comment": table.comment if comments else None,
            }
        return {
            "type": change.kind,
            "id": f"{_double_quoted(change.schema)}.{_double_quoted(change.table)}",
            "table": body,
        }


_EXECUTABLE = re.compile(r"\A\s*/\*!\d*\s(.*)\*/\s*\Z", re.DOTALL)
_LITERALS = re.compile(
    r"(--[^\n]*|#[^\n]*|/\*(?!!).*?\*/)|('(?:''|[^'\\]|\\.)*')"
    r'|"((?:[^"\\]|\\.|"")*)"|(`(?:``|[^`])*`)',
    re.DOTALL,
)
_WINDOW_WORDS = (
    "CUME_DIST|DENSE_RANK|FIRST_VALUE|JSON_TABLE|LAG|LAST_VALUE|LEAD|NTH_VALUE|NTILE"
    "|PERCENT_RANK|RANK|ROW_NUMBER"
)
_KEYWORD_FIXES = (
    (
        re.compile(
            r"\b(CREATE\s+TABLE|ALTER\s+TABLE|DROP\s+TABLE|FROM|JOIN|LEFT\s+JOIN|RIGHT\s+JOIN"
            rf"|INNER\s+JOIN|OUTER\s+JOIN|INTO)\s+({_WINDOW_WORDS})\b",
            re.I,
        ),
        r"\1 `\2`",
    ),
    (
        re.compile(
            rf"\b({_WINDOW_WORDS})\s+((?:VAR)?CHAR|INT|BIGINT|DECIMAL|NUMERIC|FLOAT|DOUBLE|JSON"
            r"|TEXT|BLOB|DATE|DATETIME|TIMESTAMP|TIME|YEAR|ENUM|SET|BINARY|VARBINARY|BIT|BOOL"
            r"|BOOLEAN)\b",
            re.I,
        ),
        r"`\1` \2",
    ),
    (re.compile(rf"\b({_WINDOW_WORDS})\s*:", re.I), r"`\1`:"),
)
_WINDOW_WORD = re.compile(rf"\b({_WINDOW_WORDS})\b")


def normalize_ddl(statement: str, ansi_quotes: bool = False) -> str:
    """The statement as Debezium's MySQL connector writes it in ``ddl``: a statement that
    is one executable comment (``/*!40000 ALTER TABLE t DISABLE KEYS */``) unwrapped,
    double-quoted strings single-quoted, window-function names used as identifiers
    backquoted (its DdlNormalizer)."""
    match = _EXECUTABLE.match(statement)
    if match:
        statement = match.group(1).strip()
    out = []
    last = 0
    for literal in _LITERALS.finditer(statement):
        out.append(_backquote_keywords(statement[last : literal.start()]))
        if literal.group(3) is not None and not ansi_quotes:
            out.append("'" + literal.group(3).replace("'", "''") + "'")
        else:
            out.append(literal.group(0))
        last = literal.end()
    out.append(_backquote_keywords(statement[last:]))
    return "".join(out)


def _backquote_keywords(text: str) -> str:
    if not _WINDOW_WORD.search(text):
        return text
    for pattern, replacement in _KEYWORD_FIXES:
        text = pattern.sub(replacement, text)
    return text


def _column_json(column: Column, comments: bool) -> dict[str, Any]:
    return {
        "name": column.name,
        "jdbcType": column.jdbc_type,
        "nativeType": None,
        "typeName": column.type_name,
        "typeExpression": column.type_name,
        "charsetName": column.charset,
        "length": column.length,
        "scale": column.scale,
        "position": column.position,
        "optional": column.optional,
        "autoIncremented": column.auto_increment,
        "generated": column.generated,
        "comment": column.comment if comments else None,
        "defaultValueExpression": column.default,
        "enumValues": list(column.enum_values) if column.enum_values else None,
    }


def _java_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as an unsigned 32-bit number."""
    value = 0
    data = text.encode("utf-16-be")
    for k in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[k : k + 2], "big")) & 0xFFFFFFFF
    return value


def table_names(changes: Iterable[TableChange]) -> str:
    """``source.table`` of a schema change: the tables it changed, joined by commas in the
    order Debezium's HashSet of their ids gives (``DROP TABLE t1,t2,t3,t4`` -> t4,t3,t2,t1)."""
    names: dict[str, tuple[str, str]] = {}
    for change in changes:
        names.setdefault(f"{change.schema}.{change.table}", (change.schema, change.table))
    capacity = 16
    while len(names) > capacity * 3 // 4:
        capacity *= 2
    spread = {key: (h ^ (h >> 16)) & (capacity - 1) for key in names for h in [_java_hash(key)]}
    ordered = sorted(enumerate(names), key=lambda item: (spread[item[1]], item[0]))
    return ",".join(names[key][1] for _, key in ordered)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _double_quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _database_of(change: DdlChange) -> str:
    """The database a statement names (``db.t``), else the session's."""
    for schema, _ in change.tables:
        if schema:
            return schema
    return change.schema


def _ddl_object(change: DdlChange) -> str:
    """What ``change`` works on (as classified: ``pipeline.model.DdlChange``)."""
    return "DATABASE" if change.kind == "database" else change.object


_SCHEMA_CHANGE_KEY_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [opt("string", "databaseName", False)],
    "optional": False,
    "name": "io.debezium.connector.mysql.SchemaChangeKey",
    "version": 1,
}


_COLUMN_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        opt("string", "name", False),
        opt("int32", "jdbcType", False),
        opt("int32", "nativeType"),
        opt("string", "typeName", False),
        opt("string", "typeExpression"),
        opt("string", "charsetName"),
        opt("int32", "length"),
        opt("int32", "scale"),
        opt("int32", "position", False),
        opt("boolean", "optional"),
        opt("boolean", "autoIncremented"),
        opt("boolean", "generated"),
        opt("string", "comment"),
        opt("string", "defaultValueExpression"),
        array("string", "enumValues"),
    ],
    "optional": False,
    "name": "io.debezium.connector.schema.Column",
    "version": 1,
}
_SCHEMA_CHANGE_VALUE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        SOURCE_SCHEMA,
        opt("int64", "ts_ms", False),
        opt("string", "databaseName"),
        opt("string", "schemaName"),
        opt("string", "ddl"),
        {
            "type": "array",
            "items": {
                "type": "struct",
                "fields": [
                    opt("string", "type", False),
                    opt("string", "id", False),
                    {
                        "type": "struct",
                        "fields": [
                            opt("string", "defaultCharsetName"),
                            array("string", "primaryKeyColumnNames"),
                            {
                                "type": "array",
                                "items": _COLUMN_SCHEMA,
                                "optional": False,
                                "field": "columns",
                            },
                            opt("string", "comment"),
                        ],
                        "optional": True,
                        "name": "io.debezium.connector.schema.Table",
                        "version": 1,
                        "field": "table",
                    },
                ],
                "optional": False,
                "name": "io.debezium.connector.schema.Change",
                "version": 1,
            },
            "optional": False,
            "field": "tableChanges",
        },
    ],
    "optional": False,
    "name": "io.debezium.connector.mysql.SchemaChangeValue",
    "version": 1,
}
