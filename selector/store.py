"""Position stores kept here: in memory (tests, one-shot runs) and in a local file.

The Redis store, fenced by the node's epoch, lives in ``arbitrate``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import FatalError
from pipeline.model import Position, SchemaRecord, SchemaState

from .base import PositionStore


class MemoryPositionStore(PositionStore):
    """Keeps the committed position, and the schema history, in this process only. ``saves``
    counts saves (for tests); ``history_writes`` lists what was stored in the history other
    than by a save (``("start", state)``, ``("append", records, coverage)``), for a decoder
    process to hand to its node."""

    def __init__(
        self, position: Position | None = None, history: SchemaState | None = None
    ) -> None:
        self._position = position
        self._history = history
        self._lock = threading.Lock()
        self.saves = 0
        self.history_writes: list[tuple[Any, ...]] = []

    def load(self) -> Position | None:
        with self._lock:
            return self._position

    def save(self, position: Position, history: Sequence[SchemaRecord] = ()) -> None:
        with self._lock:
            self._position = position
            self.saves += 1
            if self._history is not None:
                for record in history:
                    self._history.apply(record)
                self._history.position = position

    def load_history(self) -> SchemaState | None:
        with self._lock:
            return self._history.copy() if self._history is not None else None

    def start_history(self, state: SchemaState) -> None:
        with self._lock:
            self._history = state.copy()
            self.history_writes.append(("start", state.copy()))

    def append_history(self, records: Sequence[SchemaRecord], coverage: Position) -> None:
        with self._lock:
            if self._history is not None:
                for record in records:
                    self._history.apply(record)
                self._history.position = coverage
            self.history_writes.append(("append", tuple(records), coverage))


class FilePositionStore(PositionStore):
    """The committed position as one JSON file, replaced atomically.

    ``save`` writes a temp file in the same directory, fsyncs it, renames it
    over the old one and fsyncs the directory, so a crash leaves either the
    old or the new position, never a torn file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Position | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return Position.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise FatalError(
                f"position file {self.path} is not a valid position ({exc}); fix or remove it"
            ) from exc

    def save(self, position: Position, history: Sequence[SchemaRecord] = ()) -> None:
        write_atomically(self.path, position.to_json() + "\n")


def write_atomically(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` so a crash leaves the old or the new file, never a torn one.

    A temp file in the same directory is renamed over ``path``. ``durable`` also fsyncs the
    file and the directory, so the new content survives a power loss, not just a crash.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
