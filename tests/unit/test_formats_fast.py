"""The ferry-json fast path gives the same bytes as the generic message builder."""

from __future__ import annotations

import pytest

from pipeline.errors import FatalError
from pipeline.model import Position, RowChange
from sinks.formats.encoder import dumps, encode_key
from sinks.formats.ferry_json import FerryJson
from tests.unit.test_formats import ROW


@pytest.mark.parametrize("server_id", [None, 42])
@pytest.mark.parametrize("gtid", [None, "0-1-99"])
@pytest.mark.parametrize("op", ["insert", "update", "delete"])
def test_fast_path_is_byte_identical(op: str, gtid: str | None, server_id: int | None) -> None:
    fmt = FerryJson('pipe "x"', server_id)
    before = dict(ROW, s="old") if op != "insert" else None
    after = dict(ROW) if op != "delete" else None
    pos = Position("mysql-bin.000007", 4711, "0-1-99")
    change = RowChange('sch"ema', "tä", op, before, after, ("i",), 1714567890.25, pos, gtid, 3)  # type: ignore[arg-type]
    for _ in range(2):  # cold and cached
        assert fmt.encode(change, 1234_000_000) == dumps(fmt.row_message(change, 1234))


def test_fast_path_rejects_unknown_types() -> None:
    change = RowChange("s", "t", "insert", None, {"x": object()}, (), 0.0, Position("f", 4))
    with pytest.raises(FatalError, match="cannot encode"):
        FerryJson("p").encode(change, 1)


@pytest.mark.parametrize("key", [0, -5, 2**64 - 1, True, "a", None, 1.5])
def test_int_key_fast_path(key: object) -> None:
    change = RowChange("s", "t", "delete", {"id": key}, None, ("id",), 0.0, Position("f", 4))
    assert encode_key(change) == dumps([key])


def test_debezium_source_block_of_each_row_of_an_event_is_its_own() -> None:
    """debezium-json reuses the source block of the previous row of the same rows event;
    every row must still read as if built alone (its "row", a transform's new table name,
    another event, a GTID)."""
    import json

    from pipeline.model import SourceEvent
    from sinks.formats.debezium.envelope import DebeziumJson

    pos = Position("mysql-bin.000007", 4711, "0-1-99")
    first, second = SourceEvent(5000, 7, 10), SourceEvent(6000, 7, 12)
    changes = [
        RowChange(
            "s", "t", "insert", None, {"id": i}, ("id",), 17.5, pos, "0-1-9", 10 + i, None, first
        )
        for i in range(3)
    ]
    changes.append(
        RowChange(
            "s", "t2", "insert", None, {"id": 9}, ("id",), 17.5, pos, "0-1-9", 13, None, first
        )
    )  # a transform moved this row to another table
    changes.append(
        RowChange("s", "t", "delete", {"id": 1}, None, ("id",), 17.5, pos, "0-1-9", 14, None, first)
    )
    changes += [
        RowChange(
            "s", "t", "insert", None, {"id": i}, ("id",), 18.0, pos, None, 12 + i, None, second
        )
        for i in range(2)
    ]
    fmt = DebeziumJson("p")
    got = [json.loads(fmt.encode(c, 1))["source"] for c in changes]
    alone = [json.loads(DebeziumJson("p").encode(c, 1))["source"] for c in changes]
    assert got == alone
    assert [s["row"] for s in got] == [0, 1, 2, 3, 4, 0, 1]
    assert [s["table"] for s in got] == ["t", "t", "t", "t2", "t", "t", "t"]
    assert [s["gtid"] for s in got][-1] is None and got[-1]["pos"] == 6000
