"""A snapshot row equals the streamed row of the same stored value: the whole corpus, both ways.

Every table of ``../shared/realworld-sql`` is read twice: replayed from the
binlog through the selector (row images decoded by ``selector.values``) and
read by the snapshot reader (``selector.snapshot``, the text protocol plus its
conversions). The two must give the same Python values, row for row, or a
consumer would see a key change value at the hand-over from snapshot to stream.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest

from pipeline.dialect.statements import classify
from pipeline.model import RowChange
from selector.checks import connect
from selector.snapshot import Reader, plan_table
from tests import realworld
from tests.integration.test_selector_mysql import config, selector

pytestmark = [pytest.mark.realworld, pytest.mark.slow]


def hashable(value: Any) -> Any:
    if isinstance(value, set):
        return frozenset(value)
    return (type(value).__name__, value)


def as_row(image: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    """The row on the table's columns now (ALTER TABLE dropped and added some midway)."""
    return tuple((c, hashable(image.get(c))) for c in columns)


def streamed(
    source: Any, dbs: list[str], until: tuple[str, int]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each table's rows at ``until``, replayed from the binlog's row changes."""
    sel = selector(source, dbs[0], start="earliest", include=[f"{db}.*" for db in dbs])
    tables: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    try:
        while True:
            batch = sel.select()
            for change in batch.changes:
                if not isinstance(change, RowChange):
                    statement = classify(change.statement, change.schema)
                    if statement.object == "TABLE" and statement.verb in ("CREATE", "DROP"):
                        for table in statement.tables:
                            tables.pop(table, None)
                    continue
                rows = tables[(change.schema, change.table)]
                if change.before is not None:
                    before = change.before
                    for i, row in enumerate(rows):
                        if all(row[k] == v for k, v in before.items() if k in row):
                            del rows[i]
                            break
                if change.after is not None:
                    rows.append(dict(change.after))
            sel.ack(batch.batch_id)
            at = batch.position
            if at is not None and (at.file, at.pos) >= until:
                break
    finally:
        sel.stop()
    return tables


def test_snapshot_and_stream_give_the_same_values(corpus: Path, make_mariadb: Any) -> None:
    source = make_mariadb()
    for script in realworld.scripts(corpus):
        realworld.load(source, script)
    [(file, pos, *_)] = source.execute("SHOW MASTER STATUS")
    dbs = realworld.databases(corpus)
    from_binlog = streamed(source, dbs, (str(file), int(pos)))
    reader = Reader(lambda **kw: connect(config(source, dbs[0]), **kw), mariadb=True)
    problems = []
    compared = 0
    try:
        for schema, table in realworld.base_tables(source, dbs):
            plan = plan_table(reader._connection(), schema, table)
            if plan.resumable:
                values = reader.chunk(plan, None, 100_000).rows
            else:
                _, pieces = reader.whole(plan, 1000)
                values = [row for piece in pieces for row in piece]
            rows = [dict(zip(plan.columns, row, strict=True)) for row in values]
            read = collections.Counter(as_row(r, plan.columns) for r in rows)
            want = collections.Counter(
                as_row(r, plan.columns) for r in from_binlog.get((schema, table), [])
            )
            compared += sum(read.values())
            if read != want:
                first = [str(list(c.elements())[:1])[:300] for c in (read - want, want - read)]
                problems.append(
                    f"{schema}.{table}: snapshot only {first[0]}, stream only {first[1]}"
                )
    finally:
        reader.close()
    assert problems == [], "\n".join(problems)
    assert compared > 19000
