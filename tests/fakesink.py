"""A third-party sink, installed the way pip would: a ``*.dist-info`` directory whose
``entry_points.txt`` publishes it in the ``ferry.sinks`` group, beside its module, in a
directory that goes on ``sys.path`` (in-process) or ``PYTHONPATH`` (a `ferry` process).

The sink appends each row change it loads to ``path`` as one JSON line and fsyncs. Its
first load fails with its own client library's "connection lost", which its module
registers as resumable: a node must roll back, retry and deliver, not pause.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODULE = '''
"""ferry_fake_sink: what a third party writes to add a sink to ferry."""

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import register_classifier
from pipeline.model import RowChange
from sinks.base import Sink


class FakeConnectionLost(Exception):
    """The fake client library's dropped connection."""


register_classifier(lambda exc: True if isinstance(exc, FakeConnectionLost) else None)


class FakeSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["fake"]
    path: str = Field(description="file the rows are appended to, one JSON line each")
    fail_first_load: bool = False


class FakeSink(Sink):
    config_model = FakeSinkConfig
    loads = 0

    @classmethod
    def describe(cls, config):
        return f"fake sink writing rows to {config.path}"

    def open(self):
        pass

    def load(self, batch, epoch):
        FakeSink.loads += 1
        if self.config.fail_first_load and FakeSink.loads == 1:
            raise FakeConnectionLost("the fake server went away")
        with open(self.config.path, "a", encoding="utf-8") as out:
            for change in batch.changes:
                if isinstance(change, RowChange):
                    row = {"table": change.table, "op": change.op, "after": change.after}
                    out.write(json.dumps(row, default=str) + "\\n")
            out.flush()
            os.fsync(out.fileno())

    def close(self):
        pass
'''


def install_fake_sink(directory: Path) -> Path:
    """Write the distribution ``ferry-fake-sink`` into ``directory``; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ferry_fake_sink.py").write_text(MODULE, encoding="utf-8")
    info = directory / "ferry_fake_sink-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ferry-fake-sink\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[ferry.sinks]\nfake = ferry_fake_sink:FakeSink\n", encoding="utf-8"
    )
    return directory


def rows_written(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
