"""Standard-output sink: readable text lines or ferry-json lines (see ``StdoutSink``)."""

from __future__ import annotations

import sys
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import FatalError
from pipeline.model import Batch, Change, DdlChange
from sinks.base import Sink
from sinks.formats.base import get_format, now_ns
from sinks.formats.encoder import dumps, encode_key


class StdoutSinkConfig(BaseModel):
    """`sink: {type: stdout}` — for trying things out."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdout"]
    format: Literal["text", "json"] = Field(
        "text", description="readable text lines, or json: ferry-json lines (readable values)"
    )


class StdoutSink(Sink):
    """Prints each change: one readable line (``text``) or one ferry-json line (``json``).

    Text lines look like::

        INSERT shop.orders [1] {"id":1,"total":"9.50"} @mysql-bin.000003:1234
        UPDATE shop.orders [1] {"total":"9.50"->"12.00"} @mysql-bin.000003:1502
        DELETE shop.orders [1] @mysql-bin.000003:1790
        DDL    shop ALTER TABLE orders ADD note TEXT @mysql-bin.000003:2001

    Values use ferry-json's encoding (``docs/formats.md``).
    """

    config_model = StdoutSinkConfig
    config: StdoutSinkConfig

    @classmethod
    def describe(cls, config: StdoutSinkConfig) -> str:
        return f"stdout format={config.format}"

    def __init__(
        self, config: StdoutSinkConfig, pipeline_id: str, stream: TextIO | None = None
    ) -> None:
        super().__init__(config, pipeline_id)
        self._stream = stream
        self._format = get_format("ferry-json", pipeline_id)

    def open(self) -> None:
        pass

    def load(self, batch: Batch, epoch: int) -> None:
        if batch.is_empty:
            return
        stream = self._stream or sys.stdout
        now = now_ns()
        if self.config.format == "json":
            lines = [self._format.encode(c, now).decode("utf-8") for c in batch.changes]
        else:
            lines = [text_line(c) for c in batch.changes]
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except OSError as exc:  # closed pipe, full disk behind a redirect
            raise FatalError(f"stdout sink: cannot write: {exc}") from exc

    def close(self) -> None:
        pass


def _json(value: Any) -> str:
    return dumps(value).decode("utf-8")


def text_line(change: Change) -> str:
    """One human-readable line for a change (see ``StdoutSink``)."""
    where = f"@{change.position.file}:{change.position.pos}"
    if isinstance(change, DdlChange):
        statement = " ".join(change.statement.split())
        return f"DDL    {change.schema} {statement} {where}"
    name = f"{change.schema}.{change.table}"
    key = encode_key(change).decode("utf-8")
    if change.op == "insert" or change.op == "read":
        verb = "INSERT" if change.op == "insert" else "READ  "  # read: copied by a snapshot
        return f"{verb} {name} {key} {_json(change.after)} {where}"
    if change.op == "delete":
        return f"DELETE {name} {key} {where}"
    before, after = change.before or {}, change.after or {}
    diffs = [
        f"{_json(column)}:{_json(before.get(column))}->{_json(value)}"
        for column, value in after.items()
        if column not in before or before[column] != value
    ]
    return f"UPDATE {name} {key} {{{','.join(diffs)}}} {where}"
