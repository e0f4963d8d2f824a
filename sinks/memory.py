"""In-memory sinks: the twin of a real target, and a faulty one for recovery tests."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.errors import FatalError, ResumableError
from pipeline.model import Batch, Change, Position
from sinks.base import Sink, SinkCheckpoint, fence


class MemorySinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["memory"] = "memory"


class MemorySink(Sink):
    """Keeps every loaded change in order, with the batch id and epoch it came with.

    With ``checkpoint`` (True, or a checkpoint to start from) it is the twin of the
    MySQL sink's fencing: a load stores its position and epoch together with its
    changes, atomically, and a load whose epoch is older than the stored one raises
    ``FencedError`` and writes nothing (:func:`sinks.base.fence`).
    """

    config_model = MemorySinkConfig

    def __init__(
        self,
        config: MemorySinkConfig | None = None,
        pipeline_id: str = "test",
        *,
        checkpoint: bool | SinkCheckpoint = False,
    ) -> None:
        super().__init__(config or MemorySinkConfig(), pipeline_id)
        self.changes: list[Change] = []
        self.loads: list[tuple[int, int, int]] = []  # (batch_id, epoch, changes) per load
        self.opened = False
        self._lock = threading.Lock()
        self._loading = 0
        self.max_concurrent_loads = 0
        self.fenced = bool(checkpoint)
        start = checkpoint if isinstance(checkpoint, SinkCheckpoint) else None
        self._stored_epoch = start.epoch if start else 0
        self._stored_position: Position | None = start.position if start else None

    def open(self) -> None:
        self.opened = True

    def load(self, batch: Batch, epoch: int) -> None:
        with self._lock:
            self._loading += 1
            self.max_concurrent_loads = max(self.max_concurrent_loads, self._loading)
        try:
            self._write(batch, epoch)
        finally:
            with self._lock:
                self._loading -= 1

    def _write(self, batch: Batch, epoch: int) -> None:
        with self._lock:  # one transaction: fence, data, checkpoint
            if self.fenced:
                fence("memory sink", self._stored_epoch, epoch, batch, self.pipeline_id)
                self._stored_epoch = epoch
                self._stored_position = batch.position or self._stored_position
            self.changes.extend(batch.changes)
            self.loads.append((batch.batch_id, epoch, len(batch.changes)))

    def checkpoint(self) -> SinkCheckpoint | None:
        with self._lock:
            if self._stored_position is None:
                return None
            return SinkCheckpoint(self._stored_position, self._stored_epoch)

    def close(self) -> None:
        self.opened = False


class FaultySink(MemorySink):
    """A MemorySink that fails on purpose.

    * ``fail_loads``: 1-based numbers of load calls that fail;
    * ``failure_probability`` with a seeded ``random.Random``;
    * ``partial``: a failing load first writes the first half of the batch
      (what a crashed non-transactional target may leave behind);
    * ``slow_ms``: every load sleeps this long;
    * ``fatal``: failures are FatalError instead of ResumableError;
    * ``checkpoint``: as for MemorySink (a failure is injected before the fence).
    """

    def __init__(
        self,
        *,
        fail_loads: set[int] | None = None,
        failure_probability: float = 0.0,
        seed: int = 0,
        partial: bool = False,
        slow_ms: float | Callable[[], float] = 0.0,
        fatal: bool = False,
        checkpoint: bool | SinkCheckpoint = False,
    ) -> None:
        super().__init__(checkpoint=checkpoint)
        self.fail_loads = fail_loads or set()
        self.failure_probability = failure_probability
        self.partial = partial
        self.slow_ms = slow_ms
        self.fatal = fatal
        self.calls = 0
        self.failures = 0
        self._random = random.Random(seed)

    def _write(self, batch: Batch, epoch: int) -> None:
        self.calls += 1
        delay = self.slow_ms() if callable(self.slow_ms) else self.slow_ms
        if delay:
            time.sleep(delay / 1000)
        if self.calls in self.fail_loads or self._random.random() < self.failure_probability:
            self.failures += 1
            if self.partial:
                half = Batch(batch.batch_id, batch.changes[: len(batch.changes) // 2])
                super()._write(half, epoch)
            kind = FatalError if self.fatal else ResumableError
            raise kind(f"injected failure on load {self.calls}", batch_id=batch.batch_id)
        super()._write(batch, epoch)
