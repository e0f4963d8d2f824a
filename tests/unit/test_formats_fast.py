"""The ferry-json fast path gives the same bytes as the generic message builder."""

from __future__ import annotations

import pytest

from pipeline.errors import FatalError
from pipeline.model import Position, RowChange
from sinks.formats import FerryJson, dumps, encode_key
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
