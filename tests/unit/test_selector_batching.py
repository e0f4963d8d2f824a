"""Batching and get/ack/rollback bookkeeping, on the in-memory selector (no server)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import FatalError, ResumableError
from pipeline.model import Batch, DdlChange, Position, RowChange
from selector.base import PositionStore
from selector.memory import MemorySelector
from selector.store import FilePositionStore, MemoryPositionStore


def row(txn: int, i: int) -> RowChange:
    return RowChange(
        schema="shop",
        table="orders",
        op="insert",
        before=None,
        after={"id": txn * 1000 + i, "txn": txn, "i": i},
        primary_key=("id",),
        ts=1_700_000_000.0 + txn,
        position=Position("x", 0),
    )


def txns(*sizes: int) -> list[list[RowChange]]:
    return [[row(t, i) for i in range(n)] for t, n in enumerate(sizes)]


def ids(batch: Batch) -> list[int]:
    return [c.after["id"] for c in batch.changes if isinstance(c, RowChange) and c.after]


def started(*args: object, **kwargs: object) -> MemorySelector:
    sel = MemorySelector(*args, **kwargs)  # type: ignore[arg-type]
    sel.start()
    return sel


def test_small_transactions_share_a_batch_cut_on_a_boundary() -> None:
    sel = started(txns(2, 2, 2, 2), batch_max_rows=5, batch_max_wait_ms=10)
    first = sel.select()
    # 2+2 rows, then the third transaction reaches 5 inside: cut at the boundary before it
    assert ids(first) == [0, 1, 1000, 1001]
    assert first.position == Position("memory", 2, ts=first.position.ts)  # type: ignore[union-attr]
    second = sel.select()
    assert ids(second) == [2000, 2001, 3000, 3001]
    assert second.position is not None and second.position.pos == 4
    assert second.batch_id == first.batch_id + 1


def test_large_transaction_is_split_with_row_offsets() -> None:
    sel = started(txns(7), batch_max_rows=3, batch_max_wait_ms=10)
    pieces = [sel.select() for _ in range(3)]
    assert [ids(b) for b in pieces] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [(b.position.pos, b.position.row_offset) for b in pieces] == [  # type: ignore[union-attr]
        (0, 3),
        (0, 6),
        (1, 0),
    ]
    # each row knows its index in the transaction
    assert [c.index for c in pieces[1].changes] == [3, 4, 5]


def test_restart_from_the_middle_of_a_split_transaction() -> None:
    store = MemoryPositionStore()
    first = started(txns(7, 1), batch_max_rows=3, store=store, batch_max_wait_ms=10)
    first.ack(first.select().batch_id)  # rows 0..2 acked
    first.select()  # 3..5 handed out, never acked
    assert store.load() == Position("memory", 0, row_offset=3)
    again = started(txns(7, 1), batch_max_rows=3, store=store, batch_max_wait_ms=10)
    assert ids(again.select()) == [3, 4, 5]
    assert ids(again.select()) == [6, 1000]


def test_ddl_is_a_batch_of_its_own() -> None:
    ddl = DdlChange("shop", "ALTER TABLE orders ADD c INT", 1.0, Position("x", 0))
    sel = started([*txns(1, 1), [ddl], *txns(1)], batch_max_rows=100, batch_max_wait_ms=10)
    assert ids(sel.select()) == [0, 1000]
    only = sel.select()
    assert len(only.changes) == 1 and isinstance(only.changes[0], DdlChange)
    assert only.position is not None and only.position.pos == 3
    assert ids(sel.select()) == [0]


def test_ack_must_name_the_oldest_batch() -> None:
    sel = started(txns(1, 1, 1), batch_max_rows=1, batch_max_wait_ms=10)
    with pytest.raises(FatalError, match="no batch is in flight"):
        sel.ack(1)
    a, b = sel.select(), sel.select()
    with pytest.raises(FatalError, match="out of order"):
        sel.ack(b.batch_id)
    assert sel.ack(a.batch_id) == a.position
    assert sel.ack(b.batch_id) == b.position
    assert sel.committed == b.position


def test_rollback_after_two_unacked_batches_redelivers_exactly_them() -> None:
    store = MemoryPositionStore()
    sel = started(txns(1, 1, 1, 1), batch_max_rows=1, store=store, batch_max_wait_ms=10)
    sel.ack(sel.select().batch_id)
    b2, b3 = sel.select(), sel.select()
    sel.rollback()
    assert sel.in_flight == []
    r2, r3 = sel.select(), sel.select()
    assert (ids(r2), ids(r3)) == (ids(b2), ids(b3))
    assert r2.batch_id > b3.batch_id  # ids keep increasing across a rollback
    with pytest.raises(FatalError):
        sel.ack(b2.batch_id)  # a batch from before the rollback is gone
    sel.ack(r2.batch_id)
    assert store.load() == r2.position


def test_rollback_with_nothing_committed_goes_back_to_the_start() -> None:
    sel = started(txns(2, 2), batch_max_rows=2, batch_max_wait_ms=10)
    first = sel.select()
    sel.rollback()
    assert ids(sel.select()) == ids(first)


def test_idle_select_returns_an_empty_batch_in_time() -> None:
    sel = started([], batch_max_rows=10, batch_max_wait_ms=50)
    t0 = time.monotonic()
    batch = sel.select()
    assert batch.is_empty and batch.position is None
    assert 0.04 <= time.monotonic() - t0 < 1.0
    assert sel.ack(batch.batch_id) is None  # nothing to commit, but acked in order


def test_feed_wakes_a_waiting_select_and_stop_ends_it() -> None:
    sel = started([], batch_max_rows=10, batch_max_wait_ms=5000)
    threading.Timer(0.05, lambda: sel.feed(txns(1))).start()
    t0 = time.monotonic()
    assert ids(sel.select()) == [0]
    assert time.monotonic() - t0 < 2
    threading.Timer(0.05, sel.stop).start()
    t0 = time.monotonic()
    assert sel.select().is_empty
    assert time.monotonic() - t0 < 2


def test_injected_failures() -> None:
    seen: list[tuple[str, int]] = []
    sel = started(
        txns(1, 1), batch_max_rows=1, batch_max_wait_ms=10, on_call=lambda o, n: seen.append((o, n))
    )
    sel.inject("select", 2, ResumableError("connection lost"))
    first = sel.select()
    with pytest.raises(ResumableError):
        sel.select()
    sel.rollback()
    assert ids(sel.select()) == ids(first)
    assert ("rollback", 1) in seen and ("select", 3) in seen


class BrokenStore(PositionStore):
    def load(self) -> Position | None:
        return None

    def save(self, position: Position) -> None:
        raise ConnectionError("redis down")


def test_a_failed_save_keeps_the_batch_in_flight() -> None:
    sel = started(txns(1), batch_max_rows=1, store=BrokenStore(), batch_max_wait_ms=10)
    batch = sel.select()
    with pytest.raises(ResumableError, match="cannot save"):
        sel.ack(batch.batch_id)
    assert sel.in_flight == [batch.batch_id]
    assert sel.committed is None


def test_file_store_round_trip_and_atomic_replace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = FilePositionStore(tmp_path / "pos" / "p.json")
    assert store.load() is None
    pos = Position("mysql-bin.000002", 1234, "0-1-7", 3, 1.5)
    store.save(pos)
    store.save(pos)
    assert FilePositionStore(tmp_path / "pos" / "p.json").load() == pos
    assert [p.name for p in (tmp_path / "pos").iterdir()] == ["p.json"]  # no temp files left
    (tmp_path / "pos" / "p.json").write_text("{not json")
    with pytest.raises(FatalError, match="not a valid position"):
        store.load()


# -- property: whatever the interleaving, acked changes are the stream exactly once --

ops = st.lists(st.sampled_from(["select", "ack", "rollback", "restart"]), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 9), min_size=1, max_size=8),
    max_rows=st.integers(1, 6),
    script=ops,
)
def test_acked_changes_are_the_stream_exactly_once(
    sizes: list[int], max_rows: int, script: list[str]
) -> None:
    data = txns(*sizes)
    expected = [r.after["id"] for t in data for r in t]  # type: ignore[index]
    store = MemoryPositionStore()

    def new() -> MemorySelector:
        return started(data, batch_max_rows=max_rows, store=store, batch_max_wait_ms=0)

    sel = new()
    acked: list[int] = []
    pending: list[Batch] = []
    for op in [*script, "drain"]:
        if op == "select":
            pending.append(sel.select())
            assert len(pending[-1].changes) <= max_rows
        elif op == "ack" and pending:
            batch = pending.pop(0)
            sel.ack(batch.batch_id)
            acked.extend(ids(batch))
        elif op == "rollback":
            sel.rollback()
            pending.clear()
        elif op == "restart":
            sel = new()
            pending.clear()
        elif op == "drain":
            for batch in pending:
                sel.ack(batch.batch_id)
                acked.extend(ids(batch))
            while True:
                batch = sel.select()
                sel.ack(batch.batch_id)
                if batch.is_empty and batch.position is None:
                    break
                acked.extend(ids(batch))
    assert acked == expected
