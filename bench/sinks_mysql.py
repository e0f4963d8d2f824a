"""Benchmark: MySQLSink.load rows/s beside raw executemany INSERT rows/s of the same rows.

    python bench/sinks_mysql.py [--rows 100000] [--batch 1000] [--mysql-url mysql://u:p@h:port]

Without --mysql-url a private mariadbd is started in a temp dir (tests/services.py;
binlog on, innodb_flush_log_at_trx_commit=2) and removed afterwards. Every run
does, on the same server and the same narrow 5-column rows, in batches:

* raw:   cursor.executemany("INSERT … VALUES (%s,…)") + COMMIT per batch
         (PyMySQL rewrites that into multi-row INSERTs) — the ceiling;
* sink inserts: MySQLSink.load of the same rows as insert RowChanges;
* sink mixed:   MySQLSink.load of a change stream of the same size, 70% inserts,
                20% updates, 10% deletes of earlier keys (merged per batch).

Building the RowChanges is not timed; the sink's time includes merging,
statement building, the fencing read and the checkpoint write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loguru import logger

from pipeline.model import Batch, Position, RowChange
from sinks.mysql import MySQLSink, MySQLSinkConfig
from tests.services import ExternalMySQL, MariaDB

COLUMNS = ("id", "a", "b", "c", "d")
DDL = (
    "CREATE TABLE {db}.{table} (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32) NOT NULL,"
    " c DECIMAL(12,2) NOT NULL, d DATETIME NOT NULL) ENGINE=InnoDB"
)
PK = ("id",)


def make_row(rng: random.Random, id_: int) -> dict[str, Any]:
    return {
        "id": id_,
        "a": rng.randrange(1_000_000),
        "b": f"name-{rng.randrange(10**9):09d}",
        "c": Decimal(rng.randrange(10**8)) / 100,
        "d": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=rng.randrange(10**7)),
    }


def position(n: int) -> Position:
    return Position("mysql-bin.000001", 4 + n)


def insert_stream(rows: list[dict[str, Any]], table: str) -> list[RowChange]:
    return [RowChange("src", table, "insert", None, r, PK, 0.0, position(0)) for r in rows]


def mixed_stream(rng: random.Random, n: int, table: str) -> list[RowChange]:
    live: dict[int, dict[str, Any]] = {}
    keys: list[int] = []
    changes: list[RowChange] = []
    next_id = 1
    while len(changes) < n:
        roll = rng.random()
        if roll < 0.7 or len(keys) < 10:
            row = make_row(rng, next_id)
            next_id += 1
            live[row["id"]] = row
            keys.append(row["id"])
            changes.append(RowChange("src", table, "insert", None, row, PK, 0.0, position(0)))
            continue
        index = rng.randrange(len(keys))
        key = keys[index]
        before = live[key]
        if roll < 0.9:
            after = dict(before, a=before["a"] + 1, b=f"upd-{rng.randrange(10**9):09d}")
            live[key] = after
            changes.append(RowChange("src", table, "update", before, after, PK, 0.0, position(0)))
        else:
            del live[key]
            keys[index] = keys[-1]
            keys.pop()
            changes.append(RowChange("src", table, "delete", before, None, PK, 0.0, position(0)))
    return changes


def batches(changes: list[RowChange], size: int) -> list[Batch]:
    out = []
    for n, start in enumerate(range(0, len(changes), size), 1):
        out.append(Batch(n, list(changes[start : start + size]), position(n)))
    return out


def run_raw(server: Any, db: str, rows: list[dict[str, Any]], size: int) -> float:
    server.execute(DDL.format(db=db, table="raw_rows"))
    conn = server.connect(db, autocommit=False)
    sql = f"INSERT INTO raw_rows ({','.join(COLUMNS)}) VALUES ({','.join(['%s'] * len(COLUMNS))})"
    tuples = [tuple(r[c] for c in COLUMNS) for r in rows]
    started = time.perf_counter()
    with conn.cursor() as cur:
        for start in range(0, len(tuples), size):
            cur.executemany(sql, tuples[start : start + size])
            conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def run_sink(server: Any, db: str, table: str, work: list[Batch]) -> tuple[float, int]:
    server.execute(DDL.format(db=db, table=table))
    config = MySQLSinkConfig(
        type="mysql",
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        schema_map={"src": db},
        checkpoint_schema=db,
    )
    sink = MySQLSink(config, f"bench-{table}")
    sink.open()
    started = time.perf_counter()
    for batch in work:
        sink.load(batch, epoch=1)
    elapsed = time.perf_counter() - started
    statements = sink.statements_executed
    sink.close()
    return elapsed, statements


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--mysql-url", help="mysql://user:pass@host:port of an existing server")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="INFO")

    rng = random.Random(args.seed)
    rows = [make_row(rng, i) for i in range(1, args.rows + 1)]
    inserts = batches(insert_stream(rows, "sink_inserts"), args.batch)
    mixed_changes = mixed_stream(rng, args.rows, "sink_mixed")
    mixed = batches(mixed_changes, args.batch)

    tmp = None
    server: Any
    if args.mysql_url:
        server = ExternalMySQL(args.mysql_url)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ferry-bench-")
        server = MariaDB(tmp.name).start()
    db = f"ferrybench_{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE DATABASE {db}")
    try:
        version = server.execute("SELECT VERSION()")[0][0]
        raw_s = run_raw(server, db, rows, args.batch)
        ins_s, ins_stmts = run_sink(server, db, "sink_inserts", inserts)
        mix_s, mix_stmts = run_sink(server, db, "sink_mixed", mixed)
        counts = {
            op: sum(1 for c in mixed_changes if c.op == op) for op in ("insert", "update", "delete")
        }
    finally:
        server.execute(f"DROP DATABASE IF EXISTS {db}")
        if tmp is not None:
            server.stop()
            tmp.cleanup()

    n = args.rows
    print(f"server {version}; {n} rows, batches of {args.batch}, 5 narrow columns")
    print(f"{'raw executemany INSERT':<34} {n / raw_s:>10,.0f} rows/s  ({raw_s:.2f} s)")
    print(
        f"{'MySQLSink.load, inserts':<34} {n / ins_s:>10,.0f} rows/s  ({ins_s:.2f} s, "
        f"{ins_stmts} statements)"
    )
    print(
        f"{'MySQLSink.load, mixed i/u/d':<34} {n / mix_s:>10,.0f} rows/s  ({mix_s:.2f} s, "
        f"{mix_stmts} statements; {counts['insert']} ins, {counts['update']} upd, "
        f"{counts['delete']} del)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
