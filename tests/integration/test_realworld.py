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

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from pipeline.dialect.statements import classify
from tests import charset_rows, realworld
from tests.ferryproc import FerryNode, ferry_status, wait_until

pytestmark = [pytest.mark.realworld, pytest.mark.slow]


def pipeline(
    tmp_path: Path, name: str, source: Any, redis: Any, prefix: str, dbs: list[str], sink: dict
) -> Path:
    config = {
        "pipeline": {
            "id": name,
            "batch": {"max_rows": 300, "max_wait_ms": 100},
            "retry_backoff_ms": 100,
            "status_interval_ms": 300,
            "state_dir": str(tmp_path / f"state-{name}"),
        },
        "source": {
            "host": source.host,
            "port": source.port,
            "user": source.user,
            "server_id": 4500 + len(name),
            "start": "earliest",
            "include": [f"{db}.*" for db in dbs],
        },
        "arbiter": {"url": redis.url, "key_prefix": prefix.rstrip(":"), "lock_ttl_ms": 2000},
        "sink": sink,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def committed(redis: Any, prefix: str, name: str) -> tuple[str, int]:
    client = redis.client()
    try:
        raw = client.get(f"{prefix}{name}:position")
    finally:
        client.close()
    if not raw:
        return ("", 0)
    data = json.loads(raw)
    position = data.get("position", data)
    return (position["file"], int(position["pos"]))


def run_with_one_restart(config: Path, redis: Any, prefix: str, name: str, end: Any) -> None:
    """Replicate to ``end``, stopping the node with SIGTERM once when halfway there."""
    node = FerryNode(config, f"{name}-a").start()
    wait_until(
        lambda: committed(redis, prefix, name) >= (end[0], end[1] // 2),
        120,
        f"{name} halfway",
        interval_s=0.02,
    )
    node.signal(signal.SIGTERM)
    assert node.wait(60) == 0, node.log()
    node = FerryNode(config, f"{name}-b").start()
    try:
        wait_until(lambda: committed(redis, prefix, name) >= end, 180, f"{name} at the end")
        status = ferry_status(config)
        assert (status["state"], status["error"]) == ("running", ""), status
    finally:
        assert node.stop() == 0, node.log()
    log = "\n".join(p.read_text(errors="replace") for p in config.parent.glob(f"{name}-*.log"))
    assert " paused" not in log and "ERROR" not in log, log[-5000:]


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
    to_mysql = pipeline(
        tmp_path,
        "rw-mysql",
        source,
        redis_server,
        key_prefix,
        dbs,
        {"type": "mysql", "host": target.host, "port": target.port, "user": target.user},
    )
    to_jsonl = pipeline(
        tmp_path,
        "rw-jsonl",
        source,
        redis_server,
        key_prefix,
        dbs,
        # ferry-json: the readable encoding that realworld.decode reads back
        {"type": "jsonl", "path": str(out), "format": "ferry-json"},
    )
    run_with_one_restart(to_mysql, redis_server, key_prefix, "rw-mysql", end)
    run_with_one_restart(to_jsonl, redis_server, key_prefix, "rw-jsonl", end)

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
