"""JSON-lines file sink (configuration; the sink itself follows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class JsonlSinkConfig(BaseModel):
    """`sink: {type: jsonl}` — one debezium-json line per change, fsynced per batch."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["jsonl"]
    path: str = Field(
        description="output file; may contain {schema} and {table} for a file per table"
    )
    rotate_bytes: int | None = Field(
        None, ge=1024, description="start a new numbered file when a file exceeds this size"
    )
    fsync: bool = Field(True, description="fsync before a batch counts as loaded")
