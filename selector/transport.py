"""How a batch encoded ahead crosses from the decoder process to the node.

When the decoder process encodes a batch's rows for the sink (``pipeline.model.Encoded``),
the node writes those messages and never reads the rows' values: it needs a row's table
(a topic, a file), its operation and key (an error names the row by its masked key), and
the row count. Pickling every value of every image cost the decoder process as much as
decoding them (Decimal and datetime pickle through ``__reduce__``), so such rows cross
projected to their key columns (as a column filter keeping only the key would leave them),
one header per rows event: ``ship`` in the decoder, ``_rebuild`` when the node unpickles.

A DDL, or a row the decoder could not encode (the sink encodes it again and reports why),
crosses whole.
"""

from __future__ import annotations

from typing import Any

from pipeline.model import Batch, Change, Encoded, RowChange

# (schema, table, op, primary_key, ts, position, gtid, definition, event, first index,
#  key values of the before images or None, of the after images or None)
_Run = list[Any]


class Shipped(list[Change]):
    """A batch's changes as they cross to the node (see the module docstring). Empty in the
    decoder process, which only pickles it; a list of changes once unpickled."""

    def __init__(self, runs: list[_Run | Change]) -> None:
        super().__init__()
        self.runs = runs

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.runs,))


def ship(batch: Batch, encoded: Encoded) -> Batch:
    """The batch to send to the node: a new Batch (the selector's own stays whole, for a
    re-delivery after a rollback) whose encoded rows are projected to their key."""
    runs: list[_Run | Change] = []
    run: list[Any] | None = None
    last: RowChange | None = None
    for change, messages in zip(batch.changes, encoded.messages, strict=True):
        if messages is None or not isinstance(change, RowChange):
            runs.append(change)
            run = last = None
            continue
        key = change.primary_key
        before = None if change.before is None else tuple(change.before.get(c) for c in key)
        after = None if change.after is None else tuple(change.after.get(c) for c in key)
        if run is None or last is None or not _same_event(last, change):
            run = [
                change.schema,
                change.table,
                change.op,
                key,
                change.ts,
                change.position,
                change.gtid,
                change.definition,
                change.event,
                change.index,
                None if before is None else [],
                None if after is None else [],
            ]
            runs.append(run)
        if run[10] is not None:
            run[10].append(before)
        if run[11] is not None:
            run[11].append(after)
        last = change
    return Batch(
        batch.batch_id,
        Shipped(runs),
        batch.position,
        batch.first_event_ts,
        batch.skipped,
        encoded,
    )


def _same_event(last: RowChange, change: RowChange) -> bool:
    """The next row of the same rows event: one header describes both."""
    return (
        change.event is last.event
        and change.event is not None
        and change.index == last.index + 1
        and change.op == last.op
        and change.position is last.position
        and change.definition is last.definition
        and change.gtid == last.gtid
        and change.ts == last.ts
        and change.schema == last.schema
        and change.table == last.table
        and change.primary_key == last.primary_key
        and (change.before is None) == (last.before is None)
        and (change.after is None) == (last.after is None)
    )


def _rebuild(runs: list[_Run | Change]) -> list[Change]:
    changes: list[Change] = []
    for run in runs:
        if not isinstance(run, list):
            changes.append(run)
            continue
        schema, table, op, key, ts, position, gtid, definition, event, first, befores, afters = run
        count = len(befores if befores is not None else afters)
        for i in range(count):
            before = None if befores is None else dict(zip(key, befores[i], strict=True))
            after = None if afters is None else dict(zip(key, afters[i], strict=True))
            changes.append(
                RowChange(
                    schema,
                    table,
                    op,
                    before,
                    after,
                    key,
                    ts,
                    position,
                    gtid,
                    first + i,
                    definition,
                    event,
                )
            )
    return changes
