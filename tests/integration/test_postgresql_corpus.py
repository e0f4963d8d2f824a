"""The whole real-world corpus into an empty PostgreSQL: every table equal to the source
under the PostgreSQL sink's type mapping (issue 22's first "Done when").

All 54 scripts of ``../shared/realworld-sql`` are loaded into a fresh source once, with
ferry's own charset workload (``tests/charset_rows.py``: a legacy latin1 table with every
byte, hard text in every charset; what a utf8mb4 copy can store back); then, each into a
fresh, empty PostgreSQL database:

* **stream**: a pipeline reads the binlog from its start (``start: earliest``): every
  CREATE/ALTER/DROP TABLE and DATABASE of the corpus goes through the sink's DDL
  translation, every row through its merge. The node is stopped with SIGTERM halfway
  and started again.
* **snapshot**: a new pipeline (``snapshot: initial``, the default) copies the
  pre-loaded source: the sink creates every schema and table first.

At the end every base table of the corpus is compared row by row, in the canonical
form of ``tests/pgcanon.py`` (unsigned integers widened, DATETIME as timestamp,
TIMESTAMP as the UTC instant, zero dates NULL, TIME as an interval, ENUM/SET as text,
JSON as jsonb without NULs, BIT as bit varying, binary as bytea, YEAR as smallint, FLOAT
as real, DECIMAL as numeric), and each column's PostgreSQL type against the mapping;
tables the source no longer has must not be on the target either.

Run it alone with ``./scripts/test tests/integration/test_postgresql_corpus.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import charset_rows, pgcanon, realworld
from tests.conftest import _get
from tests.ferryproc import FerryNode, ferry_status, wait_until
from tests.services import MariaDB, stop_quietly

pytestmark = [pytest.mark.realworld, pytest.mark.slow]

CHECKPOINT_SCHEMA = "ferry"  # the sink's own schema on the target, not a copy of a source's


@pytest.fixture(scope="module")
def loaded(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, list[str], tuple[str, int]]]:
    """A private source with the whole corpus loaded: (server, databases, binlog end)."""
    source = _get(lambda: MariaDB(tmp_path_factory.mktemp("pg-corpus-source")).start())
    try:
        for script in realworld.scripts(corpus):
            realworld.load(source, script)
        charset_rows.load(source, round_trip_only=True)
        [(file, pos, *_)] = source.execute("SHOW MASTER STATUS")
        yield source, [*realworld.databases(corpus), charset_rows.SCHEMA], (str(file), int(pos))
    finally:
        stop_quietly([source])


def postgresql_sink(server: Any, database: str) -> dict[str, Any]:
    return {
        "type": "postgresql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": database,
    }


def differences(source: Any, dbs: list[str], pg: Any) -> list[str]:
    """Every way the PostgreSQL database differs from the source's corpus databases."""
    problems = []
    tables = realworld.base_tables(source, dbs)
    for schema, table in tables:
        problems += pgcanon.compare_table(source, pg, schema, table, schema, table)
    held = {
        (str(schema), str(table))
        for schema, table in pg.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema', %s)",
            (CHECKPOINT_SCHEMA,),
        )
    }
    extra = sorted(held - set(tables))
    if extra:
        problems.append(f"tables on the target that the source does not have: {extra[:10]}")
    return problems


def test_the_corpus_streams_into_an_empty_postgresql(
    loaded: tuple[Any, list[str], tuple[str, int]],
    postgresql: Any,
    postgresql_db: str,
    redis_server: Any,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    source, dbs, end = loaded
    name = "rw-pg-stream"
    config = realworld.pipeline(
        tmp_path,
        name,
        source,
        redis_server,
        key_prefix,
        dbs,
        postgresql_sink(postgresql, postgresql_db),
    )
    realworld.run_with_one_restart(config, redis_server, key_prefix, name, end)
    with postgresql.connect(postgresql_db) as pg:
        problems = differences(source, dbs, pg)
    assert problems == [], "\n".join(problems)


def snapshot_complete(config: Path) -> bool:
    for node in ferry_status(config)["nodes"]:
        if node.get("role") == "active" and not node.get("stale"):
            return bool((node.get("snapshot") or {}).get("state") == "complete")
    return False


def test_the_corpus_snapshots_into_an_empty_postgresql(
    loaded: tuple[Any, list[str], tuple[str, int]],
    postgresql: Any,
    postgresql_db: str,
    redis_server: Any,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    source, dbs, _ = loaded
    name = "rw-pg-snapshot"
    config = realworld.pipeline(
        tmp_path,
        name,
        source,
        redis_server,
        key_prefix,
        dbs,
        postgresql_sink(postgresql, postgresql_db),
        start=None,
    )
    node = FerryNode(config, f"{name}-a").start()
    try:
        wait_until(lambda: snapshot_complete(config), 300, "the snapshot to complete")
        status = ferry_status(config)
        assert (status["state"], status["error"]) == ("running", ""), status
    finally:
        assert node.stop() == 0, node.log()
    log = node.log()
    assert " paused" not in log and "ERROR" not in log, log[-5000:]
    with postgresql.connect(postgresql_db) as pg:
        problems = differences(source, dbs, pg)
    assert problems == [], "\n".join(problems)
