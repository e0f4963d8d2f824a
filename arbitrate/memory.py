"""In-process twin of the Redis arbiter, for fast unit tests of the node.

Several ``MemoryArbiter`` instances (one per simulated node) share one
``MemoryArbiterHub``, which plays Redis: it holds the same values the Redis
arbiter stores (encoded by ``arbitrate.common``) and a clock that only moves
when a test calls ``hub.advance(ms)``. Lock TTLs, node-report staleness and
"no renewal for lock_ttl_ms" are all measured on that clock; only the bounded
polling inside blocking waits uses real time.

The renewer is simulated, not a thread: while time advances, every holder whose
renewer is not frozen and whose hub is reachable keeps its lock (as a renewer
firing every ``lock_ttl_ms/3`` would). A holder loses the lock when

* its renewer is frozen (``freeze_renewer()``) and the TTL runs out — then a
  standby may take over while the frozen node still believes it is active,
  exactly like a stop-the-world pause; it notices on ``unfreeze_renewer()``;
* the hub is unreachable (``set_reachable(False)``) for ``lock_ttl_ms``;
* the hub is wiped (``wipe()``, a Redis restart without persistence);
* someone raises the epoch floor above its epoch.

``on_lost`` callbacks run in the thread that caused the loss (``advance``,
``wipe``, ...) rather than in a renewer thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from loguru import logger

from pipeline.errors import FatalError, ResumableError
from pipeline.model import Position

from .base import (
    Arbiter,
    HistoryWrite,
    PipelineState,
    PipelineStatus,
    SnapshotRequest,
    StoredHistory,
)
from .common import (
    HISTORY_SNAPSHOTS_KEPT,
    NOT_HOLDER,
    STALE_EPOCH,
    announce_lost,
    announce_state,
    build_status,
    decode_snapshot_requests,
    encode_report,
    encode_snapshot_request,
    fenced,
    mainstem_value,
    new_snapshot_request,
    parse_position_record,
    parse_state,
    position_record,
    state_fields,
)
from .config import ArbiterConfig

_POLL_S = 0.02  # real-time bound of one wait inside blocking calls (stop() checks)


@dataclass
class _Store:
    """What Redis holds for one pipeline."""

    mainstem: tuple[str, float] | None = None  # (value, expires_at_ms)
    epoch: int = 0
    position: str | None = None
    state: dict[str, str] | None = None
    reports: dict[str, tuple[dict[str, str], float]] = field(default_factory=dict)
    snapshots: dict[str, str] = field(default_factory=dict)  # request id -> encoded request
    history: StoredHistory = field(default_factory=StoredHistory)  # the schema history


@dataclass
class _Hold:
    epoch: int
    value: str
    last_renew_ms: float


class MemoryArbiterHub:
    """The shared backend ("Redis") of a group of ``MemoryArbiter``; owns the clock."""

    def __init__(self, *, start_ms: float | None = None) -> None:
        self.cond = threading.Condition(threading.RLock())
        self._now_ms = time.time() * 1000 if start_ms is None else float(start_ms)
        self._stores: dict[str, _Store] = {}
        self._arbiters: list[MemoryArbiter] = []
        self.reachable = True

    # -- test controls -------------------------------------------------------------------

    @property
    def now_ms(self) -> float:
        return self._now_ms

    def arbiter(
        self, pipeline_id: str, node_id: str, config: ArbiterConfig | None = None
    ) -> MemoryArbiter:
        return MemoryArbiter(self, pipeline_id, node_id, config)

    def advance(self, ms: float) -> None:
        """Move the clock; working renewers keep their locks, others may expire."""
        with self.cond:
            keepers = [a for a in self._arbiters if a._renews_now()]
            self._now_ms += ms
            for arbiter in keepers:
                arbiter._renewed()
            self.cond.notify_all()
        self.sweep()

    def wipe(self) -> None:
        """Forget everything, like a Redis restart without persistence."""
        with self.cond:
            self._stores.clear()
            self.cond.notify_all()
        self.sweep()

    def set_reachable(self, reachable: bool) -> None:
        """Simulate Redis being down (every call raises ResumableError) or back."""
        with self.cond:
            self.reachable = reachable
            self.cond.notify_all()
        self.sweep()

    def sweep(self) -> None:
        """Tell every holder that can no longer prove its lock (outside the hub lock)."""
        with self.cond:
            lost = [a for a in self._arbiters if a._lost_reason() is not None]
            reasons = [a._lost_reason() or "" for a in lost]
        for arbiter, reason in zip(lost, reasons, strict=True):
            arbiter._lose(reason)

    # -- "Redis" -------------------------------------------------------------------------

    def store(self, pipeline_id: str) -> _Store:
        """The pipeline's data; raises ResumableError while unreachable. Call under ``cond``."""
        if not self.reachable:
            raise ResumableError("memory arbiter hub unreachable", pipeline=pipeline_id)
        return self._stores.setdefault(pipeline_id, _Store())

    def mainstem(self, store: _Store) -> str | None:
        if store.mainstem is None:
            return None
        value, expires_at = store.mainstem
        if self._now_ms >= expires_at:
            store.mainstem = None
            return None
        return value


class MemoryArbiter(Arbiter):
    """The ``Arbiter`` contract on a ``MemoryArbiterHub`` (see the module docstring)."""

    def __init__(
        self,
        hub: MemoryArbiterHub,
        pipeline_id: str,
        node_id: str,
        config: ArbiterConfig | None = None,
    ) -> None:
        self.hub = hub
        self.pipeline_id = pipeline_id
        self.node_id = node_id
        self.config = config or ArbiterConfig.model_validate({})
        self._ttl = self.config.lock_ttl_ms
        self._hold: _Hold | None = None
        self._frozen = False
        self._floor = 0  # highest epoch this node knows of: survives a wiped hub
        self._callbacks: list[Callable[[], None]] = []
        self._closed = False
        self._log = logger.bind(pipeline=pipeline_id, node=node_id, arbiter="memory")
        with hub.cond:
            hub._arbiters.append(self)

    # -- simulated renewer (called under hub.cond) ----------------------------------------

    def _holds_in_hub(self) -> bool:
        hold = self._hold
        if hold is None or not self.hub.reachable:
            return False
        store = self.hub.store(self.pipeline_id)
        return self.hub.mainstem(store) == hold.value and store.epoch == hold.epoch

    def _renews_now(self) -> bool:
        return not self._frozen and self._holds_in_hub()

    def _renewed(self) -> None:
        assert self._hold is not None
        store = self.hub.store(self.pipeline_id)
        store.mainstem = (self._hold.value, self.hub.now_ms + self._ttl)
        self._hold.last_renew_ms = self.hub.now_ms

    def _lost_reason(self) -> str | None:
        if self._hold is None or self._frozen:  # a frozen node notices nothing
            return None
        if not self.hub.reachable:
            if self.hub.now_ms - self._hold.last_renew_ms >= self._ttl:
                return f"no successful renewal for {self._ttl} ms"
            return None
        return None if self._holds_in_hub() else "lock expired or taken over"

    def _lose(self, reason: str) -> None:
        with self.hub.cond:
            hold, self._hold = self._hold, None
            if hold is None:
                return
            self._drop_if_ours(hold)
        announce_lost(self, hold.epoch, reason, list(self._callbacks), self._log)

    def _drop_if_ours(self, hold: _Hold) -> None:
        """Delete the mainstem if it still holds this tenure, and wake the standbys."""
        if not self.hub.reachable:
            return  # the lock expires by itself
        store = self.hub.store(self.pipeline_id)
        if self.hub.mainstem(store) == hold.value:
            store.mainstem = None
            self.hub.cond.notify_all()

    def freeze_renewer(self) -> None:
        """Test hook: stop renewing and stop noticing (a stalled process)."""
        with self.hub.cond:
            self._frozen = True

    def unfreeze_renewer(self) -> None:
        with self.hub.cond:
            self._frozen = False
        self.hub.sweep()

    # -- mainstem ------------------------------------------------------------------------

    def await_active(self, stop: Callable[[], bool] | None = None) -> int | None:
        hub = self.hub
        with hub.cond:
            while True:
                if self._hold is not None:
                    return self._hold.epoch
                if self._closed or (stop is not None and stop()):
                    return None
                try:
                    store = hub.store(self.pipeline_id)
                except ResumableError:  # a standby just waits for the hub to come back
                    hub.cond.wait(_POLL_S)
                    continue
                if hub.mainstem(store) is None:
                    epoch = max(store.epoch, self._floor) + 1
                    store.epoch = epoch
                    value = mainstem_value(epoch, self.node_id)
                    store.mainstem = (value, hub.now_ms + self._ttl)
                    self._hold = _Hold(epoch, value, hub.now_ms)
                    self._floor = epoch
                    break
                hub.cond.wait(_POLL_S)
        self._log.info(
            "mainstem won: pipeline={} node={} epoch={}", self.pipeline_id, self.node_id, epoch
        )
        return epoch

    def check(self) -> bool:
        return self._hold is not None

    def holder_probe(self, epoch: int) -> Callable[[], bool]:
        value = mainstem_value(epoch, self.node_id)

        def holds() -> bool:
            with self.hub.cond:
                if not self.hub.reachable:
                    return False
                store = self.hub.store(self.pipeline_id)
                return self.hub.mainstem(store) == value and store.epoch == epoch

        return holds

    @property
    def epoch(self) -> int | None:
        hold = self._hold
        return hold.epoch if hold else None

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def release(self) -> None:
        with self.hub.cond:
            hold, self._hold = self._hold, None
            if hold is None:
                return
            self._drop_if_ours(hold)
        self._log.info(
            "mainstem released: pipeline={} node={} epoch={}",
            self.pipeline_id,
            self.node_id,
            hold.epoch,
        )

    # -- positions -----------------------------------------------------------------------

    def _holder_store(self, epoch: int, position: Position | None = None) -> _Store:
        """The store, if this node holds the mainstem with ``epoch``; call under ``hub.cond``."""
        store = self.hub.store(self.pipeline_id)
        if self.hub.mainstem(store) != mainstem_value(epoch, self.node_id):
            raise fenced(self, epoch, NOT_HOLDER, position)
        if store.epoch != epoch:
            raise fenced(self, epoch, STALE_EPOCH, position)
        return store

    def commit_position(
        self, position: Position | None, epoch: int, history: HistoryWrite | None = None
    ) -> None:
        with self.hub.cond:
            store = self._holder_store(epoch, position)
            stored = store.history
            if history is not None and history.records and history.first > stored.seq + 1:
                raise FatalError(
                    f"schema history record {history.first} would leave a gap in the stored"
                    " history (another writer?)",
                    pipeline=self.pipeline_id,
                )
            if position is not None:
                store.position = position_record(position, epoch, self.node_id, time.time())
            if history is not None:
                for seq, record in enumerate(history.records, history.first):
                    if seq == stored.seq + 1:
                        stored.records.append(record)
                        stored.seq = seq
                stored.coverage = history.coverage
                if history.snapshot is not None:
                    stored.snapshots[stored.seq] = history.snapshot
                    kept = sorted(stored.snapshots, reverse=True)[:HISTORY_SNAPSHOTS_KEPT]
                    stored.snapshots = {k: stored.snapshots[k] for k in kept}
                    oldest = min(kept)
                    if oldest >= stored.first:
                        del stored.records[: oldest - stored.first + 1]
                        stored.first = oldest + 1
        self._log.debug("position committed: {} epoch={}", position, epoch)

    def load_history(self) -> StoredHistory:
        with self.hub.cond:
            stored = self.hub.store(self.pipeline_id).history
            return replace(stored, records=list(stored.records), snapshots=dict(stored.snapshots))

    def start_history(self, snapshot: str, coverage: str, epoch: int) -> None:
        with self.hub.cond:
            store = self._holder_store(epoch)
            store.history = StoredHistory(snapshots={0: snapshot}, coverage=coverage)

    def truncate_history(self, seq: int, coverage: str, epoch: int) -> None:
        with self.hub.cond:
            stored = self._holder_store(epoch).history
            del stored.records[max(0, seq - stored.first + 1) :]
            stored.snapshots = {k: v for k, v in stored.snapshots.items() if k <= seq}
            stored.seq, stored.coverage = seq, coverage

    def rebuild_history(self, snapshot: str, coverage: str) -> None:
        with self.hub.cond:
            store = self.hub.store(self.pipeline_id)
            if not parse_state(store.state).paused:
                raise FatalError(
                    "the schema history can only be rebuilt while the pipeline is paused",
                    pipeline=self.pipeline_id,
                )
            store.history = StoredHistory(snapshots={0: snapshot}, coverage=coverage)
            store.epoch += 1
        self.hub.sweep()

    def load_position(self) -> Position | None:
        with self.hub.cond:
            return parse_position_record(self.hub.store(self.pipeline_id).position)[0]

    def set_position(self, position: Position | None) -> None:
        with self.hub.cond:
            store = self.hub.store(self.pipeline_id)
            if not parse_state(store.state).paused:
                raise FatalError(
                    "the position can only be set while the pipeline is paused",
                    pipeline=self.pipeline_id,
                )
            store.position = (
                None if position is None else position_record(position, None, "operator", 0.0)
            )
            store.epoch += 1  # fences the holder, as in Redis: a late ack cannot overwrite it
        self.hub.sweep()
        self._log.info("position set by operator: {}", position)

    def raise_epoch_floor(self, epoch: int) -> None:
        with self.hub.cond:
            self._floor = max(self._floor, epoch)
            store = self.hub.store(self.pipeline_id)
            store.epoch = max(store.epoch, epoch)
        self.hub.sweep()

    # -- permit --------------------------------------------------------------------------

    def get_state(self) -> PipelineState:
        with self.hub.cond:
            return parse_state(self.hub.store(self.pipeline_id).state)

    def wait_for_permit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.hub.cond:
            while True:
                if not self.get_state().paused:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.hub.cond.wait(min(remaining, _POLL_S))

    def pause(self, reason: str, error: str = "") -> None:
        self._set_state("paused", reason, error)

    def pause_on_error(self, epoch: int, error: str) -> None:
        self._set_state("paused", "error", error, holder_epoch=epoch)

    def resume(self) -> None:
        self._set_state("running", "", "")

    def _set_state(
        self, state: str, reason: str, error: str, holder_epoch: int | None = None
    ) -> None:
        """Store the permit; with ``holder_epoch``, only as the holder of that epoch."""
        with self.hub.cond:
            if holder_epoch is None:
                store = self.hub.store(self.pipeline_id)
            else:
                store = self._holder_store(holder_epoch)
            store.state = state_fields(state, reason, error, self.hub.now_ms / 1000)
            self.hub.cond.notify_all()
        announce_state(self, state, reason, self._log)

    # -- status --------------------------------------------------------------------------

    def publish_status(self, report: dict[str, Any]) -> None:
        with self.hub.cond:
            defaults = {
                "node_id": self.node_id,
                "role": "active" if self._hold else "standby",
                "epoch": self.epoch,
                "updated_at": self.hub.now_ms / 1000,
            }
            fields = encode_report(report, defaults)
            store = self.hub.store(self.pipeline_id)
            store.reports[self.node_id] = (fields, self.hub.now_ms + self.config.status_ttl_ms)

    def request_snapshot(self, tables: list[str]) -> SnapshotRequest:
        with self.hub.cond:
            request = new_snapshot_request(tables, self.hub.now_ms / 1000)
            self.hub.store(self.pipeline_id).snapshots[request.request] = encode_snapshot_request(
                request
            )
            return request

    def snapshot_requests(self) -> list[SnapshotRequest]:
        with self.hub.cond:
            return decode_snapshot_requests(self.hub.store(self.pipeline_id).snapshots)

    def set_snapshot_state(self, request: str, state: str) -> None:
        with self.hub.cond:
            stored = self.hub.store(self.pipeline_id).snapshots
            if request in stored:
                [found] = decode_snapshot_requests({request: stored[request]})
                stored[request] = encode_snapshot_request(replace(found, state=state))

    def status(self) -> PipelineStatus:
        with self.hub.cond:
            store = self.hub.store(self.pipeline_id)
            now_ms = self.hub.now_ms
            for node, (_, expires_at) in list(store.reports.items()):
                if now_ms >= expires_at:
                    del store.reports[node]
            return build_status(
                pipeline=self.pipeline_id,
                state=parse_state(store.state),
                mainstem=self.hub.mainstem(store),
                epoch_counter=store.epoch,
                position_text=store.position,
                reports=[fields for fields, _ in store.reports.values()],
                now=now_ms / 1000,
                stale_ms=self.config.status_stale_ms,
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.release()
        with self.hub.cond:
            if self in self.hub._arbiters:
                self.hub._arbiters.remove(self)
