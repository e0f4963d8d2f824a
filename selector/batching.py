"""Batch bookkeeping shared by every selector: cutting transactions into batches
(:class:`Assembler`) and get/ack/rollback accounting (:class:`Ledger`).

A selector feeds the assembler a stream of transaction events — ``begin``,
row changes, ``commit``, ``ddl``, ``advance`` — and the assembler turns them
into batches that follow the rules of ``pipeline.model.Batch``:

* a batch ends on a transaction boundary and carries the position just after
  it (the start of whatever comes next);
* a DDL is a batch of its own;
* a transaction that reaches ``max_rows`` on its own is split into pieces;
  a piece's position is ``(start of the transaction, row_offset = rows of it
  delivered so far)``. If a transaction reaches ``max_rows`` while the batch
  still holds earlier complete transactions, the batch is cut at the last
  boundary instead, and the rows read so far are carried into the next batch;
* a stream opened at a position with ``row_offset = k`` skips the first ``k``
  rows of the first transaction (they were delivered before).

The row offset counts rows that passed the selector's filters: a resume must
use the same include/exclude lists as the run that committed the position.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from loguru import logger

from pipeline.errors import FatalError, classify
from pipeline.model import Batch, Change, DdlChange, Position, RowChange, SchemaRecord, Skipped

from .base import PositionStore


@dataclass(slots=True)
class Piece:
    """A batch before it has an id."""

    changes: list[Change]
    position: Position | None
    skipped: list[Skipped] = field(default_factory=list)
    history: tuple[SchemaRecord, ...] = ()  # schema history records stored with the position


class Assembler:
    """Cuts a stream of transactions into batch pieces (see the module docstring)."""

    def __init__(self, max_rows: int, start: Position | None) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.max_rows = max_rows
        self.ready: deque[Piece] = deque()  # cut, waiting to be handed out
        self._batch: list[Change] = []  # complete transactions of the batch being built
        self._batch_pos: Position | None = None  # position after the last of them
        self._skipped: list[Skipped] = []  # statements not passed on, counted with the batch
        self.txn: list[RowChange] | None = None  # rows of the open transaction, not yet cut
        self.txn_start: Position | None = None
        self.txn_done = 0  # rows of the open transaction already cut into pieces (or skipped)
        self.skip = start.row_offset if start is not None else 0  # rows to skip at the start

    # -- transaction events ---------------------------------------------------

    @property
    def in_txn(self) -> bool:
        return self.txn is not None

    def begin(self, start: Position) -> None:
        """A transaction starts; ``start`` is where to reopen the stream to replay it."""
        if self.txn is not None:  # a transaction without its commit: drop what we have
            logger.warning("transaction at {} has no commit; its rows are dropped", self.txn_start)
        self.txn = []
        self.txn_start = replace(start, row_offset=0)
        self.txn_done = 0
        if self.skip:
            # rows [0, skip) of this transaction were delivered before the restart
            self.txn_done = self.skip

    def take_skip(self, available: int) -> int:
        """How many of ``available`` next rows to drop because they were delivered before."""
        if not self.skip:
            return 0
        n = min(self.skip, available)
        self.skip -= n
        return n

    def rows(self, changes: list[RowChange], split: bool = True) -> None:
        """Rows of the open transaction (after filtering and skipping).

        ``split=False``: this transaction is never cut into pieces, whatever its
        size (XA rows delivered at COMMIT: no position inside it may be committed).
        """
        txn = self.txn
        if txn is None:  # rows outside a transaction (non-transactional engine without BEGIN)
            raise AssertionError("rows outside a transaction")
        txn.extend(changes)
        if split and len(self._batch) + len(txn) >= self.max_rows:
            self._cut_inside()

    def _cut_inside(self) -> None:
        txn = self.txn
        assert txn is not None and self.txn_start is not None
        if self._batch:
            # the batch has earlier complete transactions: end it at their boundary
            # and carry this transaction's rows on
            self._flush()
        while len(txn) >= self.max_rows:
            piece, rest = txn[: self.max_rows], txn[self.max_rows :]
            self.txn_done += len(piece)
            self.ready.append(Piece(list(piece), replace(self.txn_start, row_offset=self.txn_done)))
            txn = rest
        self.txn = txn

    def commit(self, end: Position) -> None:
        """The open transaction committed; ``end`` is the position just after it."""
        if self.txn is not None:
            self._batch.extend(self.txn)
        self._end_txn()
        self._batch_pos = end
        if len(self._batch) >= self.max_rows:
            self._flush()

    def abort(self) -> None:
        """The open transaction was rolled back in the binlog (rare): drop its rows."""
        self._end_txn()

    def _end_txn(self) -> None:
        self.txn = None
        self.txn_start = None
        self.txn_done = 0
        self.skip = 0  # a skip applies to the first transaction only

    def ddl(self, change: DdlChange, end: Position, history: tuple[SchemaRecord, ...] = ()) -> None:
        """A DDL statement (its own transaction): a batch by itself, with the schema history
        records to store with its position."""
        self._end_txn()
        self.flush()
        self.ready.append(Piece([change], end, history=history))

    def schema_change(self, history: tuple[SchemaRecord, ...], end: Position) -> None:
        """A DDL that reaches no sink but changes the schema history (a table of a captured
        database that is not included): an empty batch of its own, so its records are
        stored with the position just after it."""
        self._end_txn()
        self.flush()
        self.ready.append(Piece([], end, history=history))

    def note_skipped(self, skipped: Skipped) -> None:
        """A statement read and not passed on: counted when the batch that holds it is acked."""
        self._skipped.append(skipped)

    def advance(self, pos: Position) -> None:
        """Outside a transaction the stream moved to ``pos`` (filtered events, rotation)."""
        if self.txn is None:
            self._batch_pos = pos

    # -- cutting ----------------------------------------------------------------

    def _flush(self) -> None:
        self.ready.append(Piece(self._batch, self._batch_pos, self._skipped))
        self._batch = []
        self._batch_pos = None
        self._skipped = []

    def flush(self) -> None:
        """Cut the batch being built (if it holds anything or moves the position)."""
        if self._batch or self._batch_pos is not None or self._skipped:
            self._flush()

    @property
    def batch_rows(self) -> int:
        return len(self._batch) + (len(self.txn) if self.txn else 0)


class Ledger:
    """get/ack/rollback accounting of one selector: ids, in-flight batches, committed position.

    ``origin`` is where the stream started when nothing was committed yet; the
    resume point is the committed position if there is one, else ``origin``.
    """

    def __init__(
        self, store: PositionStore, origin: Position | None = None, pipeline_id: str = ""
    ) -> None:
        self.store = store
        self.pipeline_id = pipeline_id
        self.origin = origin
        self.committed: Position | None = None
        self.in_flight: deque[Batch] = deque()
        self.last_handed: Position | None = None  # position of the newest batch handed out
        self._next_id = 1

    def load(self) -> Position | None:
        """Read the committed position from the store (at start)."""
        try:
            self.committed = self.store.load()
        except Exception as exc:
            raise classify(exc, f"cannot load the committed position: {exc}") from exc
        self.in_flight.clear()
        self.last_handed = None
        return self.committed

    @property
    def resume_point(self) -> Position | None:
        """Where a rolled-back stream reopens: committed, else the origin."""
        return self.committed if self.committed is not None else self.origin

    @property
    def stream_point(self) -> Position | None:
        """Where a lost connection reopens: after the newest batch handed out."""
        return self.last_handed if self.last_handed is not None else self.resume_point

    def hand_out(self, piece: Piece, first_event_ts: float | None = None) -> Batch:
        changes = piece.changes
        if first_event_ts is None and changes:
            first_event_ts = changes[0].ts
        batch = Batch(
            self._next_id,
            changes,
            piece.position,
            first_event_ts,
            piece.skipped,
            history=piece.history,
        )
        self._next_id += 1
        self.in_flight.append(batch)
        if piece.position is not None:
            self.last_handed = piece.position
        return batch

    def ack(self, batch_id: int) -> Position | None:
        if not self.in_flight:
            raise FatalError(
                f"ack of batch {batch_id} but no batch is in flight",
                pipeline=self.pipeline_id or None,
                batch_id=batch_id,
            )
        oldest = self.in_flight[0]
        if oldest.batch_id != batch_id:
            raise FatalError(
                f"ack of batch {batch_id} out of order: the oldest un-acked batch is"
                f" {oldest.batch_id}",
                pipeline=self.pipeline_id or None,
                batch_id=batch_id,
            )
        if oldest.position is not None:
            try:
                if oldest.history:
                    self.store.save(oldest.position, oldest.history)
                else:
                    self.store.save(oldest.position)
            except Exception as exc:
                raise classify(exc, f"cannot save the committed position: {exc}").context(
                    pipeline=self.pipeline_id or None,
                    batch_id=batch_id,
                    position=oldest.position,
                ) from exc
            self.committed = oldest.position
        self.in_flight.popleft()
        logger.debug(
            "ack batch {} rows={} committed={}", batch_id, oldest.row_count, self.committed
        )
        return self.committed

    def rollback(self) -> Position | None:
        """Forget every in-flight batch; returns where the stream must reopen."""
        dropped = [batch.batch_id for batch in self.in_flight]
        self.in_flight.clear()
        self.last_handed = None
        logger.info(
            "rollback: dropped batches {} resume_at={}", dropped or "none", self.resume_point
        )
        return self.resume_point
