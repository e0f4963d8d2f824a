"""The selector with decoding in a child process: same contract, plus the process's faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ResumableError
from pipeline.model import Message, Position, RowChange
from pipeline.stages import EncodeAhead
from selector import process
from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector
from selector.process import ProcessSelector
from selector.store import MemoryPositionStore
from sinks.formats.base import FormatSpec
from tests.delivery import Event, Workload
from tests.ferryproc import source_position

ROOT = Path(__file__).parents[2]


def source(server: Any, db: str, start: Any = "latest") -> MySQLSourceConfig:
    return MySQLSourceConfig(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        server_id=4401,
        include=[f"{db}.*"],
        start=start,
        heartbeat_ms=200,
    )


def event(change: RowChange) -> Event:
    return (change.table, change.op, change.row["id"], change.row["seq"])


def drain(sel: ProcessSelector, count: int, timeout_s: float = 30, ack: bool = True) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} changes arrived"
        batch = sel.select()
        got += [event(c) for c in batch.changes if isinstance(c, RowChange)]
        if ack:
            sel.ack(batch.batch_id)
    return got


@pytest.fixture
def started(mariadb: Any, source_db: str) -> Any:
    workload = Workload(mariadb, source_db, seed=11)
    store = MemoryPositionStore()
    sel = ProcessSelector(source(mariadb, source_db), 20, 50, store, "proc")
    sel.start()
    yield sel, workload, store
    sel.stop()


def test_delivers_exactly_in_order(started: Any) -> None:
    sel, workload, store = started
    workload.run(200)
    assert drain(sel, len(workload.expected)) == workload.expected
    assert store.load() == sel.committed and sel.committed is not None


def test_rollback_discards_read_ahead_and_redelivers_exactly(started: Any) -> None:
    sel, workload, _ = started
    workload.run(100)
    first = drain(sel, 40)  # acked
    unacked = []
    for _ in range(2):
        batch = sel.select()
        unacked += [event(c) for c in batch.changes if isinstance(c, RowChange)]
    assert unacked, "two un-acked batches"
    sel.rollback()  # the child has read further ahead by now: all of it is dropped
    rest = drain(sel, len(workload.expected) - len(first))
    assert first + rest == workload.expected
    assert rest[: len(unacked)] == unacked


@pytest.mark.parametrize("ack_first", [False, True], ids=["before-any-ack", "after-acks"])
def test_a_killed_decoder_is_resumable_and_nothing_is_lost(started: Any, ack_first: bool) -> None:
    sel, workload, _ = started
    workload.run(60)
    delivered = drain(sel, 30) if ack_first else []
    os.kill(sel.decoder_pid, signal.SIGKILL)
    with pytest.raises(ResumableError, match="decoder process exited"):
        for _ in range(100):  # read-ahead already queued may still come out first
            sel.select()
    sel.rollback()  # a new child at the committed position (or the first child's `latest`)
    workload.run(40)  # written after the kill: `latest` now would skip the first part
    delivered += drain(sel, len(workload.expected) - len(delivered))
    assert delivered == workload.expected


def test_stop_returns_promptly_and_ends_the_child(started: Any) -> None:
    sel, _, _ = started
    pid = sel.decoder_pid
    began = time.monotonic()
    sel.stop()
    assert time.monotonic() - began < 3
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_stop_from_another_thread_makes_a_blocked_select_return_empty(started: Any) -> None:
    """The contract: stop() may come from any thread while select() waits (the node's
    shutdown and pause do exactly that); select must return, not fail on the closed pipe."""
    sel, _, _ = started
    os.kill(sel.decoder_pid, signal.SIGSTOP)  # a decoder that sends nothing: select blocks
    outcome: dict[str, Any] = {}

    def select() -> None:
        try:
            outcome["batch"] = sel.select()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=select)
    thread.start()
    time.sleep(0.5)
    sel.stop()
    thread.join(10)
    assert "error" not in outcome, f"select raised {outcome.get('error')!r}"
    assert outcome["batch"].is_empty


def test_stop_is_prompt_while_the_child_is_blocked_on_a_full_pipe(
    mariadb: Any, source_db: str
) -> None:
    workload = Workload(mariadb, source_db, seed=12)
    sel = ProcessSelector(source(mariadb, source_db), 20, 50, MemoryPositionStore(), "full", 4096)
    sel.start()
    try:
        workload.run(100)  # far more than a 4 KiB pipe holds: the child blocks writing
        time.sleep(1.0)
        pid = sel.decoder_pid
        assert pid is not None and Path(f"/proc/{pid}").exists()
    finally:
        began = time.monotonic()
        sel.stop()
        took = time.monotonic() - began
    assert took < 1.0, f"stop took {took:.2f}s with the decoder blocked on a full pipe"


def test_the_decoder_exits_when_its_parent_is_killed(mariadb: Any, source_db: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from selector.config import MySQLSourceConfig
        from selector.process import ProcessSelector
        from selector.store import MemoryPositionStore
        config = MySQLSourceConfig(host={mariadb.host!r}, port={mariadb.port}, user="root",
                                   server_id=4402, include=["{source_db}.*"])
        sel = ProcessSelector(config, 10, 50, MemoryPositionStore(), "orphan")
        sel.start()
        print(sel.decoder_pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists(), "the decoder outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout:
            parent.stdout.close()


def decoder_alive(pid: int | None) -> bool:
    if pid is None or not Path(f"/proc/{pid}").exists():
        return False
    return "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.parametrize("first", ["stop", "rollback"])
def test_a_respawn_racing_stop_ends_resumable_with_no_child_left(
    started: Any, first: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """ProcessTermin respawns the decoder in rollback() while the node stops the selector.

    A stop used to drop (and so unlink) the command queue of a child still unpickling its
    start arguments — FileNotFoundError in SemLock._rebuild, "exited (code 1) during
    start" — or to leave the new child running after stop() returned."""
    sel, _, _ = started
    old = sel.decoder_pid
    os.kill(old, signal.SIGSTOP)  # a decoder that ignores "stop": stop() waits, then kills
    outcome: dict[str, Any] = {}

    def rollback() -> None:
        try:
            sel.rollback()  # the child does not answer: a new one is spawned
            outcome["rollback"] = "returned"
        except Exception as exc:
            outcome["rollback"] = exc

    threads = {
        "stop": threading.Thread(target=sel.stop),
        "rollback": threading.Thread(target=rollback),
    }
    if first == "rollback":
        os.kill(old, signal.SIGKILL)  # rollback spawns at once ...
        threads["rollback"].start()
        while sel.decoder_pid in (None, old):  # ... and stop comes while the child starts
            time.sleep(0.001)
        threads["stop"].start()
    else:
        threads["stop"].start()
        time.sleep(0.3)  # stop() is waiting for the stopped decoder to exit
        threads["rollback"].start()
    for thread in threads.values():
        thread.join(30)
    spawned = [pid for pid in (sel.decoder_pid,) if pid is not None]
    assert isinstance(outcome["rollback"], ResumableError), outcome
    assert "stopped" in str(outcome["rollback"])
    assert not spawned and not decoder_alive(old), "stop() left a decoder process running"
    assert "FileNotFoundError" not in capfd.readouterr().err


def test_an_ack_while_stop_tears_the_child_down_does_not_raise(started: Any) -> None:
    """The ack saw a live child, then stop() detached and closed its queue before the ack
    forwarded to it: that raised AttributeError/ValueError, classified fatal (a pause)."""
    sel, workload, store = started
    workload.run(20)
    batch = sel.select()
    while batch.is_empty:
        sel.ack(batch.batch_id)
        batch = sel.select()
    child = sel._child
    alive = child.is_alive
    stopper = threading.Thread(target=sel.stop)

    def teardown_between_check_and_use() -> bool:
        was = alive()
        if not stopper.is_alive() and stopper.ident is None:
            stopper.start()  # the teardown runs between the ack's check and its use
            deadline = time.monotonic() + 3
            while sel._commands is not None and time.monotonic() < deadline:
                time.sleep(0.01)
        return was

    child.is_alive = teardown_between_check_and_use
    assert sel.ack(batch.batch_id) == batch.position
    stopper.join(10)
    assert store.load() == batch.position
    assert not decoder_alive(child.pid)


def test_a_decoder_process_that_cannot_be_spawned_is_resumable_with_its_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No process could be created (fork limit, no memory): retrying later may work."""
    config = MySQLSourceConfig(host="127.0.0.1", port=1, user="u", server_id=4401, start="latest")
    sel = ProcessSelector(config, 20, 50, MemoryPositionStore(), "nospawn")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(sel._context, "Process", refuse)
    with pytest.raises(
        ResumableError,
        match=r"cannot start the binlog decoder process: "
        r"BlockingIOError: .*Resource temporarily unavailable",
    ):
        sel.start()
    assert sel.decoder_pid is None


def test_a_decoder_process_whose_setup_fails_is_resumable_with_its_cause() -> None:
    """The child started but could not set itself up (here: a log level it does not know):
    the parent hears why, and the child is gone."""
    config = MySQLSourceConfig(host="127.0.0.1", port=1, user="u", server_id=4401, start="latest")
    sel = ProcessSelector(config, 20, 50, MemoryPositionStore(), "badsetup", log_level="NOPE")
    with pytest.raises(ResumableError, match=r"could not start: ValueError: .*NOPE"):
        sel.start()
    sel.stop()
    assert sel.decoder_pid is None


@pytest.mark.parametrize("name", ["debezium-json", "ferry-json", "canal-json"])
def test_rows_encoded_ahead_give_the_sink_the_same_messages(
    mariadb: Any, source_db: str, name: str
) -> None:
    """The decoder encodes a batch ahead while the node is behind and ships its rows by key
    (selector.transport); either way the sink's messages (Format.each) equal those of the
    fully decoded rows of an in-thread selector over the same binlog (processing time aside)."""
    config = source(mariadb, source_db, source_position(mariadb))
    conn = mariadb.connect(source_db)
    with conn.cursor() as cur:
        for sql in (
            "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(10,3), at DATETIME(3), j JSON,"
            " b VARBINARY(8), e ENUM('x','y'), s SET('a','b'), f FLOAT,"
            " u CHAR(36) CHARACTER SET utf8mb4)",
            "CREATE TABLE nokey (v INT, w TEXT)",
            "INSERT INTO t VALUES (1, 12.5, '2024-05-01 13:45:00.123', '{\"k\": [1]}',"
            " x'00ff', 'y', 'a,b', 3.14, 'ü😀'), (2, NULL, NULL, NULL, NULL, NULL, NULL,"
            " NULL, NULL)",
            "INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (2, NULL)",
            "UPDATE t SET d = -0.001, e = 'x' WHERE id = 1",
            "UPDATE t SET id = 20 WHERE id = 2",
            "UPDATE nokey SET w = 'b' WHERE v = 1",
            "ALTER TABLE t ADD COLUMN z INT DEFAULT 7",
            "INSERT INTO t (id) VALUES (3), (4), (5)",
            "DELETE FROM t WHERE id IN (1, 3)",
            "DELETE FROM nokey",
        ):
            cur.execute(sql)
            conn.commit()
    conn.close()
    spec = FormatSpec(name, "proc")
    sink_format = spec.build()
    encoding = EncodeAhead(spec)
    sel = ProcessSelector(config, 2, 50, MemoryPositionStore(), "proc", encoding=encoding)
    sel.start()
    got: list[Any] = []
    ahead = by_key = 0
    try:
        time.sleep(2)  # the node is "behind": every batch but the first waits in the pipe
        deadline = time.monotonic() + 30
        while len(got) < 19:
            assert time.monotonic() < deadline, f"{len(got)} changes arrived"
            batch = sel.select()
            ahead += batch.encoded is not None
            for change, messages in sink_format.each(batch, 0):
                if isinstance(change, RowChange):
                    by_key += change.row.keys() == set(change.primary_key)
                    got.append(processed(messages))
                else:
                    got.append(change.statement)
            sel.ack(batch.batch_id)
    finally:
        sel.stop()
    reference = MySQLSelector(config, 2, 50, MemoryPositionStore(), "proc")
    reference.start()
    expected: list[Any] = []
    try:
        while len(expected) < len(got):
            batch = reference.select()
            for change in batch.changes:
                if isinstance(change, RowChange):
                    expected.append(processed(spec.build().messages(change, 0)))
                else:
                    expected.append(change.statement)
            reference.ack(batch.batch_id)
    finally:
        reference.stop()
    assert got == expected
    assert ahead >= 5 and by_key >= 10, (ahead, by_key)


def processed(messages: list[Message]) -> list[tuple[bytes | None, Any]]:
    """Messages without their processing time (the envelope's ts_ms/us/ns, canal's ts) and
    canal's batch id."""
    out = []
    for key, value in messages:
        body = None if value is None else json.loads(value)
        if isinstance(body, dict):
            for field in ("ts_ms", "ts_us", "ts_ns", "ts", "id"):
                body.pop(field, None)
        out.append((key, body))
    return out


def test_a_long_schema_history_catch_up_at_start_is_not_taken_for_a_hung_decoder(
    mariadb: Any, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator moved the position far forward (`ferry position --set latest` after a
    long pause): before it answers start, the decoder reads the binlog in between for its
    DDL. That read is long, not hung — the decoder says so while it reads, and the start
    waits for it instead of timing out and reading it again, forever."""
    mariadb.execute(f"CREATE TABLE `{source_db}`.t (id INT PRIMARY KEY, a VARCHAR(20))")
    mariadb.execute(
        f"CREATE PROCEDURE `{source_db}`.fill(n INT) BEGIN DECLARE i INT DEFAULT 0;"
        " WHILE i < n DO INSERT INTO t VALUES (i, 'a row of the backlog'); SET i = i + 1;"
        " END WHILE; END"
    )
    first = ProcessSelector(source(mariadb, source_db), 20, 50, MemoryPositionStore(), "far")
    first.start()  # records the schema history at the binlog's end
    first.stop()
    history = first.store.load_history()
    assert history is not None and history.position is not None
    mariadb.execute(f"CALL `{source_db}`.fill(600000)", database=source_db)  # one row a commit
    mariadb.execute(f"ALTER TABLE `{source_db}`.t ADD COLUMN b INT", database=source_db)
    [(file, pos, *_)] = mariadb.execute("SHOW MASTER STATUS")
    # the operator's new position; the start's timeout made short, the read made long
    store = MemoryPositionStore(Position(str(file), int(pos)), history)
    monkeypatch.setattr(process, "_ANSWER_GRACE_S", 2.5)
    config = source(mariadb, source_db).model_copy(update={"connect_timeout_ms": 500})
    sel = ProcessSelector(config, 20, 50, store, "far")
    try:
        started = time.monotonic()
        sel.start()
        took = time.monotonic() - started
        assert took > 3.0, f"the catch-up took {took:.1f} s: too short to show anything"
        mariadb.execute(f"INSERT INTO `{source_db}`.t VALUES (-1, 'after', 7)")
        batch = sel.select()
        while not batch.changes:
            sel.ack(batch.batch_id)
            batch = sel.select()
        [change] = batch.changes
        assert isinstance(change, RowChange) and change.row == {"id": -1, "a": "after", "b": 7}
    finally:
        sel.stop()
