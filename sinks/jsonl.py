"""JSON-lines file sink: one line per message, in any format (see ``JsonlSink``)."""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import FatalError
from pipeline.model import Batch, Change, RowChange
from sinks.base import Sink
from sinks.formats.base import FormatName, FormatSpec, ddl_tables, get_format, now_ns
from sinks.formats.debezium.options import DebeziumOptions


class JsonlSinkConfig(BaseModel):
    """`sink: {type: jsonl}` — one JSON line per message, fsynced per batch."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["jsonl"]
    format: FormatName = Field(
        "debezium-json",
        description="message format (see sink (type: kafka)); a line holds a message's value,"
        " tombstones are left out",
    )
    debezium: DebeziumOptions = Field(
        default_factory=DebeziumOptions,  # type: ignore[arg-type]
        description="Debezium's options for format debezium-json, see sink.debezium",
    )
    path: str = Field(
        description="output file; may contain {schema} and {table} for a file per table (a DDL"
        " goes to the file of each table it changes, {table} is _ddl for a database or routine)"
    )
    rotate_bytes: int | None = Field(
        None, ge=1024, description="start a new numbered file when a file exceeds this size"
    )
    fsync: bool = Field(True, description="fsync before a batch counts as loaded")


class JsonlSink(Sink):
    """Appends one line per message (the value; DDL included, tombstones left out) and fsyncs
    before returning.

    Delivery is at-least-once: a batch that failed and is re-delivered may
    repeat lines already written. A crash can leave a partial last line; it is
    cut off when the file is opened again, so every line in a file is whole.

    With ``{schema}``/``{table}`` in ``path`` each table gets its own file; a
    DDL goes to the file of each table it changes, as the selector classified it
    (``CREATE TABLE other.t`` in session database ``shop``: ``other``/``t``;
    ``DROP TABLE a, b``: both files), ``{table}`` is ``_ddl`` for a database or
    routine statement.
    With ``rotate_bytes`` a file that reached that size is renamed to
    ``<path>.1``, ``<path>.2``, … (higher = newer) and a fresh ``<path>`` is
    started; read the numbered files in order, then ``<path>``.
    """

    config_model = JsonlSinkConfig
    config: JsonlSinkConfig

    @classmethod
    def describe(cls, config: JsonlSinkConfig) -> str:
        return f"jsonl {config.path} format={config.format}"

    def __init__(self, config: JsonlSinkConfig, pipeline_id: str) -> None:
        super().__init__(config, pipeline_id)
        self._format = get_format(config.format, pipeline_id, debezium=config.debezium)
        self._files: dict[str, BinaryIO] = {}
        self._per_table = "{schema}" in config.path or "{table}" in config.path

    def encoding(self) -> FormatSpec | None:
        return self._format.spec

    def open(self) -> None:
        if not self._per_table:
            self._file(self.config.path)

    def _paths(self, change: Change) -> list[str]:
        """The files of a change: its table's; a DDL goes to the file of each table it
        changes (``{table}`` is ``_ddl`` for a database or routine statement)."""
        path = self.config.path
        if not self._per_table:
            return [path]
        if isinstance(change, RowChange):
            return [path.format(schema=change.schema, table=change.table)]
        paths = (
            path.format(schema=schema, table=table or "_ddl")
            for schema, table in ddl_tables(change)
        )
        return list(dict.fromkeys(paths))

    def _file(self, path: str) -> BinaryIO:
        handle = self._files.get(path)
        if handle is None:
            try:
                directory = os.path.dirname(path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                handle = open(path, "ab")  # noqa: SIM115 - kept open across batches
                _cut_partial_line(handle)
            except OSError as exc:
                raise FatalError(f"jsonl sink: cannot open {path}: {exc}") from exc
            self._files[path] = handle
        return handle

    def load(self, batch: Batch, epoch: int) -> None:
        if batch.is_empty:
            return
        now = now_ns()
        touched: dict[str, BinaryIO] = {}
        rotate = self.config.rotate_bytes
        try:
            if not self._per_table and rotate is None:
                # one file, no rotation: encode the batch, then one write
                path = self.config.path
                handle = touched[path] = self._file(path)
                lines = [
                    value
                    for _, messages in self._format.each(batch, now)
                    for _, value in messages
                    if value is not None
                ]
                if lines:
                    lines.append(b"")
                    handle.write(b"\n".join(lines))
            else:
                for change, messages in self._format.each(batch, now):
                    lines = [value + b"\n" for _, value in messages if value is not None]
                    for path in self._paths(change):
                        handle = touched.get(path) or self._file(path)
                        if rotate is not None and handle.tell() >= rotate:
                            handle = self._rotate(path)
                        touched[path] = handle
                        for line in lines:
                            handle.write(line)
            for handle in touched.values():
                handle.flush()
                if self.config.fsync:
                    os.fsync(handle.fileno())
        except OSError as exc:
            for path in touched:  # reopen (and cut a partial line) on the retry
                self._close(path)
            # Disk full or I/O errors need an operator; a retry would fail the same way.
            raise FatalError(f"jsonl sink: cannot write: {exc}").context(
                pipeline=self.pipeline_id, batch_id=batch.batch_id, position=batch.position
            ) from exc

    def _rotate(self, path: str) -> BinaryIO:
        handle = self._files[path]
        handle.flush()
        if self.config.fsync:
            os.fsync(handle.fileno())
        self._close(path)
        number = 1
        while os.path.exists(f"{path}.{number}"):
            number += 1
        os.rename(path, f"{path}.{number}")
        if self.config.fsync:
            _fsync_dir(os.path.dirname(path) or ".")
        return self._file(path)

    def _close(self, path: str) -> None:
        handle = self._files.pop(path, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def close(self) -> None:
        for path in list(self._files):
            self._close(path)


def _cut_partial_line(handle: BinaryIO) -> None:
    """Truncate a trailing line without newline (left by a crash mid-write)."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    with open(handle.name, "rb") as reader:
        step = 65536
        end = size
        while end > 0:
            start = max(0, end - step)
            reader.seek(start)
            chunk = reader.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                handle.seek(0, os.SEEK_END)
                return
            end = start
    handle.truncate(0)
    handle.seek(0)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
