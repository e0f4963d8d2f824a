"""The node: standby until it holds the mainstem, then replicate; back to standby on loss.

Life of a node (``Node.run``)::

    standby ──await_active──▶ active(epoch) ──lock lost or fenced──▶ standby
                                 │  task crashed → backoff, new task, same epoch
                                 │  paused (operator or fatal error) → drain, wait for resume,
                                 │                   new task from the committed position
                                 └─ stop signal  → drain within grace, release lock, exit 0

A fenced operation (a commit, a sink write, a pause on error) that is refused means
another node took over: the node steps down (releases what it may still hold) and
waits as a standby; it never pauses the pipeline for it. A fatal arbiter error
while waiting (wrong Redis password, missing ACL rights) is retried a few times,
then the node logs why and exits with status 1, so a supervisor shows it.

Shutdown order (and why): stop selecting (nothing new enters) → let in-flight
batches finish and be acked, bounded by ``shutdown_grace_ms`` → halt the rest
(not acked, so they are replayed by whoever runs next) → stop the selector →
release the lock (a standby takes over at once instead of after the TTL) →
close the sink and the arbiter.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Literal

from loguru import logger

from arbitrate.base import Arbiter, HistoryWrite
from arbitrate.common import recover_history
from pipeline.config import FerryConfig
from pipeline.errors import FatalError, FencedError, FerryError, NotActiveError, classify
from pipeline.model import Position, SchemaRecord, SchemaState
from pipeline.recovery import EpochBehind, Start, StateFile, choose_start
from pipeline.stages import Stages
from pipeline.stats import Stats
from pipeline.task import SelectTask
from selector.base import PositionStore, Selector
from sinks.base import Sink

SelectorFactory = Callable[[PositionStore], Selector]
Role = Literal["starting", "standby", "active", "stopped"]
Outcome = Literal["stop", "paused", "lost", "crashed"]  # how one SelectTask ended

# A fatal arbiter error (auth, ACL) is tried this often, _FATAL_RETRY_S apart, before the
# node exits: an operator fixing the password does not need a node that gave up at once.
_FATAL_ATTEMPTS = 3
_FATAL_RETRY_S = 1.0


#: a snapshot of the schema history is stored with every this-many records
HISTORY_SNAPSHOT_EVERY = 100


class FencedPositionStore(PositionStore):
    """The selector's position store for one epoch: commits through the arbiter's fence,
    with the schema history's records of each batch in the same atomic step (recovered
    at ``start`` by ``arbitrate.common.recover_history``; a snapshot every
    ``snapshot_every`` records)."""

    def __init__(
        self,
        arbiter: Arbiter,
        epoch: int,
        start: Position | None,
        state: StateFile | None,
        snapshot_every: int = HISTORY_SNAPSHOT_EVERY,
    ) -> None:
        self._arbiter = arbiter
        self._epoch = epoch
        self._position = start
        self._state = state
        self._history: SchemaState | None = None  # at the committed position, once loaded
        self._snapshot_every = snapshot_every
        self._since_snapshot = 0
        self._lock = threading.Lock()  # saves (ProcessTermin) against loads (a respawn)

    def load(self) -> Position | None:
        return self._position

    def holder_probe(self) -> Callable[[], bool]:
        return self._arbiter.holder_probe(self._epoch)

    def load_history(self) -> SchemaState | None:
        with self._lock:
            if self._history is None and self._position is not None:
                stored = self._arbiter.load_history()
                pipeline = self._arbiter.pipeline_id
                recovered = recover_history(stored, self._position, pipeline)
                if recovered.keep is not None:
                    coverage = recovered.state.position or self._position
                    self._arbiter.truncate_history(recovered.keep, coverage.to_json(), self._epoch)
                self._history = recovered.state
                self._since_snapshot = recovered.state.seq - max(stored.snapshots, default=0)
                logger.info(
                    "schema history recovered: {} tables at {} (record {})",
                    len(self._history.tables),
                    self._history.position,
                    self._history.seq,
                )
            return self._history.copy() if self._history is not None else None

    def start_history(self, state: SchemaState) -> None:
        assert state.position is not None
        with self._lock:
            self._arbiter.start_history(state.to_json(), state.position.to_json(), self._epoch)
            self._history = state.copy()
            self._since_snapshot = 0
        logger.info("schema history started: {} tables at {}", len(state.tables), state.position)

    def append_history(self, records: Sequence[SchemaRecord], coverage: Position) -> None:
        with self._lock:
            self._write(None, records, coverage)

    def save(self, position: Position, history: Sequence[SchemaRecord] = ()) -> None:
        with self._lock:
            self._write(position, history, position)
            self._position = position
        if self._state is not None:
            try:
                self._state.write(position, self._epoch)
            except OSError as exc:  # a marker only: Redis already holds the position
                logger.warning("cannot write state file {}: {}", self._state.path, exc)

    def _write(
        self, position: Position | None, records: Sequence[SchemaRecord], coverage: Position
    ) -> None:
        current = self._history
        if current is None:  # a selector that keeps no history (e.g. selector.memory)
            if records:
                raise FatalError("schema history records to store, but no history was loaded")
            if position is not None:
                self._arbiter.commit_position(position, self._epoch)
            return
        if not records:
            write = HistoryWrite((), current.seq + 1, None, coverage.to_json())
            self._arbiter.commit_position(position, self._epoch, write)
            current.position = coverage
            return
        numbered = [
            replace(r, seq=current.seq + k, epoch=self._epoch) for k, r in enumerate(records, 1)
        ]
        after = current.copy()
        for record in numbered:
            after.apply(record)
        after.position = coverage
        snapshot = None
        if self._since_snapshot + len(numbered) >= self._snapshot_every:
            snapshot = after.to_json()
        write = HistoryWrite(
            tuple(r.to_json() for r in numbered), numbered[0].seq, snapshot, coverage.to_json()
        )
        self._arbiter.commit_position(position, self._epoch, write)
        self._history = after
        self._since_snapshot = 0 if snapshot is not None else self._since_snapshot + len(numbered)


class Node:
    """One pipeline on one process (``ferry run``)."""

    def __init__(
        self,
        config: FerryConfig,
        node_id: str,
        *,
        arbiter: Arbiter,
        sink: Sink,
        selector_factory: SelectorFactory,
        state: StateFile | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.arbiter = arbiter
        self.sink = sink
        self.stats = Stats()
        self._settings = config.pipeline
        self._selector_factory = selector_factory
        self._state = state
        self._stages = Stages(config.columns, config.transforms)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._wake = threading.Event()
        self._role: Role = "starting"
        self._epoch: int | None = None
        self._selector: Selector | None = None
        self._task: SelectTask | None = None
        self.arbiter.on_lost(self._on_lost)
        self._log = logger.bind(pipeline=config.pipeline.id, node=node_id)

    # ----------------------------------------------------------------- control

    def request_stop(self) -> None:
        """Ask the node to shut down gracefully, from any thread.

        Not from a signal handler: ``Event.set`` takes a lock the interrupted thread may
        hold (see ``pipeline.signals``).
        """
        self._stop.set()
        self._wake.set()

    def _on_lost(self) -> None:
        self._lost.set()
        self._wake.set()

    @property
    def role(self) -> Role:
        return self._role

    @property
    def task(self) -> SelectTask | None:
        return self._task

    # --------------------------------------------------------------------- run

    def run(self) -> int:
        """Run until asked to stop; returns the process exit status: 0, or 1 when the
        arbiter refuses this node (see the module docstring)."""
        publisher = threading.Thread(target=self._publish_loop, name="status", daemon=True)
        publisher.start()
        try:
            while not self._stop.is_set():
                self._set_role("standby")
                self._log.info("standby: waiting for the mainstem")
                try:
                    epoch = self._await_active()
                except FatalError as exc:
                    where = self.config.arbiter.redacted_url()
                    self._log.error("cannot work with the arbiter at {}, exiting: {}", where, exc)
                    return 1
                if epoch is None:
                    break
                self._lost.clear()
                self._epoch = epoch
                self._set_role("active")
                self._log.bind(epoch=epoch).info("active with epoch {}", epoch)
                self._serve(epoch)
                self._epoch = None
        finally:
            self._set_role("stopped")
            self._publish()
            self.arbiter.close()  # releases the lock if still held
            self._log.info("stopped")
        return 0

    def _await_active(self) -> int | None:
        """The epoch once this node holds the mainstem; None when asked to stop.

        The arbiter rides out a Redis that is down by itself; what escapes it is fatal
        (authentication, permissions) and is raised after ``_FATAL_ATTEMPTS`` tries.
        """
        refusals = 0
        while True:
            try:
                return self.arbiter.await_active(stop=self._stop.is_set)
            except FerryError as exc:
                if isinstance(exc, FatalError):
                    refusals += 1
                    if refusals >= _FATAL_ATTEMPTS:
                        raise
                self._log.debug("arbiter error ({}), retrying: {}", type(exc).__name__, exc)
                if self._stop.wait(_FATAL_RETRY_S):
                    return None

    def _serve(self, epoch: int) -> None:
        """Replicate while this node holds the mainstem with ``epoch``."""
        log = self._log.bind(epoch=epoch)
        attempt = 0  # failed starts in a row
        while not self._stop.is_set() and not self._lost.is_set():
            outcome: Outcome | None = None
            try:
                if not self._wait_permit():
                    break
                self.sink.open()
                start = choose_start(self.arbiter, self.sink, self._state, epoch)
                log.info(
                    "{} from {}",
                    "first start" if start.position is None else "recovery",
                    start.position or self.config.source.start,
                    origin=start.origin,
                )
                outcome = self._run_task(epoch, start)
            except EpochBehind as exc:
                log.warning("{}: releasing the mainstem to take a higher epoch", exc)
                self.arbiter.release()
                return
            except Exception as exc:
                error = classify(exc)
                attempt += 1
                self.stats.on_error(error)
                if isinstance(error, FencedError | NotActiveError):
                    log.warning("cannot start: {}", error)
                    self._lost.set()
                elif isinstance(error, FatalError) or attempt > self._settings.max_retries:
                    self._pause(epoch, error)
                    attempt = 0  # a resume starts a fresh retry budget
                else:
                    self.stats.on_retry()
                    log.warning("cannot start ({}); retry {}", error, attempt)
            finally:
                self._stop_selector()
                self.sink.close()
            if outcome in ("stop", "lost"):
                break
            if outcome is not None:  # paused (wait for resume) or crashed: a fresh budget
                attempt = 0
            if outcome != "paused":  # one backoff per failed start or crashed task
                self._stop.wait(self._backoff_s(max(attempt, 1)))
        if self._lost.is_set():
            self._step_down()

    def _step_down(self) -> None:
        """Back to standby: give up the mainstem if it is still (believed to be) held."""
        self._lost.set()
        self.arbiter.release()
        self._log.warning("stepped down: another node is or may be active; back to standby")

    def _run_task(self, epoch: int, start: Start) -> Outcome:
        """Run one SelectTask until stop, pause, loss or crash; returns which."""
        store = FencedPositionStore(self.arbiter, epoch, start.position, self._state)
        self._selector = self._selector_factory(store)
        self._selector.start()
        task = SelectTask(
            selector=self._selector,
            sink=self.sink,
            stages=self._stages,
            arbiter=self.arbiter,
            epoch=epoch,
            settings=self._settings,
            stats=self.stats,
            on_fatal=partial(self._pause, epoch),
        )
        self._task = task
        task.start()
        try:
            while True:
                self._wake.wait(0.5)
                self._wake.clear()
                if self._stop.is_set():
                    grace_s = self._settings.shutdown_grace_ms / 1000
                    drained = task.drain(grace_s)
                    self._log.info(
                        "shutdown: {}",
                        "every in-flight batch acked"
                        if drained
                        else f"in-flight batches not done within {grace_s:.1f}s are replayed",
                    )
                    return "stop"
                if self._lost.is_set() or task.lost or not self.arbiter.check():
                    self._log.warning("lost the mainstem: stopping, back to standby")
                    self._lost.set()
                    task.halt()
                    return "lost"
                if self._paused():
                    # Resume must restart from the committed (or operator-set) position.
                    drained = task.drain(self._settings.shutdown_grace_ms / 1000)
                    self._log.info("paused: selecting stopped (in-flight acked: {})", drained)
                    return "paused"
                if task.crashed:
                    self._log.error("a node thread crashed: restarting from the committed position")
                    task.halt()
                    return "crashed"
                self._reconcile_snapshots()
        finally:
            task.halt()
            self._stop_selector()  # wakes a select() blocked on the stream
            task.join(timeout_s=10)

    def _reconcile_snapshots(self) -> None:
        """Start `ferry snapshot` requests and record how far they are.

        The truth is the committed position: a request whose progress it carries is
        running (a restart or a standby continues it from there); one that was
        running and whose progress has left it is done. A pending request is handed
        to the selector again each time (it ignores a request it has started), so a
        takeover, a respawned decoder or a lost message never loses one.
        """
        selector = self._selector
        if selector is None:
            return
        try:
            requests = self.arbiter.snapshot_requests()
        except FerryError:  # Redis trouble: the next tick tries again
            return
        committed = selector.committed
        progress = committed.snapshot if committed is not None else None
        for request in requests:
            ours = progress is not None and progress.request == request.request
            finished = ours and progress is not None and not progress.tables
            try:
                if finished and request.state != "done":
                    self.arbiter.set_snapshot_state(request.request, "done")
                    self._log.info("snapshot {} done", request.request)
                elif ours and request.state == "pending":
                    self.arbiter.set_snapshot_state(request.request, "running")
                elif request.state == "running" and not ours and committed is not None:
                    self.arbiter.set_snapshot_state(request.request, "done")
                    self._log.info("snapshot {} done", request.request)
                elif request.state == "pending":
                    selector.request_snapshot(request.request, list(request.tables))
            except FerryError as exc:
                self._log.warning("snapshot request {}: {}", request.request, exc)
                return

    def _stop_selector(self) -> None:
        if self._selector is not None:
            try:
                self._selector.stop()
            except Exception as exc:  # closing a broken connection may fail; nothing to save
                self._log.debug("selector stop: {}", exc)

    def _paused(self) -> bool:
        try:
            return self.arbiter.get_state().paused
        except FerryError:  # Redis unreachable: the lock check decides what happens
            return False

    def _wait_permit(self) -> bool:
        """Block while the pipeline is paused; False when stopping or the lock was lost."""
        while not self.arbiter.wait_for_permit(0.5):
            if self._stop.is_set():
                return False
            if self._lost.is_set() or not self.arbiter.check():
                self._lost.set()
                return False
        return not self._stop.is_set()

    def _pause(self, epoch: int, error: FerryError) -> bool:
        """Pause the pipeline for ``error`` — only as the holder of ``epoch``, else step down
        (False: the pause was refused)."""
        try:
            self.arbiter.pause_on_error(epoch, str(error))
        except (FencedError, NotActiveError) as exc:
            self._log.warning("not pausing for {}: {}", error, exc)
            self._on_lost()  # the node steps down; the task is halted
            return False
        except FerryError as exc:  # Redis down: the stored error is lost, the log keeps it
            self._log.error("could not store the pause ({}): {}", exc, error)
            return True
        self._log.error("pipeline paused: {}", error)
        self._wake.set()  # the task waits for the node to stop it (SelectTask._finish_rollback)
        return True

    def _backoff_s(self, attempt: int) -> float:
        return self._settings.retry_delay_ms(attempt) / 1000

    # ------------------------------------------------------------------ status

    def _set_role(self, role: Role) -> None:
        self._role = role
        self._wake.set()

    def report(self) -> dict[str, Any]:
        selector = self._selector
        last_event = selector.last_entry_time() if selector is not None else None
        report = self.stats.snapshot(last_event if self._role == "active" else None)
        report.update(
            node_id=self.node_id,
            role=self._role,
            epoch=self._epoch or "",
            server_id=self.config.source.dump_server_id(self.config.pipeline.id),
            host=socket.gethostname(),
            updated_at=time.time(),
        )
        return report

    def _publish(self) -> None:
        try:
            self.arbiter.publish_status(self.report())
        except Exception as exc:  # status is best effort; Redis trouble shows elsewhere
            self._log.debug("status not published: {}", exc)

    def _publish_loop(self) -> None:
        interval_s = self._settings.status_interval_ms / 1000
        while not self._stop.wait(interval_s):
            self._publish()
