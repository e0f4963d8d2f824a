# ruff: noqa: E402  (sys.path is fixed before the imports)
"""Benchmark workload: tables of three shapes and a stream of row changes into them.

Shapes (every one has ``written_at DATETIME(6)``: the writer's wall clock when it
built the statement, which the lag measurement of ``bench/run.py --rate`` reads):

* ``narrow``    — 5 columns: ``id BIGINT PK, a INT, b VARCHAR(32), c DECIMAL(12,2), written_at``
* ``wide``      — 40 columns: integers, decimals, doubles, varchars, TEXT, JSON, DATE, …
* ``composite`` — 7 columns with a 3-column primary key ``(tenant, order_id, line)``

Changes (``write_changes``): cycles of 10 transactions of ``txn_rows`` rows each —
7 multi-row INSERTs, 2 UPDATEs and 1 DELETE of rows inserted in the same cycle —
so 70 % inserts, 20 % updates, 10 % deletes, every one a row change in the binlog;
with ``inserts_only`` the cycle is 10 INSERT transactions (the issue's "1.2M row inserts").
``write_big_transaction`` writes N inserts in ONE transaction. ``write_at_rate``
inserts at a fixed rows/s (small transactions on a fixed schedule, no drift).

    python bench/workload.py --mysql-url mysql://root:@127.0.0.1:3306 --shape wide --rows 10000
"""

from __future__ import annotations

import os
import sys

# bench/select.py would shadow the standard library's ``select`` when this file runs as a
# script: drop bench/ from the path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

SCHEMA = "ferry_bench"
SHAPES = ("narrow", "wide", "composite")


@dataclass
class Written:
    """What a writer put into the binlog."""

    start: tuple[str, int]  # binlog file/pos before the first change
    end: tuple[str, int]  # binlog file/pos after the last change
    rows: int  # row changes (= rows of row events in the binlog)
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    seconds: float = 0.0


def _now_text() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


# --------------------------------------------------------------------------- shapes

_WIDE_COLUMNS: list[tuple[str, str]] = (
    [(f"i{n}", "INT NOT NULL") for n in range(8)]
    + [(f"l{n}", "BIGINT NOT NULL") for n in range(4)]
    + [(f"v{n}", "VARCHAR(64) NOT NULL") for n in range(8)]
    + [(f"t{n}", "TEXT") for n in range(4)]
    + [(f"m{n}", "DECIMAL(18,4) NOT NULL") for n in range(6)]
    + [(f"f{n}", "DOUBLE NOT NULL") for n in range(4)]
    + [("j0", "JSON"), ("j1", "JSON"), ("day", "DATE NOT NULL"), ("flag", "TINYINT NOT NULL")]
)
assert len(_WIDE_COLUMNS) == 38  # + id + written_at = 40

_TEXT = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " * 3


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def ddl(shape: str, table: str = "t") -> str:
    name = f"{SCHEMA}.{table}"
    if shape == "narrow":
        return (
            f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32) NOT NULL,"
            " c DECIMAL(12,2) NOT NULL, written_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
        )
    if shape == "wide":
        cols = ", ".join(f"{n} {t}" for n, t in _WIDE_COLUMNS)
        return (
            f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, written_at DATETIME(6) NOT NULL, {cols})"
            " ENGINE=InnoDB"
        )
    if shape == "composite":
        return (
            f"CREATE TABLE {name} (tenant INT NOT NULL, order_id BIGINT NOT NULL,"
            " line SMALLINT NOT NULL, qty INT NOT NULL, price DECIMAL(10,2) NOT NULL,"
            " sku VARCHAR(24) NOT NULL, written_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (tenant, order_id, line)) ENGINE=InnoDB"
        )
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")


def _values(shape: str, i: int, rng: random.Random, now: str) -> str:
    """One row's VALUES tuple for row number ``i`` (also its key: see ``_key_range``)."""
    if shape == "narrow":
        return (
            f"({i},{rng.randrange(10**6)},'name-{i:09d}',{rng.randrange(10**8) / 100:.2f},'{now}')"
        )
    if shape == "composite":
        tenant, rest = divmod(i, 1_000_000)
        order, line = divmod(rest, 10)
        return (
            f"({tenant},{order},{line},{rng.randrange(100)},{rng.randrange(10**6) / 100:.2f},"
            f"'SKU-{rng.randrange(10**8):08d}','{now}')"
        )
    vals: list[str] = [str(i), f"'{now}'"]
    vals += [str(rng.randrange(-(2**31), 2**31)) for _ in range(8)]
    vals += [str(rng.randrange(-(2**62), 2**62)) for _ in range(4)]
    vals += [f"'v{n}-{rng.randrange(10**12)}'" for n in range(8)]
    vals += [f"'{_esc(_TEXT[: 40 + rng.randrange(160)])}'" for _ in range(3)] + ["NULL"]
    vals += [f"{rng.randrange(10**12) / 10**4:.4f}" for _ in range(6)]
    vals += [repr(rng.random() * 1e6) for _ in range(4)]
    doc = {"id": i, "tags": ["a", "b", str(rng.randrange(100))], "price": rng.randrange(10**5)}
    vals += [f"'{_esc(json.dumps(doc))}'", "NULL"]
    vals += [f"'2024-{1 + i % 12:02d}-{1 + i % 28:02d}'", str(i % 2)]
    return "(" + ",".join(vals) + ")"


def _key_range(shape: str, first: int, last: int) -> str:
    """WHERE clause selecting rows numbered ``first..last`` (inclusive) of one cycle."""
    if shape == "composite":
        # rows of one cycle never cross a tenant boundary (cycles are aligned below)
        tenant, lo = divmod(first, 1_000_000)
        hi = last - tenant * 1_000_000
        return (
            f"tenant={tenant} AND (order_id*10+line) BETWEEN {lo} AND {hi}"
            f" AND order_id BETWEEN {lo // 10} AND {hi // 10}"
        )
    return f"id BETWEEN {first} AND {last}"


def _key_eq(shape: str, i: int) -> str:
    """WHERE clause selecting row number ``i`` alone."""
    if shape == "composite":
        tenant, rest = divmod(i, 1_000_000)
        order, line = divmod(rest, 10)
        return f"tenant={tenant} AND order_id={order} AND line={line}"
    return f"id={i}"


def _update_set(shape: str) -> str:
    if shape == "narrow":
        return "a=a+1, b=CONCAT('upd-', id), written_at=NOW(6)"
    if shape == "composite":
        return "qty=qty+1, price=price+1, written_at=NOW(6)"
    return "i0=i0+1, v0=CONCAT('upd-', id), m0=m0+1, written_at=NOW(6)"


# --------------------------------------------------------------------------- writers


def connect(conn_args: dict[str, Any]) -> Any:
    # several statements per round trip: one-row statements would otherwise be written at
    # the pace of the client's round trips; each is still its own rows event
    return pymysql.connect(
        **conn_args,
        autocommit=False,
        charset="utf8mb4",
        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
    )


def _execute(cur: Any, statements: list[str]) -> int:
    """Run ``statements`` (one round trip per 200); returns the rows they changed."""
    changed = 0
    for at in range(0, len(statements), 200):
        cur.execute(";".join(statements[at : at + 200]))
        changed += max(cur.rowcount, 0)
        while cur.nextset():
            changed += max(cur.rowcount, 0)
    return changed


def binlog_position(cur: Any) -> tuple[str, int]:
    cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    return str(row[0]), int(row[1])


def create(conn_args: dict[str, Any], shape: str, table: str = "t") -> None:
    conn = pymysql.connect(**conn_args, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {SCHEMA}")
        cur.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        cur.execute(ddl(shape, table))
    conn.close()


def write_changes(
    conn_args: dict[str, Any],
    shape: str,
    rows: int,
    txn_rows: int = 500,
    table: str = "t",
    seed: int = 7,
    inserts_only: bool = False,
    statement_rows: int | None = None,
    create_table: bool = True,
) -> Written:
    """About ``rows`` row changes (a whole number of cycles): 70 % ins, 20 % upd, 10 % del;
    all inserts with ``inserts_only``. Each statement changes ``statement_rows`` rows (one
    rows event each; default: the whole transaction): 1 is what applications write.
    ``create_table=False`` writes into the (empty) table ``create`` made earlier."""
    per_statement = statement_rows or txn_rows
    if create_table:
        create(conn_args, shape, table)
    rng = random.Random(seed)
    per_cycle = 10 * txn_rows
    cycles = max(1, round(rows / per_cycle))
    conn = connect(conn_args)
    started = time.perf_counter()
    with conn.cursor() as cur:
        start = binlog_position(cur)
        written = Written(start, start, 0)
        next_row = 0
        inserts = 10 if inserts_only else 7  # transactions of a cycle
        for _ in range(cycles):
            if shape == "composite" and next_row % 1_000_000 + inserts * txn_rows > 1_000_000:
                next_row = (next_row // 1_000_000 + 1) * 1_000_000
            first = next_row
            next_row = first + inserts * txn_rows
            for t in range(inserts):
                now = _now_text()
                lo = first + t * txn_rows
                statements = [
                    f"INSERT INTO {SCHEMA}.{table} VALUES "
                    + ",".join(_values(shape, i, rng, now) for i in range(at, at + n))
                    for at, n in _pieces(lo, txn_rows, per_statement)
                ]
                _execute(cur, statements)
                conn.commit()
                written.inserts += txn_rows
            if inserts_only:
                continue
            for verb, t in (("update", 0), ("update", 1), ("delete", 6)):
                lo = first + t * txn_rows
                head = (
                    f"UPDATE {SCHEMA}.{table} SET {_update_set(shape)}"
                    if verb == "update"
                    else f"DELETE FROM {SCHEMA}.{table}"
                )
                statements = [
                    f"{head} WHERE "
                    + (_key_eq(shape, at) if n == 1 else _key_range(shape, at, at + n - 1))
                    for at, n in _pieces(lo, txn_rows, per_statement)
                ]
                changed = _execute(cur, statements)
                conn.commit()
                assert changed == txn_rows, (changed, txn_rows)
                if verb == "update":
                    written.updates += changed
                else:
                    written.deletes += changed
        written.end = binlog_position(cur)
    conn.close()
    written.seconds = time.perf_counter() - started
    written.rows = written.inserts + written.updates + written.deletes
    return written


def _pieces(first: int, rows: int, per_statement: int) -> list[tuple[int, int]]:
    """(first row, rows) of each statement that writes rows ``first .. first+rows-1``."""
    return [
        (at, min(per_statement, first + rows - at))
        for at in range(first, first + rows, per_statement)
    ]


def write_big_transaction(
    conn_args: dict[str, Any],
    shape: str,
    rows: int,
    table: str = "t",
    seed: int = 7,
    create_table: bool = True,
) -> Written:
    """``rows`` inserts in one transaction (multi-row statements, one COMMIT)."""
    if create_table:
        create(conn_args, shape, table)
    rng = random.Random(seed)
    conn = connect(conn_args)
    started = time.perf_counter()
    with conn.cursor() as cur:
        start = binlog_position(cur)
        chunk = 2000 if shape != "wide" else 200
        now = _now_text()
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            values = ",".join(_values(shape, i, rng, now) for i in range(lo, hi))
            cur.execute(f"INSERT INTO {SCHEMA}.{table} VALUES {values}")
        conn.commit()
        end = binlog_position(cur)
    conn.close()
    return Written(start, end, rows, inserts=rows, seconds=time.perf_counter() - started)


def write_at_rate(
    conn_args: dict[str, Any],
    shape: str,
    rate: float,
    seconds: float,
    txn_rows: int = 50,
    table: str = "t",
    first_row: int = 0,
    seed: int = 7,
    stop: Callable[[], bool] | None = None,
) -> Written:
    """Insert ``rate`` rows/s for ``seconds``: a ``txn_rows`` transaction every txn_rows/rate s.

    The schedule is absolute (transaction k is due at start + k*txn_rows/rate),
    so a slow statement does not lower the rate; ``written_at`` is the wall
    clock when the statement was built (just before it is sent).
    """
    rng = random.Random(seed)
    conn = connect(conn_args)
    period = txn_rows / rate
    total = int(rate * seconds)
    with conn.cursor() as cur:
        start = binlog_position(cur)
        written = Written(start, start, 0)
        t0 = time.perf_counter()
        k = 0
        row = first_row
        while written.inserts < total and not (stop and stop()):
            due = t0 + k * period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            n = min(txn_rows, total - written.inserts)
            now = _now_text()
            values = ",".join(_values(shape, i, rng, now) for i in range(row, row + n))
            cur.execute(f"INSERT INTO {SCHEMA}.{table} VALUES {values}")
            conn.commit()
            row += n
            written.inserts += n
            k += 1
        written.seconds = time.perf_counter() - t0
        written.end = binlog_position(cur)
    conn.close()
    written.rows = written.inserts
    return written


def main() -> None:
    from urllib.parse import unquote, urlparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mysql-url", required=True)
    parser.add_argument("--shape", choices=SHAPES, default="narrow")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-txn", action="store_true", help="all rows in one transaction")
    parser.add_argument("--rate", type=float, help="rows/s (inserts) instead of full speed")
    parser.add_argument("--seconds", type=float, default=10.0, help="with --rate")
    args = parser.parse_args()
    u = urlparse(args.mysql_url)
    conn_args = {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
    }
    if args.rate:
        create(conn_args, args.shape)
        w = write_at_rate(conn_args, args.shape, args.rate, args.seconds)
    elif args.big_txn:
        w = write_big_transaction(conn_args, args.shape, args.rows)
    else:
        w = write_changes(conn_args, args.shape, args.rows)
    print(json.dumps(w.__dict__))


if __name__ == "__main__":
    main()
