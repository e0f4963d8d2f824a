"""MySQLSink against a real second MariaDB (``mariadb_target``).

Batches are built by hand; the source schema "src" is mapped to the fresh
``target_db`` through ``schema_map``, and the checkpoint table lives in
``target_db`` too, so tests do not share state.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from pipeline.dialect.statements import classify, references
from pipeline.errors import FatalError, FencedError, ResumableError
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.base import SinkCheckpoint
from sinks.mysql import MySQLSink, MySQLSinkConfig

SRC = "src"


def pos(n: int) -> Position:
    return Position("mysql-bin.000001", 1000 + n, ts=1700000000.0 + n)


def ins(table: str, row: dict[str, Any], pk: tuple[str, ...] = ("id",)) -> RowChange:
    return RowChange(SRC, table, "insert", None, row, pk, 0.0, pos(0))


def upd(table: str, before: dict[str, Any], after: dict[str, Any], pk=("id",)) -> RowChange:
    return RowChange(SRC, table, "update", before, after, pk, 0.0, pos(0))


def dele(table: str, row: dict[str, Any], pk: tuple[str, ...] = ("id",)) -> RowChange:
    return RowChange(SRC, table, "delete", row, None, pk, 0.0, pos(0))


def batch(n: int, *changes: Any) -> Batch:
    return Batch(n, list(changes), pos(n), first_event_ts=0.0)


def make_sink(server: Any, db: str, **fields: Any) -> MySQLSink:
    settings: dict[str, Any] = {
        "type": "mysql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "schema_map": {SRC: db},
        "checkpoint_schema": db,
    }
    config = MySQLSinkConfig.model_validate({**settings, **fields})
    return MySQLSink(config, f"p-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def sink(mariadb_target: Any, target_db: str) -> Iterator[MySQLSink]:
    s = make_sink(mariadb_target, target_db)
    s.open()
    yield s
    s.close()


def rows(server: Any, db: str, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    return list(server.execute(f"SELECT * FROM `{db}`.`{table}` ORDER BY {order}"))


def stored(server: Any, db: str, pipeline_id: str) -> tuple[Any, ...]:
    [row] = server.execute(
        f"SELECT epoch, position FROM `{db}`.ferry_checkpoint WHERE pipeline_id=%s",
        (pipeline_id,),
    )
    return row


@pytest.fixture
def kv(mariadb_target: Any, target_db: str) -> str:
    mariadb_target.execute(
        f"CREATE TABLE `{target_db}`.kv (id INT PRIMARY KEY, v VARCHAR(5),"
        " email VARCHAR(20) NULL UNIQUE)"
    )
    return "kv"


def test_every_supported_type_round_trips(sink: MySQLSink, mariadb_target: Any, target_db: str):
    mariadb_target.execute(
        f"""CREATE TABLE `{target_db}`.types (
          id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, d DECIMAL(30,10), f DOUBLE,
          dt DATETIME(6), ts TIMESTAMP(6) NULL, da DATE, ti TIME(6),
          s VARCHAR(100), tx TEXT, b VARBINARY(50), bl BLOB,
          e ENUM('a','b'), st SET('x','y','z'), j JSON, n INT NULL)
          DEFAULT CHARSET=utf8mb4"""
    )
    stamp = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    row = {
        "id": 1,
        "i": -(2**63),
        "u": 2**64 - 1,
        "d": Decimal("-12345678901234567890.0123456789"),
        "f": 1.5e-300,
        "dt": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "ts": stamp,  # naive UTC, as the binlog reader decodes TIMESTAMP
        "da": dt.date(1000, 1, 1),
        "ti": dt.timedelta(hours=-838, minutes=-59, seconds=-59),
        "s": "üñí 😀 'quote' \\ back %s",
        "tx": "line\nnext\x00nul",
        "b": b"\x00\x01'\"\\\xff",
        "bl": bytes(range(256)) * 4,
        "e": "b",
        "st": {"z", "x"},
        "j": {"k": [1, 2.5, None, "ü"], "n": {"x": True}},
        "n": None,
    }
    row2 = dict(row, id=2, ti=dt.timedelta(microseconds=1), j=[1, "two"], st=set(), s="")
    sink.load(batch(1, ins("types", row), ins("types", row2)), epoch=1)

    got = mariadb_target.execute(
        f"SELECT id, i, u, d, f, dt, UNIX_TIMESTAMP(ts), da, ti, s, tx, b, bl, e, st, j, n"
        f" FROM `{target_db}`.types ORDER BY id"
    )
    for expected, actual in zip((row, row2), got, strict=True):
        a = dict(
            zip(
                [
                    "id",
                    "i",
                    "u",
                    "d",
                    "f",
                    "dt",
                    "ts",
                    "da",
                    "ti",
                    "s",
                    "tx",
                    "b",
                    "bl",
                    "e",
                    "st",
                    "j",
                    "n",
                ],
                actual,
                strict=True,
            )
        )
        assert a["ts"] == Decimal(calendar.timegm(stamp.timetuple())) + Decimal("0.123456")
        assert set(filter(None, a["st"].split(","))) == expected["st"]
        assert json.loads(a["j"]) == expected["j"]
        for column in ("id", "i", "u", "d", "f", "dt", "da", "ti", "s", "tx", "b", "bl", "e", "n"):
            assert a[column] == expected[column], column


def test_ten_updates_of_one_key_become_one_statement(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str, monkeypatch: Any
):
    sink.load(batch(1, ins(kv, {"id": 1, "v": "v0", "email": None})), epoch=1)
    sent: list[str] = []
    real = pymysql.cursors.Cursor.execute

    def spy(self: Any, query: str, args: Any = None) -> Any:
        sent.append(query)
        return real(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", spy)
    updates = [
        upd(kv, {"id": 1, "v": f"v{i}", "email": None}, {"id": 1, "v": f"v{i + 1}", "email": None})
        for i in range(10)
    ]
    before = sink.statements_executed
    sink.load(batch(2, *updates), epoch=1)
    data = [q for q in sent if f"`{target_db}`.`kv`" in q]
    assert len(data) == 1 and data[0].startswith("INSERT INTO")
    assert sink.statements_executed - before == 1
    assert rows(mariadb_target, target_db, kv) == [(1, "v10", None)]

    # and 300 inserts of different keys are one statement too, not 300 round trips
    sent.clear()
    sink.load(batch(3, *[ins(kv, {"id": i, "v": "n", "email": None}) for i in range(2, 302)]), 1)
    assert len([q for q in sent if f"`{target_db}`.`kv`" in q]) == 1
    assert len(rows(mariadb_target, target_db, kv)) == 301


def test_batch_failing_halfway_leaves_target_unchanged(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str
):
    sink.load(batch(1, ins(kv, {"id": 1, "v": "a", "email": None})), epoch=1)
    snapshot = rows(mariadb_target, target_db, kv)
    checkpoint = stored(mariadb_target, target_db, sink.pipeline_id)
    changes = [ins(kv, {"id": i, "v": "ok", "email": None}) for i in range(2, 40)]
    changes.append(dele(kv, {"id": 1, "v": "a", "email": None}))
    changes.append(ins(kv, {"id": 40, "v": "far too long", "email": None}))  # VARCHAR(5)
    changes.append(ins(kv, {"id": 41, "v": "ok", "email": None}))
    with pytest.raises(FatalError) as info:
        sink.load(batch(2, *changes), epoch=1)
    text = str(info.value)
    assert "src.kv" in text and f"{target_db}.kv" in text
    assert "key (id=40)" in text and "Data too long" in text and "INSERT INTO" in text
    assert info.value.batch_id == 2
    assert rows(mariadb_target, target_db, kv) == snapshot
    assert stored(mariadb_target, target_db, sink.pipeline_id) == checkpoint
    # the sink recovers on the next load
    sink.load(batch(3, ins(kv, {"id": 2, "v": "b", "email": None})), epoch=1)
    assert rows(mariadb_target, target_db, kv) == [(1, "a", None), (2, "b", None)]


def test_stale_epoch_is_fenced_and_changes_nothing(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str
):
    assert sink.checkpoint() is None
    sink.load(batch(1, ins(kv, {"id": 1, "v": "new", "email": None})), epoch=5)
    assert sink.checkpoint() == SinkCheckpoint(pos(1), 5)

    stale = make_sink(mariadb_target, target_db)
    stale.pipeline_id = sink.pipeline_id  # the old node of the same pipeline
    with pytest.raises(FencedError, match="epoch 5"):
        stale.load(batch(2, upd(kv, {"id": 1, "v": "new"}, {"id": 1, "v": "old"})), epoch=4)
    stale.close()
    assert rows(mariadb_target, target_db, kv) == [(1, "new", None)]
    assert sink.checkpoint() == SinkCheckpoint(pos(1), 5)

    sink.load(batch(3, ins(kv, {"id": 2, "v": "x", "email": None})), epoch=6)  # newer: accepted
    assert sink.checkpoint() == SinkCheckpoint(pos(3), 6)
    assert json.loads(stored(mariadb_target, target_db, sink.pipeline_id)[1])["pos"] == 1003


def test_mixed_batch_is_idempotent_and_matches_the_model(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str
):
    def r(id_: int, v: str, email: str | None = None) -> dict[str, Any]:
        return {"id": id_, "v": v, "email": email}

    sink.load(batch(1, *[ins(kv, r(i, f"s{i}", f"e{i}")) for i in range(1, 6)]), epoch=1)
    mixed = batch(
        2,
        dele(kv, r(1, "s1", "e1")),
        ins(kv, r(1, "re", "e1")),  # delete + reinsert -> upsert
        upd(kv, r(2, "s2", "e2"), r(20, "moved", "e2")),  # key change 2 -> 20
        upd(kv, r(20, "moved", "e2"), r(20, "m2", "e2")),
        dele(kv, r(3, "s3", "e3")),
        ins(kv, r(30, "took", "e3")),  # takes the unique email of the deleted key 3
        ins(kv, r(6, "tmp")),
        dele(kv, r(6, "tmp")),  # insert + delete -> nothing
    )
    expected = [
        (1, "re", "e1"),
        (4, "s4", "e4"),
        (5, "s5", "e5"),
        (20, "m2", "e2"),
        (30, "took", "e3"),
    ]
    sink.load(mixed, epoch=1)
    assert rows(mariadb_target, target_db, kv) == expected
    sink.load(mixed, epoch=1)  # the same batch again
    assert rows(mariadb_target, target_db, kv) == expected
    assert sink.checkpoint() == SinkCheckpoint(pos(2), 1)


def test_unique_value_swap_falls_back_to_binlog_order(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str
):
    def r(id_: int, email: str) -> dict[str, Any]:
        return {"id": id_, "v": "v", "email": email}

    sink.load(batch(1, ins(kv, r(1, "a")), ins(kv, r(2, "b"))), epoch=1)
    swap = batch(
        2,
        upd(kv, r(1, "a"), r(1, "tmp")),
        upd(kv, r(2, "b"), r(2, "a")),
        upd(kv, r(1, "tmp"), r(1, "b")),
    )
    sink.load(swap, epoch=1)  # merged apply hits 1062; the in-order retry succeeds
    assert rows(mariadb_target, target_db, kv) == [(1, "v", "b"), (2, "v", "a")]
    assert sink.checkpoint() == SinkCheckpoint(pos(2), 1)


def test_table_without_primary_key(sink: MySQLSink, mariadb_target: Any, target_db: str):
    mariadb_target.execute(f"CREATE TABLE `{target_db}`.nk (a INT, b VARCHAR(10) NULL)")
    one = {"a": 1, "b": None}
    sink.load(
        batch(
            1,
            ins("nk", one, ()),
            ins("nk", one, ()),  # identical rows are legal and both kept
            ins("nk", {"a": 2, "b": "x"}, ()),
            upd("nk", one, {"a": 1, "b": "set"}, ()),  # NULL matched null-safely, one row
            dele("nk", {"a": 2, "b": "x"}, ()),
        ),
        epoch=1,
    )
    assert rows(mariadb_target, target_db, "nk", "a, b") == [(1, None), (1, "set")]

    rejecting = make_sink(mariadb_target, target_db, no_primary_key="reject")
    with pytest.raises(FatalError, match="no primary key"):
        rejecting.load(batch(2, ins("nk", {"a": 9, "b": None}, ())), epoch=1)
    rejecting.close()
    assert rows(mariadb_target, target_db, "nk", "a, b") == [(1, None), (1, "set")]


def ddl(sql: str, n: int, schema: str = SRC) -> DdlChange:
    """A DdlChange as the selector makes it (kind, tables and name positions from the text)."""
    statement = classify(sql, schema)
    assert statement.is_ddl, sql
    kind = statement.kind
    assert kind in ("database", "table", "routine")
    names = references(sql, statement)
    return DdlChange(schema, sql, 0.0, pos(n), kind=kind, tables=statement.tables, names=names)


def test_ddl_apply_skip_fail(mariadb_target: Any, target_db: str):
    def tables() -> set[str]:
        return {r[0] for r in mariadb_target.execute(f"SHOW TABLES FROM `{target_db}`")}

    create = DdlChange(SRC, "CREATE TABLE t2 (id INT PRIMARY KEY)", 0.0, pos(1))
    alter = DdlChange(SRC, "ALTER TABLE t2 ADD COLUMN note VARCHAR(10)", 0.0, pos(2))

    apply = make_sink(mariadb_target, target_db, ddl="apply")
    apply.load(Batch(1, [create], pos(1)), epoch=1)
    assert "t2" in tables()
    assert apply.checkpoint() == SinkCheckpoint(pos(1), 1)
    apply.load(Batch(2, [alter], pos(2)), epoch=1)
    apply.load(Batch(2, [alter], pos(2)), epoch=1)  # a replay: "duplicate column" is passed
    apply.load(batch(3, ins("t2", {"id": 1, "note": "hi"})), epoch=1)
    assert rows(mariadb_target, target_db, "t2") == [(1, "hi")]
    qualified = ddl("ALTER TABLE `src`.t2 ADD COLUMN x INT", 4)  # src is mapped to target_db
    apply.load(Batch(4, [qualified], pos(4)), epoch=1)
    assert rows(mariadb_target, target_db, "t2") == [(1, "hi", None)]
    with pytest.raises(FencedError):
        apply.load(Batch(5, [DdlChange(SRC, "DROP TABLE t2", 0.0, pos(5))], pos(5)), epoch=0)
    assert "t2" in tables()
    apply.close()

    skip = make_sink(mariadb_target, target_db, ddl="skip")
    skip.load(Batch(6, [DdlChange(SRC, "CREATE TABLE t3 (id INT)", 0.0, pos(6))], pos(6)), 1)
    assert "t3" not in tables()
    assert skip.checkpoint() == SinkCheckpoint(pos(6), 1)
    skip.close()

    fail = make_sink(mariadb_target, target_db, ddl="fail")
    with pytest.raises(FatalError, match="CREATE TABLE t4"):
        fail.load(Batch(7, [DdlChange(SRC, "CREATE TABLE t4 (id INT)", 0.0, pos(7))], pos(7)), 1)
    assert "t4" not in tables()
    assert fail.checkpoint() is None  # its own pipeline id: nothing stored
    fail.close()


def test_ddl_on_an_empty_target_with_mapped_names(mariadb_target: Any, target_db: str):
    """CREATE DATABASE runs without a default database; mapped schema and table names are
    rewritten everywhere they occur; the source session's sql_mode applies; triggers are not
    applied unless sink.routines says so."""
    fresh = f"{target_db}_new"
    sink = make_sink(
        mariadb_target,
        target_db,
        schema_map={SRC: target_db, "made": fresh},
        table_map={f"{SRC}.orders": f"{target_db}.orders_copy"},
    )
    try:
        create_db = ddl(
            "CREATE DATABASE IF NOT EXISTS made DEFAULT CHARACTER SET latin2", 1, "made"
        )
        sink.load(Batch(1, [create_db], pos(1)), epoch=1)
        [(charset,)] = mariadb_target.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA"
            f" WHERE SCHEMA_NAME = '{fresh}'"
        )
        assert charset == "latin2"
        quoted = ddl("CREATE TABLE made.\"z\" (d DATE NOT NULL DEFAULT '0000-00-00')", 2)
        quoted.session = {"sql_mode": "ANSI_QUOTES", "explicit_defaults_for_timestamp": "1"}
        sink.load(Batch(2, [quoted], pos(2)), epoch=1)  # "z" is a name only in ANSI_QUOTES
        sink.load(Batch(3, [ddl("CREATE TABLE orders (id INT PRIMARY KEY, v INT)", 3)], pos(3)), 1)
        like = ddl("CREATE TABLE made.o2 LIKE src.orders", 4)
        sink.load(Batch(4, [like], pos(4)), epoch=1)
        trigger = ddl(
            "CREATE TRIGGER bump BEFORE INSERT ON orders FOR EACH ROW SET NEW.v = NEW.v + 1", 5
        )
        assert trigger.kind == "routine"
        sink.load(Batch(5, [trigger], pos(5)), epoch=1)
        sink.load(batch(6, ins("orders", {"id": 1, "v": 10})), epoch=1)
    finally:
        sink.close()
    assert rows(mariadb_target, target_db, "orders_copy") == [(1, 10)]  # no trigger fired
    assert rows(mariadb_target, fresh, "o2") == []
    assert mariadb_target.execute(f"SHOW TABLES FROM `{fresh}`") == (("o2",), ("z",))
    triggers = mariadb_target.execute(
        f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{target_db}'"
    )
    assert triggers == ()

    applying = make_sink(mariadb_target, target_db, routines="apply")
    try:
        applying.load(Batch(7, [ddl("CREATE TABLE t9 (id INT PRIMARY KEY, v INT)", 7)], pos(7)), 1)
        trigger = ddl("CREATE TRIGGER t9_bump BEFORE INSERT ON t9 FOR EACH ROW SET NEW.v = 1", 8)
        applying.load(Batch(8, [trigger], pos(8)), epoch=1)
    finally:
        applying.close()
    assert mariadb_target.execute(
        f"SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{target_db}'"
    ) == (("t9_bump",),)
    mariadb_target.execute(f"DROP DATABASE `{fresh}`")


def test_empty_batch_moves_the_checkpoint(mariadb_target: Any, target_db: str):
    s = make_sink(mariadb_target, target_db, empty_checkpoint_interval_ms=0)
    s.load(Batch(1, [], pos(1)), epoch=2)
    assert s.checkpoint() == SinkCheckpoint(pos(1), 2)
    s.close()


def test_lost_connection_is_resumable_and_the_next_load_reconnects(
    sink: MySQLSink, kv: str, mariadb_target: Any, target_db: str
):
    assert sink._conn is not None
    mariadb_target.execute(f"KILL {sink._conn.thread_id()}")
    with pytest.raises(ResumableError):
        sink.load(batch(1, ins(kv, {"id": 1, "v": "a", "email": None})), epoch=1)
    sink.load(batch(1, ins(kv, {"id": 1, "v": "a", "email": None})), epoch=1)
    assert rows(mariadb_target, target_db, kv) == [(1, "a", None)]


def test_unknown_table_is_fatal(sink: MySQLSink):
    with pytest.raises(FatalError, match=r"src\.nope") as info:
        sink.load(batch(1, ins("nope", {"id": 1})), epoch=1)
    assert not isinstance(info.value, ResumableError)


def test_check(mariadb_target: Any, target_db: str):
    good = make_sink(mariadb_target, target_db)
    results = good.check()
    assert [ok for _, ok, _ in results] == [True, True, True]
    assert results[1][0].startswith("sink TLS: ")  # protocol and cipher, or not encrypted
    bad = make_sink(mariadb_target, target_db, port=1)
    results = bad.check()
    assert results[0][1] is False and "cannot connect" in results[0][2]


def test_wrong_password_is_fatal_and_not_echoed(mariadb_target: Any, target_db: str):
    s = make_sink(mariadb_target, target_db, password="wrong-Secret-42")
    with pytest.raises(FatalError) as info:
        s.open()
    assert not isinstance(info.value, ResumableError)
    assert "1045" in str(info.value) and "wrong-Secret-42" not in str(info.value)


@pytest.mark.parametrize("size", [1_200_000, 3_000_000], ids=["refused", "connection-dropped"])
def test_a_row_over_the_targets_max_allowed_packet_pauses_naming_it(
    make_mariadb: Any, size: int
) -> None:
    """A row just over the target's max_allowed_packet gets 1153; one a few times over it
    makes MariaDB drop the connection (2006), which alone would be retried as a lost
    connection until pipeline.max_retries. Either way: fatal, in ferry's words."""
    target = make_mariadb(extra_args=["--max-allowed-packet=1M"])
    target.execute("CREATE DATABASE t")
    target.execute("CREATE TABLE t.docs (id INT PRIMARY KEY, body LONGBLOB)")
    s = make_sink(target, "t")
    try:
        s.open()
        s.load(batch(1, ins("docs", {"id": 1, "body": b"small"})), epoch=1)
        with pytest.raises(FatalError) as info:
            s.load(batch(2, ins("docs", {"id": 2, "body": b"\x01" * size})), epoch=1)
        text = str(info.value)
        assert "larger than the target's max_allowed_packet (1048576 bytes)" in text, text
        assert "raise max_allowed_packet on the target to at least" in text, text
        assert "src.docs (target t.docs)" in text and "key (id=2)" in text, text
        s.load(batch(3, ins("docs", {"id": 3, "body": b"fine"})), epoch=1)  # reconnects
    finally:
        s.close()
    assert [r[0] for r in rows(target, "t", "docs")] == [1, 3]


def test_ferry_check_reaches_the_target_and_writes_the_checkpoint_row(
    mariadb_target: Any, target_db: str
) -> None:
    sink = make_sink(mariadb_target, target_db)
    lines = sink.check()
    whats = [what for what, ok, _ in lines if ok]
    assert whats[0].startswith("sink mysql reachable at "), lines
    assert whats[-1] == f"sink mysql checkpoint table {target_db}.ferry_checkpoint writable"
    assert all(ok for _, ok, _ in lines), lines
    wrong = make_sink(mariadb_target, target_db, password="not-the-password")
    (reach, ok, why), (_, writable, hint) = wrong.check()
    assert not ok and not writable and hint == "needs a connection first"
    assert "not-the-password" not in reach + why
