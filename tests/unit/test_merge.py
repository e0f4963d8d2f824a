"""sinks.merge: table-driven rules and a model-based property (merged == one by one)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.model import Position, RowChange
from sinks.merge import Merged, in_order, merge, row_key

POS = Position("mysql-bin.000001", 4)
PK = ("id",)


def ins(id_: int, v: Any = "x", table: str = "t", pk: tuple[str, ...] = PK) -> RowChange:
    return RowChange("db", table, "insert", None, {"id": id_, "v": v}, pk, 0.0, POS)


def upd(id_: int, old: Any, new: Any, new_id: int | None = None, table: str = "t") -> RowChange:
    after_id = id_ if new_id is None else new_id
    return RowChange(
        "db", table, "update", {"id": id_, "v": old}, {"id": after_id, "v": new}, PK, 0.0, POS
    )


def dele(id_: int, v: Any = "x", table: str = "t", pk: tuple[str, ...] = PK) -> RowChange:
    return RowChange("db", table, "delete", {"id": id_, "v": v}, None, pk, 0.0, POS)


def summary(merged: list[Merged]) -> list[tuple[str, str, tuple[Any, ...], Any, int]]:
    return [
        (m.table, m.op, m.key(), None if m.after is None else m.after["v"], m.count) for m in merged
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([ins(1, "a")], [("t", "insert", (1,), "a", 1)]),
        ([ins(1, "a"), upd(1, "a", "b"), upd(1, "b", "c")], [("t", "insert", (1,), "c", 3)]),
        ([upd(1, "a", "b"), upd(1, "b", "c")], [("t", "update", (1,), "c", 2)]),
        # inserted and deleted: still a delete, the target may be ahead of the batch
        ([ins(1, "a"), upd(1, "a", "b"), dele(1, "b")], [("t", "delete", (1,), None, 3)]),
        ([upd(1, "a", "b"), dele(1, "b")], [("t", "delete", (1,), None, 2)]),
        ([dele(1, "a"), ins(1, "b")], [("t", "upsert", (1,), "b", 2)]),
        ([dele(1, "a"), ins(1, "b"), upd(1, "b", "c")], [("t", "upsert", (1,), "c", 3)]),
        ([ins(1, "a"), dele(1, "a"), ins(1, "b")], [("t", "insert", (1,), "b", 3)]),
        # a key change: delete of the old key, insert of the new one
        (
            [upd(1, "a", "a", new_id=2)],
            [("t", "delete", (1,), None, 1), ("t", "insert", (2,), "a", 1)],
        ),
        # insert then move the key: the new key survives, the old one is deleted
        (
            [ins(1, "a"), upd(1, "a", "b", new_id=2)],
            [("t", "delete", (1,), None, 2), ("t", "insert", (2,), "b", 1)],
        ),
        # move the key away and back: the key is rewritten (delete + insert = upsert), and
        # the key passed through is deleted
        (
            [upd(1, "a", "a", new_id=2), upd(2, "a", "b", new_id=1)],
            [("t", "delete", (2,), None, 2), ("t", "upsert", (1,), "b", 2)],
        ),
        # deletes first inside a table, then writes in first-seen key order
        (
            [ins(5, "n"), dele(1, "u"), ins(2, "u")],
            [
                ("t", "delete", (1,), None, 1),
                ("t", "insert", (5,), "n", 1),
                ("t", "insert", (2,), "u", 1),
            ],
        ),
        # tables in order of first appearance; keys of different tables do not mix
        (
            [ins(1, "a", table="b"), ins(1, "z", table="a"), upd(1, "a", "c", table="b")],
            [("b", "insert", (1,), "c", 2), ("a", "insert", (1,), "z", 1)],
        ),
    ],
)
def test_merge_rules(changes: list[RowChange], expected: list[Any]) -> None:
    assert summary(merge(changes)) == expected


def test_ten_updates_of_one_key_become_one_action() -> None:
    changes = [upd(7, i, i + 1) for i in range(10)]
    merged = merge(changes)
    assert len(merged) == 1
    assert merged[0].op == "update" and merged[0].after == {"id": 7, "v": 10}
    assert merged[0].before == {"id": 7, "v": 0}  # the image before the batch
    assert merged[0].count == 10


def test_no_primary_key_tables_pass_through_in_order() -> None:
    changes = [ins(1, "a", pk=()), ins(1, "a", pk=()), dele(1, "a", pk=())]
    merged = merge(changes)
    assert [m.op for m in merged] == ["insert", "insert", "delete"]
    assert all(m.count == 1 and m.primary_key == () for m in merged)


def test_unhashable_values_do_not_break_keys() -> None:
    row = {"id": {"a": [1, 2]}, "tags": {"x", "y"}}
    assert row_key(row, ("id", "tags")) == row_key(dict(row), ("id", "tags"))


def test_in_order_keeps_every_change_and_splits_key_changes() -> None:
    changes = [ins(1, "a"), upd(1, "a", "b", new_id=2), upd(2, "b", "c")]
    assert [(m.op, m.key()) for m in in_order(changes)] == [
        ("insert", (1,)),
        ("delete", (1,)),
        ("insert", (2,)),
        ("update", (2,)),
    ]


def test_missing_image_is_reported() -> None:
    bad = RowChange("db", "t", "update", None, {"id": 1}, PK, 0.0, POS)
    with pytest.raises(ValueError, match=r"db\.t"):
        merge([bad])


# --- property: applying the merged actions strictly == applying every change ---------

State = dict[tuple[str, tuple[Any, ...]], dict[str, Any]]


def apply_change(state: State, change: RowChange) -> None:
    if change.op in ("update", "delete"):
        assert change.before is not None
        del state[(change.table, change.key() if change.op == "delete" else _bkey(change))]
    if change.op in ("insert", "update"):
        assert change.after is not None
        key = (change.table, tuple(change.after[c] for c in change.primary_key))
        assert key not in state
        state[key] = change.after


def _bkey(change: RowChange) -> tuple[Any, ...]:
    assert change.before is not None
    return tuple(change.before[c] for c in change.primary_key)


def apply_merged_strict(state: State, action: Merged) -> None:
    """Strict semantics: insert needs an absent key, update a present one."""
    key = (action.table, action.key())
    if action.op == "insert":
        assert key not in state, action
    elif action.op == "update":
        assert key in state, action
    apply_merged(state, action)


def apply_merged(state: State, action: Merged) -> None:
    """The MySQL sink's semantics: every write an upsert, every delete by key."""
    key = (action.table, action.key())
    if action.op == "delete":
        state.pop(key, None)
    else:
        assert action.after is not None
        state[key] = action.after


@st.composite
def scenario(draw: st.DrawFn) -> tuple[State, list[RowChange]]:
    keys = st.integers(0, 6)
    initial: State = {}
    for table in ("t", "u"):
        for k in draw(st.sets(keys, max_size=5)):
            initial[(table, (k,))] = {"id": k, "v": draw(st.integers(0, 3))}
    source = dict(initial)
    changes: list[RowChange] = []
    for _ in range(draw(st.integers(0, 30))):
        table = draw(st.sampled_from(("t", "u")))
        present = sorted(k[1][0] for k in source if k[0] == table)
        absent = [k for k in range(7) if k not in present]
        choices = (("insert", absent), ("update", present), ("delete", present))
        ops = [op for op, ok in choices if ok]
        op = draw(st.sampled_from(ops))
        if op == "insert":
            k = draw(st.sampled_from(absent))
            change = ins(k, draw(st.integers(0, 3)), table=table)
        elif op == "delete":
            k = draw(st.sampled_from(present))
            change = dele(k, source[(table, (k,))]["v"], table=table)
        else:
            k = draw(st.sampled_from(present))
            new_id = draw(st.sampled_from([k, *absent]))
            change = upd(k, source[(table, (k,))]["v"], draw(st.integers(0, 3)), new_id, table)
        apply_change(source, change)
        changes.append(change)
    return initial, changes


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_merged_equals_one_by_one(case: tuple[State, list[RowChange]]) -> None:
    initial, changes = case
    expected = dict(initial)
    for change in changes:
        apply_change(expected, change)

    merged = merge(changes)
    actual = dict(initial)
    for action in merged:
        apply_merged_strict(actual, action)
    assert actual == expected

    # one action per (table, key), deletes before writes inside a table
    keys = [(m.table, m.key()) for m in merged]
    assert len(keys) == len(set(keys))
    for table in ("t", "u"):
        ops = [m.op for m in merged if m.table == table]
        assert ops == sorted(ops, key=lambda op: op != "delete")
    assert sum(m.count for m in merged) <= len(changes) + sum(
        1 for c in changes if c.op == "update" and _bkey(c) != c.key()
    )

    # the unmerged path reaches the same state too
    ordered = dict(initial)
    for action in in_order(changes):
        apply_merged_strict(ordered, action)
    assert ordered == expected


@settings(max_examples=400, deadline=None)
@given(scenario(), st.data())
def test_merged_batch_over_a_target_ahead_of_it(
    case: tuple[State, list[RowChange]], data: st.DataObject
) -> None:
    """The target may already hold any later state of the batch (a frozen node's load
    landed after a takeover, a rollback replays unacked loads): the merged batch still
    ends at the batch's end state. Issue 20: inserted-then-deleted keys were left."""
    initial, changes = case
    ahead = data.draw(st.integers(0, len(changes)))
    target = dict(initial)
    for change in changes[:ahead]:
        apply_change(target, change)
    expected = dict(target)
    for change in changes[ahead:]:
        apply_change(expected, change)
    for action in merge(changes):
        apply_merged(target, action)
    assert target == expected
