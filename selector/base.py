"""Selector and position-store contracts (Otter's OtterSelector, Canal's get/ack/rollback)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from pipeline.errors import FatalError
from pipeline.model import Batch, Position, SchemaRecord, SchemaState


class PositionStore(ABC):
    """Durable home of the committed position.

    ``save`` returns only once the position is durable (or raises). The Redis
    implementation lives in ``arbitrate`` and is fenced by the node's epoch.
    """

    @abstractmethod
    def load(self) -> Position | None:
        """The last committed position, or None when nothing was ever committed."""

    @abstractmethod
    def save(self, position: Position, history: Sequence[SchemaRecord] = ()) -> None:
        """Make ``position`` the committed one, and append ``history`` (the schema changes
        of the batch it ends) to the schema history in the same step. Raises on failure;
        never half-writes."""

    def load_history(self) -> SchemaState | None:
        """The schema history at the committed position (``SchemaState.position`` may be
        earlier: the history is complete only up to there, and the selector reads the DDL
        in between from the binlog). None: nothing committed yet, or a store that keeps no
        history (the selector then asks the server for definitions as it meets tables).
        Raises ``FatalError`` when a history it keeps is missing or corrupt."""
        return None

    def start_history(self, state: SchemaState) -> None:
        """A new pipeline's definitions at its start position (``state.position``), stored
        before anything is committed; replaces any history stored before."""
        return None  # a store that keeps no history

    def append_history(self, records: Sequence[SchemaRecord], coverage: Position) -> None:
        """Schema changes read between the history's end and the committed position (a start
        ahead of it), stored without moving the position; the history then covers up to
        ``coverage``."""
        return None  # a store that keeps no history

    def holder_probe(self) -> Callable[[], bool] | None:
        """Asks, with a round trip, whether the node saving here still holds the mainstem
        (``Arbiter.holder_probe``); the selector asks it before it opens a binlog dump.
        None: no arbiter stands behind this store (nothing to ask)."""
        return None


class Selector(ABC):
    """Reads changes in batches with get / ack / rollback.

    Contract:

    * ``select()`` waits at most ``batch.max_wait_ms`` (plus one heartbeat when
      the source is idle) and may return an empty batch. Batches are handed
      out in order with strictly increasing ``batch_id``.
    * ``ack(batch_id)`` must name the oldest un-acked batch, else it raises
      ``FatalError``; it saves that batch's ``position`` to the store.
    * ``rollback()`` forgets every un-acked batch and re-positions the stream
      at the committed position, so the next ``select()`` returns exactly the
      changes after it: nothing lost, nothing skipped.
    * Errors are ``ResumableError`` (source unreachable, connection lost) or
      ``FatalError`` (purged position, misconfigured server, privileges).
    * ``select`` and ``rollback`` never run at the same time (the node
      serialises them); ``ack`` may run in another thread *while* ``select``
      runs (as Canal's get and ack do) but never beside ``rollback``, so it
      may touch only the oldest in-flight batch and the committed position.
      ``stop()`` may be called from any thread and makes a blocked
      ``select()`` return promptly.
    """

    @abstractmethod
    def start(self) -> None:
        """Check the source and open the stream at the committed position (or ``source.start``)."""

    @abstractmethod
    def stop(self) -> None:
        """Close the stream. Idempotent."""

    @abstractmethod
    def select(self) -> Batch:
        """The next batch after everything handed out so far."""

    @abstractmethod
    def ack(self, batch_id: int) -> Position | None:
        """Commit the oldest un-acked batch; returns the position now committed."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard every un-acked batch and rewind to the committed position."""

    @abstractmethod
    def last_entry_time(self) -> float | None:
        """Event time (unix seconds) of the last binlog event seen, for lag."""

    @property
    @abstractmethod
    def committed(self) -> Position | None:
        """The committed position (what a restart resumes from)."""

    def request_snapshot(self, request: str, tables: list[str]) -> None:
        """Start a snapshot of ``tables`` ("schema.table") once no other is running.

        Idempotent per ``request``: a request already started (or continued from the
        committed position) is not started again. May be called from any thread.
        """
        raise FatalError(f"{type(self).__name__} cannot take snapshots")
