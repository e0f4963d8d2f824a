"""What every message format is: the ``messages()`` contract, :class:`FormatSpec`, the
registry of formats, and encode-ahead.

A format turns one change into one or more messages, ``(key, value)`` byte strings
(:meth:`Format.messages`); a value of ``None`` is a tombstone. The formats register
themselves here (:func:`register`); ``sinks/formats/__init__.py`` imports each of them,
so the registry is full once anything of ``sinks.formats`` is imported. What each format
writes, value by value: ``docs/formats.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from pipeline.errors import FatalError
from pipeline.model import (
    Batch,
    Change,
    DdlChange,
    Encoded,
    Message,
    RowChange,
)

FormatName = Literal["debezium-json", "ferry-json", "canal-json"]  # sink.format
FORMATS: tuple[str, ...] = get_args(FormatName)


def now_ns() -> int:
    return time.time_ns()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ddl_tables(change: DdlChange) -> tuple[tuple[str, str], ...]:
    """Where a DDL is filed: every ``(schema, table)`` it changes, as the classifier named
    them (``CREATE TABLE other.t`` → ``("other", "t")``; a trigger: the table it is ON;
    ``DROP TABLE a, b``: both); table ``""`` for a database or routine statement, and
    ``((change.schema, ""),)`` for one that names nothing."""
    return change.tables or ((change.schema, ""),)


class Format:
    """Encodes changes into messages; one instance per sink."""

    name = ""
    spec: FormatSpec | None = None  # what built it (get_format): the same spec, the same bytes

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        self.pipeline = pipeline
        self.server_id = server_id

    @classmethod
    def from_spec(cls, spec: FormatSpec) -> Format:
        """The format ``spec`` describes (a format with options overrides this)."""
        return cls(spec.pipeline, spec.server_id)

    def each(self, batch: Batch, now: int) -> Iterator[tuple[Change, list[Message]]]:
        """Every change of ``batch`` with its messages: those the decoder process encoded
        ahead when it used this format's spec (:func:`encode_ahead`), else encoded now."""
        encoded = batch.encoded
        ahead = encoded.messages if encoded is not None and encoded.encoding == self.spec else None
        for i, change in enumerate(batch.changes):
            messages = ahead[i] if ahead is not None else None
            yield (
                change,
                (messages if messages is not None else self.messages(change, now, batch.batch_id)),
            )

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        """The messages of ``change`` in order, none for a change the format leaves out;
        ``now`` (ns) defaults to the current time; ``batch_id`` is the batch's (canal-json's
        ``id``)."""
        raise NotImplementedError

    def encode(self, change: Change, now: int | None = None) -> bytes:
        """The value of ``change``'s first message that has one (``b""`` when there is
        none); ``now`` in ns."""
        for _, value in self.messages(change, now):
            if value is not None:
                return value
        return b""


_F = TypeVar("_F", bound=type[Format])
_REGISTRY: dict[str, type[Format]] = {}


def register(cls: _F) -> _F:
    """Class decorator: ``cls`` is the format called ``cls.name`` (one of FORMATS)."""
    assert cls.name in FORMATS, f"{cls.name!r} is not a FormatName"
    _REGISTRY[cls.name] = cls
    return cls


def get_format(
    name: str,
    pipeline: str,
    server_id: int | None = None,
    debezium: Any = None,
) -> Format:
    """The formatter called ``name`` (one of FORMATS); ``debezium``: its DebeziumOptions."""
    found = _REGISTRY.get(name)
    if found is None:
        raise FatalError(f"unknown message format {name!r}; known: {', '.join(FORMATS)}")
    spec = FormatSpec(name, pipeline, server_id, debezium)
    built = found.from_spec(spec)
    built.spec = spec
    return built


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """The arguments of :func:`get_format`: equal specs build formats that write the same
    bytes, so the decoder process can encode rows for a sink (``Sink.encoding``)."""

    name: str
    pipeline: str
    server_id: int | None = None
    debezium: Any = None  # DebeziumOptions (a pydantic model: compared by value)

    def build(self) -> Format:
        return get_format(self.name, self.pipeline, self.server_id, self.debezium)


def encode_ahead(sink_format: Format, batch: Batch) -> Encoded:
    """The messages of ``batch``'s row changes, encoded in the decoder process (see
    ``pipeline.model.Encoded``); DDL is left to the sink."""
    now = now_ns()  # processing time, as the sink would have taken it
    messages: list[list[Message] | None] = []
    for change in batch.changes:
        found = None
        if isinstance(change, RowChange):
            try:
                found = sink_format.messages(change, now, batch.batch_id)
            except Exception:  # not swallowed: the sink encodes this row again and raises
                found = None
        messages.append(found)
    return Encoded(sink_format.spec, messages)
