"""The sink registry is the one list of sinks: config validation, the README reference and
the describe lines all come from it (issue 22, the seam)."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from pipeline import reference
from pipeline.config import parse_config
from pipeline.errors import ConfigError
from sinks import registry
from sinks.memory import MemorySink, MemorySinkConfig
from tests.unit.test_config import MINIMAL, problems


@pytest.mark.parametrize("sink_type", list(registry.BUILTIN))
def test_each_builtin_sink_owns_its_model_and_describes_itself(sink_type: str) -> None:
    cls = registry.sink_class(sink_type)
    model = cls.config_model
    assert issubclass(model, BaseModel) and cls.__module__ == model.__module__
    assert typing.get_args(model.model_fields["type"].annotation) == (sink_type,)
    assert model.model_config.get("extra") == "forbid"
    assert "describe" in vars(cls), "each built-in gives its own ferry check / startup line"


@pytest.fixture
def memory_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test twin registered like a built-in: one registry line, nothing else."""
    monkeypatch.setitem(registry.BUILTIN, "memory", "sinks.memory:MemorySink")
    monkeypatch.setattr(
        MemorySink, "describe", classmethod(lambda cls, config: "memory (in this process)")
    )


@pytest.mark.usefixtures("memory_registered")
def test_a_registered_sink_validates_describes_and_is_documented_through_the_registry() -> None:
    config = parse_config(MINIMAL.replace("{type: jsonl, path: /tmp/out.jsonl}", "{type: memory}"))
    assert isinstance(config.sink, MemorySinkConfig)
    assert "sink      memory (in this process)" in config.summary()
    assert "#### `sink (type: memory)`" in reference.reference()
    found = problems(MINIMAL.replace("jsonl, path: /tmp/out.jsonl", "nosuch"))
    known = "kafka, mysql, postgresql, jsonl, stdout, memory"
    assert found == [f"sink: unknown sink type; expected one of {known}"]
    bad = MINIMAL.replace("jsonl, path: /tmp/out.jsonl", "memory, colour: red")
    assert problems(bad) == ["sink.colour: extra inputs are not permitted"]
    assert problems(MINIMAL.replace("type: jsonl, path: /tmp/out.jsonl", "colour: red")) == [
        "sink: 'type' is required; one of kafka, mysql, postgresql, jsonl, stdout, memory"
    ]


def test_a_registered_name_that_is_not_a_sink_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "bogus", "sinks.memory:MemorySinkConfig")
    with pytest.raises(ConfigError, match=r"sinks\.memory:MemorySinkConfig is not a ferry Sink"):
        parse_config(MINIMAL.replace("type: jsonl, path: /tmp/out.jsonl", "type: bogus"))
