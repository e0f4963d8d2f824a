"""Merge a batch's row changes per (table, primary key), like Otter's ``DbLoadMerger``.

Pure functions, no I/O. A sink that applies by key (upsert/delete) only needs
the *final* state of every key a batch touched, so N changes of one key become
one action:

==========================  =======================================
changes of one key          merged action
==========================  =======================================
insert                      insert (after)
insert, update…             insert of the final row
update, update…             update to the last after image
insert, …, delete           delete (the target may hold the key: see below)
update/delete, …, delete    delete
delete, insert (, update…)  upsert of the final row
update that changes the     delete of the old key + insert of the
key                         new key, each merged with its neighbours
==========================  =======================================

Every key a batch touches ends as the batch ends it, whatever the target held of it
before: present → upsert, absent → delete. A merged batch is applied to a target that
may be *ahead* of the batch's start, not only at it: after a takeover, the frozen
node's last load can land after the new node chose where to start (the sink's fence
lets it, as nothing of the new node's is written yet), and a rollback replays from
the committed position over loads that were not acked. So "inserted and deleted
inside the batch" still deletes the key: the target may hold the row from such a
load (issue 20: deletes lost in takeovers). A delete of an absent key changes nothing.

Output order (the choice on cross-key order). Merging drops the intermediate
states, so the binlog order between *different* keys cannot be kept in
general. What is kept:

* tables come in the order of their first change in the batch;
* within a table, all deletes come before all inserts/updates/upserts. A
  delete never conflicts with anything, and running deletes first makes the
  common cross-key dependency safe: "delete key A (unique value u), insert key
  B (unique value u)" — and a key change, and a key that only differs in case
  or trailing spaces under a case-insensitive collation — apply without a
  duplicate-key error;
* within each of those two groups, keys come in the order of their first
  change (deterministic; the order does not change the final state).

What is not kept: unique values *moved between surviving rows* inside one
batch (swap ``a``/``b`` between two keys through a temporary value), and
foreign-key order across tables. The MySQL sink applies merged batches with
``foreign_key_checks=0`` by default and, if the merged apply still fails with
a duplicate-key or foreign-key error, retries the batch unmerged in binlog
order (:func:`in_order`), which reproduces every intermediate state.

Tables without a primary key are never merged: their rows have no identity,
two identical rows are legal, so their changes pass through one by one in
binlog order (:class:`Merged` with ``count == 1``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.model import RowChange

MergedOp = Literal["insert", "update", "upsert", "delete"]


@dataclass(frozen=True, slots=True)
class Merged:
    """The net effect of a batch on one key of one table.

    ``before`` is the row image before the batch (None for ``insert``; for a delete of a
    key the batch inserted, the image it was deleted with); it is what a delete (or a
    no-primary-key update) matches on. ``after`` is the
    final row (None for ``delete``). ``count`` is how many row changes were
    folded into this action.
    """

    schema: str
    table: str
    op: MergedOp
    primary_key: tuple[str, ...]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    count: int = 1

    @property
    def row(self) -> dict[str, Any]:
        """``after`` for insert/update/upsert, ``before`` for delete."""
        image = self.after if self.after is not None else self.before
        assert image is not None
        return image

    def key(self) -> tuple[Any, ...]:
        """Primary-key values (of ``before`` for a delete)."""
        return tuple(self.row.get(column) for column in self.primary_key)


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for a column value (JSON and SET values are not hashable)."""
    if isinstance(value, dict | list):
        return ("json", json.dumps(value, sort_keys=True, default=str))
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return value


def row_key(row: dict[str, Any], primary_key: tuple[str, ...]) -> tuple[Hashable, ...]:
    """Hashable primary-key values of a row image."""
    return tuple(freeze(row.get(column)) for column in primary_key)


TableId = tuple[str, str, tuple[str, ...]]


@dataclass(slots=True)
class _Slot:
    existed: bool  # the key existed before the batch (its first change was not an insert)
    before: dict[str, Any] | None  # image before the batch
    after: dict[str, Any] | None = None  # final image; None = absent
    deleted: dict[str, Any] | None = None  # image of the last delete on the way
    count: int = 0


class _Table:
    __slots__ = ("order", "passthrough", "slots")

    def __init__(self) -> None:
        self.slots: dict[tuple[Hashable, ...], _Slot] = {}
        self.order: list[tuple[Hashable, ...]] = []  # first-seen order of keys
        self.passthrough: list[Merged] = []  # tables without a primary key

    def slot(self, key: tuple[Hashable, ...], existed: bool, before: Any) -> _Slot:
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = _Slot(existed=existed, before=before)
            self.order.append(key)
        return slot

    def insert(self, pk: tuple[str, ...], after: dict[str, Any]) -> None:
        slot = self.slot(row_key(after, pk), existed=False, before=None)
        slot.after = after
        slot.count += 1

    def delete(self, pk: tuple[str, ...], before: dict[str, Any]) -> None:
        slot = self.slot(row_key(before, pk), existed=True, before=before)
        slot.after = None
        slot.deleted = before
        slot.count += 1

    def update(self, pk: tuple[str, ...], before: dict[str, Any], after: dict[str, Any]) -> None:
        slot = self.slot(row_key(before, pk), existed=True, before=before)
        slot.after = after
        slot.count += 1


def _image(change: RowChange, which: str) -> dict[str, Any]:
    image = change.before if which == "before" else change.after
    if image is None:
        raise ValueError(
            f"{change.op} of {change.schema}.{change.table} at {change.position} "
            f"has no {which} image"
        )
    return image


def _single(change: RowChange) -> list[Merged]:
    """One change as actions without merging (a key change is delete + insert)."""
    s, t, pk = change.schema, change.table, change.primary_key
    if change.op == "insert" or change.op == "read":  # a snapshot's row: written like an insert
        return [Merged(s, t, "insert", pk, None, _image(change, "after"))]
    if change.op == "delete":
        return [Merged(s, t, "delete", pk, _image(change, "before"), None)]
    before, after = _image(change, "before"), _image(change, "after")
    if pk and row_key(before, pk) != row_key(after, pk):
        return [Merged(s, t, "delete", pk, before, None), Merged(s, t, "insert", pk, None, after)]
    return [Merged(s, t, "update", pk, before, after)]


def merge(changes: Iterable[RowChange]) -> list[Merged]:
    """Merge row changes per (table, primary key); see the module docstring for rules and order."""
    tables: dict[TableId, _Table] = {}
    for change in changes:
        tid = (change.schema, change.table, change.primary_key)
        table = tables.get(tid)
        if table is None:
            table = tables[tid] = _Table()
        pk = change.primary_key
        if not pk:
            table.passthrough.extend(_single(change))
        elif change.op == "insert" or change.op == "read":
            table.insert(pk, _image(change, "after"))
        elif change.op == "delete":
            table.delete(pk, _image(change, "before"))
        else:
            before, after = _image(change, "before"), _image(change, "after")
            if row_key(before, pk) == row_key(after, pk):
                table.update(pk, before, after)
            else:  # a key change: the old key goes away, the new one appears
                table.delete(pk, before)
                table.insert(pk, after)

    result: list[Merged] = []
    for (schema, name, pk), table in tables.items():
        if not pk:
            result.extend(table.passthrough)
            continue
        deletes: list[Merged] = []
        writes: list[Merged] = []
        for key in table.order:
            slot = table.slots[key]
            if slot.after is None:  # absent at the end, even if the batch inserted it first
                image = slot.before if slot.existed else slot.deleted
                deletes.append(Merged(schema, name, "delete", pk, image, None, slot.count))
                continue
            if not slot.existed:
                op: MergedOp = "insert"
            else:
                op = "upsert" if slot.deleted is not None else "update"
            writes.append(Merged(schema, name, op, pk, slot.before, slot.after, slot.count))
        result.extend(deletes)
        result.extend(writes)
    return result


def in_order(changes: Iterable[RowChange]) -> list[Merged]:
    """Every change as its own action, in binlog order (no merging); a key change is
    delete of the old key then insert of the new one. Used when a merged apply hits a
    cross-key constraint (see the module docstring)."""
    result: list[Merged] = []
    for change in changes:
        result.extend(_single(change))
    return result
