"""A selector over transactions held in memory, for the node's tests.

It follows the MySQL selector's contract exactly — same :class:`Assembler`
(batching, splitting, row offsets) and :class:`Ledger` (ids, ack order,
rollback) — so a test that passes here exercises the real bookkeeping.

Positions are synthetic: transaction ``i`` (0-based) starts at
``Position("memory", i)`` and ends at ``Position("memory", i + 1)``; a row's
position is its transaction's start and ``index`` its index in the transaction.

Failures are injected with :meth:`MemorySelector.inject` (raise an error on
the n-th call of ``select``/``ack``/``rollback``/``start``) or with an
``on_call(op, n)`` hook that may raise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from loguru import logger

from pipeline.errors import FatalError
from pipeline.model import Batch, Change, DdlChange, Position, RowChange

from .base import PositionStore, Selector
from .batching import Assembler, Ledger, Piece
from .store import MemoryPositionStore

MEMORY_FILE = "memory"

Transaction = Sequence[Change]


class MemorySelector(Selector):
    """Selector fed from a list of transactions (each a list of RowChanges, or one DdlChange)."""

    def __init__(
        self,
        transactions: Iterable[Transaction] = (),
        batch_max_rows: int = 1000,
        batch_max_wait_ms: int = 200,
        store: PositionStore | None = None,
        pipeline_id: str = "",
        on_call: Callable[[str, int], None] | None = None,
    ) -> None:
        self.max_rows = batch_max_rows
        self.max_wait_s = batch_max_wait_ms / 1000.0
        self.store = store if store is not None else MemoryPositionStore()
        self.pipeline_id = pipeline_id
        self.on_call = on_call
        self._txns: list[list[Change]] = []
        self._lock = threading.Lock()
        self._fed = threading.Condition(self._lock)
        self._faults: dict[tuple[str, int], BaseException] = {}
        self.calls: dict[str, int] = {"start": 0, "select": 0, "ack": 0, "rollback": 0}
        self._ledger = Ledger(self.store, Position(MEMORY_FILE, 0), pipeline_id)
        self._assembler = Assembler(self.max_rows, None)
        self._cursor = 0
        self._started = False
        self._stopped = False
        self._last_ts: float | None = None
        self.feed(transactions)

    # -- test helpers -------------------------------------------------------------

    def feed(self, transactions: Iterable[Transaction]) -> None:
        """Append transactions (thread-safe); a waiting ``select`` wakes up."""
        new = []
        for txn in transactions:
            txn = list(txn)
            if any(isinstance(c, DdlChange) for c in txn) and len(txn) != 1:
                raise ValueError("a DDL must be a transaction of its own")
            new.append(txn)
        with self._fed:
            self._txns.extend(new)
            self._fed.notify_all()

    def inject(self, op: str, nth: int, error: BaseException) -> None:
        """Raise ``error`` on the ``nth`` (1-based, counted from creation) call of ``op``."""
        if op not in self.calls:
            raise ValueError(f"unknown op {op!r}; one of {sorted(self.calls)}")
        self._faults[(op, nth)] = error

    def _call(self, op: str) -> None:
        self.calls[op] += 1
        n = self.calls[op]
        if self.on_call is not None:
            self.on_call(op, n)
        error = self._faults.pop((op, n), None)
        if error is not None:
            raise error

    @property
    def in_flight(self) -> list[int]:
        """Ids of batches handed out and not yet acked."""
        return [b.batch_id for b in self._ledger.in_flight]

    # -- Selector -------------------------------------------------------------------

    def start(self) -> None:
        self._call("start")
        committed = self._ledger.load()
        self._open(self._ledger.resume_point)
        self._started = True
        self._stopped = False
        logger.info("memory selector started at {} (committed={})", self._cursor, committed)

    def _open(self, at: Position | None) -> None:
        at = at or Position(MEMORY_FILE, 0)
        if at.file != MEMORY_FILE:
            raise FatalError(f"position {at} is not a memory position")
        self._cursor = at.pos
        self._assembler = Assembler(self.max_rows, at)

    def stop(self) -> None:
        with self._fed:
            self._stopped = True
            self._fed.notify_all()

    def select(self) -> Batch:
        self._call("select")
        if not self._started:
            raise FatalError("select() before start()")
        assembler = self._assembler
        deadline = time.monotonic() + self.max_wait_s
        while True:
            if assembler.ready:
                return self._ledger.hand_out(assembler.ready.popleft())
            with self._fed:
                txn = self._txns[self._cursor] if self._cursor < len(self._txns) else None
            if txn is not None:
                self._read(self._cursor, txn)
                self._cursor += 1
                continue
            # input exhausted: cut what is built (rows, or only a moved position)
            assembler.flush()
            if assembler.ready:
                continue
            with self._fed:  # nothing at all: wait for input until the deadline
                if self._cursor < len(self._txns):
                    continue
                remaining = deadline - time.monotonic()
                if self._stopped or remaining <= 0:
                    return self._ledger.hand_out(Piece([], None))
                self._fed.wait(remaining)

    def _read(self, index: int, txn: list[Change]) -> None:
        """Feed transaction ``index`` to the assembler, like the binlog reader does."""
        assembler = self._assembler
        start = Position(MEMORY_FILE, index)
        end = Position(MEMORY_FILE, index + 1)
        if txn and isinstance(txn[0], DdlChange):
            ddl = replace(txn[0], position=start)
            self._last_ts = ddl.ts
            assembler.ddl(ddl, replace(end, ts=ddl.ts))
            return
        assembler.begin(start)
        offset = assembler.txn_done
        skip = assembler.take_skip(len(txn))
        rows: list[RowChange] = []
        for change in txn[skip:]:
            assert isinstance(change, RowChange)
            rows.append(replace(change, position=start, index=offset + len(rows)))
        ts = txn[-1].ts if txn else 0.0
        if txn:
            self._last_ts = ts
        if rows:
            assembler.rows(rows)
        assembler.commit(replace(end, ts=ts))

    def ack(self, batch_id: int) -> Position | None:
        self._call("ack")
        return self._ledger.ack(batch_id)

    def rollback(self) -> None:
        self._call("rollback")
        self._open(self._ledger.rollback())

    def last_entry_time(self) -> float | None:
        return self._last_ts

    @property
    def committed(self) -> Position | None:
        return self._ledger.committed
