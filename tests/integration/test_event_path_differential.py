"""The hot event path (``selector.stream``: table maps skipped when unchanged, rows events
read without the library's objects), compiled (``selector/_binlog.pyx``) and in Python,
against the library's events, on real binlogs.

The same binlog is read to its end three times by a real selector: with
``selector.stream.HOT_PATH`` off (every event through mysql-replication's objects, the
reference), on the Python hot path, and on the compiled one; every change handed out
(row changes and DDL, with their positions, GTIDs, indexes, source events and table
definitions) must be equal, in the same order. The binlogs: the whole real-world
corpus (its DDL changes table maps under the same names), the benchmark's shapes
written one row per statement
(what applications write), and a workload made to trip a table-map cache: ALTERs
between rows of one table, a table dropped and created again, rotations, an excluded
table interleaved with an included one, XA and multi-statement transactions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import workload as wl
from pipeline.model import Change, RowChange
from selector import stream
from selector.events import Translator
from tests import realworld
from tests.integration.test_selector_mysql import selector


def read_to_end(server: Any, include: list[str], exclude: list[str] | None = None) -> list[Change]:
    with server.connect() as conn, conn.cursor() as cur:
        end = wl.binlog_position(cur)
    sel = selector(
        server,
        "unused",
        start="earliest",
        include=include,
        exclude=exclude or [],
        decoder="thread",
    )
    changes: list[Change] = []
    deadline = time.monotonic() + 600
    idle = 0
    try:
        while True:
            assert time.monotonic() < deadline, f"the end {end} was not reached"
            batch = sel.select()
            changes.extend(batch.changes)
            sel.ack(batch.batch_id)
            at = batch.position
            if at is not None and (at.file, at.pos) >= end:
                return changes
            # MariaDB may write a binlog checkpoint event (which moves no position) after
            # the last transaction: the binlog was written before, so idle means the end
            idle = 0 if batch.changes or at is not None else idle + 1
            if idle >= 15 and sel.committed is not None and sel.committed.file == end[0]:
                return changes
    finally:
        sel.stop()


def every_way(
    server: Any, monkeypatch: pytest.MonkeyPatch, include: list[str], **kw: Any
) -> tuple[list[Change], list[Change], list[Change]]:
    """The changes read on the library's path, the Python hot path and the compiled one."""
    compiled = stream._compiled
    if compiled is None and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail("selector._binlog is not built (pip install builds it)")
    monkeypatch.setattr(stream, "HOT_PATH", False)
    reference = read_to_end(server, include, **kw)
    monkeypatch.setattr(stream, "HOT_PATH", True)
    monkeypatch.setattr(stream, "_compiled", None)
    python = read_to_end(server, include, **kw)
    monkeypatch.setattr(stream, "_compiled", compiled)
    fast = read_to_end(server, include, **kw) if compiled is not None else python
    return reference, python, fast


def assert_same(reference: list[Change], hot: list[Change]) -> None:
    for i, (want, got) in enumerate(zip(reference, hot, strict=False)):
        assert got == want, f"change #{i} differs:\n  library: {want}\n  hot:     {got}"
    assert len(hot) == len(reference)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """How many rows events a hot path read (they must really take it): RowsBody events the
    translator got, and rows events the compiled reader translated itself."""
    seen = {"hot": 0}
    original = Translator.on_event
    readers: list[Any] = []

    def on_event(self: Translator, event: Any) -> None:
        if type(event) is stream.RowsBody:
            seen["hot"] += 1
        original(self, event)

    monkeypatch.setattr(Translator, "on_event", on_event)
    if stream._compiled is not None:

        class Counted(stream._compiled.Reader):  # type: ignore[misc,name-defined]
            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                readers.append(self)

        monkeypatch.setattr(stream._compiled, "Reader", Counted)
    yield lambda: seen["hot"] + sum(reader.translated for reader in readers)


@pytest.mark.realworld
@pytest.mark.slow
def test_the_real_world_corpus_reads_the_same_on_the_hot_path(
    corpus: Path, make_mariadb: Any, monkeypatch: pytest.MonkeyPatch, counted: Callable[[], int]
) -> None:
    server = make_mariadb()
    for script in realworld.scripts(corpus):
        realworld.load(server, script)
    include = [f"{db}.*" for db in realworld.databases(corpus)]
    reference, python, fast = every_way(server, monkeypatch, include)
    assert_same(reference, python)
    assert_same(reference, fast)
    assert len(reference) > 20000 and counted() > 1000


@pytest.mark.slow
@pytest.mark.parametrize("shape", wl.SHAPES)
def test_one_row_statements_read_the_same_on_the_hot_path(
    shape: str, make_mariadb: Any, monkeypatch: pytest.MonkeyPatch, counted: Callable[[], int]
) -> None:
    server = make_mariadb()
    args = {"host": server.host, "port": server.port, "user": server.user}
    args["password"] = server.password
    written = wl.write_changes(args, shape, 3000, txn_rows=100, statement_rows=1)
    reference, python, fast = every_way(server, monkeypatch, [f"{wl.SCHEMA}.*"])
    assert_same(reference, python)
    assert_same(reference, fast)
    assert sum(isinstance(c, RowChange) for c in reference) == written.rows
    # every rows event of one row on the hot paths (python and compiled)
    assert counted() == 2 * written.rows


_READ_WITH_FULL_METADATA: list[Any] = []  # the rows of the FULL run, for the other runs


@pytest.mark.parametrize("metadata", ["FULL", "NO_LOG", "MINIMAL"])
def test_table_map_changes_read_the_same_on_the_hot_path(
    metadata: str, make_mariadb: Any, monkeypatch: pytest.MonkeyPatch, counted: Callable[[], int]
) -> None:
    """Also without column names in the table maps (NO_LOG, MINIMAL): the rows are read with
    the schema history's definitions, on every path, and come out as with FULL."""
    server = make_mariadb([f"--binlog-row-metadata={metadata}"])
    statements = [
        "CREATE DATABASE hot",
        "CREATE TABLE hot.t (id INT PRIMARY KEY, a VARCHAR(20))",
        "CREATE TABLE hot.skip (id INT PRIMARY KEY, secret VARCHAR(20))",
        "INSERT INTO hot.t VALUES (1, 'a')",
        "INSERT INTO hot.skip VALUES (1, 'x')",
        "INSERT INTO hot.t VALUES (2, 'b')",
        "ALTER TABLE hot.t ADD COLUMN b INT DEFAULT 7 AFTER id",
        "INSERT INTO hot.t VALUES (3, 3, 'c')",
        "UPDATE hot.t SET a = 'bb' WHERE id = 2",
        "ALTER TABLE hot.t MODIFY a VARCHAR(40) CHARACTER SET latin1",
        "UPDATE hot.t SET a = 'café' WHERE id = 3",
        "FLUSH BINARY LOGS",
        "INSERT INTO hot.t VALUES (4, 4, 'd')",
        "DROP TABLE hot.t",
        "CREATE TABLE hot.t (id BIGINT PRIMARY KEY, a TEXT)",
        "INSERT INTO hot.t VALUES (5, 'e')",
        "XA START 'x1'",
        "INSERT INTO hot.t VALUES (6, 'f')",
        "INSERT INTO hot.skip VALUES (2, 'y')",
        "XA END 'x1'",
        "XA PREPARE 'x1'",
        "XA COMMIT 'x1'",
        "BEGIN",
        "INSERT INTO hot.t VALUES (7, 'g')",
        "UPDATE hot.skip SET secret = 'z'",
        "DELETE FROM hot.t WHERE id = 5",
        "INSERT INTO hot.t VALUES (8, 'h'), (9, 'i')",
        "COMMIT",
        "FLUSH BINARY LOGS",
        "DELETE FROM hot.t",
    ]
    with server.connect() as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    reference, python, fast = every_way(server, monkeypatch, ["hot.*"], exclude=["hot.skip"])
    assert_same(reference, python)
    assert_same(reference, fast)
    rows = [c for c in reference if isinstance(c, RowChange)]
    assert len(rows) == 16 and all(c.table == "t" for c in rows)
    assert counted() > 0
    read = [(c.op, c.before, c.after, c.primary_key, c.definition) for c in rows]
    if metadata == "FULL":
        _READ_WITH_FULL_METADATA[:] = read
    elif _READ_WITH_FULL_METADATA:
        assert read == _READ_WITH_FULL_METADATA


def test_an_event_longer_than_a_packet_reads_the_same_on_the_hot_path(
    make_mariadb: Any, monkeypatch: pytest.MonkeyPatch, counted: Callable[[], int]
) -> None:
    """A rows event over 16 MiB comes in several MySQL packets (the compiled reader joins
    them); a table map between two of them must not be read as one of its own."""
    server = make_mariadb(["--max-allowed-packet=256M"])
    server.execute("CREATE DATABASE big")
    server.execute("CREATE TABLE big.t (id INT PRIMARY KEY, body LONGBLOB, n INT)")
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO big.t VALUES (1, REPEAT('x', 20000000), 1)")
        cur.execute("INSERT INTO big.t VALUES (2, 'small', 2)")
        cur.execute("UPDATE big.t SET n = 3 WHERE id = 1")  # before and after: 40 MB
    reference, python, fast = every_way(server, monkeypatch, ["big.*"])
    assert_same(reference, python)
    assert_same(reference, fast)
    rows = [c for c in reference if isinstance(c, RowChange)]
    assert [c.op for c in rows] == ["insert", "insert", "update"]
    assert len(rows[0].after["body"]) == 20_000_000  # type: ignore[index]
