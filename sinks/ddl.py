"""DDL for another server: database and table references rewritten for mapped names.

A sink that applies DDL on a target with ``schema_map`` / ``table_map`` must
change every reference to a mapped schema or table — the table created,
``LIKE`` sources, foreign-key ``REFERENCES``, the tables a view reads — and
nothing else: column names, string literals and comments stay byte for byte.
The statement is therefore never regenerated; only the spans the selector
found (``DdlChange.names``, see ``pipeline.dialect.statements.references``) are
replaced. Unqualified names resolve against the session's default database,
which the sink selects (mapped) before running the statement; an unqualified
table that maps into another schema is qualified in place.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.dialect import ident
from pipeline.model import DdlChange

Target = Callable[[str, str], tuple[str, str]]


def rewrite(ddl: DdlChange, target: Target, database: Callable[[str], str]) -> str:
    """``ddl.statement`` with every mapped database and table reference replaced.

    ``target(schema, table)`` gives a table's target name, ``database(schema)`` a
    database's; with nothing mapped the statement comes back unchanged.
    """
    edits: list[tuple[int, int, str]] = []
    home = database(ddl.schema) if ddl.schema else ""
    for ref in ddl.names:
        if ref.database:
            if database(ref.name) != ref.name:
                edits.append((*ref.span, ident(database(ref.name))))
            continue
        schema = ref.schema or ddl.schema
        if not schema:
            continue
        to_schema, to_table = target(schema, ref.name)
        if ref.schema_span is not None:
            if to_schema != schema:
                edits.append((*ref.schema_span, ident(to_schema)))
            if to_table != ref.name:
                edits.append((*ref.span, ident(to_table)))
        elif to_schema != home:
            edits.append((*ref.span, f"{ident(to_schema)}.{ident(to_table)}"))
        elif to_table != ref.name:
            edits.append((*ref.span, ident(to_table)))
    sql = ddl.statement
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end:]
    return sql
