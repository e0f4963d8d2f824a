"""Rows encoded ahead by the decoder process (``Batch.encoded``): the sinks write those
bytes as they are, and only when they are in the sink's own format."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import FerryConfig
from pipeline.errors import FatalError
from pipeline.model import (
    Batch,
    Change,
    Column,
    DdlChange,
    Encoded,
    Position,
    RowChange,
    SourceEvent,
    TableSchema,
)
from pipeline.stages import EncodeAhead, Stages, encoding_ahead
from selector.transport import ship
from sinks.formats.base import Format, FormatSpec, encode_ahead, get_format
from sinks.formats.debezium.options import DebeziumOptions
from sinks.jsonl import JsonlSink, JsonlSinkConfig
from sinks.kafka import KafkaSink
from sinks.registry import create_sink
from tests.unit.test_sink_kafka import Factory, cfg

POS = Position("mysql-bin.000001", 100)


def change(i: int, op: str, key_change: bool = False) -> RowChange:
    before = None if op == "insert" else {"id": i, "v": "old"}
    after = None if op == "delete" else {"id": i + 1000 if key_change else i, "v": "new"}
    return RowChange("shop", "t", op, before, after, ("id",), 1.0, POS)  # type: ignore[arg-type]


def changes() -> list[Change]:
    # a delete has a tombstone, a key change is three messages in debezium-json
    return [
        change(1, "insert"),
        change(2, "update"),
        change(3, "update", key_change=True),
        change(4, "delete"),
        DdlChange("shop", "ALTER TABLE t ADD c INT", 2.0, POS),
        change(5, "insert"),
    ]


def encoded_batch(spec: FormatSpec) -> Batch:
    batch = Batch(7, changes(), POS)
    batch.encoded = encode_ahead(spec.build(), batch)
    return batch


class Untouchable:
    """Stands in for a sink's format: encoding a row here fails the test."""

    def __init__(self, inner: Format) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> Any:
        assert isinstance(change, DdlChange), "the sink encoded a row the decoder had encoded"
        return self.inner.messages(change, now, batch_id)

    def each(self, batch: Batch, now: int) -> Any:
        return Format.each(self, batch, now)  # type: ignore[arg-type]


def jsonl(tmp_path: Path, **kw: Any) -> JsonlSink:
    sink = JsonlSink(JsonlSinkConfig(type="jsonl", path=str(tmp_path / "out.jsonl"), **kw), "p")
    sink.open()
    return sink


@pytest.mark.parametrize("name", ["debezium-json", "ferry-json", "canal-json"])
def test_jsonl_writes_the_rows_the_decoder_encoded_byte_for_byte(tmp_path: Path, name: str) -> None:
    sink = jsonl(tmp_path, format=name)
    spec = sink.encoding()
    assert spec == FormatSpec(name, "p", None, sink.config.debezium)
    batch = encoded_batch(spec)
    sink._format = Untouchable(sink._format)  # type: ignore[assignment]
    sink.load(batch, epoch=1)
    sink.close()
    assert batch.encoded is not None
    ahead = [v for m in batch.encoded.messages if m is not None for _, v in m if v is not None]
    written = (tmp_path / "out.jsonl").read_bytes().splitlines()
    ddl = [line for line in written if line not in ahead]
    assert [line for line in written if line in ahead] == ahead
    assert len(ddl) == 1 and b"ALTER TABLE t ADD c INT" in ddl[0]  # encoded by the sink
    assert written.index(ddl[0]) == len(written) - 2  # in its place, before the last row


def test_kafka_sends_the_messages_the_decoder_encoded_tombstones_included() -> None:
    factory = Factory()
    sink = KafkaSink(cfg(format="debezium-json"), "p", producer_factory=factory)
    sink.open()
    batch = encoded_batch(sink.encoding())
    sink._format = Untouchable(sink._format)  # type: ignore[assignment]
    sink.load(batch, epoch=1)
    assert batch.encoded is not None
    rows = [m for m in batch.encoded.messages if m is not None]
    sent = [(key, value) for topic, key, value in factory.last.sent if topic.endswith(".t")]
    assert sent == [message for messages in rows for message in messages]
    assert sum(value is None for _, value in sent) == 2  # the delete's and the key change's


def test_messages_in_another_format_are_encoded_again(tmp_path: Path) -> None:
    sink = jsonl(tmp_path, format="debezium-json")
    other = DebeziumOptions.model_validate({"decimal.handling.mode": "string"})
    for spec in (FormatSpec("ferry-json", "p"), FormatSpec("debezium-json", "p", None, other)):
        assert spec != sink.encoding()
        sink.load(encoded_batch(spec), epoch=1)
    sink.close()
    mine = get_format("debezium-json", "p")
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    expected = [
        json.loads(value)
        for c in changes()
        for _, value in mine.messages(c, 0, 7)
        if value is not None
    ]
    drop = ("ts_ms", "ts_us", "ts_ns")  # processing time
    assert [{k: v for k, v in m.items() if k not in drop} for m in written] == 2 * [
        {k: v for k, v in m.items() if k not in drop} for m in expected
    ]


def test_a_row_the_decoder_cannot_encode_fails_in_the_sink_as_before(tmp_path: Path) -> None:
    sink = jsonl(tmp_path, format="ferry-json")
    bad = change(9, "insert")
    assert bad.after is not None
    bad.after["v"] = object()
    batch = Batch(3, [change(1, "insert"), bad], POS)
    batch.encoded = encode_ahead(sink.encoding().build(), batch)
    assert batch.encoded.messages[0] is not None and batch.encoded.messages[1] is None
    with pytest.raises(FatalError, match="cannot encode"):
        sink.load(batch, epoch=1)
    sink.close()


def test_stages_that_change_rows_drop_the_messages_encoded_ahead() -> None:
    batch = encoded_batch(FormatSpec("ferry-json", "p"))
    untouched = Stages([], [])(batch)
    assert untouched.encoded is batch.encoded
    config = FerryConfig.model_validate(
        {**BASE, "transforms": [{"type": "mask_columns", "table": "shop.t", "columns": ["v"]}]}
    )
    masked = Stages(config.columns, config.transforms)
    assert masked(batch).encoded is None


BASE: dict[str, Any] = {
    "pipeline": {"id": "p"},
    "source": {"host": "127.0.0.1", "user": "u", "server_id": 9},
    "sink": {"type": "jsonl", "path": "/tmp/never-written.jsonl"},
}


@pytest.mark.parametrize(
    "more, sink, ahead",
    [
        ({}, {"type": "jsonl", "path": "/tmp/never-written.jsonl"}, True),
        ({}, {"type": "kafka", "bootstrap_servers": "127.0.0.1:1"}, True),
        ({"columns": [{"table": "shop.t", "exclude": ["v"]}]}, None, False),
        ({"transforms": [{"type": "drop_columns", "table": "*", "columns": ["v"]}]}, None, False),
        ({}, {"type": "mysql", "host": "127.0.0.1", "user": "u"}, False),
    ],
)
def test_the_decoder_encodes_ahead_only_rows_that_reach_the_sink_as_selected(
    more: dict[str, Any], sink: dict[str, Any] | None, ahead: bool
) -> None:
    config = FerryConfig.model_validate({**BASE, **more, "sink": sink or BASE["sink"]})
    made = create_sink(config.sink, "p")
    assert (encoding_ahead(config, made) is not None) is ahead
    if ahead:
        assert encoding_ahead(config, made) == EncodeAhead(made.encoding())


def test_rows_cross_to_the_node_by_key_and_whole_where_not_encoded() -> None:
    """selector.transport: runs of rows by key (shared on the node, exact by Batch.exact),
    the rest whole."""
    first, second = SourceEvent(400, 1, 0), SourceEvent(900, 1, 3)
    keyless = TableSchema("shop", "log", (Column("v", "INT", 4, 1),))
    rows: list[Change] = [
        RowChange("shop", "t", "update", {"id": i, "v": "a"}, {"id": i, "v": "b"}, ("id",),
                  1.0, POS, "0-1-5", i, None, first)
        for i in range(3)
    ]  # fmt: skip
    rows += [
        RowChange("shop", "log", "delete", {"v": i}, None, (), 2.0, POS, None, 3 + i, keyless,
                  second)
        for i in range(2)
    ]  # fmt: skip
    rows.insert(2, DdlChange("shop", "ALTER TABLE t ADD c INT", 2.0, POS))
    batch = Batch(4, rows, POS, 1.0)
    encoded = Encoded("spec", [[(b"k", b"v")] if i != 4 else None for i in range(len(rows))])
    shipped = ship(batch, encoded)
    assert shipped.changes == [] and batch.changes == rows, "the selector's batch stays whole"
    got = pickle.loads(pickle.dumps(shipped))
    assert (got.batch_id, got.position, got.first_event_ts, got.encoded) == (4, POS, 1.0, encoded)
    keyed = [
        dataclasses.replace(
            c,
            before=None if c.before is None else {k: c.before[k] for k in c.primary_key},
            after=None if c.after is None else {k: c.after[k] for k in c.primary_key},
        )
        if isinstance(c, RowChange) and i != 4
        else c
        for i, c in enumerate(rows)
    ]
    assert [got.exact(i) for i in range(len(rows))] == keyed
    # on the node a run's rows share its first: the table, operation and transaction
    assert got.changes == [keyed[0], keyed[0], *keyed[2:]]
    assert got.row_count == batch.row_count == 5
    # a keyless row's key is its whole image: () by key, everything when it crossed whole
    assert [got.exact(i).key() for i in range(len(rows)) if i != 2] == [
        (0,),
        (1,),
        (2,),
        (("v", 0),),
        (),
    ]


def test_one_row_events_cross_in_one_run_and_rebuild_exactly() -> None:
    """One-row statements: every row its own rows event; they still share one run header,
    and each row comes back with its own event, time and index."""
    events = [SourceEvent(400 + 100 * i, 1, i) for i in range(4)]
    rows: list[Change] = [
        RowChange("shop", "t", "insert", None, {"id": i, "v": "a"}, ("id",), 1.0 + i, POS,
                  "0-1-5", i, None, events[i])
        for i in range(4)
    ]  # fmt: skip
    encoded = Encoded("spec", [[(b"k", b"v")]] * 4)
    shipped = ship(Batch(7, rows, POS, 1.0), encoded)
    assert len(shipped.changes.runs) == 1  # type: ignore[attr-defined]
    got = pickle.loads(pickle.dumps(shipped))
    exact = [got.exact(i) for i in range(4)]
    assert [(c.event, c.ts, c.index, c.after) for c in exact] == [
        (events[i], 1.0 + i, i, {"id": i}) for i in range(4)
    ]
    assert got.changes == [exact[0]] * 4


def test_rows_not_encoded_cross_in_runs_whole() -> None:
    """A batch the node encodes crosses in runs too, with the rows' images: the node gets
    every change back equal, a source event shared by the rows of one rows event."""
    first, second = SourceEvent(400, 1, 0), SourceEvent(900, 1, 2)
    rows: list[Change] = [
        RowChange("shop", "t", "update", {"id": i, "v": "a"}, {"id": i, "v": "b"}, ("id",),
                  1.0, POS, "0-1-5", i, None, first if i < 2 else second)
        for i in range(4)
    ]  # fmt: skip
    rows.insert(1, DdlChange("shop", "ALTER TABLE t ADD c INT", 2.0, POS))
    shipped = ship(Batch(5, rows, POS, 1.0), None)
    got = pickle.loads(pickle.dumps(shipped))
    assert got.changes == rows and got.encoded is None
    assert [got.exact(i) for i in range(len(rows))] == rows
    assert got.changes[3].event is got.changes[4].event is not got.changes[2].event
