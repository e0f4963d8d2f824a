"""The shared vocabulary of ferry: positions, changes and batches.

This module imports nothing else from the project; `selector`, `arbitrate` and
`sinks` may import it (and `pipeline.errors`) but nothing else from `pipeline`.

Position semantics (the invariant every part relies on):

* ``file``/``pos`` is where the binlog stream must be (re)opened: the start of
  a transaction, never the middle of one.
* ``row_offset`` is how many row changes of the transaction that starts at
  ``file``/``pos`` were already delivered. It is non-zero only for the
  committed position of a piece of a transaction split by ``batch.max_rows``;
  a resume re-reads that transaction and skips exactly that many rows.
* ``gtid_set`` is the server's executed GTID set at that point, when the
  server has GTIDs (MySQL ``gtid_mode=ON`` UUID:interval sets, or MariaDB
  ``domain-server-seq`` lists).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["insert", "update", "delete"]
OPS: tuple[Op, ...] = ("insert", "update", "delete")


@dataclass(frozen=True, slots=True)
class Position:
    """A resumable point in the binlog (see the module docstring)."""

    file: str
    pos: int
    gtid_set: str | None = None
    row_offset: int = 0
    ts: float = 0.0  # event time (unix seconds) of the last change covered; 0 if unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(
            file=str(data["file"]),
            pos=int(data["pos"]),
            gtid_set=data.get("gtid_set") or None,
            row_offset=int(data.get("row_offset") or 0),
            ts=float(data.get("ts") or 0.0),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Position:
        return cls.from_dict(json.loads(text))

    def sort_key(self) -> tuple[str, int, int, int]:
        """Order of positions on one server.

        A binlog file name is ``<basename>.<sequence>``; the sequence is compared as a
        number, because it gains a digit after 999999 (``mysql-bin.999999`` is followed
        by ``mysql-bin.1000000``, which sorts first as a string).
        """
        stem, dot, sequence = self.file.rpartition(".")
        if dot and sequence.isdigit():
            return (stem, int(sequence), self.pos, self.row_offset)
        return (self.file, -1, self.pos, self.row_offset)

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional constructor call: half the pickling cost of a slots dataclass's default,
        # which matters because batches cross a process boundary (selector.process).
        return (Position, (self.file, self.pos, self.gtid_set, self.row_offset, self.ts))

    def __str__(self) -> str:
        text = f"{self.file}:{self.pos}"
        if self.row_offset:
            text += f"+{self.row_offset}"
        if self.gtid_set:
            text += f" gtid={self.gtid_set}"
        return text


@dataclass(slots=True)
class RowChange:
    """One row changed by one binlog row event.

    ``before`` is None for inserts, ``after`` is None for deletes. Values are
    Python values as decoded from the binlog (int, Decimal, datetime, date,
    timedelta, str, bytes, set, dict/list for JSON, None).
    """

    schema: str
    table: str
    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    primary_key: tuple[str, ...]
    ts: float  # event time, unix seconds (binlog header resolution: 1 s)
    # Where this change's transaction starts; shared by the rows of one rows event (one
    # object, not one per row: it is on the per-row hot path and pickles once per batch).
    position: Position
    gtid: str | None = None
    index: int = 0  # of this change in its transaction (what a row_offset counts)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.schema, self.table, self.op, self.before, self.after, self.primary_key)
        return (RowChange, (*fields, self.ts, self.position, self.gtid, self.index))

    @property
    def row(self) -> dict[str, Any]:
        """The row image that identifies the change: after for insert/update, before for delete."""
        image = self.after if self.after is not None else self.before
        assert image is not None, "a row change has a before or an after image"
        return image

    def key(self) -> tuple[Any, ...]:
        """Primary-key values (from ``before`` for a delete); the whole row when no key."""
        image = self.row
        if self.primary_key:
            return tuple(image.get(column) for column in self.primary_key)
        return tuple(image.items())


@dataclass(slots=True)
class DdlChange:
    """A schema change statement; always a batch of its own."""

    schema: str
    statement: str
    ts: float
    position: Position
    gtid: str | None = None


Change = RowChange | DdlChange


@dataclass(slots=True)
class Batch:
    """A unit of select/ack/rollback (Otter's Message).

    ``position`` is what becomes committed once this batch is acked. A batch
    ends on a transaction boundary (or on a ``max_rows`` split, with
    ``position.row_offset`` set); a DDL is a batch of its own. An empty batch
    carries no change but may still move the position (e.g. past filtered
    transactions) and lets the node check its lock and ack in order.
    """

    batch_id: int
    changes: list[Change] = field(default_factory=list)
    position: Position | None = None
    first_event_ts: float | None = None  # unix seconds of the first change's event

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def row_count(self) -> int:
        return sum(1 for change in self.changes if isinstance(change, RowChange))
