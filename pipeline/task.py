"""One activation of a node: Otter's SelectTask, in Python.

Threads (all owned here, all stopping when the task is halted or lost)::

    ProcessSelect   select → rollback-version check → slot → buffer + stage pool
    stage pool      extract → transform, concurrently across batches
    Loader          sink.load in process-id order → termin event
    ProcessTermin   buffer order: ack, or roll back everything in flight

The rollback protocol lives in one small state, :class:`RollbackState`, guarded by
``_cond`` together with the buffer: a *phase* with asserted transitions, the
*rollback version* (Otter's ``rversion``: bumped by every rollback, carried by every
entry and termin event), the failed load of the current rollback version, the retry
count and the end of the backoff.

Invariants, and why they hold:

* **Acks are in order and never pass a failure.** ProcessTermin consumes the
  buffer front to back and acks an entry only after its own success event;
  after a failure (phase ``rolling_back``) it acks nothing until the buffer has
  drained and the selector was rolled back.
* **Loads are in order.** One Loader thread takes batches in process-id order.
  After a failed load it loads nothing more of that rollback version
  (``failed_load``), so the sink never sees a change after a gap.
* **No batch from before a rollback is handed out after it** (the window
  Otter left open). ProcessSelect reads the rollback version inside the same
  lock that stops ``select()`` from overlapping ``selector.rollback()``
  (``_selector_lock``), and re-checks it atomically with enqueueing. A
  rollback bumps the rollback version under ``_cond`` first, so a batch selected
  before it is either already in the buffer (and drained as stale) or
  dropped by ProcessSelect.
* **Parallelism is never exceeded.** A batch takes a slot after select and
  frees it only when its termin event arrives, also while draining.
* **select() never overlaps rollback()** (``_selector_lock``), as the selector
  contract asks. ``ack()`` runs beside ``select()`` without the lock: the
  contract allows it, and taking the lock there starved acks behind a select
  waiting ``max_wait_ms`` for rows (Python locks are not fair), which capped
  throughput at one batch per wait. Only ProcessTermin acks and rolls back, so
  those two never overlap.
* **Only the holder pauses; a fence never pauses.** A ``FencedError`` or a
  ``NotActiveError`` — from the sink, the arbiter or the position store — and
  any error that surfaces after the task was halted or lost the mainstem mean
  "another node is (or may be) active": the task steps down (phase ``lost``)
  and the node returns to standby. Only an error met while the task still
  provably holds the mainstem may pause the pipeline, and that pause is itself
  fenced by the epoch in the arbiter (``Arbiter.pause_on_error``), so a node
  that froze past its lock TTL and woke up cannot stop its successor, whatever
  instant it froze at. A refused pause (``on_fatal`` returns False) steps the
  task down at once, before its rollback could select and load again.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

from loguru import logger

from arbitrate.base import Arbiter
from pipeline.config import PipelineSettings
from pipeline.errors import (
    FatalError,
    FencedError,
    FerryError,
    NotActiveError,
    ResumableError,
    classify,
)
from pipeline.model import Batch
from pipeline.stats import Stats
from selector.base import Selector
from sinks.base import Sink

_TICK_S = 0.2  # how long any wait lasts before re-checking the phase / lock ownership
_PERMIT_CACHE_S = 0.1  # how long a "running" permit is trusted before asking Redis again
_UNMATCHED_GRACE_S = 1.0  # how long a later termin may arrive before the expected one

Phase = Literal["selecting", "select_failed", "rolling_back", "draining", "halted", "lost"]

# Who moves the phase:
#   selecting     → select_failed  ProcessSelect: select() raised; the error waits in the buffer
#   selecting     → rolling_back   ProcessTermin: a failure in buffer order (rollback version + 1)
#   select_failed → rolling_back   ProcessTermin: it reached the select error
#   rolling_back  → rolling_back   ProcessTermin: another failure while rolling back
#   rolling_back  → selecting      ProcessTermin: buffer drained, selector rewound, backoff over
#   selecting, select_failed → draining   the node: graceful stop or pause (ack what is done)
#   draining      → halted         the buffer drained, or a failure (nothing acks past it)
#   any but lost  → halted         halt(), or drain() during a rollback (nothing to ack)
#   any but lost  → lost           the mainstem is gone or this epoch is fenced: step down
_NEXT: Mapping[Phase, frozenset[Phase]] = {
    "selecting": frozenset({"select_failed", "rolling_back", "draining", "halted", "lost"}),
    "select_failed": frozenset({"rolling_back", "draining", "halted", "lost"}),
    "rolling_back": frozenset({"rolling_back", "selecting", "halted", "lost"}),
    "draining": frozenset({"halted", "lost"}),
    "halted": frozenset({"halted", "lost"}),
    "lost": frozenset(),
}
_ENDED: frozenset[Phase] = frozenset({"halted", "lost"})


@dataclass(slots=True)
class RollbackState:
    """The rollback protocol's state (guarded by ``SelectTask._cond``)."""

    phase: Phase = "selecting"
    rollback_version: int = 0
    # (rollback version, process id) of the first load that failed in that rollback version: the
    # Loader loads nothing later of the same rollback version.
    failed_load: tuple[int, int] | None = None
    retries: int = 0  # failures since the last ack: the retry budget spent
    resume_at: float = 0.0  # monotonic time at which a rollback's backoff ends
    gave_up: bool = False  # this rollback's error paused the pipeline (fatal, or no retries left)

    def to(self, phase: Phase) -> None:
        assert phase in _NEXT[self.phase], f"task phase {self.phase} -> {phase}"
        self.phase = phase

    @property
    def ended(self) -> bool:
        return self.phase in _ENDED


class SchedulingError(FatalError):
    """A batch succeeded after an earlier one of its rollback version failed: a scheduling bug."""


@dataclass(slots=True)
class Entry:
    """A termin-buffer entry (Otter's BatchTermin)."""

    batch: Batch | None
    process_id: int  # 0 for entries that wait for no termin event
    rollback_version: int
    need_wait: bool
    error: FerryError | None = None  # a select failure, carried in buffer order


@dataclass(slots=True)
class Termin:
    """The end of one batch's stages: success, or failure with the error."""

    process_id: int
    rollback_version: int
    ok: bool
    error: FerryError | None = None


class SelectTask:
    """Runs select → stages → load → termin for one epoch of one active node."""

    def __init__(
        self,
        *,
        selector: Selector,
        sink: Sink,
        stages: Callable[[Batch], Batch],
        arbiter: Arbiter,
        epoch: int,
        settings: PipelineSettings,
        stats: Stats,
        on_fatal: Callable[[FerryError], bool],  # pause; False: refused, not the holder
    ) -> None:
        self._selector = selector
        self._sink = sink
        self._stages = stages
        self._arbiter = arbiter
        self._epoch = epoch
        self._settings = settings
        self._stats = stats
        self._on_fatal = on_fatal
        self._log = logger.bind(epoch=epoch)

        self._cond = threading.Condition()
        self._state = RollbackState()
        self._buffer: deque[Entry] = deque()
        self._buffer_cap = settings.parallelism * 4  # empty batches take no slot

        self._selector_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.parallelism)
        self._in_flight = 0  # need-wait batches holding a slot (for tests and status)
        self._max_in_flight = 0
        self._termins: queue.Queue[Termin] = queue.Queue()
        self._stash: dict[int, Termin] = {}
        self._loads: queue.Queue[tuple[Entry, Future[Batch]]] = queue.Queue()
        self._pids = itertools.count(1)
        self._pool = ThreadPoolExecutor(settings.parallelism, thread_name_prefix="ferry-stage")
        self._threads = [
            threading.Thread(target=self._guard(self._select_loop), name="ProcessSelect"),
            threading.Thread(target=self._guard(self._load_loop), name="Loader"),
            threading.Thread(target=self._guard(self._termin_loop), name="ProcessTermin"),
        ]
        for thread in self._threads:
            thread.daemon = True

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def phase(self) -> Phase:
        return self._state.phase

    @property
    def lost(self) -> bool:
        """True when this task stepped down: the mainstem is gone or its epoch was fenced."""
        return self._state.phase == "lost"

    @property
    def crashed(self) -> bool:
        """A thread ended while the task was not halted: the node must restart the task."""
        running = self._state.phase not in ("draining", *_ENDED)  # ProcessSelect ends on drain
        return running and not all(t.is_alive() for t in self._threads)

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def drain(self, grace_s: float) -> bool:
        """Stop selecting, let in-flight batches finish and be acked within ``grace_s``, then halt.

        Returns True when everything in flight was acked.
        """
        deadline = time.monotonic() + grace_s
        with self._cond:
            state = self._state
            if state.phase in ("selecting", "select_failed"):
                state.to("draining")
            elif state.phase == "rolling_back":  # nothing in the buffer may be acked
                state.to("halted")
            self._cond.notify_all()
            while self._buffer and state.phase == "draining":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, _TICK_S))
            drained = not self._buffer and state.phase == "draining"
        self.halt()
        return drained

    def halt(self) -> None:
        """Stop every thread now: nothing more is selected, loaded or acked."""
        with self._cond:
            if self._state.phase != "lost":
                self._state.to("halted")
            self._cond.notify_all()

    def join(self, timeout_s: float) -> None:
        """Wait for the threads to end (the select thread may need ``selector.stop()`` first)."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._log.warning("thread {} did not stop within {:.1f}s", thread.name, timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        """Run a loop; an escaped exception is logged and ends the task (the node restarts it)."""

        def run() -> None:
            with logger.contextualize(epoch=self._epoch):
                try:
                    loop()
                except Exception:
                    self._log.exception("{} crashed; the node restarts the task", loop.__name__)

        return run

    def _ended(self) -> bool:
        return self._state.ended

    def _alive(self) -> bool:
        if self._state.ended:
            return False
        if not self._arbiter.check():
            self._lose("the mainstem is no longer held by this node")
            return False
        return True

    def _lose(self, why: str) -> None:
        """Step down: this task may no longer be the one the pipeline runs on."""
        with self._cond:
            if self._state.phase == "lost":
                return
            self._state.to("lost")
            self._cond.notify_all()
        self._log.warning("stepping down: {}", why)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the task ends or the phase changes."""
        with self._cond:
            if not self._state.ended:
                self._cond.wait(seconds)

    # ------------------------------------------------------------ ProcessSelect

    def _select_loop(self) -> None:
        permit_until = 0.0  # monotonic time until which the permit is not re-read
        while self._alive():
            with self._cond:
                phase = self._state.phase
                if phase == "draining":
                    return
                if phase != "selecting":  # a rollback is on: wait for ProcessTermin
                    self._cond.wait(_TICK_S)
                    permit_until = 0.0  # a rollback may have ended in a pause
                    continue
            if time.monotonic() >= permit_until:
                try:
                    if not self._arbiter.wait_for_permit(_TICK_S):
                        continue  # paused: in-flight batches still finish and are acked
                except FerryError:  # Redis unreachable: the lock check decides what happens
                    self._sleep(_TICK_S)
                    continue
                # A Redis round trip per batch cost the select thread ~5-10% of its time
                # (waiting for the GIL back after the reply); a pause is seen within this.
                permit_until = time.monotonic() + _PERMIT_CACHE_S
            try:
                with self._selector_lock:
                    with self._cond:
                        if self._state.phase != "selecting":
                            continue
                        rollback_version = self._state.rollback_version
                    batch = self._selector.select()
            except Exception as exc:
                self._post_error(classify(exc))
                continue
            if batch.is_empty:
                self._enqueue(Entry(batch, 0, rollback_version, need_wait=False))
                continue
            if not self._take_slot():
                return
            entry = Entry(batch, next(self._pids), rollback_version, need_wait=True)
            if not self._enqueue(entry):
                self._free_slot()

    def _take_slot(self) -> bool:
        while not self._slots.acquire(timeout=_TICK_S):
            if not self._alive():
                return False
        with self._cond:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return True

    def _free_slot(self) -> None:
        with self._cond:
            self._in_flight -= 1
        self._slots.release()

    def _enqueue(self, entry: Entry) -> bool:
        """Append to the buffer unless a rollback happened since the batch was selected."""
        with self._cond:
            while len(self._buffer) >= self._buffer_cap and not self._state.ended:
                self._cond.wait(_TICK_S)
            state = self._state
            if entry.rollback_version != state.rollback_version or state.phase != "selecting":
                self._log.debug("dropping batch {} selected before a rollback", _bid(entry))
                return False
            self._buffer.append(entry)
            if entry.need_wait:
                assert entry.batch is not None
                self._loads.put((entry, self._pool.submit(self._stages, entry.batch)))
            self._cond.notify_all()
            return True

    def _post_error(self, error: FerryError) -> None:
        """A select failure: queue it in order and stop selecting until termin rolled back.

        A failure after selecting stopped (drain, halt) is dropped: it is not this task's
        to handle any more.
        """
        with self._cond:
            state = self._state
            if state.phase != "selecting":
                self._log.debug("select failed after selecting stopped: {}", error)
                return
            entry = Entry(None, 0, state.rollback_version, need_wait=False, error=error)
            self._buffer.append(entry)
            state.to("select_failed")
            self._cond.notify_all()

    # ------------------------------------------------------------------- Loader

    def _load_loop(self) -> None:
        while not self._ended():
            try:
                entry, future = self._loads.get(timeout=_TICK_S)
            except queue.Empty:
                continue
            termin = self._load(entry, future)
            if termin is not None:
                self._termins.put(termin)

    def _load(self, entry: Entry, future: Future[Batch]) -> Termin | None:
        rollback_version = entry.rollback_version

        def failed(error: FerryError) -> Termin:
            with self._cond:
                self._state.failed_load = (rollback_version, entry.process_id)
            return Termin(
                entry.process_id, rollback_version, ok=False, error=_context(error, entry)
            )

        while True:
            try:
                batch = future.result(timeout=_TICK_S)
                break
            except FutureTimeout:
                if self._ended():
                    future.cancel()
                    return None
            except Exception as exc:
                return failed(classify(exc))
        with self._cond:
            stale = rollback_version != self._state.rollback_version
            failed_load = self._state.failed_load
        if stale or (failed_load is not None and failed_load[0] == rollback_version):
            error = ResumableError("discarded: an earlier batch of its rollback version failed")
            return Termin(
                entry.process_id, rollback_version, ok=False, error=_context(error, entry)
            )
        # Between this check and the sink's own fence the process may freeze (GC, SIGSTOP,
        # a suspended VM) past the lock TTL: only a sink that fences by epoch (MySQL) can
        # refuse the write then; its FencedError makes this task step down.
        if not self._alive():
            return None
        try:
            self._sink.load(batch, self._epoch)
        except Exception as exc:
            return failed(classify(exc))
        return Termin(entry.process_id, rollback_version, ok=True)

    # ------------------------------------------------------------ ProcessTermin

    def _termin_loop(self) -> None:
        while not self._ended():
            with self._cond:
                entry = self._buffer[0] if self._buffer else None
                if entry is None and self._state.phase != "rolling_back":
                    self._cond.wait(_TICK_S)
                    continue
            try:
                if entry is None:
                    self._finish_rollback()
                else:
                    self._process(entry)
            except Exception as exc:
                self._fail(classify(exc))

    def _process(self, entry: Entry) -> None:
        # Only this thread starts a rollback: the phase read here holds for this entry.
        rolling_back = self._state.phase == "rolling_back"
        try:
            if rolling_back:
                self._discard(entry)
            elif entry.error is not None:
                self._fail(entry.error)
            elif not entry.need_wait:
                self._ack(entry)
            else:
                termin = self._await_termin(entry)
                if termin is None:  # the task ended while waiting
                    return
                self._free_slot()
                if not termin.ok:
                    assert termin.error is not None
                    self._fail(termin.error)
                else:
                    self._ack(entry)
        finally:
            with self._cond:
                if not self._state.ended and self._buffer and self._buffer[0] is entry:
                    self._buffer.popleft()
                self._cond.notify_all()

    def _discard(self, entry: Entry) -> None:
        """An entry selected before the rollback: wait for its load to end (its slot), drop it."""
        if not entry.need_wait:
            return
        termin = self._await_termin(entry)
        if termin is None:
            return
        self._free_slot()
        failed = self._state.failed_load
        if (
            termin.ok
            and failed is not None
            and failed[0] == entry.rollback_version
            and entry.process_id > failed[1]
        ):
            raise SchedulingError(
                f"batch {_bid(entry)} succeeded after a failed batch of its rollback version"
            )

    def _await_termin(self, entry: Entry) -> Termin | None:
        deadline: float | None = None
        while not self._ended():
            if entry.process_id in self._stash:
                return self._stash.pop(entry.process_id)
            try:
                termin = self._termins.get(timeout=_TICK_S)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    error = ResumableError(f"termin of process {entry.process_id} never arrived")
                    return Termin(
                        entry.process_id, entry.rollback_version, False, _context(error, entry)
                    )
                continue
            if termin.process_id == entry.process_id:
                return termin
            if termin.process_id < entry.process_id:
                self._log.warning("dropping unmatched termin of process {}", termin.process_id)
                continue
            self._stash[termin.process_id] = termin  # out of order: hold it, briefly
            deadline = deadline or time.monotonic() + _UNMATCHED_GRACE_S
        return None

    def _ack(self, entry: Entry) -> None:
        if not self._alive():
            raise NotActiveError("not acking: the mainstem is no longer held")
        batch = entry.batch
        assert batch is not None
        if self._sink.exactly_once:
            position = self._ack_committed(batch)
        else:
            position = self._selector.ack(batch.batch_id)
        with self._cond:
            self._state.retries = 0
        self._stats.on_ack(batch, position)
        self._log.trace("acked batch {} at {}", batch.batch_id, position)

    def _ack_committed(self, batch: Batch) -> Any:
        """Ack a batch that an exactly-once sink has committed for good: a position commit
        that fails (Redis unreachable) is tried again until it succeeds or the mainstem is
        lost, never rolled back (the replay would write the batch twice). A node that steps
        down meanwhile leaves the position to the sink's checkpoint."""
        delay = _TICK_S
        while True:
            try:
                return self._selector.ack(batch.batch_id)
            except (FencedError, NotActiveError):
                raise
            except ResumableError as exc:
                self._log.warning(
                    "batch {} is committed at the sink, its position not yet in Redis ({});"
                    " trying again",
                    batch.batch_id,
                    exc,
                )
            self._sleep(delay)
            delay = min(delay * 2, 2.0)
            if not self._alive():
                raise NotActiveError("not acking: the mainstem is no longer held")

    def _fail(self, error: FerryError) -> None:
        """A failure in buffer order: step down, end a drain, or roll back (and maybe pause).

        See the module docstring: a fence, a lost lock, or an error after the task
        ended never pauses.
        """
        if isinstance(error, FencedError | NotActiveError):
            self._lose(str(error))
            return
        if not self._alive():
            self._log.debug("ignoring a failure after the task ended: {}", error)
            return
        bound = self._log.bind(batch=error.batch_id, position=str(error.position or "-"))
        with self._cond:
            state = self._state
            if state.ended:  # halted or lost since the check above: no transition left
                self._log.debug("ignoring a failure after the task ended: {}", error)
                return
            if state.phase == "draining":  # nothing acks past a failure: the drain is over
                state.to("halted")
                self._cond.notify_all()
                bound.warning("stopping the drain at a failure (replayed later): {}", error)
                return
            state.to("rolling_back")
            state.rollback_version += 1
            state.retries += 1
            retries = state.retries
            give_up = isinstance(error, FatalError) or retries > self._settings.max_retries
            state.gave_up = give_up
            if give_up:
                state.retries = 0  # a resume starts a fresh retry budget
            delay_ms = self._settings.retry_delay_ms(1 if give_up else retries)
            state.resume_at = time.monotonic() + delay_ms / 1000
            self._cond.notify_all()
        self._stats.on_rollback(error)
        if give_up:
            why = "fatal" if isinstance(error, FatalError) else "retries exhausted"
            bound.error("rollback ({}), pausing the pipeline: {}", why, error)
            if not self._on_fatal(error):
                self._lose(f"the pause for {error} was refused: another node holds the lock")
            return
        self._stats.on_retry()
        bound.warning(
            "rollback, retry {}/{} in {} ms: {}",
            retries,
            self._settings.max_retries,
            delay_ms,
            error,
        )

    def _finish_rollback(self) -> None:
        """The buffer drained after a rollback: rewind the selector, wait the backoff, go on.

        A rollback that paused the pipeline rewinds nothing: the node stops this task, and a
        resume starts a new one. Reopening the stream meanwhile would only take the source's
        binlog dump once more, which for a server id clash costs the other client its
        connection (``selector.identity``).
        """
        if self._ended():  # the node stops the selector; a rewind now would race it
            return
        if self._state.gave_up and self._paused():
            with self._cond:
                while self._state.phase == "rolling_back":
                    self._cond.wait(_TICK_S)
            return
        with self._selector_lock:
            self._selector.rollback()
        committed = self._selector.committed
        self._log.info("rolled back to {}", committed if committed else "the start position")
        with self._cond:
            state = self._state
            while state.phase == "rolling_back" and time.monotonic() < state.resume_at:
                self._cond.wait(min(_TICK_S, state.resume_at - time.monotonic()))
            if state.phase == "rolling_back":
                state.to("selecting")
                self._cond.notify_all()

    def _paused(self) -> bool:
        try:
            return self._arbiter.get_state().paused
        except FerryError:  # Redis unreachable: rewind and retry as for any failure
            return False


def _bid(entry: Entry) -> Any:
    return entry.batch.batch_id if entry.batch is not None else "-"


def _context(error: FerryError, entry: Entry) -> FerryError:
    batch = entry.batch
    return error.context(
        batch_id=batch.batch_id if batch else None, position=batch.position if batch else None
    )
