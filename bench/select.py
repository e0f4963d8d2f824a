"""Selector throughput beside raw mysql-replication decode, on the same binlog range.

    python bench/select.py [--rows 200000] [--mysql-url mysql://root:@127.0.0.1:3306]

Without ``--mysql-url`` a private mariadbd is started in a temp dir (as the
test harness does). Writes N rows into a narrow 5-column table (1000 rows per
transaction), then in this one process measures

* raw: ``BinLogStreamReader`` over that range, touching ``event.rows``;
* ferry: ``MySQLSelector`` select+ack loop over the same range;

and prints rows/s for both and the ratio.
"""

# ruff: noqa: E402  (sys.path is fixed before the imports, see below)
from __future__ import annotations

import os
import sys

# This file is named select.py: drop its folder from the path so that it does not
# shadow the standard library's ``select`` module (imported by subprocess, asyncio).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from pipeline.model import Position
from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector
from selector.store import MemoryPositionStore


def server(url: str | None) -> tuple[dict[str, Any], Any]:
    if url:
        u = urlparse(url)
        return {
            "host": u.hostname or "127.0.0.1",
            "port": u.port or 3306,
            "user": unquote(u.username or "root"),
            "password": unquote(u.password or ""),
        }, None
    from tests.services import MariaDB

    db = MariaDB(Path(tempfile.mkdtemp(prefix="ferry-bench-")) / "db").start()
    return {"host": db.host, "port": db.port, "user": db.user, "password": db.password}, db


def write(conn_args: dict[str, Any], rows: int) -> tuple[str, int, str, int]:
    conn = pymysql.connect(**conn_args, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS ferry_bench")
        cur.execute("CREATE DATABASE ferry_bench")
        cur.execute(
            "CREATE TABLE ferry_bench.t (id BIGINT PRIMARY KEY, a INT, b VARCHAR(32),"
            " c DOUBLE, d DATETIME)"
        )
        cur.execute("SHOW MASTER STATUS")
        start_file, start_pos = cur.fetchone()[:2]
        chunk = 1000
        for first in range(0, rows, chunk):
            values = ",".join(
                f"({i},{i % 997},'name-{i}',{i * 0.5},'2024-01-01 00:00:00')"
                for i in range(first, min(first + chunk, rows))
            )
            cur.execute(f"INSERT INTO ferry_bench.t VALUES {values}")
        cur.execute("SHOW MASTER STATUS")
        end_file, end_pos = cur.fetchone()[:2]
    conn.close()
    return start_file, int(start_pos), end_file, int(end_pos)


def raw(conn_args: dict[str, Any], file: str, pos: int, rows: int) -> float:
    settings = {**conn_args, "passwd": conn_args["password"]}
    del settings["password"]
    stream = BinLogStreamReader(
        settings,
        server_id=9901,
        log_file=file,
        log_pos=pos,
        resume_stream=True,
        blocking=True,
        slave_heartbeat=1,
        only_events=[WriteRowsEvent],
        only_schemas=["ferry_bench"],
        enable_logging=False,
    )
    seen = 0
    t0 = time.perf_counter()
    for event in stream:
        seen += len(event.rows)
        if seen >= rows:
            break
    elapsed = time.perf_counter() - t0
    stream.close()
    assert seen == rows, seen
    return rows / elapsed


def ferry(conn_args: dict[str, Any], file: str, pos: int, rows: int, max_rows: int) -> float:
    config = MySQLSourceConfig(
        **conn_args, server_id=9902, include=["ferry_bench.*"], start={"file": file, "pos": pos}
    )
    sel = MySQLSelector(config, max_rows, 200, MemoryPositionStore(), "bench")
    sel.start()
    seen = 0
    t0 = time.perf_counter()
    while seen < rows:
        batch = sel.select()
        seen += len(batch.changes)
        sel.ack(batch.batch_id)
    elapsed = time.perf_counter() - t0
    sel.stop()
    assert seen == rows, seen
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--mysql-url", help="use this server instead of a private mariadbd")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    conn_args, own = server(args.mysql_url)
    try:
        file, pos, end_file, end_pos = write(conn_args, args.rows)
        print(
            f"binlog range {Position(file, pos)} .. {Position(end_file, end_pos)}, {args.rows} rows"
        )
        raw_rate = raw(conn_args, file, pos, args.rows)
        ferry_rate = ferry(conn_args, file, pos, args.rows, args.batch_rows)
        print(f"raw mysql-replication decode: {raw_rate:10,.0f} rows/s")
        print(f"ferry selector (select+ack):  {ferry_rate:10,.0f} rows/s")
        print(f"ratio ferry/raw:              {ferry_rate / raw_rate:10.2f}")
    finally:
        if own is not None:
            own.stop()


if __name__ == "__main__":
    main()
