"""The arbiter contract: mainstem lock with fencing epochs, pause permit, status.

Implementations: ``arbitrate.redis`` (the real one) and ``arbitrate.memory``
(an in-process twin with a controllable clock, for unit tests of the node).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.model import Position


@dataclass(frozen=True, slots=True)
class PipelineState:
    """The permit: ``running`` or ``paused`` with the reason (and error, if any)."""

    state: str  # "running" | "paused"
    reason: str = ""
    error: str = ""  # the stored error that paused the pipeline, cleared by resume
    since: float = 0.0

    @property
    def paused(self) -> bool:
        return self.state == "paused"


@dataclass(slots=True)
class PipelineStatus:
    """What `ferry status` shows: the permit, the lock holder and every node's report."""

    pipeline: str
    state: PipelineState
    active_node: str | None
    epoch: int | None
    position: Position | None
    position_epoch: int | None
    nodes: list[dict[str, Any]] = field(default_factory=list)  # each node's report, + "stale"


@dataclass(frozen=True, slots=True)
class HistoryWrite:
    """What a commit adds to the pipeline's schema history (``pipeline.model.SchemaRecord``
    and ``SchemaState`` as JSON): ``records`` numbered from ``first``; a ``snapshot`` of
    every definition after the last of them (None: none this time); ``coverage``, the
    position the history is complete up to once stored (JSON)."""

    records: tuple[str, ...]
    first: int
    snapshot: str | None
    coverage: str


@dataclass(slots=True)
class StoredHistory:
    """A pipeline's schema history as stored: ``records`` (JSON) numbered from ``first``,
    ``seq`` the last record's number, ``snapshots`` by the number of the last record each
    includes, ``coverage`` the position (JSON) up to which the history is complete. All
    empty (``coverage`` None) when there is no history."""

    records: list[str] = field(default_factory=list)
    first: int = 1
    seq: int = 0
    snapshots: dict[int, str] = field(default_factory=dict)
    coverage: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """A `ferry snapshot` request: kept in the arbiter until the snapshot is done.

    ``state``: ``pending`` (no node has started it), ``running`` (its progress is in
    the committed position: a restart or a standby continues it), ``done``.
    """

    request: str
    tables: tuple[str, ...]
    state: str = "pending"
    requested_at: float = 0.0


class Arbiter(ABC):
    """One per node and pipeline.

    Contract:

    * ``await_active`` blocks until this node holds the mainstem, and returns
      its epoch: strictly greater than every epoch handed out before for this
      pipeline. Taking the lock and incrementing the epoch are one atomic step.
    * While held, a renewer extends the lock every ``lock_ttl_ms/3``. When a
      renewal fails or finds another owner, ``on_lost`` callbacks run at once
      (from the renewer thread) and ``check()`` turns False. A holder that
      cannot reach Redis treats the lock as lost once ``lock_ttl_ms`` passed
      since its last successful renewal: it never selects on a lock it cannot
      prove.
    * ``commit_position(position, epoch)`` stores the position only if
      ``epoch`` is current and this node still holds the lock — atomically —
      else it raises ``FencedError``.
    * ``pause_on_error(epoch, error)`` pauses the pipeline only if ``epoch`` is
      current and this node holds the lock — the same atomic check as a commit —
      else it raises ``FencedError``: a node that was replaced (a zombie) cannot
      stop the pipeline its successor runs. ``pause`` (the operator's) is
      unconditional.
    * ``release()`` gives the lock up and wakes waiting standbys at once.
    """

    node_id: str
    pipeline_id: str

    @abstractmethod
    def await_active(self, stop: Callable[[], bool] | None = None) -> int | None:
        """Block until active; returns the epoch, or None when ``stop()`` turned True."""

    @abstractmethod
    def check(self) -> bool:
        """True while this node provably holds the mainstem."""

    @abstractmethod
    def holder_probe(self, epoch: int) -> Callable[[], bool]:
        """A callable that asks the arbiter's store, with a round trip (never the local
        clock), whether this node still holds the mainstem with ``epoch``; False when it
        cannot tell. A binlog decoder asks it before every dump it opens, so a node that
        lost the lock never takes the source's dump from its successor. The Redis one is
        picklable: a decoder process asks by itself, whatever its node is doing."""

    @property
    @abstractmethod
    def epoch(self) -> int | None:
        """The epoch of the current hold, None when not active."""

    @abstractmethod
    def on_lost(self, callback: Callable[[], None]) -> None:
        """Register a callback run once each time the lock is lost."""

    @abstractmethod
    def release(self) -> None:
        """Give up the mainstem (no-op when not held) and wake standbys."""

    @abstractmethod
    def commit_position(
        self, position: Position | None, epoch: int, history: HistoryWrite | None = None
    ) -> None:
        """Fenced commit (see class docstring), with what it adds to the schema history in
        the same atomic step (``position`` None: the history alone)."""

    @abstractmethod
    def load_position(self) -> Position | None:
        """The last committed position, None when there is none."""

    def load_position_record(self) -> tuple[Position | None, int | None]:
        """The committed position and the epoch that wrote it (None: set by an operator)."""
        status = self.status()
        return status.position, status.position_epoch

    @abstractmethod
    def set_position(self, position: Position | None) -> None:
        """Operator reset of the position (only while paused; None = forget it)."""

    # -- the schema history (selector.schemas; recovered by arbitrate.common) -----------

    @abstractmethod
    def load_history(self) -> StoredHistory:
        """The pipeline's schema history as stored (empty when there is none)."""

    @abstractmethod
    def start_history(self, snapshot: str, coverage: str, epoch: int) -> None:
        """A new pipeline's history: only ``snapshot`` (at ``coverage``); fenced like a
        commit. Whatever was stored before is dropped."""

    @abstractmethod
    def truncate_history(self, seq: int, coverage: str, epoch: int) -> None:
        """Drop the records after ``seq`` and the snapshots that include them (a takeover
        at an earlier position); fenced like a commit."""

    @abstractmethod
    def rebuild_history(self, snapshot: str, coverage: str) -> None:
        """``ferry schema rebuild``: replace the history by ``snapshot`` (only while
        paused; like ``set_position``, it fences the holder)."""

    @abstractmethod
    def raise_epoch_floor(self, epoch: int) -> None:
        """Make the next epoch handed out greater than ``epoch`` (after a Redis loss)."""

    @abstractmethod
    def get_state(self) -> PipelineState:
        """The current permit."""

    @abstractmethod
    def wait_for_permit(self, timeout_s: float) -> bool:
        """Block while paused, at most ``timeout_s``; True when running."""

    @abstractmethod
    def pause(self, reason: str, error: str = "") -> None:
        """Pause the pipeline (an operator's pause, unconditional); ``error`` is stored for
        `ferry status`."""

    @abstractmethod
    def pause_on_error(self, epoch: int, error: str) -> None:
        """Pause the pipeline because of ``error``, fenced like ``commit_position``."""

    @abstractmethod
    def resume(self) -> None:
        """Resume the pipeline and clear a stored error."""

    @abstractmethod
    def request_snapshot(self, tables: list[str]) -> SnapshotRequest:
        """Store a new snapshot request (pending) for the active node to start."""

    @abstractmethod
    def snapshot_requests(self) -> list[SnapshotRequest]:
        """Every stored snapshot request, oldest first."""

    @abstractmethod
    def set_snapshot_state(self, request: str, state: str) -> None:
        """Move a request to ``running`` or ``done`` (unknown requests are ignored)."""

    @abstractmethod
    def publish_status(self, report: dict[str, Any]) -> None:
        """Publish this node's report (role, epoch, position, lag_ms, rows_total, last_error)."""

    @abstractmethod
    def status(self) -> PipelineStatus:
        """Everything `ferry status` shows, with stale node reports marked."""

    @abstractmethod
    def close(self) -> None:
        """Stop the renewer, release the lock, close connections. Idempotent."""
