"""Where an activation starts: first start, recovery, or refusal after a Redis loss.

Sources of truth, in order of authority:

0. A position set by an operator (``ferry position --set``) while paused.
1. A sink checkpoint (the MySQL sink's checkpoint table; the Kafka sink's offsets
   topic with ``exactly_once``), written in the same transaction as the data: it can
   only be ahead of Redis, never behind.
2. The position in Redis, fenced by epoch.
3. The local state file (``state_dir/<pipeline>.json``): not a position to
   resume from, but the memory that this pipeline *ran before*. Redis may
   restart empty; when it has no position, the sink has no checkpoint, but the
   state file says a position was committed, the node refuses to guess
   (replaying from ``source.start`` would lose or duplicate data) and pauses
   with an error telling the operator what to do.

Epochs: the next epoch must be above every epoch any of these remember, or a
MySQL sink would fence this node forever after Redis lost its counter.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from arbitrate.base import Arbiter
from pipeline.errors import FatalError
from pipeline.model import Position
from selector.store import write_atomically
from sinks.base import Sink

_REFRESH_S = 1.0  # how often the state file's position is refreshed within one epoch


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "ferry"


class StateFile:
    """Local memory of the last committed position and epoch of one pipeline."""

    def __init__(self, directory: str | Path | None, pipeline_id: str) -> None:
        self.path = Path(directory or default_state_dir()) / f"{pipeline_id}.json"
        self._epoch: int | None = None  # the epoch last written
        self._written_at = 0.0

    def read(self) -> tuple[Position, int] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Position.from_dict(data["position"]), int(data["epoch"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable state file {}: {}", self.path, exc)
            return None

    def write(self, position: Position, epoch: int) -> None:
        """Atomic replace. A new epoch is written at once and durably (``choose_start``
        reads it); the position only refreshes a marker, at most once a second: Redis
        holds the truth, and a file write per ack cost the node about a tenth of its time."""
        now = time.monotonic()
        if epoch == self._epoch and now - self._written_at < _REFRESH_S:
            return
        payload = json.dumps({"position": position.to_dict(), "epoch": epoch})
        write_atomically(self.path, payload, durable=epoch != self._epoch)
        self._epoch, self._written_at = epoch, now


class EpochBehind(Exception):
    """This node's epoch is not above an epoch remembered elsewhere: take the lock again."""


@dataclass(frozen=True, slots=True)
class Start:
    position: Position | None  # None: first start, the selector uses source.start
    origin: str  # "first start" | "redis" | "sink checkpoint" | "operator"


def choose_start(arbiter: Arbiter, sink: Sink, state: StateFile | None, epoch: int) -> Start:
    """Decide where this activation starts (see the module docstring).

    Raises EpochBehind when the epoch must be raised first, and FatalError when
    the position was lost and the node must not guess.
    """
    checkpoint = sink.checkpoint()
    local = state.read() if state else None
    known_epochs = [e for e in (checkpoint and checkpoint.epoch, local and local[1]) if e]
    if known_epochs and max(known_epochs) >= epoch:
        arbiter.raise_epoch_floor(max(known_epochs))
        raise EpochBehind(f"epoch {epoch} is not above remembered epoch {max(known_epochs)}")

    stored, stored_epoch = arbiter.load_position_record()
    if stored is not None and stored_epoch is None:
        return Start(stored, "operator")  # `ferry position --set` wins over a sink checkpoint
    if checkpoint is not None and (
        stored is None or checkpoint.position.sort_key() > stored.sort_key()
    ):
        return Start(checkpoint.position, "sink checkpoint")
    if stored is not None:
        return Start(stored, "redis")
    if local is not None:
        position, old_epoch = local
        raise FatalError(
            f"the committed position is missing from Redis, but this pipeline committed"
            f" {position} (epoch {old_epoch}) before, per {state.path if state else ''}."
            f" Redis probably restarted without persistence. Refusing to guess: check the"
            f" target, then `ferry position -c FILE --set {position.file}:{position.pos}`"
            f" and `ferry resume -c FILE`."
        )
    return Start(None, "first start")
