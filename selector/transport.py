"""How a batch crosses from the decoder process to the node.

Pickling a RowChange per row (through its ``__reduce__``, with its source event's) cost
both processes more than decoding the row, so rows cross in runs: consecutive rows of one
table, operation, transaction and table definition share one header, whatever rows events
they came from (on a binlog of one-row statements every row is an event of its own), and
carry their event time, rows event and index as plain numbers: ``ship`` in the decoder,
``_rebuild`` when the node unpickles. A run's rows carry

* their **images**, when the node will encode them (the batch is not encoded ahead): the
  node gets a RowChange per row, as the selector made it;
* only their **keys**, when the decoder process encoded them for the sink
  (``pipeline.model.Encoded``): the node writes those messages and never reads the rows'
  values (Decimal and datetime values pickle through ``__reduce__``: shipping them cost the
  decoder as much as decoding them). What the node reads of such a row is its table,
  operation and transaction, so a run's rows are one RowChange, the run's first row,
  repeated; ``Shipped.exact(i)`` (through ``Batch.exact``) rebuilds row ``i`` exactly, for an
  error that must name it by its key.

A DDL, a row without its source event, or a row the decoder could not encode (the sink
encodes it again and reports why) crosses whole.
"""

from __future__ import annotations

from typing import Any

from pipeline.model import Batch, Change, Encoded, RowChange, SourceEvent

# [schema, table, op, primary_key, position, gtid, definition, server id,
#  [event time], [rows event position], [its first index], [index],
#  [before images] or None, [after images] or None, keyed]
# keyed: the images are key values (a batch encoded ahead), else the rows' dicts
_Run = list[Any]
_KEYED = 14


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
        """Change ``index`` as it was (a keyed run's row projected to its key)."""
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


def ship(batch: Batch, encoded: Encoded | None) -> Batch:
    """The batch to send to the node: a new Batch (the selector's own stays whole, for a
    re-delivery after a rollback) whose rows cross in runs, by key where ``encoded``."""
    runs: list[_Run | Change] = []
    run: _Run | None = None
    last: RowChange | None = None
    keyed = encoded is not None
    messages = encoded.messages if encoded is not None else [True] * len(batch.changes)
    for change, encoded_as in zip(batch.changes, messages, strict=True):
        event = change.event if isinstance(change, RowChange) else None
        if encoded_as is None or event is None:
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
                keyed,
            ]
            runs.append(run)
        run[8].append(change.ts)
        run[9].append(event.pos)
        run[10].append(event.first_index)
        run[11].append(change.index)
        if run[12] is not None:
            before = change.before
            assert before is not None
            run[12].append(tuple(before.get(c) for c in key) if keyed else before)
        if run[13] is not None:
            after = change.after
            assert after is not None
            run[13].append(tuple(after.get(c) for c in key) if keyed else after)
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
    append = changes.append
    for run in runs:
        if not isinstance(run, list):
            append(run)
        elif run[_KEYED]:
            changes.extend([_row(run, 0)] * len(run[11]))  # see the module docstring
        else:
            _whole_rows(run, append)
    return changes


def _whole_rows(run: _Run, append: Any) -> None:
    """Every row of a run with its images, a RowChange each (one source event per rows
    event, shared by its rows, as the selector made them)."""
    schema, table, op, key, position, gtid, definition, server_id = run[:8]
    times, events, firsts, indexes, befores, afters = run[8:14]
    event: SourceEvent | None = None
    for i, index in enumerate(indexes):
        pos, first = events[i], firsts[i]
        if event is None or event.pos != pos or event.first_index != first:
            event = SourceEvent(pos, server_id, first)
        append(
            RowChange(
                schema,
                table,
                op,
                None if befores is None else befores[i],
                None if afters is None else afters[i],
                key,
                times[i],
                position,
                gtid,
                index,
                definition,
                event,
            )
        )


def _row(run: _Run, i: int) -> RowChange:
    """Row ``i`` of a run."""
    schema, table, op, key, position, gtid, definition, server_id = run[:8]
    times, events, firsts, indexes, befores, afters, keyed = run[8:]

    def image(images: list[Any] | None) -> dict[str, Any] | None:
        if images is None:
            return None
        return dict(zip(key, images[i], strict=True)) if keyed else images[i]

    return RowChange(
        schema,
        table,
        op,
        image(befores),
        image(afters),
        key,
        times[i],
        position,
        gtid,
        indexes[i],
        definition,
        SourceEvent(events[i], server_id, firsts[i]),
    )
