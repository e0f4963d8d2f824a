"""Sink registry: built-ins by ``sink.type``, plus third-party sinks from entry points.

A third-party sink is a ``Sink`` subclass with a ``config_model`` (a pydantic
model with ``type: Literal["name"]`` and ``extra="forbid"``), published in its
distribution's metadata::

    [project.entry-points."ferry.sinks"]
    s3 = "ferry_s3:S3Sink"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from pipeline.errors import ConfigError
from sinks.base import Sink

BUILTIN: dict[str, str] = {
    "kafka": "sinks.kafka:KafkaSink",
    "mysql": "sinks.mysql:MySQLSink",
    "postgresql": "sinks.postgresql:PostgreSQLSink",
    "jsonl": "sinks.jsonl:JsonlSink",
    "stdout": "sinks.stdout:StdoutSink",
}


def _load(spec: str) -> type[Sink]:
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Sink)):
        raise ConfigError(f"{spec} is not a ferry Sink class")
    return cls


def sink_class(sink_type: str) -> type[Sink]:
    """The Sink class for ``sink.type``; ConfigError naming the known types if none."""
    if sink_type in BUILTIN:
        return _load(BUILTIN[sink_type])
    for entry in entry_points(group="ferry.sinks"):
        if entry.name == sink_type:
            return _load(entry.value)
    known = sorted(set(BUILTIN) | {e.name for e in entry_points(group="ferry.sinks")})
    raise ConfigError(f"sink.type: unknown sink {sink_type!r}; known: {', '.join(known)}")


def create_sink(config: Any, pipeline_id: str) -> Sink:
    """Build the sink for a validated ``sink:`` section."""
    return sink_class(config.type)(config, pipeline_id)
