"""MySQLSelector against the real MariaDB fixture (see tests/conftest.py).

Every test reads only its own ``source_db`` (include filter) and starts from
``latest`` taken right before its workload, so other tests' writes don't matter.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import FatalError
from pipeline.model import Batch, DdlChange, Position, RowChange
from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector, check_source
from selector.store import FilePositionStore, MemoryPositionStore

ROOT = Path(__file__).resolve().parents[2]


def config(server: Any, db: str, **extra: Any) -> MySQLSourceConfig:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "server_id": random.randint(1000, 2**31),
        "include": [f"{db}.*"],
        "start": "latest",
    }
    fields.update(extra)
    return MySQLSourceConfig(**fields)


def selector(
    server: Any, db: str, max_rows: int = 1000, store: Any = None, **extra: Any
) -> MySQLSelector:
    sel = MySQLSelector(
        config(server, db, **extra), max_rows, 100, store or MemoryPositionStore(), "test"
    )
    sel.start()
    return sel


def collect(
    sel: MySQLSelector, rows: int, timeout: float = 20.0, ack: bool = True
) -> list[RowChange]:
    """select (+ack) until ``rows`` row changes arrived."""
    got: list[RowChange] = []
    deadline = time.monotonic() + timeout
    while len(got) < rows:
        assert time.monotonic() < deadline, f"only {len(got)} of {rows} rows arrived"
        batch = sel.select()
        got.extend(c for c in batch.changes if isinstance(c, RowChange))
        if ack:
            sel.ack(batch.batch_id)
    return got


def select_rows(sel: MySQLSelector, timeout: float = 20.0) -> Batch:
    """The next batch that carries changes (empty ones are acked and skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no batch with changes arrived"
        batch = sel.select()
        if batch.changes:
            return batch
        sel.ack(batch.batch_id)


def ids(changes: list[Any]) -> list[Any]:
    return [c.row["id"] for c in changes if isinstance(c, RowChange)]


def test_every_type_round_trips(mariadb: Any, source_db: str) -> None:
    db = source_db
    mariadb.execute(
        f"""CREATE TABLE `{db}`.ty (
        id INT PRIMARY KEY, y YEAR, ti TINYINT, u_ti TINYINT UNSIGNED, u_si SMALLINT UNSIGNED,
        u_mi MEDIUMINT UNSIGNED, u_i INT UNSIGNED, u_bi BIGINT UNSIGNED, s_bi BIGINT,
        dec1 DECIMAL(20,6), dec2 DECIMAL(5,2), f FLOAT, d DOUBLE,
        dt DATETIME(6), dt0 DATETIME, ts TIMESTAMP(6) NULL, dte DATE, tm TIME(6), tm0 TIME,
        j JSON, b BLOB, vb VARBINARY(10), bn BINARY(4), e ENUM('a','b','c'), st SET('x','y','z'),
        bt BIT(10), bt1 BIT(1), s VARCHAR(20), ch CHAR(5), tx TEXT,
        l1 VARCHAR(10) CHARACTER SET latin1, n INT) DEFAULT CHARSET=utf8mb4"""
    )
    sel = selector(mariadb, db)
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+02:00'")
        cur.execute(
            f"""INSERT INTO `{db}`.ty VALUES (1, 2024, -128, 255, 65535, 16777215, 4294967295,
            18446744073709551615, -9223372036854775808, -12345678901234.123456, -0.05, 1.1, 2.2,
            '2024-02-29 23:59:59.123456', '1000-01-01 00:00:00', '2024-01-01 12:00:00.5',
            '2024-02-29', '-838:59:59.000000', '-00:00:01',
            '{{"a": [1, 2.5, "x", null, true], "b": {{"c": "ü😀"}}}}', X'00FF00', X'0001',
            X'0100', 'b', 'x,z', b'1000000001', b'1', 'héllo 😀', 'ab', 'long text', 'café',
            NULL)"""
        )
        cur.execute(
            f"INSERT INTO `{db}`.ty (id, st, tm, bn, vb, b, j) VALUES"
            " (2, '', '-00:00:01.5', X'00000000', X'', X'', '\"s\"')"
        )
        cur.execute(f"INSERT INTO `{db}`.ty (id) VALUES (3)")
    conn.close()
    one, two, three = collect(sel, 3)
    assert one.primary_key == ("id",) and one.op == "insert" and one.before is None
    assert one.after == {
        "id": 1,
        "y": 2024,
        "ti": -128,
        "u_ti": 255,
        "u_si": 65535,
        "u_mi": 16777215,
        "u_i": 4294967295,
        "u_bi": 18446744073709551615,
        "s_bi": -9223372036854775808,
        "dec1": Decimal("-12345678901234.123456"),
        "dec2": Decimal("-0.05"),
        "f": 1.1,  # the shortest decimal of the single-precision value
        "d": 2.2,
        "dt": datetime.datetime(2024, 2, 29, 23, 59, 59, 123456),
        "dt0": datetime.datetime(1000, 1, 1),
        "ts": datetime.datetime(2024, 1, 1, 10, 0, 0, 500000, tzinfo=datetime.UTC),
        "dte": datetime.date(2024, 2, 29),
        "tm": -datetime.timedelta(hours=838, minutes=59, seconds=59),
        "tm0": -datetime.timedelta(seconds=1),
        "j": '{"a": [1, 2.5, "x", null, true], "b": {"c": "ü😀"}}',  # as stored
        "b": b"\x00\xff\x00",
        "vb": b"\x00\x01",
        "bn": b"\x01\x00\x00\x00",
        "e": "b",
        "st": {"x", "z"},
        "bt": 0b1000000001,
        "bt1": 1,
        "s": "héllo 😀",
        "ch": "ab",
        "tx": "long text",
        "l1": "café",
        "n": None,
    }
    assert isinstance(one.after["dec2"], Decimal) and str(one.after["dec2"]) == "-0.05"
    assert two.after is not None
    assert two.after["st"] == set()
    assert two.after["tm"] == -datetime.timedelta(seconds=1, microseconds=500000)
    assert two.after["bn"] == b"\x00\x00\x00\x00"
    assert two.after["vb"] == b"" and two.after["b"] == b""
    assert two.after["j"] == '"s"'
    assert three.after is not None
    assert all(v is None for k, v in three.after.items() if k != "id"), three.after
    sel.stop()


def test_order_and_images_over_several_tables(mariadb: Any, source_db: str) -> None:
    db = source_db
    for t in ("a", "b"):
        mariadb.execute(f"CREATE TABLE `{db}`.{t} (id INT PRIMARY KEY, v VARCHAR(10))")
    mariadb.execute(f"CREATE TABLE `{db}`.c (k1 INT, k2 INT, v INT, PRIMARY KEY (k2, k1))")
    sel = selector(mariadb, db, max_rows=3)
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO `{db}`.a VALUES (1, 'a1'), (2, 'a2')")
        cur.execute(f"INSERT INTO `{db}`.b VALUES (1, 'b1')")
        cur.execute("COMMIT")
        cur.execute(f"UPDATE `{db}`.a SET v = 'A1' WHERE id = 1")
        cur.execute(f"INSERT INTO `{db}`.c VALUES (1, 2, 3)")
        cur.execute(f"DELETE FROM `{db}`.b WHERE id = 1")
        cur.execute(f"UPDATE `{db}`.c SET v = 4")
        cur.execute(f"DELETE FROM `{db}`.a")
    conn.close()
    changes = collect(sel, 9)
    got = [(c.table, c.op, c.before, c.after) for c in changes]
    assert got == [
        ("a", "insert", None, {"id": 1, "v": "a1"}),
        ("a", "insert", None, {"id": 2, "v": "a2"}),
        ("b", "insert", None, {"id": 1, "v": "b1"}),
        ("a", "update", {"id": 1, "v": "a1"}, {"id": 1, "v": "A1"}),
        ("c", "insert", None, {"k1": 1, "k2": 2, "v": 3}),
        ("b", "delete", {"id": 1, "v": "b1"}, None),
        ("c", "update", {"k1": 1, "k2": 2, "v": 3}, {"k1": 1, "k2": 2, "v": 4}),
        ("a", "delete", {"id": 1, "v": "A1"}, None),
        ("a", "delete", {"id": 2, "v": "a2"}, None),
    ]
    assert changes[4].primary_key == ("k2", "k1")
    assert all(c.schema == db for c in changes)
    # the first transaction's rows share its position; row offsets count inside it
    assert [c.index for c in changes[:3]] == [0, 1, 2]
    assert len({(c.position.file, c.position.pos) for c in changes[:3]}) == 1
    assert [c.position.sort_key() for c in changes] == sorted(
        c.position.sort_key() for c in changes
    )
    assert changes[0].gtid and changes[3].gtid and changes[0].gtid != changes[3].gtid
    sel.stop()


def test_ddl_is_its_own_batch(mariadb: Any, source_db: str) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    sel = selector(mariadb, db)
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES (1)")
    mariadb.execute(f"ALTER TABLE `{db}`.a ADD COLUMN v INT DEFAULT 7")
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES (2, 8)")
    batches = []
    while sum(len(b.changes) for b in batches) < 3:
        batch = sel.select()
        sel.ack(batch.batch_id)
        if batch.changes:
            batches.append(batch)
    assert [len(b.changes) for b in batches] == [1, 1, 1]
    ddl = batches[1].changes[0]
    assert isinstance(ddl, DdlChange) and "ADD COLUMN v" in ddl.statement
    assert batches[2].changes[0].after == {"id": 2, "v": 8}  # type: ignore[union-attr]
    sel.stop()


def test_rollback_after_two_unacked_batches(mariadb: Any, source_db: str) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    store = MemoryPositionStore()
    sel = selector(mariadb, db, max_rows=2, store=store)
    for first in (1, 3, 5, 7):
        mariadb.execute(f"INSERT INTO `{db}`.a VALUES ({first}), ({first + 1})")
    b1 = select_rows(sel)
    sel.ack(b1.batch_id)
    b2 = select_rows(sel)
    b3 = select_rows(sel)
    assert (ids(b1.changes), ids(b2.changes), ids(b3.changes)) == ([1, 2], [3, 4], [5, 6])
    sel.rollback()
    assert sel.committed == b1.position == store.load()
    r2 = select_rows(sel)
    r3 = select_rows(sel)
    assert (ids(r2.changes), ids(r3.changes)) == ([3, 4], [5, 6])
    assert r2.batch_id > b3.batch_id
    with pytest.raises(FatalError):
        sel.ack(b2.batch_id)
    sel.ack(r2.batch_id)
    sel.ack(r3.batch_id)
    assert ids(select_rows(sel).changes) == [7, 8]
    sel.stop()


def test_restart_from_the_middle_of_a_split_transaction(
    mariadb: Any, source_db: str, tmp_path: Path
) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    store = FilePositionStore(tmp_path / "pos.json")
    sel = selector(mariadb, db, max_rows=4, store=store)
    values = ", ".join(f"({i})" for i in range(10))
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES {values}")
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES (100)")
    first = select_rows(sel)
    assert ids(first.changes) == [0, 1, 2, 3]
    assert first.position is not None and first.position.row_offset == 4
    sel.ack(first.batch_id)
    assert ids(select_rows(sel).changes) == [4, 5, 6, 7]  # handed out, never acked
    sel.stop()

    again = selector(mariadb, db, max_rows=4, store=FilePositionStore(tmp_path / "pos.json"))
    assert again.committed == first.position
    assert ids(collect(again, 7)) == [4, 5, 6, 7, 8, 9, 100]
    again.stop()


CHILD = textwrap.dedent(
    """
    import json, sys
    from selector.config import MySQLSourceConfig
    from selector.mysql import MySQLSelector
    from selector.store import FilePositionStore
    cfg = MySQLSourceConfig(**json.loads(sys.argv[1]))
    sel = MySQLSelector(cfg, 3, 100, FilePositionStore(sys.argv[2]), "child")
    sel.start()
    want, got = int(sys.argv[3]), []
    while len(got) < want:
        batch = sel.select()
        got.extend(c.after["id"] for c in batch.changes)
        sel.ack(batch.batch_id)
    sel.stop()
    print(json.dumps(got))
    """
)


def test_restart_in_a_new_process(mariadb: Any, source_db: str, tmp_path: Path) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    status = mariadb.execute("SHOW MASTER STATUS")[0]
    fields = {
        "host": mariadb.host,
        "port": mariadb.port,
        "user": mariadb.user,
        "password": mariadb.password,
        "server_id": random.randint(1000, 2**31),
        "include": [f"{db}.*"],
        "start": {"file": status[0], "pos": int(status[1])},
    }
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES " + ", ".join(f"({i})" for i in range(8)))
    for i in range(8, 12):
        mariadb.execute(f"INSERT INTO `{db}`.a VALUES ({i})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pos = str(tmp_path / "pos.json")

    def child(want: int) -> list[int]:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(fields), pos, str(want)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    first = child(3)  # one piece of the 8-row transaction
    assert first == [0, 1, 2]
    assert Position.from_json(Path(pos).read_text()).row_offset == 3
    second = child(9)
    assert second == list(range(3, 12))


def test_include_exclude(mariadb: Any, source_db: str) -> None:
    db = source_db
    for t in ("keep1", "keep2", "skip_me"):
        mariadb.execute(f"CREATE TABLE `{db}`.{t} (id INT PRIMARY KEY)")
    sel = selector(mariadb, db, exclude=[f"{db}.skip_*"], include=[f"{db}.keep*", f"{db}.skip*"])
    mariadb.execute(f"INSERT INTO `{db}`.skip_me VALUES (1)")
    mariadb.execute(f"INSERT INTO `{db}`.keep1 VALUES (2)")
    mariadb.execute(f"ALTER TABLE `{db}`.skip_me ADD COLUMN v INT")
    mariadb.execute(f"INSERT INTO `{db}`.skip_me VALUES (3, 3)")
    mariadb.execute(f"ALTER TABLE `{db}`.keep2 ADD COLUMN v INT")
    mariadb.execute(f"INSERT INTO `{db}`.keep2 VALUES (4, 4)")
    mariadb.execute(f"DROP TABLE `{db}`.keep1, `{db}`.skip_me")
    seen: list[Any] = []
    deadline = time.monotonic() + 20
    while len(seen) < 4 and time.monotonic() < deadline:
        batch = sel.select()
        sel.ack(batch.batch_id)
        seen.extend(batch.changes)
    assert [(type(c).__name__, getattr(c, "table", None)) for c in seen] == [
        ("RowChange", "keep1"),
        ("DdlChange", None),
        ("RowChange", "keep2"),
        ("DdlChange", None),
    ]
    assert "keep2" in seen[1].statement
    # the excluded table is not dropped downstream
    assert seen[3].statement == f"DROP TABLE IF EXISTS `{db}`.`keep1`"
    assert seen[3].tables == ((db, "keep1"),)
    sel.stop()


def test_killed_dump_connection_is_survived(mariadb: Any, source_db: str) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    sel = selector(mariadb, db, max_rows=5)
    for i in range(20):
        mariadb.execute(f"INSERT INTO `{db}`.a VALUES ({i})")
    got = ids(collect(sel, 5))
    pending = select_rows(sel)  # handed out, acked only after the kill: must not come twice
    got += ids(pending.changes)
    stream = sel._stream
    assert stream is not None
    thread_id = stream._stream_connection.server_thread_id[0]
    mariadb.execute(f"KILL {int(thread_id)}")
    for i in range(20, 30):
        mariadb.execute(f"INSERT INTO `{db}`.a VALUES ({i})")
    sel.ack(pending.batch_id)
    got += ids(collect(sel, 30 - len(got)))
    assert got == list(range(30))
    assert sel._stream is not stream  # it really reconnected
    sel.stop()


def test_idle_select_returns_in_time(mariadb: Any, source_db: str) -> None:
    sel = selector(mariadb, source_db)
    t0 = time.monotonic()
    batch = sel.select()
    elapsed = time.monotonic() - t0
    assert not batch.changes
    assert elapsed < 0.1 + 1.0 + 0.5  # max_wait + one heartbeat + slack
    sel.stop()


def test_purged_position_is_fatal(make_mariadb: Any) -> None:
    server = make_mariadb()
    server.execute("CREATE DATABASE p")
    server.execute("CREATE TABLE p.a (id INT PRIMARY KEY)")
    first = server.execute("SHOW MASTER STATUS")[0][0]
    server.execute("INSERT INTO p.a VALUES (1)")
    server.execute("FLUSH BINARY LOGS")
    newest = server.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + 30
    while server.execute("SHOW BINARY LOGS")[0][0] == first:  # purge waits for the checkpoint
        assert time.monotonic() < deadline, "the first binlog could not be purged"
        server.execute(f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.2)
    store = MemoryPositionStore(Position(first, 4))
    sel = MySQLSelector(config(server, "p"), 10, 100, store, "purged")
    with pytest.raises(FatalError) as info:
        sel.start()
    assert f"{first}:4" in str(info.value) and newest in str(info.value)


def test_misconfigured_server_is_a_clear_fatal_error(make_mariadb: Any) -> None:
    server = make_mariadb(["--binlog-format=STATEMENT", "--binlog-row-image=MINIMAL"])
    cfg = config(server, "x")
    checks = {what.split(" ")[0]: ok for what, ok, _ in check_source(cfg, "x")}
    assert checks["connect"] and checks["log_bin"] and checks["privileges"]
    assert not checks["binlog_format"] and not checks["binlog_row_image"]
    with pytest.raises(FatalError, match=r"binlog_format.*SET GLOBAL binlog_format"):
        MySQLSelector(cfg, 10, 100, MemoryPositionStore()).start()


def test_start_from_a_gtid(mariadb: Any, source_db: str) -> None:
    db = source_db
    mariadb.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)")
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES (1)")
    gtid = mariadb.execute("SELECT @@gtid_binlog_pos")[0][0]
    mariadb.execute(f"INSERT INTO `{db}`.a VALUES (2)")
    sel = selector(mariadb, db, start={"gtid": gtid})
    changes = collect(sel, 1)
    assert ids(changes) == [2]
    assert changes[0].position.gtid_set == gtid
    sel.stop()


def test_stop_wakes_a_blocked_select(mariadb: Any, source_db: str) -> None:
    sel = MySQLSelector(
        config(mariadb, source_db, heartbeat_ms=60000), 10, 30000, MemoryPositionStore(), "stop"
    )
    sel.start()
    threading.Timer(0.3, sel.stop).start()
    t0 = time.monotonic()
    assert sel.select().is_empty
    assert time.monotonic() - t0 < 5
