"""The durable schema history without services: its records and snapshots as stored, their
recovery (missing, corrupt, out of order), and how a table map is compared with it."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from pymysqlreplication.constants import FIELD_TYPE as F
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)

from arbitrate.base import StoredHistory
from arbitrate.common import recover_history
from pipeline.errors import FatalError
from pipeline.model import HistoryCorrupt, Position, SchemaRecord, SchemaState
from selector.mysql import queries_before
from selector.schemas import SchemaHistory
from selector.tables import _differences, _member

AT = Position("binlog.000001", 4)


def history(sql: str) -> SchemaHistory:
    h = SchemaHistory()
    h._charsets["shop"] = "utf8mb4"
    h.apply(sql, "shop", AT)
    return h


def table(sql: str) -> Any:
    found = history(sql).get("shop", "t")
    assert found is not None
    return found


def test_records_and_snapshots_read_back_as_written() -> None:
    t = table("CREATE TABLE t (id INT PRIMARY KEY, e ENUM('a','b') DEFAULT 'a', d DECIMAL(8,2))")
    record = SchemaRecord(
        Position("binlog.000001", 120, "0-1-5", 0, 1.5),
        "shop",
        "CREATE TABLE t …",
        "table",
        "CREATE",
        "TABLE",
        (("shop", "t", t), ("shop", "old", None)),
        (("shop", "latin1", False),),
        seq=7,
        epoch=3,
    )
    assert SchemaRecord.from_json(record.to_json()) == record
    state = SchemaState(AT, {("shop", "t"): t}, {"shop": "utf8mb4", "empty": None}, 7)
    back = SchemaState.from_json(state.to_json())
    again = SchemaState.from_json(state.to_json())
    assert back == state and back.tables[("shop", "t")] is again.tables[("shop", "t")]  # interned


def test_a_changed_or_cut_record_is_told_from_a_good_one() -> None:
    text = SchemaRecord(AT, "shop", "DROP TABLE t", tables=(("shop", "t", None),)).to_json()
    with pytest.raises(HistoryCorrupt, match="checksum"):
        SchemaRecord.from_json(text.replace("DROP TABLE t", "DROP TABLE u"))
    with pytest.raises(HistoryCorrupt, match="not the JSON"):
        SchemaRecord.from_json(text[:-20])


def stored_history(*records: SchemaRecord, coverage: Position | None = None) -> StoredHistory:
    snapshot = SchemaState(AT, {}, {"shop": "utf8mb4"}).to_json()
    numbered = [r.to_json() for r in records]
    last = records[-1].position if records else AT
    return StoredHistory(numbered, 1, len(records), {0: snapshot}, (coverage or last).to_json())


def created(seq: int, pos: int) -> SchemaRecord:
    t = table("CREATE TABLE t (id INT PRIMARY KEY)")
    return SchemaRecord(
        Position("binlog.000001", pos), "shop", "CREATE …", tables=(("shop", "t", t),), seq=seq
    )


def test_recovery_names_what_is_missing_or_corrupt() -> None:
    with pytest.raises(FatalError, match=r"is missing from Redis.*ferry schema rebuild"):
        recover_history(StoredHistory(), AT, "p")
    stored = stored_history(created(1, 100), created(2, 200))
    stored.records[1] = stored.records[1].replace('"CREATE', '"DROP')
    with pytest.raises(FatalError, match=r"record 2 does not match its checksum"):
        recover_history(stored, Position("binlog.000001", 300), "p")
    # a record before the committed position is never skipped silently
    stored = stored_history(created(1, 100), created(3, 200))
    with pytest.raises(FatalError, match="out of order: record 2 says it is number 3"):
        recover_history(stored, Position("binlog.000001", 300), "p")
    stored = stored_history(created(1, 100))
    stored.seq = 2  # the head says two records were stored
    with pytest.raises(FatalError, match="missing records 2 to 2"):
        recover_history(stored, Position("binlog.000001", 300), "p")


def test_recovery_stops_at_the_committed_position_or_the_historys_end() -> None:
    stored = stored_history(created(1, 100), created(2, 200))
    earlier = recover_history(stored, Position("binlog.000001", 150), "p")
    assert earlier.state.seq == 1 and earlier.keep == 1  # record 2 is past it: dropped
    assert earlier.state.position == Position("binlog.000001", 150)
    later = recover_history(stored, Position("binlog.000002", 4), "p")
    assert later.state.seq == 2 and later.keep is None
    assert later.state.position == Position("binlog.000001", 200)  # the DDL after is read again


def test_enum_members_as_the_server_stores_them() -> None:
    assert _member("'a'") == "a"
    assert _member("'it''s'") == "it's"
    assert _member("'a\\'b'") == "a'b"
    assert _member("'tab\\there  '") == "tab\there"  # trailing spaces dropped, as MySQL does
    assert _member('"q"') == "q"


def column(kind: int, **extra: Any) -> Any:
    return SimpleNamespace(type=kind, name=None, unsigned=False, **extra)


def test_a_table_map_is_compared_with_the_history() -> None:
    t = table("CREATE TABLE t (id INT UNSIGNED PRIMARY KEY, n VARCHAR(5), d DECIMAL(8,2))")
    fits = [column(F.LONG), column(F.VARCHAR), column(F.NEWDECIMAL, precision=8, decimals=2)]
    assert _differences(t, fits, None, None) == []
    assert _differences(t, fits, ["id", "n", "d"], [True, False, False]) == []
    assert _differences(t, fits[:2], None, None) == [
        "the binlog's table map has 2 columns, the history 3 (id, n, d)"
    ]
    wrong = [column(F.LONG), column(F.LONG), column(F.NEWDECIMAL, precision=10, decimals=0)]
    assert _differences(t, wrong, None, [False, False, False]) == [
        "column 1 (id) is INT UNSIGNED in the history, signed in the binlog",
        "column 2 (n) is VARCHAR(5) in the history, LONG in the binlog",
        "column 3 (d) is DECIMAL(8,2) in the history, DECIMAL(10,0) in the binlog",
    ]
    assert _differences(t, fits, ["id", "m", "d"], None) == [
        "column 2 is 'm' in the binlog, 'n' in the history"
    ]


def test_a_statement_is_recorded_with_the_definitions_it_changed() -> None:
    h = history("CREATE TABLE t (id INT PRIMARY KEY, a INT)")
    h.durable = True
    statement = SimpleNamespace(kind="table", verb="RENAME", object="TABLE")
    h.apply("RENAME TABLE t TO u", "shop", AT)
    record = h.record("RENAME TABLE t TO u", "shop", statement, AT, lambda db: db == "shop")  # type: ignore[arg-type]
    assert record is not None
    assert [(s, t, d is not None) for s, t, d in record.tables] == [
        ("shop", "t", False),
        ("shop", "u", True),
    ]
    h.apply("CREATE TABLE other.x (id INT)", "shop", AT)
    assert h.record("…", "shop", statement, AT, lambda db: db == "shop") is None  # type: ignore[arg-type]


def _event(kind: type, end: int = 0, size: int = 0, **fields: Any) -> Any:
    """A mysql-replication event of ``kind`` without a packet to parse: its end and size."""
    event = object.__new__(kind)
    event.packet = SimpleNamespace(log_pos=end, event_size=size)
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def _then_fail(events: list[Any]) -> Iterator[Any]:
    """``events``, then a binlog that goes on being written: reading on fails the test."""
    yield from events
    raise AssertionError("read past the stop position, towards the binlog's end")


def test_the_catch_up_reads_the_binlog_up_to_the_start_not_to_its_end() -> None:
    """The catch-up between the stored history and the start stops at the transaction that
    ends at the start (MariaDB: a GTID event, rows, an XID; no BEGIN query), however much
    is written after it — it once read on until the binlog was idle, which a busy source
    never is, and the node never started."""
    ddl = _event(QueryEvent, 300, 100, query="ALTER TABLE t ADD c INT", schema=b"db")
    events = [
        _event(RotateEvent, next_binlog="bin.000001", position=200),
        _event(MariadbGtidEvent, 200 + 40, 40),
        ddl,
        _event(MariadbGtidEvent, 340, 40),
        _event(XidEvent, 500, 31),  # ends at the start: nothing after it is needed
    ]
    found = list(queries_before(_then_fail(events), "bin.000001", Position("bin.000001", 500)))
    assert found == [(ddl, Position("bin.000001", 200), Position("bin.000001", 300))]


@pytest.mark.parametrize(
    "after",
    [
        _event(MariadbGtidEvent, 540, 40),  # the next transaction begins at the start
        _event(RotateEvent, next_binlog="bin.000002", position=4),
        _event(HeartbeatLogEvent),  # the binlog's end
    ],
    ids=["gtid-at-start", "rotate-past-start", "heartbeat"],
)
def test_the_catch_up_stops_at_the_first_event_past_the_start(after: Any) -> None:
    ddl = _event(QueryEvent, 300, 100, query="CREATE TABLE t (id INT)", schema="db")
    events = [_event(RotateEvent, next_binlog="bin.000001", position=200), ddl, after]
    found = list(queries_before(_then_fail(events), "bin.000001", Position("bin.000001", 500)))
    assert [event for event, _, _ in found] == [ddl]


@pytest.mark.parametrize("seconds_per_look", [0.0, 0.4, 1.0])
def test_a_long_catch_up_says_it_goes_on_every_second_while_events_come(
    seconds_per_look: float,
) -> None:
    looks = iter(range(1000))
    told: list[float] = []
    now = 0.0

    def clock() -> float:
        nonlocal now
        now = next(looks) * seconds_per_look
        return now

    events = [_event(RotateEvent, next_binlog="bin.000001", position=4)]
    events += [_event(MariadbGtidEvent, 100 + 10 * n, 10) for n in range(9)]
    stop = Position("bin.000002", 4)
    reached: list[Position] = []

    def alive(at: Position) -> None:
        told.append(now)
        reached.append(at)

    assert list(queries_before(events, "bin.000001", stop, alive, clock)) == []
    if seconds_per_look == 0:
        assert told == []  # a quick read says nothing
    else:  # at least a second between two: every second the read goes on
        assert told and all(b - a >= 1 for a, b in zip([0.0, *told], told, strict=False))
        assert len(told) >= int(len(events) * seconds_per_look) - 1  # none missed
        # where it is: the end of the event read last
        assert reached == sorted(reached, key=Position.sort_key)
        assert {at.pos for at in reached} <= {4, *(100 + 10 * n for n in range(9))}
