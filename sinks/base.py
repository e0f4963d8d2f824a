"""The sink contract: where the load stage writes batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from pipeline.errors import FencedError
from pipeline.model import Batch, Position

if TYPE_CHECKING:
    from sinks.formats.base import FormatSpec


@dataclass(frozen=True, slots=True)
class SinkCheckpoint:
    """A position the sink stored itself, in the same transaction as the data."""

    position: Position
    epoch: int


class Sink(ABC):
    """A target of the load stage.

    Contract:

    * ``open()`` connects and checks the target; it may raise
      ``ResumableError`` (unreachable) or ``FatalError`` (auth, missing rights).
    * ``load(batch, epoch)`` returns only when every change of ``batch`` is
      durable at the target — Kafka: every send confirmed with acks=all; MySQL:
      the transaction committed; files: written and fsynced — or raises. A
      batch that raised may have been partly written: the node rolls back and
      the selector re-delivers it, so sinks must be idempotent by key or
      accept at-least-once duplicates (and say which).
    * ``load`` is called one batch at a time, in binlog order, from one thread.
    * A sink that stores a checkpoint (``checkpoint()`` not None) writes it in
      the same transaction as the data and rejects a batch whose ``epoch`` is
      older than the stored one with ``FencedError`` (:func:`fence`), writing
      nothing of it. That check, not the node's lock check before ``load``, is
      what stops a node that froze mid-load and woke up after a takeover.
    * A sink whose ``exactly_once`` is True commits each batch together with its
      position (its ``checkpoint()``), and replaying a committed batch would duplicate
      it: the node then never rolls back past a batch that loaded (a position commit
      that fails after it is retried, not rolled back), and a restart resumes from the
      later of Redis's position and the checkpoint.
    * Failures are raised as ``ResumableError`` or ``FatalError`` (use
      ``pipeline.errors.classify``); a failure is never swallowed. The sink's module
      registers how its client library's exceptions classify, when it is imported
      (``pipeline.errors.register_classifier``); an exception no classifier claims is
      resumable if it is a ``ConnectionError``/``TimeoutError``, else fatal.
    * ``close()`` is idempotent and is not guaranteed to be called (a node may
      be killed); nothing may depend on it for durability.
    """

    #: The pydantic model of this sink's ``sink:`` section (with ``type``).
    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: Any, pipeline_id: str) -> None:
        self.config = config
        self.pipeline_id = pipeline_id

    @abstractmethod
    def open(self) -> None:
        """Connect to the target."""

    @abstractmethod
    def load(self, batch: Batch, epoch: int) -> None:
        """Durably write every change of ``batch`` (see the class docstring)."""

    def checkpoint(self) -> SinkCheckpoint | None:
        """The position the target stored itself; None for sinks without one."""
        return None

    @property
    def exactly_once(self) -> bool:
        """A loaded batch is final at the target with its position (see the class docstring)."""
        return False

    @classmethod
    def describe(cls, config: Any) -> str:
        """One line for `ferry check` and the node's startup log: the type and where the sink
        writes, never a secret. Default: the type alone."""
        return str(config.type)

    @classmethod
    def batch_rows(cls, config: Any) -> int | None:
        """``pipeline.batch.max_rows`` for this sink when the file does not set it; None:
        the pipeline's default. A sink with a fixed cost per batch (a transaction) asks
        for larger batches."""
        return None

    def encoding(self) -> FormatSpec | None:
        """The ``sinks.formats.base.FormatSpec`` this sink encodes rows with, so that the decoder
        process may encode them ahead (``pipeline.model.Encoded``); None: it writes values,
        not messages."""
        return None

    def check(self) -> list[tuple[str, bool, str]]:
        """Checks for `ferry check`: (what, ok, how to fix). Default: can it open."""
        try:
            self.open()
        except Exception as exc:  # reported, not raised: check prints every line
            return [(f"sink {self.config.type} reachable", False, str(exc))]
        finally:
            self.close()
        return [(f"sink {self.config.type} reachable", True, "")]

    @abstractmethod
    def close(self) -> None:
        """Release connections and files. Idempotent."""


def fence(
    target: str, stored_epoch: int | None, epoch: int, batch: Batch, pipeline_id: str
) -> None:
    """The sink-side fence: a checkpoint written by a newer epoch refuses ``batch``.

    Call it inside the transaction that writes the batch, after locking the checkpoint.
    """
    if stored_epoch is not None and stored_epoch > epoch:
        raise FencedError(
            f"{target}: the target's checkpoint was written by epoch {stored_epoch}, newer than"
            f" this node's epoch {epoch}: another node is active; batch not written",
            pipeline=pipeline_id,
            batch_id=batch.batch_id,
            position=batch.position,
        )
