"""A sink installed through the ``ferry.sinks`` entry point validates like a built-in
(issue 22: config validation rejected it as an unknown type). `ferry check` and a load
with it: tests/integration/test_sink_entry_point.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import parse_config
from sinks import registry
from tests.fakesink import install_fake_sink
from tests.unit.test_config import MINIMAL, problems


@pytest.fixture
def fake_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(install_fake_sink(tmp_path / "site")))
    return tmp_path


def with_sink(sink: str) -> str:
    return MINIMAL.replace("{type: jsonl, path: /tmp/out.jsonl}", sink)


@pytest.mark.usefixtures("fake_installed")
def test_an_entry_point_sink_is_validated_by_its_own_model() -> None:
    config = parse_config(with_sink("{type: fake, path: /tmp/rows.jsonl}"), env={})
    assert type(config.sink).__name__ == "FakeSinkConfig"
    assert config.sink.path == "/tmp/rows.jsonl"  # type: ignore[attr-defined]
    assert "sink      fake sink writing rows to /tmp/rows.jsonl" in config.summary()
    assert registry.sink_types()[-1] == "fake"


@pytest.mark.usefixtures("fake_installed")
def test_a_bad_field_of_an_entry_point_sink_is_named_by_its_path() -> None:
    found = problems(with_sink("{type: fake, path: [1], colour: red}"))
    assert [line.split(":")[0] for line in found] == ["sink.path", "sink.colour"]
    assert found[1] == "sink.colour: extra inputs are not permitted"
    assert problems(with_sink("{type: fakes, path: x}")) == [
        "sink: unknown sink type; expected one of kafka, mysql, postgresql, jsonl, stdout, fake"
    ]
