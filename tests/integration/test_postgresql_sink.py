"""PostgreSQLSink against a real PostgreSQL (``postgresql``), batches built by hand.

The source schema "src" is mapped to the schema ``tgt`` of a fresh database
(``postgresql_db``), where the checkpoint table lives too, so tests share no state.
Rows carry a definition (``RowChange.definition``), as the selector's do: the sink
creates the tables it needs from it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from pipeline.dialect.statements import classify, references
from pipeline.errors import FatalError, FencedError, ResumableError
from pipeline.model import (
    Batch,
    Column,
    DdlChange,
    JsonText,
    Position,
    RowChange,
    TableChange,
    TableSchema,
    ZeroDate,
)
from selector.ddl import alter_table, dropped_index, parse_create, unique_index
from sinks.base import SinkCheckpoint
from sinks.postgresql import PostgreSQLSink, PostgreSQLSinkConfig

SRC, TGT = "src", "tgt"


def pos(n: int) -> Position:
    return Position("mysql-bin.000001", 1000 + n, ts=1700000000.0 + n)


def table(sql: str) -> TableSchema:
    """A definition as the schema history makes it from a CREATE TABLE."""
    _, draft = parse_create(sql, SRC)
    assert not isinstance(draft, tuple), "not a LIKE"
    return draft.build()


KV = table("CREATE TABLE kv (id INT PRIMARY KEY, v VARCHAR(5), email VARCHAR(20) UNIQUE)")


def change(op: str, before: Any, after: Any, definition: TableSchema = KV) -> RowChange:
    pk = definition.primary_key
    return RowChange(
        SRC,
        definition.table,
        op,
        before,
        after,
        pk,
        0.0,
        pos(0),
        definition=definition,  # type: ignore[arg-type]
    )


def ins(row: dict[str, Any], definition: TableSchema = KV) -> RowChange:
    return change("insert", None, row, definition)


def upd(before: dict[str, Any], after: dict[str, Any], definition: TableSchema = KV) -> RowChange:
    return change("update", before, after, definition)


def dele(row: dict[str, Any], definition: TableSchema = KV) -> RowChange:
    return change("delete", row, None, definition)


def batch(n: int, *changes: Any) -> Batch:
    return Batch(n, list(changes), pos(n), first_event_ts=0.0)


def make_sink(server: Any, db: str, **fields: Any) -> PostgreSQLSink:
    settings: dict[str, Any] = {
        "type": "postgresql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": db,
        "schema_map": {SRC: TGT},
        "checkpoint_schema": TGT,
    }
    config = PostgreSQLSinkConfig.model_validate({**settings, **fields})
    return PostgreSQLSink(config, f"p-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def sink(postgresql: Any, postgresql_db: str) -> Iterator[PostgreSQLSink]:
    s = make_sink(postgresql, postgresql_db)
    s.open()
    yield s
    s.close()


def rows(server: Any, db: str, name: str, order: str = "id") -> list[tuple[Any, ...]]:
    return list(server.execute(f'SELECT * FROM {TGT}."{name}" ORDER BY {order}', database=db))


def columns(server: Any, db: str, name: str) -> list[tuple[str, str, str]]:
    return list(
        server.execute(
            "SELECT column_name, format_type(atttypid, atttypmod), is_nullable"
            " FROM information_schema.columns c JOIN pg_attribute a"
            " ON a.attrelid = to_regclass(quote_ident(c.table_schema) || '.' ||"
            " quote_ident(c.table_name)) AND a.attname = c.column_name"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (TGT, name),
            database=db,
        )
    )


def test_every_type_is_mapped_and_stored(sink: PostgreSQLSink, postgresql: Any, postgresql_db: str):
    types = table(
        """CREATE TABLE types (id INT UNSIGNED PRIMARY KEY, ti TINYINT, su SMALLINT UNSIGNED,
        mi MEDIUMINT, bu BIGINT UNSIGNED, b BIGINT, d DECIMAL(30,10), f FLOAT, db DOUBLE,
        bt BIT(5), y YEAR, da DATE NOT NULL, dt DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME,
        c CHAR(3), vc VARCHAR(10) NOT NULL, tx LONGTEXT, e ENUM('x','y'), st SET('b','a','c'),
        j JSON, bi BINARY(3), bl BLOB, g POINT)"""
    )
    row = {
        "id": 4294967295,
        "ti": -128,
        "su": 65535,
        "mi": -8388608,
        "bu": 18446744073709551615,
        "b": -(2**63),
        "d": Decimal("-12345678901234567890.0123456789"),
        "f": 3.14,
        "db": 1.5e-300,
        "bt": 5,
        "y": 2155,
        "da": ZeroDate("0000-00-00"),
        "dt": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 123000, tzinfo=dt.UTC),
        "tm": -dt.timedelta(hours=838, minutes=59, seconds=59),
        "c": "ab",
        "vc": "üñ\x00í 😀",
        "tx": "line\nnext 'q' \\ %s",
        "e": "y",
        "st": {"a", "b"},
        "j": JsonText('{"k": [1, 2.5, null, "\\u0000ü"], "n": {"x": true}}'),
        "bi": b"\x00\x01\x00",
        "bl": bytes(range(256)),
        "g": b"\x00\x00\x00\x00\x01\x01\x00\x00\x00" + bytes(16),
    }
    sink.load(batch(1, ins(row, types)), epoch=1)

    assert columns(postgresql, postgresql_db, "types") == [
        ("id", "bigint", "NO"),
        ("ti", "smallint", "YES"),
        ("su", "integer", "YES"),
        ("mi", "integer", "YES"),
        ("bu", "numeric(20,0)", "YES"),
        ("b", "bigint", "YES"),
        ("d", "numeric(30,10)", "YES"),
        ("f", "real", "YES"),
        ("db", "double precision", "YES"),
        ("bt", "bit varying(5)", "YES"),
        ("y", "smallint", "YES"),
        ("da", "date", "YES"),  # NOT NULL in MySQL, but zero dates become NULL
        ("dt", "timestamp(6) without time zone", "YES"),
        ("ts", "timestamp(3) with time zone", "YES"),
        ("tm", "interval", "YES"),
        ("c", "character varying(3)", "YES"),
        ("vc", "character varying(10)", "NO"),
        ("tx", "text", "YES"),
        ("e", "text", "YES"),
        ("st", "text", "YES"),
        ("j", "jsonb", "YES"),
        ("bi", "bytea", "YES"),
        ("bl", "bytea", "YES"),
        ("g", "bytea", "YES"),
    ]
    [got] = postgresql.execute(
        f"SELECT *, f = 3.14::real, bt::text FROM {TGT}.types", database=postgresql_db
    )
    stored = dict(zip([*row, "f_exact", "bits"], got, strict=True))
    assert stored["f_exact"] is True
    assert stored["bits"] == "00101"
    assert stored["da"] is None
    assert stored["vc"] == "üñí 😀"  # PostgreSQL text cannot hold NUL
    assert stored["st"] == "b,a"  # in the definition's order, as MySQL shows a SET
    assert stored["j"] == {"k": [1, 2.5, None, "ü"], "n": {"x": True}}
    assert stored["tm"] == row["tm"]
    for name in ("id", "ti", "su", "mi", "bu", "b", "d", "db", "y", "dt", "ts", "c", "tx", "e"):
        assert stored[name] == row[name], name
    for name in ("bi", "bl", "g"):
        assert bytes(stored[name]) == row[name], name


def test_inserts_updates_deletes_and_key_changes_end_equal_and_replay_is_idempotent(
    sink: PostgreSQLSink, postgresql: Any, postgresql_db: str
):
    a, b, c = ({"id": i, "v": f"v{i}", "email": f"{i}@x"} for i in (1, 2, 3))
    sink.load(batch(1, ins(a), ins(b), ins(c)), epoch=1)
    moved = dict(b, id=20)
    second = batch(
        2,
        upd(a, dict(a, v="a1")),
        upd(dict(a, v="a1"), dict(a, v="a2")),
        upd(b, moved),  # a key change
        dele(c),
        ins({"id": 4, "v": "new", "email": None}),
        dele({"id": 4, "v": "new", "email": None}),
        ins(c),
        upd(c, dict(c, email=None)),
    )
    sink.load(second, epoch=1)
    expected = [(1, "a2", "1@x"), (3, "v3", None), (20, "v2", "2@x")]
    assert rows(postgresql, postgresql_db, "kv") == expected
    assert sink.checkpoint() == SinkCheckpoint(pos(2), 1)
    sink.load(second, epoch=1)  # a replay
    # (batch 1 again now would put 2@x on key 2 while key 20 holds it: the source's UNIQUE
    # (email) on the target refuses a state older than the one it holds, as MySQL would)
    sink.load(second, epoch=1)
    assert rows(postgresql, postgresql_db, "kv") == expected


def test_a_zombies_stale_epoch_is_fenced_and_writes_nothing(postgresql: Any, postgresql_db: str):
    active = make_sink(postgresql, postgresql_db)
    zombie = PostgreSQLSink(active.config, active.pipeline_id)
    try:
        active.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=2)
        with pytest.raises(FencedError, match="epoch 2"):
            zombie.load(batch(2, ins({"id": 2, "v": "z", "email": None})), epoch=1)
        assert active.checkpoint() == SinkCheckpoint(pos(1), 2)
    finally:
        active.close()
        zombie.close()
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", None)]


def test_a_unique_value_swap_falls_back_to_binlog_order(
    sink: PostgreSQLSink, postgresql: Any, postgresql_db: str
):
    a, b = {"id": 1, "v": "a", "email": "m1"}, {"id": 2, "v": "b", "email": "m2"}
    sink.load(batch(1, ins(a), ins(b)), epoch=1)
    # ferry created the source's UNIQUE (email) with the table; swapped through a
    # temporary value: merged, key 1 takes m2 while key 2 still holds it
    swap = batch(
        2,
        upd(a, dict(a, email="tmp")),
        upd(b, dict(b, email="m1")),
        upd(dict(a, email="tmp"), dict(a, email="m2")),
    )
    sink.load(swap, epoch=1)
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", "m2"), (2, "b", "m1")]
    assert sink.checkpoint() == SinkCheckpoint(pos(2), 1)


def test_an_overflow_is_fatal_naming_table_key_and_column_never_the_value(
    sink: PostgreSQLSink, postgresql: Any, postgresql_db: str
):
    sink.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=1)
    postgresql.execute(f"ALTER TABLE {TGT}.kv ALTER COLUMN id TYPE integer", database=postgresql_db)
    postgresql.execute(f"ALTER TABLE {TGT}.kv ADD COLUMN n smallint", database=postgresql_db)
    sink.close()  # the target's columns changed behind the sink's back
    wide = KV.__class__(SRC, "kv", (*KV.columns, Column("n", "INT", 4, 4)), KV.primary_key)
    bad = {"id": 7, "v": "ok", "email": "secret-mail@x", "n": 2178774338}
    with pytest.raises(FatalError) as info:
        sink.load(
            batch(2, ins({"id": 6, "v": "b", "email": None, "n": 1}, wide), ins(bad, wide)), 1
        )
    message = str(info.value)
    assert "src.kv (target tgt.kv)" in message
    assert "[22003]" in message and "column n" in message
    assert "key (id=7)" in message
    assert "2178774338" not in message and "secret-mail" not in message
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", None, None)]


def test_a_constraint_violation_is_fatal_naming_the_key(
    sink: PostgreSQLSink, postgresql: Any, postgresql_db: str
):
    sink.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=1)
    postgresql.execute(
        f"ALTER TABLE {TGT}.kv ADD CONSTRAINT v_short CHECK (length(v) < 3)",
        database=postgresql_db,
    )
    with pytest.raises(FatalError) as info:
        sink.load(
            batch(
                2,
                ins({"id": 2, "v": "ok", "email": None}),
                ins({"id": 3, "v": "long", "email": None}),
            ),
            1,
        )
    message = str(info.value)
    assert "[23514]" in message and '"v_short"' in message and "key (id=3)" in message
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", None)]


def test_zero_dates_error_and_time_options(postgresql: Any, postgresql_db: str):
    dates = table("CREATE TABLE dates (id INT PRIMARY KEY, d DATE, t TIME(2))")
    strict = make_sink(postgresql, postgresql_db, zero_dates="error", time="time")
    try:
        strict.load(
            batch(
                1, ins({"id": 1, "d": None, "t": dt.timedelta(hours=23, microseconds=10000)}, dates)
            ),
            1,
        )
        with pytest.raises(FatalError, match=r"column d: a zero .*key \(id=2\)"):
            strict.load(batch(2, ins({"id": 2, "d": ZeroDate("2015-00-21"), "t": None}, dates)), 1)
        with pytest.raises(FatalError, match=r"column t: a TIME outside"):
            strict.load(batch(3, ins({"id": 3, "d": None, "t": dt.timedelta(hours=-1)}, dates)), 1)
    finally:
        strict.close()
    assert columns(postgresql, postgresql_db, "dates")[2] == (
        "t",
        "time(2) without time zone",
        "YES",
    )
    assert rows(postgresql, postgresql_db, "dates") == [(1, None, dt.time(23, 0, 0, 10000))]


def test_identifiers_folded_to_lower_case(postgresql: Any, postgresql_db: str):
    mixed = table("CREATE TABLE `Orders` (`OrderId` INT PRIMARY KEY, `Note` TEXT)")
    lower = make_sink(postgresql, postgresql_db, identifiers="lower")
    try:
        lower.load(batch(1, ins({"OrderId": 1, "Note": "x"}, mixed)), 1)
        lower.load(
            batch(2, upd({"OrderId": 1, "Note": "x"}, {"OrderId": 1, "Note": "y"}, mixed)), 1
        )
    finally:
        lower.close()
    assert postgresql.execute(
        f"SELECT orderid, note FROM {TGT}.orders", database=postgresql_db
    ) == ((1, "y"),)


def test_table_without_primary_key(sink: PostgreSQLSink, postgresql: Any, postgresql_db: str):
    nk = table("CREATE TABLE nk (a INT, b VARCHAR(10), f FLOAT, j JSON)")
    one = {"a": 1, "b": None, "f": 0.1, "j": JsonText('{"x": 1}')}
    sink.load(batch(1, ins(one, nk), ins(one, nk)), epoch=1)
    sink.load(batch(2, upd(one, dict(one, b="set"), nk), dele(one, nk)), epoch=1)
    assert [r[:2] for r in rows(postgresql, postgresql_db, "nk", "a, b")] == [(1, "set")]

    # a value too long for the column fails: it is not cut to fit
    with pytest.raises(FatalError, match=r"src\.nk \(target tgt\.nk\): \[22001\] value too long"):
        sink.load(batch(3, upd(dict(one, b="set"), dict(one, b="x" * 11), nk)), epoch=1)
    assert [r[:2] for r in rows(postgresql, postgresql_db, "nk", "a, b")] == [(1, "set")]

    rejecting = make_sink(postgresql, postgresql_db, no_primary_key="reject")
    with pytest.raises(FatalError, match="no primary key"):
        rejecting.load(batch(3, ins(one, nk)), epoch=1)
    rejecting.close()


def ddl(sql: str, n: int, before: TableSchema | None = None, schema: str = SRC) -> DdlChange:
    """A DdlChange as the selector makes it: classified, with the definition after it."""
    statement = classify(sql, schema)
    assert statement.is_ddl, sql
    changes: tuple[TableChange, ...] = ()
    if statement.verb == "CREATE" and statement.object == "TABLE":
        made = table(sql) if schema == SRC else None
        assert made is not None
        changes = (TableChange("CREATE", made.schema, made.table, made),)
    elif statement.verb == "ALTER" and statement.object == "TABLE":
        assert before is not None
        after, renamed = alter_table(before, sql, schema)
        name = renamed or (before.schema, before.table)
        changes = (TableChange("ALTER", *name, after),)
    elif statement.object == "INDEX":
        assert before is not None
        made = (unique_index if statement.verb == "CREATE" else dropped_index)(before, sql)
        changes = (TableChange("ALTER", before.schema, before.table, made or before),)
    return DdlChange(
        schema,
        sql,
        0.0,
        pos(n),
        kind=statement.kind,  # type: ignore[arg-type]
        tables=statement.tables,
        names=references(sql, statement),
        table_changes=changes,
        object=statement.object,
        verb=statement.verb,
    )


def test_ddl_is_translated_from_the_definitions(postgresql: Any, postgresql_db: str):
    sink = make_sink(postgresql, postgresql_db, schema_map={SRC: TGT, "made": "made_here"})
    n = 0

    def run(statement: str, before: TableSchema | None = None, schema: str = SRC) -> DdlChange:
        nonlocal n
        n += 1
        change = ddl(statement, n, before, schema)
        sink.load(Batch(n, [change], pos(n)), epoch=1)
        sink.load(Batch(n, [change], pos(n)), epoch=1)  # a replay changes nothing
        return change

    try:
        run("CREATE DATABASE made", schema="made")
        created = run("CREATE TABLE t (id INT PRIMARY KEY, a INT, b VARCHAR(5) NOT NULL)")
        t0 = created.table_changes[0].definition
        sink.load(batch(100, ins({"id": 1, "a": 5, "b": "x"}, t0)), 1)
        t1 = (
            run("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 7, DROP COLUMN a", t0)
            .table_changes[0]
            .definition
        )
        assert rows(postgresql, postgresql_db, "t") == [(1, "x", 7)]
        t2 = (
            run("ALTER TABLE t MODIFY b VARCHAR(20) NULL, CHANGE c cc BIGINT NOT NULL", t1)
            .table_changes[0]
            .definition
        )
        t3 = run("ALTER TABLE t RENAME COLUMN b TO bb", t2).table_changes[0].definition
        assert columns(postgresql, postgresql_db, "t") == [
            ("id", "integer", "NO"),
            ("bb", "character varying(20)", "YES"),
            ("cc", "bigint", "NO"),
        ]
        assert rows(postgresql, postgresql_db, "t") == [(1, "x", 7)]
        sink.load(
            batch(101, upd({"id": 1, "bb": "x", "cc": 7}, {"id": 1, "bb": None, "cc": 8}, t3)), 1
        )
        run("RENAME TABLE t TO u")
        assert rows(postgresql, postgresql_db, "u") == [(1, None, 8)]
        run("ALTER TABLE u RENAME TO made.v", t3.__class__(SRC, "u", t3.columns, t3.primary_key))
        assert postgresql.execute("SELECT * FROM made_here.v", database=postgresql_db) == (
            (1, None, 8),
        )
        run("TRUNCATE made.v")
        assert postgresql.execute("SELECT count(*) FROM made_here.v", database=postgresql_db) == (
            (0,),
        )
        run("DROP TABLE made.v")
        assert postgresql.execute("SELECT to_regclass('made_here.v')", database=postgresql_db) == (
            (None,),
        )
        run("CREATE VIEW w AS SELECT 1")  # not translated: skipped (untranslated: skip)
        run("DROP DATABASE made", schema="made")
        assert postgresql.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'made_here'", database=postgresql_db
        ) == ((0,),)
        assert sink.checkpoint() == SinkCheckpoint(pos(n), 1)
    finally:
        sink.close()


def test_ddl_skip_fail_and_untranslated_fail(postgresql: Any, postgresql_db: str):
    create = ddl("CREATE TABLE t2 (id INT PRIMARY KEY)", 1)
    skip = make_sink(postgresql, postgresql_db, ddl="skip")
    skip.load(Batch(1, [create], pos(1)), 1)
    assert skip.checkpoint() == SinkCheckpoint(pos(1), 1)
    skip.close()
    assert postgresql.execute("SELECT to_regclass('tgt.t2')", database=postgresql_db) == ((None,),)

    fail = make_sink(postgresql, postgresql_db, ddl="fail")
    with pytest.raises(FatalError, match="CREATE TABLE t2"):
        fail.load(Batch(1, [create], pos(1)), 1)
    fail.close()

    strict = make_sink(postgresql, postgresql_db, untranslated="fail")
    view = ddl("CREATE VIEW w AS SELECT 'p@ss' AS x", 2)
    with pytest.raises(FatalError, match=r"does not translate .*CREATE VIEW w"):
        strict.load(Batch(2, [view], pos(2)), 1)
    strict.close()


def test_lost_connection_is_resumable_and_the_next_load_reconnects(
    sink: PostgreSQLSink, postgresql: Any, postgresql_db: str
):
    sink.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=1)
    postgresql.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (postgresql_db,),
    )
    with pytest.raises(ResumableError):
        sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
    sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", None), (2, "b", None)]


def test_a_restarted_server_is_resumable(make_postgresql: Any):
    server = make_postgresql()
    db = server.create_database("restarted")
    sink = make_sink(server, db)
    try:
        sink.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=1)
        server.kill()
        with pytest.raises(ResumableError):
            sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
        server.start()
        sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
    finally:
        sink.close()
    assert rows(server, db, "kv") == [(1, "a", None), (2, "b", None)]


def test_unknown_table_without_definition_is_fatal(sink: PostgreSQLSink):
    bare = RowChange(SRC, "nope", "insert", None, {"id": 1}, ("id",), 0.0, pos(0))
    with pytest.raises(FatalError, match=r"tgt\.nope .* does not exist"):
        sink.load(batch(1, bare), epoch=1)


def test_check(postgresql: Any, postgresql_db: str):
    sink = make_sink(postgresql, postgresql_db)
    results = sink.check()
    assert [ok for _, ok, _ in results] == [True, True], results


def test_alter_keeps_columns_only_the_target_has(postgresql: Any, postgresql_db: str):
    sink = make_sink(postgresql, postgresql_db)
    try:
        created = ddl("CREATE TABLE t (id INT PRIMARY KEY, a INT)", 1)
        sink.load(Batch(1, [created], pos(1)), epoch=1)
        postgresql.execute(
            f"ALTER TABLE {TGT}.t ADD COLUMN audited_at timestamptz", database=postgresql_db
        )
        before = created.table_changes[0].definition
        sink.load(Batch(2, [ddl("ALTER TABLE t DROP a, ADD b INT", 2, before)], pos(2)), epoch=1)
    finally:
        sink.close()
    names = [c[0] for c in columns(postgresql, postgresql_db, "t")]
    assert names == ["id", "audited_at", "b"]


def test_a_statement_over_the_timeout_is_resumable_and_names_the_setting(
    postgresql: Any, postgresql_db: str
):
    sink = make_sink(postgresql, postgresql_db, timeout_s=1)
    try:
        sink.load(batch(1, ins({"id": 1, "v": "a", "email": None})), epoch=1)
        blocker = postgresql.connect(postgresql_db, autocommit=False)
        try:
            blocker.execute(f"LOCK TABLE {TGT}.kv IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(ResumableError, match=r"sink\.timeout_s, 1 s"):
                sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
        finally:
            blocker.close()
        sink.load(batch(2, ins({"id": 2, "v": "b", "email": None})), epoch=1)
    finally:
        sink.close()
    assert rows(postgresql, postgresql_db, "kv") == [(1, "a", None), (2, "b", None)]


def constraints(server: Any, db: str, name: str) -> list[tuple[str, list[str]]]:
    """The target table's primary and unique constraints: (kind, columns), sorted."""
    found = server.execute(
        "SELECT c.contype::text, ARRAY(SELECT a.attname::text FROM unnest(c.conkey)"
        " WITH ORDINALITY k(num, o) JOIN pg_attribute a ON a.attrelid = c.conrelid"
        " AND a.attnum = k.num ORDER BY k.o) FROM pg_constraint c"
        " WHERE c.conrelid = to_regclass(%s) AND c.contype IN ('p', 'u')",
        (f"{TGT}.{name}",),
        database=db,
    )
    return sorted((kind, list(cols)) for kind, cols in found)


def test_the_sources_unique_keys_are_created_and_follow_its_ddl(
    postgresql: Any, postgresql_db: str
):
    sink = make_sink(postgresql, postgresql_db)
    uk = table(
        "CREATE TABLE uk (id INT PRIMARY KEY, email VARCHAR(40) UNIQUE, a INT, b INT,"
        " UNIQUE KEY ab (a, b))"
    )
    try:
        sink.load(batch(1, ins({"id": 1, "email": "m1", "a": 1, "b": 1}, uk)), epoch=1)
        assert constraints(postgresql, postgresql_db, "uk") == [
            ("p", ["id"]),
            ("u", ["a", "b"]),
            ("u", ["email"]),
        ]
        # as on the source, a second row with the same unique value is refused
        with pytest.raises(FatalError, match=r"\[23505\].*key \(id=2\)"):
            sink.load(batch(2, ins({"id": 2, "email": "m1", "a": 2, "b": 2}, uk)), epoch=1)
        n = 2

        def run(statement: str, before: TableSchema) -> TableSchema:
            nonlocal n
            n += 1
            change = ddl(statement, n, before)
            sink.load(Batch(n, [change], pos(n)), epoch=1)
            sink.load(Batch(n, [change], pos(n)), epoch=1)  # a replay changes nothing
            after = change.table_changes[0].definition
            assert after is not None
            return after

        uk = run("ALTER TABLE uk DROP INDEX ab, ADD UNIQUE KEY ba (b, a)", uk)
        uk = run("ALTER TABLE uk RENAME COLUMN email TO mail", uk)  # no second constraint
        uk = run("CREATE UNIQUE INDEX ia ON uk (a)", uk)
        assert constraints(postgresql, postgresql_db, "uk") == [
            ("p", ["id"]),
            ("u", ["a"]),
            ("u", ["b", "a"]),
            ("u", ["mail"]),
        ]
        uk = run("DROP INDEX email ON uk", uk)  # MySQL named it after its column, then
        uk = run("ALTER TABLE uk DROP COLUMN a", uk)  # (b, a) narrows to (b), as in MySQL
        assert constraints(postgresql, postgresql_db, "uk") == [("p", ["id"]), ("u", ["b"])]
    finally:
        sink.close()


def test_a_unique_key_on_a_table_without_primary_key(postgresql: Any, postgresql_db: str):
    """The unique key the rows are keyed on, and a second one."""
    sink = make_sink(postgresql, postgresql_db)
    nk = table("CREATE TABLE nk2 (u INT UNIQUE, w INT, UNIQUE KEY (w))")
    try:
        sink.load(batch(1, ins({"u": 1, "w": 1}, nk)), epoch=1)
        sink.load(batch(2, upd({"u": 1, "w": 1}, {"u": 1, "w": 2}, nk)), epoch=1)
    finally:
        sink.close()
    # the history makes the first unique key the key (Debezium's choice), NOT NULL
    assert constraints(postgresql, postgresql_db, "nk2") == [("p", ["u"]), ("u", ["w"])]
    assert rows(postgresql, postgresql_db, "nk2", "u") == [(1, 2)]


GEN = table(
    "CREATE TABLE gen (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL,"
    " s INT GENERATED ALWAYS AS (a + 1) STORED, UNIQUE KEY (s))"
)


def test_generated_columns_skip_leaves_them_out_of_create_and_writes(
    postgresql: Any, postgresql_db: str
):
    sink = make_sink(postgresql, postgresql_db, generated_columns="skip")
    one, two = {"id": 1, "a": 1, "v": 2, "s": 2}, {"id": 2, "a": 5, "v": 10, "s": 6}
    try:
        sink.load(batch(1, ins(one, GEN), ins(two, GEN)), epoch=1)
        sink.load(batch(2, upd(one, {"id": 1, "a": 3, "v": 6, "s": 4}, GEN), dele(two, GEN)), 1)
        before = GEN
        change = ddl("ALTER TABLE gen ADD COLUMN w INT AS (a - 1) PERSISTENT, ADD b INT", 3, before)
        sink.load(Batch(3, [change], pos(3)), epoch=1)
        after = change.table_changes[0].definition
        assert after is not None
        sink.load(batch(4, ins({"id": 3, "a": 1, "v": 2, "s": 2, "w": 0, "b": 9}, after)), 1)
    finally:
        sink.close()
    assert [c[0] for c in columns(postgresql, postgresql_db, "gen")] == ["id", "a", "b"]
    assert constraints(postgresql, postgresql_db, "gen") == [("p", ["id"])]  # not UNIQUE (s)
    assert rows(postgresql, postgresql_db, "gen") == [(1, 3, None), (3, 1, 9)]


def test_generated_columns_plain_writes_the_computed_values(postgresql: Any, postgresql_db: str):
    sink = make_sink(postgresql, postgresql_db)
    try:
        sink.load(batch(1, ins({"id": 1, "a": 1, "v": 2, "s": 2}, GEN)), epoch=1)
    finally:
        sink.close()
    assert rows(postgresql, postgresql_db, "gen") == [(1, 1, 2, 2)]


def test_enum_types(postgresql: Any, postgresql_db: str):
    sink = make_sink(postgresql, postgresql_db, enums="enum_types")

    def members(name: str) -> list[str]:
        [(labels,)] = postgresql.execute(
            f"SELECT enum_range(NULL::{TGT}.{name})::text[]", database=postgresql_db
        )
        return list(labels)

    try:
        created = ddl(
            "CREATE TABLE en (id INT PRIMARY KEY, e ENUM('low', 'high') NOT NULL, s SET('x','y'))",
            1,
        )
        sink.load(Batch(1, [created], pos(1)), epoch=1)
        en = created.table_changes[0].definition
        assert en is not None
        sink.load(batch(2, ins({"id": 1, "e": "high", "s": {"x", "y"}}, en)), epoch=1)
        assert columns(postgresql, postgresql_db, "en") == [
            ("id", "integer", "NO"),
            ("e", "tgt.en_e", "NO"),
            ("s", "text", "YES"),
        ]
        assert members("en_e") == ["low", "high"]
        modify = ddl("ALTER TABLE en MODIFY e ENUM('none', 'low', 'mid', 'high', 'top')", 3, en)
        sink.load(Batch(3, [modify], pos(3)), epoch=1)
        sink.load(Batch(3, [modify], pos(3)), epoch=1)  # a replay changes nothing
        en = modify.table_changes[0].definition
        assert en is not None
        assert members("en_e") == ["none", "low", "mid", "high", "top"]
        sink.load(batch(4, ins({"id": 2, "e": "mid", "s": None}, en)), epoch=1)
        sink.load(
            batch(
                5,
                upd({"id": 1, "e": "high", "s": {"x", "y"}}, {"id": 1, "e": "top", "s": {"y"}}, en),
            ),
            1,
        )
        # an ENUM column added later, and a table made by its first rows, get theirs too
        add = ddl("ALTER TABLE en ADD f ENUM('a')", 6, en)
        sink.load(Batch(6, [add], pos(6)), epoch=1)
        assert members("en_f") == ["a"]
        # a renamed table's ENUM column moves to a type named after its new name
        sink.load(Batch(7, [ddl("RENAME TABLE en TO en3", 7)], pos(7)), epoch=1)
        renamed = ddl("ALTER TABLE en3 ADD g INT", 8, en.__class__(SRC, "en3", en.columns, ("id",)))
        sink.load(Batch(8, [renamed], pos(8)), epoch=1)
        assert members("en3_e") == ["none", "low", "mid", "high", "top"]
        rowed = table("CREATE TABLE en2 (id INT PRIMARY KEY, k ENUM('p', 'q'))")
        sink.load(batch(9, ins({"id": 1, "k": "q"}, rowed)), epoch=1)
        assert members("en2_k") == ["p", "q"]
    finally:
        sink.close()
    assert rows(postgresql, postgresql_db, "en3", "e") == [
        (2, "mid", None, None, None),
        (1, "top", "y", None, None),
    ]


def test_ferry_check_reaches_the_target_and_writes_the_checkpoint_row(
    postgresql: Any, postgresql_db: str
) -> None:
    sink = make_sink(postgresql, postgresql_db)
    lines = sink.check()
    assert [(what.split(" (")[0], ok) for what, ok, _ in lines] == [
        ("sink postgresql reachable", True),
        (f"sink postgresql checkpoint table {TGT}.ferry_checkpoint writable", True),
    ], lines
    wrong = make_sink(postgresql, "no_such_database", password="s3cret-pw")
    (reach, ok, why), (_, writable, hint) = wrong.check()
    assert not ok and not writable and hint == "needs a connection first"
    assert "no_such_database" in why and "s3cret-pw" not in reach + why
