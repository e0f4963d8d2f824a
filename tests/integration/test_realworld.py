"""The whole real-world corpus through ferry: an empty MySQL target ends identical, and
every JSON line decodes to the source's values.

All 54 scripts of ``../shared/realworld-sql`` are loaded into a fresh source, with
ferry's own charset workload (``tests/charset_rows.py``: a legacy latin1 table with
every byte and UTF-8 written through a latin1 connection, hard text in every charset;
only what a utf8mb4 copy can store back byte for byte), then
two pipelines read the binlog from its start: one into an empty target server
(``sink: mysql``, ``ddl: apply``), one into a JSON-lines file. Each node is
stopped with SIGTERM once, halfway, and started again. At the end every table
of the corpus is compared (rows as multisets, stored checksums, definitions),
and the JSON lines, replayed in order and decoded with the documented encoding
and the source's column types, give exactly the source's rows.

Run it alone with ``./scripts/test -m realworld``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.dialect.statements import classify
from tests import charset_rows, realworld

pytestmark = [pytest.mark.realworld, pytest.mark.slow]


def started_over(sql: str, schema: str) -> tuple[tuple[str, str], ...]:
    """The tables a DDL creates, drops, truncates or renames (their rows start over)."""
    statement = classify(sql, schema)
    if statement.object == "TABLE" and statement.verb in ("CREATE", "DROP", "TRUNCATE", "RENAME"):
        return statement.tables
    return ()


@pytest.mark.parametrize("metadata", ["FULL", "NO_LOG"])
def test_every_script_replicates_exactly(
    metadata: str,
    corpus: Path,
    make_mariadb: Any,
    redis_server: Any,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    """With ``binlog_row_metadata`` FULL, and with NO_LOG (MariaDB's default: the rows are
    read with the schema history's definitions) the same."""
    source = make_mariadb(extra_args=[f"--binlog-row-metadata={metadata}"])
    target = make_mariadb()
    for script in realworld.scripts(corpus):
        realworld.load(source, script)
    charset_rows.load(source, round_trip_only=True)
    [(file, pos, *_)] = source.execute("SHOW MASTER STATUS")
    end = (str(file), int(pos))
    dbs = [*realworld.databases(corpus), charset_rows.SCHEMA]
    out = tmp_path / "changes.jsonl"
    to_mysql = realworld.pipeline(
        tmp_path,
        "rw-mysql",
        source,
        redis_server,
        key_prefix,
        dbs,
        {"type": "mysql", "host": target.host, "port": target.port, "user": target.user},
    )
    to_jsonl = realworld.pipeline(
        tmp_path,
        "rw-jsonl",
        source,
        redis_server,
        key_prefix,
        dbs,
        # ferry-json: the readable encoding that realworld.decode reads back
        {"type": "jsonl", "path": str(out), "format": "ferry-json"},
    )
    realworld.run_with_one_restart(to_mysql, redis_server, key_prefix, "rw-mysql", end)
    realworld.run_with_one_restart(to_jsonl, redis_server, key_prefix, "rw-jsonl", end)

    assert realworld.differences(source, target, dbs) == []

    # lines end with "\n" only: splitlines() would also cut at U+0085 or U+2028 in a value
    lines = [line for line in out.read_text(encoding="utf-8").split("\n") if line]
    replayed = realworld.replay(lines, started_over)
    types = realworld.column_types(source, dbs)
    problems = []
    for schema, table in realworld.base_tables(source, dbs):
        rows = replayed.get((schema, table), [])
        columns = [c for c in types[(schema, table)] if all(c in row for row in rows)]
        want = realworld.read_back(source, schema, table, types[(schema, table)], columns)
        got = realworld.decoded(rows, types[(schema, table)], columns)
        if want != got:
            problems.append(
                f"{schema}.{table}: source only {list((want - got).elements())[:2]},"
                f" JSON only {list((got - want).elements())[:2]}"
            )
    assert problems == [], "\n".join(problems)
    rows_in_corpus = sum(1 for line in lines if '"op":' in line)
    assert (
        rows_in_corpus >= 20000
    )  # every row event of the corpus (20,187: tests/debezium_notes.md), replays too
