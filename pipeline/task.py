"""One activation of a node: Otter's SelectTask, in Python.

Threads (all owned here, all stopping on ``halt()``)::

    ProcessSelect   select → version check → slot → buffer + stage pool
    stage pool      extract → transform, concurrently across batches
    Loader          sink.load in process-id order → termin event
    ProcessTermin   buffer order: ack, or roll back everything in flight

Invariants, and why they hold:

* **Acks are in order and never pass a failure.** ProcessTermin consumes the
  buffer front to back and acks an entry only after its own success event;
  after a failure it acks nothing until the buffer has drained and the
  selector was rolled back.
* **Loads are in order.** One Loader thread takes batches in process-id order.
  After a failed batch it loads nothing more of that round (same rollback
  version), so the sink never sees a change after a gap.
* **No batch from before a rollback is handed out after it** (the window
  Otter left open). ``_cond`` guards the rollback version, ``_can_start`` and
  the buffer together: ProcessSelect reads the version inside the same lock
  that stops ``select()`` from overlapping ``selector.rollback()``
  (``_selector_lock``), and re-checks it atomically with enqueueing. A
  rollback bumps the version under ``_cond`` first, so a batch selected
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
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

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

_TICK_S = 0.2  # how long any wait lasts before re-checking halt / lock ownership
_PERMIT_CACHE_S = 0.1  # how long a "running" permit is trusted before asking Redis again
_UNMATCHED_GRACE_S = 1.0  # how long a later termin may arrive before the expected one


class SchedulingError(FatalError):
    """A batch succeeded after an earlier one of the same round failed: a bug in scheduling."""


@dataclass(slots=True)
class Entry:
    """A termin-buffer entry (Otter's BatchTermin)."""

    batch: Batch | None
    process_id: int  # 0 for entries that wait for no termin event
    rversion: int
    need_wait: bool
    error: FerryError | None = None  # a select failure, carried in buffer order


@dataclass(slots=True)
class Termin:
    """The end of one batch's stages: success, or failure with the error."""

    process_id: int
    rversion: int
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
        on_fatal: Callable[[FerryError], None],
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
        self._rversion = 0
        self._can_start = True
        self._selecting = True
        self._buffer: deque[Entry] = deque()
        self._buffer_cap = settings.parallelism * 4  # empty batches take no slot
        self._rollback_pending = False
        self._failed_round: int | None = None  # version of a round failed by a termin event
        self._resume_at = 0.0
        self._failures = 0
        self._permit_until = 0.0  # monotonic time until which the permit is not re-read

        self._halted = threading.Event()
        self._lost = threading.Event()
        self._selector_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.parallelism)
        self._in_flight = 0  # need-wait batches holding a slot (for tests and status)
        self._max_in_flight = 0
        self._termins: queue.Queue[Termin] = queue.Queue()
        self._stash: dict[int, Termin] = {}
        self._loads: queue.Queue[tuple[Entry, Future[Batch]]] = queue.Queue()
        self._loader_failed_round: int | None = None
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
    def lost(self) -> bool:
        """True when this task found it no longer holds the mainstem (fenced or not active)."""
        return self._lost.is_set()

    @property
    def crashed(self) -> bool:
        """A thread ended while the task was not halted: the node must restart the task."""
        return not self._halted.is_set() and not all(t.is_alive() for t in self._threads)

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def drain(self, grace_s: float) -> bool:
        """Stop selecting, let in-flight batches finish and be acked within ``grace_s``, then halt.

        Returns True when everything in flight was acked.
        """
        deadline = time.monotonic() + grace_s
        with self._cond:
            self._selecting = False
            self._cond.notify_all()
            while self._buffer and not self._halted.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, _TICK_S))
            drained = not self._buffer
        self.halt()
        return drained

    def halt(self) -> None:
        """Stop every thread now: nothing more is selected, loaded or acked."""
        self._halted.set()
        with self._cond:
            self._selecting = False
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

    def _alive(self) -> bool:
        if self._halted.is_set() or self._lost.is_set():
            return False
        if not self._arbiter.check():
            self._lose("the mainstem is no longer held by this node")
            return False
        return True

    def _lose(self, why: str) -> None:
        if not self._lost.is_set():
            self._log.warning("stopping: {}", why)
        self._lost.set()
        self.halt()

    # ------------------------------------------------------------ ProcessSelect

    def _select_loop(self) -> None:
        while self._alive():
            with self._cond:
                if not self._selecting:
                    return
                if not self._can_start:
                    self._cond.wait(_TICK_S)
                    continue
            if time.monotonic() >= self._permit_until:
                try:
                    if not self._arbiter.wait_for_permit(_TICK_S):
                        continue  # paused: in-flight batches still finish and are acked
                except FerryError:  # Redis unreachable: the lock check decides what happens
                    self._halted.wait(_TICK_S)
                    continue
                # A Redis round trip per batch cost the select thread ~5-10% of its time
                # (waiting for the GIL back after the reply); a pause is seen within this.
                self._permit_until = time.monotonic() + _PERMIT_CACHE_S
            try:
                with self._selector_lock:
                    with self._cond:
                        if not (self._can_start and self._selecting):
                            continue
                        version = self._rversion
                    batch = self._selector.select()
            except Exception as exc:
                self._post_error(classify(exc))
                continue
            if batch.is_empty:
                self._enqueue(Entry(batch, 0, version, need_wait=False))
                continue
            if not self._take_slot():
                return
            entry = Entry(batch, next(self._pids), version, need_wait=True)
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
            while len(self._buffer) >= self._buffer_cap and not self._halted.is_set():
                self._cond.wait(_TICK_S)
            if entry.rversion != self._rversion or not (self._can_start and self._selecting):
                self._log.debug("dropping batch {} selected before a rollback", _bid(entry))
                return False
            self._buffer.append(entry)
            if entry.need_wait:
                assert entry.batch is not None
                self._loads.put((entry, self._pool.submit(self._stages, entry.batch)))
            self._cond.notify_all()
            return True

    def _post_error(self, error: FerryError) -> None:
        """A select failure: queue it in order and stop selecting until termin rolled back."""
        with self._cond:
            self._buffer.append(Entry(None, 0, self._rversion, need_wait=False, error=error))
            self._can_start = False
            self._cond.notify_all()

    # ------------------------------------------------------------------- Loader

    def _load_loop(self) -> None:
        while not self._halted.is_set():
            try:
                entry, future = self._loads.get(timeout=_TICK_S)
            except queue.Empty:
                continue
            termin = self._load(entry, future)
            if termin is not None:
                self._termins.put(termin)

    def _load(self, entry: Entry, future: Future[Batch]) -> Termin | None:
        def failed(error: FerryError) -> Termin:
            self._loader_failed_round = entry.rversion
            return Termin(entry.process_id, entry.rversion, ok=False, error=error)

        while True:
            try:
                batch = future.result(timeout=_TICK_S)
                break
            except FutureTimeout:
                if self._halted.is_set():
                    future.cancel()
                    return None
            except Exception as exc:
                return failed(_context(classify(exc), entry))
        with self._cond:
            stale = entry.rversion != self._rversion
        if stale or self._loader_failed_round == entry.rversion:
            error = ResumableError("discarded: an earlier batch of its round failed")
            return Termin(entry.process_id, entry.rversion, ok=False, error=_context(error, entry))
        if not self._alive():
            return None
        try:
            self._sink.load(batch, self._epoch)
        except Exception as exc:
            return failed(_context(classify(exc), entry))
        return Termin(entry.process_id, entry.rversion, ok=True)

    # ------------------------------------------------------------ ProcessTermin

    def _termin_loop(self) -> None:
        while not self._halted.is_set():
            with self._cond:
                entry = self._buffer[0] if self._buffer else None
                finish_rollback = entry is None and self._rollback_pending
                if entry is None and not finish_rollback:
                    self._cond.wait(_TICK_S)
                    continue
            try:
                if finish_rollback:
                    self._finish_rollback()
                else:
                    assert entry is not None
                    self._process(entry)
            except (FencedError, NotActiveError) as exc:
                self._lose(str(exc))
            except Exception as exc:
                self._rollback(classify(exc), by_event=False)

    def _process(self, entry: Entry) -> None:
        try:
            if entry.error is not None:
                self._rollback(entry.error, by_event=True, round_=entry.rversion)
            elif not entry.need_wait:
                if not self._rollback_pending:
                    self._ack(entry)
            else:
                termin = self._await_termin(entry)
                if termin is None:  # halted while waiting
                    return
                self._free_slot()
                if self._rollback_pending:
                    if termin.ok and self._failed_round == entry.rversion:
                        raise SchedulingError(
                            f"batch {_bid(entry)} succeeded after a failed batch of its round"
                        )
                elif not termin.ok:
                    assert termin.error is not None
                    self._rollback(termin.error, by_event=True, round_=entry.rversion)
                else:
                    self._ack(entry)
        finally:
            if not self._halted.is_set():
                with self._cond:
                    if self._buffer and self._buffer[0] is entry:
                        self._buffer.popleft()
                    self._cond.notify_all()

    def _await_termin(self, entry: Entry) -> Termin | None:
        deadline: float | None = None
        while not self._halted.is_set():
            if entry.process_id in self._stash:
                return self._stash.pop(entry.process_id)
            try:
                termin = self._termins.get(timeout=_TICK_S)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline:
                    error = ResumableError(f"termin of process {entry.process_id} never arrived")
                    return Termin(entry.process_id, entry.rversion, False, _context(error, entry))
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
        position = self._selector.ack(batch.batch_id)
        self._failures = 0
        self._stats.on_ack(batch, position)
        self._log.trace("acked batch {} at {}", batch.batch_id, position)

    def _rollback(self, error: FerryError, *, by_event: bool, round_: int | None = None) -> None:
        """Stop selecting, bump the version; the drain and selector rollback follow."""
        self._permit_until = 0.0  # a rollback may end in a pause: read the permit again
        with self._cond:
            self._can_start = False
            self._rversion += 1
            if not self._rollback_pending:
                self._failed_round = round_ if by_event else None
            self._rollback_pending = True
            self._cond.notify_all()
        self._failures += 1
        self._stats.on_rollback(error)
        bound = self._log.bind(batch=error.batch_id, position=str(error.position or "-"))
        if isinstance(error, FatalError) or self._failures > self._settings.max_retries:
            why = "fatal" if isinstance(error, FatalError) else "retries exhausted"
            bound.error("rollback ({}), pausing the pipeline: {}", why, error)
            self._failures = 0  # a resume starts a fresh retry budget
            self._resume_at = 0.0
            self._on_fatal(error)
            return
        delay_ms = self._settings.retry_delay_ms(self._failures)
        self._resume_at = time.monotonic() + delay_ms / 1000
        self._stats.on_retry()
        bound.warning(
            "rollback, retry {}/{} in {} ms: {}",
            self._failures,
            self._settings.max_retries,
            delay_ms,
            error,
        )

    def _finish_rollback(self) -> None:
        """The buffer drained after a rollback: rewind the selector, wait the backoff, go on."""
        with self._selector_lock:
            self._selector.rollback()
        committed = self._selector.committed
        self._log.info("rolled back to {}", committed if committed else "the start position")
        while not self._halted.is_set() and time.monotonic() < self._resume_at:
            self._halted.wait(min(_TICK_S, self._resume_at - time.monotonic()))
        self._permit_until = 0.0
        with self._cond:
            self._rollback_pending = False
            self._failed_round = None
            self._can_start = True
            self._cond.notify_all()


def _bid(entry: Entry) -> Any:
    return entry.batch.batch_id if entry.batch is not None else "-"


def _context(error: FerryError, entry: Entry) -> FerryError:
    batch = entry.batch
    return error.context(
        batch_id=batch.batch_id if batch else None, position=batch.position if batch else None
    )
