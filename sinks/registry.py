"""Sink registry: the one list of sinks, by ``sink.type``.

Built-ins are listed in :data:`BUILTIN`; third-party sinks come from the
``ferry.sinks`` entry point group. Either is a ``Sink`` subclass with a
``config_model`` (a pydantic model with ``type: Literal["name"]`` and
``extra="forbid"``): ``pipeline.config`` validates the ``sink:`` section
through that model, so an entry-point sink is configured, checked and
described exactly like a built-in one. A third party publishes it in its
distribution's metadata::

    [project.entry-points."ferry.sinks"]
    s3 = "ferry_s3:S3Sink"

Importing a sink's module registers its client library's error classifier
(``pipeline.errors.register_classifier``), before the sink can raise.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from pipeline.errors import ConfigError
from sinks.base import Sink

#: The built-in sinks, in the order the README's config reference lists them.
BUILTIN: dict[str, str] = {
    "kafka": "sinks.kafka:KafkaSink",
    "mysql": "sinks.mysql:MySQLSink",
    "postgresql": "sinks.postgresql:PostgreSQLSink",
    "jsonl": "sinks.jsonl:JsonlSink",
    "stdout": "sinks.stdout:StdoutSink",
}

GROUP = "ferry.sinks"


def _load(spec: str) -> type[Sink]:
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load sink {spec}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Sink)):
        raise ConfigError(f"{spec} is not a ferry Sink class")
    if not isinstance(getattr(cls, "config_model", None), type):
        raise ConfigError(f"{spec} has no config_model (the pydantic model of its sink: section)")
    return cls


def sink_types() -> list[str]:
    """Every known ``sink.type``: the built-ins, then the installed entry points."""
    found = [e.name for e in entry_points(group=GROUP) if e.name not in BUILTIN]
    return [*BUILTIN, *sorted(set(found))]


def sink_class(sink_type: str) -> type[Sink]:
    """The Sink class for ``sink.type``; ConfigError naming the known types if none."""
    if sink_type in BUILTIN:
        return _load(BUILTIN[sink_type])
    for entry in entry_points(group=GROUP):
        if entry.name == sink_type:
            return _load(entry.value)
    raise ConfigError(f"unknown sink type; expected one of {', '.join(sink_types())}")


def describe(config: Any) -> str:
    """The sink's line for `ferry check` and the node's startup log (secrets masked)."""
    return sink_class(config.type).describe(config)


def batch_rows(config: Any) -> int | None:
    """The sink's ``pipeline.batch.max_rows`` when the file sets none (None: the default)."""
    return sink_class(config.type).batch_rows(config)


def create_sink(config: Any, pipeline_id: str) -> Sink:
    """Build the sink for a validated ``sink:`` section."""
    return sink_class(config.type)(config, pipeline_id)
