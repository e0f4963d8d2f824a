"""The compiled row decoder against the pure-Python reference, on real binlogs.

Every rows event of the whole real-world SQL corpus (``../shared/realworld-sql``,
loaded into a private MariaDB, with ferry's own charset workload ``tests/charset_rows.py``),
of that charset workload alone (text in every charset, every latin1 byte), and of the
benchmark's workloads (``bench/workload.py``: the narrow, wide and composite shapes,
70 % inserts / 20 % updates / 10 % deletes) is read by a real selector, and its body is
decoded both ways: the values must be
identical, types included (``tests.rowimage.difference``). The selector runs its
decoder in a thread here, so the check sits in the same process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import workload as wl
from pipeline.model import RowChange
from selector import stream
from selector import values as vals
from tests import charset_rows, realworld
from tests.integration.test_selector_mysql import selector
from tests.rowimage import compiled, difference, outcome


class Differential:
    """Stands in for ``selector.values.decode_rows``: decodes both ways, records differences."""

    def __init__(self) -> None:
        self.fast = compiled()
        self.events = 0
        self.rows = 0
        self.kinds: set[int] = set()
        self.differences: list[str] = []

    def __call__(self, plan: Any, body: bytes, present: bytes, after: bytes | None = None) -> Any:
        fast = outcome(self.fast, plan, body, present, after)
        slow = outcome(vals.decode_rows_py, plan, body, present, after)
        found = difference(fast, slow, "rows")
        if found is not None and len(self.differences) < 20:
            names = [(c.name, c.kind) for c in plan.columns]
            self.differences.append(f"{found} (columns {names})")
        self.events += 1
        if isinstance(slow, list):
            self.rows += len(slow)
        self.kinds.update(c.kind for c in plan.columns)
        return vals.decode_rows_py(plan, body, present, after)


@pytest.fixture
def differential(monkeypatch: pytest.MonkeyPatch) -> Iterator[Differential]:
    check = Differential()
    monkeypatch.setattr(vals, "decode_rows", check)
    # every rows event through values.decode_rows: the compiled event path calls the
    # compiled decoder itself (test_event_path_differential holds that path equal)
    monkeypatch.setattr(stream, "_compiled", None)
    yield check


def read_to_end(server: Any, include: list[str], differential: Differential) -> int:
    """Read the binlog from its start to its current end; the row changes handed out."""
    with server.connect() as conn, conn.cursor() as cur:
        end = wl.binlog_position(cur)
    sel = selector(server, "unused", start="earliest", include=include, decoder="thread")
    changes = 0
    deadline = time.monotonic() + 600
    try:
        while True:
            assert time.monotonic() < deadline, f"the end {end} was not reached"
            batch = sel.select()
            changes += sum(1 for c in batch.changes if isinstance(c, RowChange))
            sel.ack(batch.batch_id)
            at = batch.position
            if at is not None and (at.file, at.pos) >= end:
                return changes
    finally:
        sel.stop()


@pytest.mark.realworld
@pytest.mark.slow
def test_the_whole_real_world_corpus_decodes_identically(
    corpus: Path, make_mariadb: Any, differential: Differential
) -> None:
    server = make_mariadb()
    for script in realworld.scripts(corpus):
        realworld.load(server, script)
    charset_rows.load(server)
    dbs = [*realworld.databases(corpus), charset_rows.SCHEMA]
    changes = read_to_end(server, [f"{db}.*" for db in dbs], differential)
    assert not differential.differences, "\n".join(differential.differences)
    assert differential.rows >= 20000  # README of the corpus: 20,187 row changes
    assert changes >= 20000
    assert len(differential.kinds) >= 14  # nearly every kind of selector.values


def test_text_in_every_charset_decodes_identically(
    make_mariadb: Any, differential: Differential
) -> None:
    server = make_mariadb()
    charset_rows.load(server)
    changes = read_to_end(server, [f"{charset_rows.SCHEMA}.*"], differential)
    assert not differential.differences, "\n".join(differential.differences)
    assert changes == differential.rows > 3000
    assert {vals.K_VARCHAR, vals.K_BLOB, vals.K_ENUM, vals.K_SET} <= differential.kinds


@pytest.mark.slow
@pytest.mark.parametrize("shape", wl.SHAPES)
def test_the_bench_workloads_decode_identically(
    shape: str, make_mariadb: Any, differential: Differential
) -> None:
    server = make_mariadb()
    args = {"host": server.host, "port": server.port, "user": server.user}
    args["password"] = server.password
    written = wl.write_changes(args, shape, 4000, txn_rows=100)
    changes = read_to_end(server, [f"{wl.SCHEMA}.*"], differential)
    assert not differential.differences, "\n".join(differential.differences)
    assert changes == written.rows == differential.rows
    assert written.updates and written.deletes
