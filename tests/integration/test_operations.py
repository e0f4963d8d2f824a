"""Operating a live pipeline through the CLI, on real `ferry run` processes and real services.

* ``ferry pause`` stops writes within a second while the source keeps
  changing; ``ferry resume`` catches up with nothing lost or repeated;
* ``ferry position --set`` is refused while running, works while paused, and
  the node restarts from there (an earlier position is replayed), even when
  a batch stuck in the sink finishes after the position was set;
* ``ferry status`` (text and ``--json``) before any node runs, while one is
  active, and after a fatal sink error paused the pipeline; ``ferry resume``
  clears the error;
* ``ferry check`` fails with the fix on a server with ``binlog_format=STATEMENT``
  and passes on a well-configured one;
* ``ferry run`` with a wrong Redis password says why once and exits 1.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.delivery import Workload
from tests.ferryproc import (
    FerryNode,
    SteadyWriter,
    complete_events,
    ferry,
    ferry_status,
    mysql_target,
    node_report,
    source_position,
    wait_until,
    write_config,
)


def jsonl_pipeline(
    tmp_path: Path, mariadb: Any, schema: str, redis_server: Any, prefix: str, **settings: Any
) -> Path:
    return write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="ops",
        mariadb=mariadb,
        schema=schema,
        redis_url=redis_server.url,
        prefix=prefix,
        sink={"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
        server_id=4421,
        **settings,
    )


def started(config: Path, node_id: str = "a") -> FerryNode:
    node = FerryNode(config, node_id).start()
    wait_until(lambda: ferry_status(config)["active_node"] == node_id, 30, f"{node_id} active")
    return node


def test_pause_stops_writes_within_a_second_resume_catches_up(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    workload = Workload(mariadb, source_db, seed=11)
    config = jsonl_pipeline(
        tmp_path, mariadb, source_db, redis_server, key_prefix, start=source_position(mariadb)
    )
    out = tmp_path / "out.jsonl"
    node = started(config)
    try:
        with SteadyWriter(workload) as writer:
            wait_until(lambda: len(complete_events(out)) > 300, 30, "replication under load")
            size = out.stat().st_size
            wait_until(lambda: out.stat().st_size > size, 5, "the sink to be growing", 0.01)
            asked_at = time.monotonic()
            done: list[Any] = []
            pause = threading.Thread(
                target=lambda: done.append(ferry(config, "pause", "--reason", "maintenance"))
            )
            pause.start()
            # Watch the sink while the source keeps changing: when did it last grow?
            size, last_growth_s, returned_s, written_at_pause = out.stat().st_size, 0.0, None, 0
            while time.monotonic() - asked_at < 3.0:
                time.sleep(0.01)
                if returned_s is None and done:
                    returned_s = time.monotonic() - asked_at
                    written_at_pause = writer.written
                if out.stat().st_size != size:
                    size, last_growth_s = out.stat().st_size, time.monotonic() - asked_at
            pause.join()
            assert done[0].returncode == 0 and returned_s is not None, done
            print(
                f"\npause: last write {last_growth_s:.3f}s after `ferry pause` was started,"
                f" which returned after {returned_s:.3f}s"
            )
            assert last_growth_s < returned_s + 1.0, "still writing a second after the pause"
            assert writer.written - written_at_pause > 200, "the source kept changing meanwhile"

            status = ferry_status(config)
            assert (status["state"], status["reason"]) == ("paused", "maintenance"), status
            assert status["active_node"] == "a", "a paused node keeps the mainstem"
            text = ferry(config, "status").stdout
            assert "paused (maintenance)" in text and "a (epoch" in text, text

            resumed = ferry(config, "resume")
            assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed
            wait_until(lambda: out.stat().st_size > size, 5, "writes to restart after resume")
            assert ferry_status(config)["state"] == "running"
        total = len(workload.expected)
        wait_until(lambda: len(complete_events(out)) >= total, 60, f"all {total} changes")
        assert node.stop() == 0, node.log()
    finally:
        node.stop()
    # the pause drained and acked every batch in flight: nothing lost, nothing repeated
    assert complete_events(out) == workload.expected


def test_position_set_only_while_paused_then_the_node_restarts_there(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    workload = Workload(mariadb, source_db, seed=12)
    config = jsonl_pipeline(
        tmp_path, mariadb, source_db, redis_server, key_prefix, start=source_position(mariadb)
    )
    out = tmp_path / "out.jsonl"
    node = started(config)
    try:
        workload.run(80)
        mark, first = source_position(mariadb), len(workload.expected)
        workload.run(80)
        expected = list(workload.expected)
        wait_until(lambda: len(complete_events(out)) >= len(expected), 30, "every change")
        spec = f"{mark['file']}:{mark['pos']}"

        refused = ferry(config, "position", "--set", spec, "--yes")
        assert refused.returncode == 1, refused
        assert "is running" in refused.stderr and "ferry pause" in refused.stderr, refused.stderr

        shown = ferry(config, "position")
        assert shown.returncode == 0 and mark["file"] in shown.stdout, shown
        assert "committed by epoch" in shown.stdout, shown.stdout

        assert ferry(config, "pause").returncode == 0
        moved = ferry(config, "position", "--set", spec, "--yes")
        assert moved.returncode == 0, moved.stderr
        assert f"position set to {spec}" in moved.stdout, moved.stdout
        shown = ferry(config, "position")
        assert f"{spec} (committed by operator)" in shown.stdout, shown.stdout
        status = ferry_status(config)
        assert status["position"]["pos"] == mark["pos"] and status["position_epoch"] is None

        assert ferry(config, "resume").returncode == 0
        replayed = expected + expected[first:]
        wait_until(lambda: len(complete_events(out)) >= len(replayed), 30, "the replay")
        # nothing else comes: the node replays from the mark, once
        wait_until(
            lambda: ferry_status(config)["position_epoch"] is not None, 10, "a commit after it"
        )
        assert node.stop() == 0, node.log()
    finally:
        node.stop()
    assert complete_events(out) == replayed, "the node restarted at the operator's position"


def test_status_shows_a_fatal_sink_error_and_resume_clears_it(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    workload = Workload(mariadb, source_db, seed=13)
    sink = mysql_target(mariadb, mariadb_target, source_db, target_db)
    # too short for the notes the workload writes ("n<seq>"): Data too long -> fatal
    mariadb_target.execute(f"ALTER TABLE `{target_db}`.`items` MODIFY note VARCHAR(1)")
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="ops-status",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=sink,
        start=source_position(mariadb),
        server_id=4422,
    )

    def tables(server: Any, db: str) -> list[Any]:
        return [server.execute(f"SELECT * FROM `{db}`.`{t}` ORDER BY id") for t in workload.TABLES]

    # no node has run: status shows what Redis holds (nothing yet)
    before = ferry_status(config)
    assert before["active_node"] is None and before["nodes"] == [] and before["position"] is None
    text = ferry(config, "status").stdout
    assert "active    none" in text and "none seen" in text, text

    node = started(config)
    try:
        wait_until(lambda: node_report(ferry_status(config), "a"), 10, "a's report")
        status = ferry_status(config)
        assert status["state"] == "running" and status["error"] == "", status
        assert isinstance(status["epoch"], int) and status["epoch"] >= 1, status
        assert node_report(status, "a")["role"] == "active", status  # type: ignore[index]
        text = ferry(config, "status").stdout
        assert f"a (epoch {status['epoch']})" in text and "state     running" in text, text

        workload.run(40)
        paused = wait_until(
            lambda: (s := ferry_status(config))["state"] == "paused" and s, 30, "the fatal pause"
        )
        assert "too long" in paused["error"].lower(), paused
        text = ferry(config, "status").stdout
        assert "state     error: paused on" in text, text
        assert "too long" in text.lower(), text
        assert tables(mariadb_target, target_db) != tables(mariadb, source_db)

        mariadb_target.execute(f"ALTER TABLE `{target_db}`.`items` MODIFY note VARCHAR(64)")
        resumed = ferry(config, "resume")
        assert resumed.returncode == 0 and "cleared error" in resumed.stdout, resumed
        wait_until(
            lambda: tables(mariadb_target, target_db) == tables(mariadb, source_db),
            30,
            "the target to catch up after resume",
        )
        status = ferry_status(config)
        assert (status["state"], status["error"]) == ("running", ""), status
        assert "error" not in ferry(config, "status").stdout.split("\n")[1]
        assert node.stop() == 0, node.log()
    finally:
        node.stop()


def check_config(tmp_path: Path, server: Any, redis_server: Any, key_prefix: str) -> Path:
    return write_config(
        tmp_path / "check.yaml",
        pipeline_id="ops-check",
        mariadb=server,
        schema="shop",
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(tmp_path / "check.jsonl")},
    )


def test_check_fails_on_statement_binlog_format_with_the_fix(
    tmp_path: Path, make_mariadb: Any, redis_server: Any, key_prefix: str
) -> None:
    server = make_mariadb(extra_args=["--binlog-format=STATEMENT"])
    done = ferry(check_config(tmp_path, server, redis_server, key_prefix), "check")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    [failed] = [i for i, line in enumerate(lines) if line.startswith("✗ binlog_format")]
    assert "is STATEMENT" in lines[failed], lines[failed]
    assert lines[failed + 1].strip().startswith("fix:") and "ROW" in lines[failed + 1], done.stdout
    assert [line for line in lines if line.startswith("✗")] == [lines[failed]], done.stdout


def test_a_server_on_its_default_row_metadata_is_noted_and_replicated(
    tmp_path: Path, make_mariadb: Any, redis_server: Any, key_prefix: str
) -> None:
    """What README's "Troubleshooting the source" says: MariaDB's default
    binlog_row_metadata (NO_LOG) is a note in `ferry check`, and `ferry run` reads the rows
    with the schema history's definitions (no change of a global setting needed)."""
    server = make_mariadb(extra_args=["--binlog-row-metadata=NO_LOG"])
    server.execute("CREATE DATABASE shop")
    config = check_config(tmp_path, server, redis_server, key_prefix)
    done = ferry(config, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ binlog_row_metadata = NO_LOG\n    note: rows are read with" in done.stdout
    node = FerryNode(config, "a").start().selecting()
    out = tmp_path / "check.jsonl"
    try:
        server.execute(
            "CREATE TABLE t (id INT UNSIGNED PRIMARY KEY, s SET('a','b'))", database="shop"
        )
        server.execute("INSERT INTO t VALUES (4000000000, 'a,b')", database="shop")
        wait_until(lambda: out.exists() and b'"op":"c"' in out.read_bytes(), 30, "the row")
        assert node.stop() == 0, node.log()
    finally:
        node.stop()
    [row] = inserts(out)
    assert row["after"] == {"id": 4000000000, "s": "a,b"}, row


def inserts(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    return [m for m in messages if m.get("op") == "c"]


def test_check_passes_on_a_well_configured_setup(
    tmp_path: Path, mariadb: Any, redis_server: Any, key_prefix: str
) -> None:
    done = ferry(check_config(tmp_path, mariadb, redis_server, key_prefix), "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✗" not in done.stdout, done.stdout
    for what in ("✓ log_bin", "✓ binlog_format = ROW", "✓ redis reachable", "✓ mainstem held by"):
        assert what in done.stdout, done.stdout


def test_a_batch_finishing_after_position_set_does_not_overwrite_it(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    """Pause, set the position, then a batch that was stuck in the sink completes and is acked:
    the operator's position must survive, and resume must restart from it."""
    workload = Workload(mariadb, source_db, seed=14)
    sink = mysql_target(mariadb, mariadb_target, source_db, target_db)
    mark = source_position(mariadb)
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="ops-race",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=sink,
        start=mark,
        server_id=4423,
    )

    def tables(server: Any, db: str) -> list[Any]:
        return [server.execute(f"SELECT * FROM `{db}`.`{t}` ORDER BY id") for t in workload.TABLES]

    def lock_waits() -> int:
        # The sink's fence (SELECT … FOR UPDATE on the checkpoint row) waiting for the blocker;
        # INNODB_LOCK_WAITS does not always list such a wait, the process list does.
        return int(
            mariadb_target.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE ID <> CONNECTION_ID() AND INFO LIKE '%ferry_checkpoint%FOR UPDATE%'"
            )[0][0]
        )

    node = started(config)
    blocker = mariadb_target.connect(target_db)
    try:
        workload.run(20)
        wait_until(
            lambda: tables(mariadb_target, target_db) == tables(mariadb, source_db), 30, "sync"
        )
        with blocker.cursor() as cursor:  # hold the sink's checkpoint row: the next batch waits
            cursor.execute("BEGIN")
            cursor.execute("SELECT * FROM ferry_checkpoint FOR UPDATE")
        workload.run(20)
        wait_until(lambda: lock_waits() > 0, 30, "a batch stuck in the sink")
        assert ferry(config, "pause").returncode == 0
        spec = f"{mark['file']}:{mark['pos']}"
        assert ferry(config, "position", "--set", spec, "--yes").returncode == 0
        epoch_before = ferry_status(config)["epoch"]
        blocker.rollback()  # the stuck batch commits now, and the drain tries to ack it
        wait_until(
            lambda: (s := ferry_status(config))["active_node"] == "a" and s["epoch"] > epoch_before,
            30,
            "a, fenced by the position change, to be active again with a new epoch",
        )
        shown = ferry(config, "position").stdout
        assert f"{spec} (committed by operator)" in shown, shown

        assert ferry(config, "resume").returncode == 0
        wait_until(lambda: "origin=operator" in node.log(100_000), 30, "a restart from the mark")
        wait_until(
            lambda: tables(mariadb_target, target_db) == tables(mariadb, source_db), 30, "replay"
        )
        assert node.stop() == 0, node.log()
    finally:
        blocker.close()
        node.stop()


def test_run_with_a_wrong_redis_password_exits_1_saying_why(
    tmp_path: Path, mariadb: Any, source_db: str, make_redis: Callable[..., Any]
) -> None:
    server = make_redis()
    # Set after start: the harness's readiness check pings without a password.
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "right-pw")
    admin.close()
    url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="badauth",
        mariadb=mariadb,
        schema=source_db,
        redis_url=url,
        prefix="ferrytest",
        sink={"type": "jsonl", "path": str(tmp_path / "out.jsonl")},
    )
    node = FerryNode(config, "a").start()
    try:
        began = time.monotonic()
        assert node.wait(30) == 1
        took_s = time.monotonic() - began
    finally:
        node.stop()
    log = node.log(20000)
    assert took_s < 15, f"gave up after {took_s:.1f}s"
    why = [line for line in log.splitlines() if "invalid username-password pair" in line]
    assert len(why) == 1 and "cannot work with the arbiter" in why[0], log
    assert "wrong-pw" not in log and "right-pw" not in log
