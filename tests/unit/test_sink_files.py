"""JSONL and stdout sinks (files in tmp_path, no services)."""

from __future__ import annotations

import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import FatalError
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.jsonl import JsonlSink, JsonlSinkConfig
from sinks.stdout import StdoutSink, StdoutSinkConfig, text_line
from tests.unit.test_formats import FILED_DDL, selected

POS = Position("mysql-bin.000001", 100)


def row(i: int, table: str = "orders", op: str = "insert") -> RowChange:
    image = {"id": i, "total": Decimal("9.50"), "note": "ü😀"}
    return RowChange(
        schema="shop",
        table=table,
        op=op,  # type: ignore[arg-type]
        before=None if op == "insert" else {**image, "total": Decimal("1.00")},
        after=None if op == "delete" else image,
        primary_key=("id",),
        ts=1.0,
        position=POS,
    )


def batch(*changes, batch_id: int = 1) -> Batch:
    return Batch(batch_id=batch_id, changes=list(changes), position=POS)


def jsonl(tmp_path: Path, **kw) -> JsonlSink:
    # files are the subject here: ferry-json's readable values are the easiest to assert on
    kw.setdefault("format", "ferry-json")
    cfg = JsonlSinkConfig(type="jsonl", **{"path": str(tmp_path / "out.jsonl"), **kw})
    sink = JsonlSink(cfg, "pipe")
    sink.open()
    return sink


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_jsonl_appends_one_line_per_change(tmp_path: Path) -> None:
    sink = jsonl(tmp_path)
    sink.load(batch(row(1), row(2, op="update")), epoch=1)
    sink.load(batch(row(3, op="delete"), batch_id=2), epoch=1)
    sink.close()
    got = lines(tmp_path / "out.jsonl")
    assert [m["op"] for m in got] == ["c", "u", "d"]
    assert got[0]["after"] == {"id": 1, "total": "9.50", "note": "ü😀"}
    assert got[1]["before"]["total"] == "1.00"
    assert got[2]["before"]["id"] == 3
    assert got[0]["source"]["name"] == "pipe"


def test_jsonl_survives_reopen_and_appends(tmp_path: Path) -> None:
    sink = jsonl(tmp_path)
    sink.load(batch(row(1)), epoch=1)
    sink.close()
    sink = jsonl(tmp_path)
    sink.load(batch(row(2)), epoch=1)
    sink.close()
    assert [m["after"]["id"] for m in lines(tmp_path / "out.jsonl")] == [1, 2]


def test_jsonl_cuts_a_partial_last_line_on_open(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    sink = jsonl(tmp_path)
    sink.load(batch(row(5)), epoch=1)
    sink.close()
    data = path.read_bytes().splitlines()
    assert data[0] == b'{"a":1}'
    assert json.loads(data[1])["after"]["id"] == 5
    assert len(data) == 2


def test_jsonl_fsyncs_before_load_returns(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    sink = jsonl(tmp_path)
    sink.load(batch(row(1)), epoch=1)
    assert synced, "load returned without fsync"
    assert len(lines(tmp_path / "out.jsonl")) == 1  # flushed, visible to readers
    sink.close()


def test_jsonl_file_per_table_and_ddl(tmp_path: Path) -> None:
    sink = jsonl(tmp_path, path=str(tmp_path / "{schema}" / "{table}.jsonl"))
    ddl = DdlChange("shop", "ALTER TABLE orders ADD x INT", 2.0, POS)
    other = DdlChange("shop", "CREATE DATABASE y", 2.0, POS)
    sink.load(batch(row(1), row(2, table="items")), epoch=1)
    sink.load(batch(ddl, batch_id=2), epoch=1)
    sink.load(batch(other, batch_id=3), epoch=1)
    sink.close()
    orders = lines(tmp_path / "shop" / "orders.jsonl")
    assert orders[0]["after"]["id"] == 1
    assert orders[1]["ddl"] == "ALTER TABLE orders ADD x INT"
    assert lines(tmp_path / "shop" / "items.jsonl")[0]["after"]["id"] == 2
    assert lines(tmp_path / "y" / "_ddl.jsonl")[0]["ddl"] == "CREATE DATABASE y"


def test_jsonl_files_a_ddl_under_each_table_it_changes(tmp_path: Path) -> None:
    """The classifier's tables and schemas, not the session's database or a second parse."""
    sink = jsonl(tmp_path, path=str(tmp_path / "{schema}" / "{table}.jsonl"))
    statements = FILED_DDL
    for number, sql in enumerate(statements, start=1):
        sink.load(batch(selected(sql), batch_id=number), epoch=1)
    sink.close()

    def ddl(schema: str, table: str) -> list[str]:
        return [line["ddl"] for line in lines(tmp_path / schema / f"{table}.jsonl")]

    assert ddl("shop", "staff") == [statements[0]]
    assert ddl("shop", "t") == statements[1:3]
    assert ddl("shop", "a") == ddl("shop", "b") == ["DROP TABLE a, b"]
    assert ddl("other", "t") == ["CREATE TABLE other.t (a INT)"]
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == [
        "a.jsonl",
        "b.jsonl",
        "staff.jsonl",
        "t.jsonl",
    ]


def test_jsonl_rotation_numbers_files_in_order(tmp_path: Path) -> None:
    sink = jsonl(tmp_path, rotate_bytes=1024)
    for i in range(40):
        sink.load(batch(row(i), batch_id=i + 1), epoch=1)
    sink.close()
    rotated = sorted(tmp_path.glob("out.jsonl.*"), key=lambda p: int(p.suffix[1:]))
    assert len(rotated) >= 2
    ids = []
    for path in [*rotated, tmp_path / "out.jsonl"]:
        assert path.stat().st_size < 1024 + 400  # one line past the limit at most
        ids += [m["after"]["id"] for m in lines(path)]
    assert ids == list(range(40))


def test_jsonl_empty_batch_writes_nothing(tmp_path: Path) -> None:
    sink = jsonl(tmp_path)
    sink.load(Batch(batch_id=1), epoch=1)
    sink.close()
    assert (tmp_path / "out.jsonl").read_bytes() == b""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_jsonl_write_failure_is_fatal() -> None:
    sink = JsonlSink(JsonlSinkConfig(type="jsonl", path="/dev/full"), "pipe")
    sink.open()
    with pytest.raises(FatalError, match="cannot write") as info:
        sink.load(batch(row(1), batch_id=9), epoch=1)
    assert info.value.batch_id == 9
    sink.close()


def test_stdout_text_lines() -> None:
    out = io.StringIO()
    sink = StdoutSink(StdoutSinkConfig(type="stdout"), "p", stream=out)
    ddl = DdlChange("shop", "ALTER TABLE orders\n  ADD x INT", 2.0, POS)
    sink.load(batch(row(1), row(1, op="update"), row(1, op="delete"), ddl), epoch=1)
    assert out.getvalue().splitlines() == [
        'INSERT shop.orders [1] {"id":1,"total":"9.50","note":"ü😀"} @mysql-bin.000001:100',
        'UPDATE shop.orders [1] {"total":"1.00"->"9.50"} @mysql-bin.000001:100',
        "DELETE shop.orders [1] @mysql-bin.000001:100",
        "DDL    shop ALTER TABLE orders ADD x INT @mysql-bin.000001:100",
    ]


def test_stdout_json_lines() -> None:
    out = io.StringIO()
    sink = StdoutSink(StdoutSinkConfig(type="stdout", format="json"), "p", stream=out)
    sink.load(batch(row(1), row(2)), epoch=1)
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [m["after"]["id"] for m in got] == [1, 2]


def test_text_line_update_without_changes() -> None:
    same = row(1, op="update")
    same.before = same.after
    assert text_line(same).startswith("UPDATE shop.orders [1] {}")


def test_jsonl_every_value_type_round_trips(tmp_path: Path) -> None:
    from tests.unit.test_formats import EXPECTED, ROW

    sink = jsonl(tmp_path)
    change = RowChange("shop", "t", "insert", None, dict(ROW), ("i",), 1.0, POS)
    sink.load(batch(change), epoch=1)
    sink.close()
    assert lines(tmp_path / "out.jsonl")[0]["after"] == EXPECTED


def test_jsonl_default_is_debezium_json_without_tombstones(tmp_path: Path) -> None:
    cfg = JsonlSinkConfig(type="jsonl", path=str(tmp_path / "out.jsonl"))
    assert cfg.format == "debezium-json"
    sink = JsonlSink(cfg, "pipe")
    sink.open()
    sink.load(batch(row(1), row(1, op="delete")), epoch=1)
    sink.close()
    got = lines(tmp_path / "out.jsonl")
    assert [m["op"] for m in got] == ["c", "d"]  # a file has no use for tombstones
    assert got[0]["after"]["total"] == "A7Y="  # Decimal 9.50, precise: base64 of 950
    assert got[0]["ts_us"] // 1000 == got[0]["ts_ms"]
