"""Selector and position-store contracts (Otter's OtterSelector, Canal's get/ack/rollback)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from pipeline.errors import FatalError
from pipeline.model import Batch, Position


class PositionStore(ABC):
    """Durable home of the committed position.

    ``save`` returns only once the position is durable (or raises). The Redis
    implementation lives in ``arbitrate`` and is fenced by the node's epoch.
    """

    @abstractmethod
    def load(self) -> Position | None:
        """The last committed position, or None when nothing was ever committed."""

    @abstractmethod
    def save(self, position: Position) -> None:
        """Make ``position`` the committed one. Raises on failure; never half-writes."""

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
