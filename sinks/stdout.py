"""Standard-output sink (configuration; the sink itself follows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StdoutSinkConfig(BaseModel):
    """`sink: {type: stdout}` — for trying things out."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdout"]
    format: Literal["text", "json"] = Field("text", description="text lines or debezium-json")
