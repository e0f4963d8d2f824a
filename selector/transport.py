"""How a batch encoded ahead crosses from the decoder process to the node.

When the decoder process encodes a batch's rows for the sink (``pipeline.model.Encoded``),
the node writes those messages and never reads the rows' values: it needs a row's table
(a topic, a file), its operation and key (an error names the row by its masked key), and
the row count. Pickling every value of every image cost the decoder process as much as
decoding them (Decimal and datetime pickle through ``__reduce__``), so such rows cross
projected to their key columns (as a column filter keeping only the key would leave them),
in runs: consecutive rows of one table, operation, transaction and table definition share
one header, whatever rows events they came from (on a binlog of one-row statements every
row is an event of its own), and carry their event time, rows event and index as plain
numbers: ``ship`` in the decoder, ``_rebuild`` when the node unpickles.

On the node, the rows of a run are one RowChange, the run's first row, repeated: building
a RowChange (and its key dict and source event) for every row cost the node more than
writing its messages, and what the node reads of a row encoded ahead is its table,
operation and transaction; its messages are the rest. ``Shipped.exact(i)`` (through
``Batch.exact``) rebuilds row ``i`` exactly, for an error that must name it by its key.

A DDL, or a row the decoder could not encode (the sink encodes it again and reports why),
crosses whole.
"""

from __future__ import annotations

from typing import Any

from pipeline.model import Batch, Change, Encoded, RowChange, SourceEvent

# [schema, table, op, primary_key, position, gtid, definition, server id,
#  [event time], [rows event position], [its first index], [index],
#  key values of the before images or None, of the after images or None]
_Run = list[Any]


class Shipped(list[Change]):
    """A batch's changes as they cross to the node (see the module docstring). Empty in the
    decoder process, which only pickles it; once unpickled, a list with a RowChange per
    row (a run's rows share its first row's)."""

    def __init__(self, runs: list[_Run | Change]) -> None:
        super().__init__()
        self.runs = runs

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.runs,))

    def exact(self, index: int) -> Change:
        """Change ``index`` as it was, rebuilt from its run."""
        for run in self.runs:
            if not isinstance(run, list):
                if index == 0:
                    return run
                index -= 1
                continue
            count = len(run[11])
            if index < count:
                return _row(run, index)
            index -= count
        raise IndexError(index)


def ship(batch: Batch, encoded: Encoded) -> Batch:
    """The batch to send to the node: a new Batch (the selector's own stays whole, for a
    re-delivery after a rollback) whose encoded rows are projected to their key."""
    runs: list[_Run | Change] = []
    run: _Run | None = None
    last: RowChange | None = None
    for change, messages in zip(batch.changes, encoded.messages, strict=True):
        event = change.event if isinstance(change, RowChange) else None
        if messages is None or event is None:
            runs.append(change)
            run = last = None
            continue
        assert isinstance(change, RowChange)
        key = change.primary_key
        if run is None or last is None or not _same_run(last, change):
            run = [
                change.schema,
                change.table,
                change.op,
                key,
                change.position,
                change.gtid,
                change.definition,
                event.server_id,
                [],
                [],
                [],
                [],
                None if change.before is None else [],
                None if change.after is None else [],
            ]
            runs.append(run)
        run[8].append(change.ts)
        run[9].append(event.pos)
        run[10].append(event.first_index)
        run[11].append(change.index)
        if run[12] is not None:
            before = change.before
            assert before is not None
            run[12].append(tuple(before.get(c) for c in key))
        if run[13] is not None:
            after = change.after
            assert after is not None
            run[13].append(tuple(after.get(c) for c in key))
        last = change
    return Batch(
        batch.batch_id,
        Shipped(runs),
        batch.position,
        batch.first_event_ts,
        batch.skipped,
        encoded,
    )


def _same_run(last: RowChange, change: RowChange) -> bool:
    """The next row goes on in the run of the last one: one header describes both."""
    event, previous = change.event, last.event
    return (
        event is not None
        and previous is not None
        and event.server_id == previous.server_id
        and change.op == last.op
        and change.position is last.position
        and change.definition is last.definition
        and change.gtid == last.gtid
        and change.schema == last.schema
        and change.table == last.table
        and change.primary_key == last.primary_key
        and (change.before is None) == (last.before is None)
        and (change.after is None) == (last.after is None)
    )


def _rebuild(runs: list[_Run | Change]) -> Shipped:
    changes = Shipped(runs)
    for run in runs:
        if not isinstance(run, list):
            changes.append(run)
            continue
        changes.extend([_row(run, 0)] * len(run[11]))  # see the module docstring
    return changes


def _row(run: _Run, i: int) -> RowChange:
    """Row ``i`` of a run."""
    schema, table, op, key, position, gtid, definition, server_id = run[:8]
    times, events, firsts, indexes, befores, afters = run[8:]
    return RowChange(
        schema,
        table,
        op,
        None if befores is None else dict(zip(key, befores[i], strict=True)),
        None if afters is None else dict(zip(key, afters[i], strict=True)),
        key,
        times[i],
        position,
        gtid,
        indexes[i],
        definition,
        SourceEvent(events[i], server_id, firsts[i]),
    )
