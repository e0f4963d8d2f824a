"""A third-party sink installed through the ``ferry.sinks`` entry point, in real `ferry`
processes against real MariaDB and Redis: `ferry check` describes it with its own line,
and `ferry run` loads rows into it; its client's lost connection, which its module
registers as resumable, is retried rather than pausing the pipeline (issue 22)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakesink import install_fake_sink, rows_written
from tests.ferryproc import FerryNode, ferry, ferry_status, wait_until, write_config


@pytest.fixture
def fake_on_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ferry` processes inherit the environment: the fake distribution is on their path."""
    site = install_fake_sink(tmp_path / "site")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )


def fake_pipeline(
    tmp_path: Path, mariadb: Any, schema: str, redis_server: Any, prefix: str, **sink: Any
) -> Path:
    return write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="fake-sink",
        mariadb=mariadb,
        schema=schema,
        redis_url=redis_server.url,
        prefix=prefix,
        sink={"type": "fake", "path": str(tmp_path / "rows.jsonl"), **sink},
        server_id=4431,
    )


@pytest.mark.usefixtures("fake_on_pythonpath")
def test_ferry_check_describes_an_entry_point_sink(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    config = fake_pipeline(tmp_path, mariadb, source_db, redis_server, key_prefix)
    done = ferry(config, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sink      fake sink writing rows to {tmp_path / 'rows.jsonl'}" in done.stdout
    assert "✓ sink fake reachable" in done.stdout, done.stdout


@pytest.mark.usefixtures("fake_on_pythonpath")
def test_ferry_run_loads_rows_into_an_entry_point_sink(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    mariadb.execute(f"CREATE TABLE {source_db}.items (id INT PRIMARY KEY, name VARCHAR(20))")
    config = fake_pipeline(
        tmp_path, mariadb, source_db, redis_server, key_prefix, fail_first_load=True
    )
    node = FerryNode(config, "a").start().selecting()
    try:
        for i in range(1, 4):
            mariadb.execute(f"INSERT INTO {source_db}.items VALUES ({i}, 'item {i}')")
        out = tmp_path / "rows.jsonl"
        wait_until(lambda: len(rows_written(out)) >= 3, 30, "three rows in the fake sink")
        rows = rows_written(out)
        assert [(r["table"], r["op"], r["after"]) for r in rows] == [
            ("items", "insert", {"id": i, "name": f"item {i}"}) for i in range(1, 4)
        ]
        status = ferry_status(config)
        assert status["state"] == "running", status  # the lost connection was retried
        log = node.log(20_000)
        assert "the fake server went away" in log, log
        assert f"sink fake sink writing rows to {out}" in log, log  # the startup line
    finally:
        node.stop()
