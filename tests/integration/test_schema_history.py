"""The durable schema history (issue 23) on MariaDB with ``binlog_row_metadata`` NO_LOG,
MINIMAL and FULL: restarts and takeovers between schema changes, every row event read
after them with the columns and values its table had at that point of the binlog; a
corrupt or missing history stops the pipeline, and ``ferry schema rebuild`` recovers.

One private MariaDB serves the module (``binlog_row_metadata`` is a global it switches);
each run has three pipelines (JSONL debezium-json, JSONL ferry-json, MySQL target) of two
nodes each. The oracle of each row event is the source's own row read right after it was
written, and the columns the table had right after each DDL.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.conftest import unavailable
from tests.ferryproc import (
    FerryNode,
    ferry,
    ferry_status,
    source_position,
    wait_until,
    write_config,
)
from tests.services import MariaDB

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A private MariaDB: this module switches its binlog_row_metadata."""
    base = tmp_path_factory.mktemp("mariadb-history")
    try:
        server = MariaDB(base).start()
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    yield server
    services.stop_quietly([server])


class Source:
    """Writes to the source and remembers, for each row event, the table's columns and the
    row as the source had them right after it (the oracle)."""

    def __init__(self, server: Any, db: str) -> None:
        self.server = server
        self.db = db
        self.events: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = []
        self.columns: list[tuple[str, list[str]]] = []  # after each table DDL: its columns

    def row(self, table: str, key: int) -> dict[str, Any] | None:
        conn = self.server.connect(self.db)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"SELECT * FROM `{table}` WHERE id = %s", (key,))
                found = cursor.fetchone()
                names = [d[0] for d in cursor.description]
        finally:
            conn.close()
        return dict(zip(names, found, strict=True)) if found else None

    def ddl(self, sql: str, table: str | None = None) -> None:
        self.server.execute(sql, database=self.db)
        if table is not None:
            conn = self.server.connect(self.db)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(f"SELECT * FROM `{table}` LIMIT 0")
                    self.columns.append((table, [d[0] for d in cursor.description]))
            finally:
                conn.close()

    def insert(self, table: str, key: int, **values: Any) -> None:
        names = ", ".join(["id", *values])
        marks = ", ".join(["%s"] * (len(values) + 1))
        self.server.execute(
            f"INSERT INTO `{table}` ({names}) VALUES ({marks})",
            (key, *values.values()),
            database=self.db,
        )
        self.events.append((table, "c", None, self.row(table, key)))

    def update(self, table: str, key: int, **values: Any) -> None:
        before = self.row(table, key)
        sets = ", ".join(f"`{k}` = %s" for k in values)
        self.server.execute(
            f"UPDATE `{table}` SET {sets} WHERE id = %s", (*values.values(), key), database=self.db
        )
        self.events.append((table, "u", before, self.row(table, key)))

    def delete(self, table: str, key: int) -> None:
        before = self.row(table, key)
        self.server.execute(f"DELETE FROM `{table}` WHERE id = %s", (key,), database=self.db)
        self.events.append((table, "d", before, None))


def readable(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A source row as ferry-json (and debezium-json with string decimals) writes it."""
    if row is None:
        return None
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def delivered(path: Path) -> tuple[list[Any], list[Any]]:
    """(row events, schema-change events) of a JSONL file, replays removed (a takeover
    delivers the batches in flight again)."""
    rows: list[Any] = []
    ddl: list[Any] = []
    seen: set[str] = set()
    if not path.exists():
        return rows, ddl
    data = path.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].decode().splitlines():
        message = json.loads(line)
        key = json.dumps({k: v for k, v in message.items() if k != "ts_ms"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if message.get("op") in ("c", "u", "d"):
            table = message["source"]["table"]
            rows.append((table, message["op"], message["before"], message["after"]))
        elif message.get("tableChanges") is not None:
            ddl.append(message)
    return rows, ddl


class Pipelines:
    """The three pipelines of a run, each with nodes ``a`` and ``b``."""

    def __init__(
        self, tmp: Path, server: Any, db: str, target: Any, target_db: str, redis: Any, prefix: str
    ) -> None:
        self.tmp = tmp
        self.target = target
        self.target_db = target_db
        start = source_position(server)
        common = {
            "mariadb": server,
            "schema": db,
            "redis_url": redis.url,
            "prefix": prefix,
            "start": start,
        }
        self.outputs = {"debezium": tmp / "debezium.jsonl", "ferry": tmp / "ferry.jsonl"}
        self.configs = {
            "debezium": write_config(
                tmp / "debezium.yaml",
                pipeline_id="hist-dbz",
                sink={
                    "type": "jsonl",
                    "path": str(self.outputs["debezium"]),
                    "format": "debezium-json",
                    "debezium": {"decimal.handling.mode": "string"},
                },
                server_id=4601,
                **common,
            ),
            "ferry": write_config(
                tmp / "ferry.yaml",
                pipeline_id="hist-ferry",
                sink={"type": "jsonl", "path": str(self.outputs["ferry"]), "format": "ferry-json"},
                server_id=4602,
                **common,
            ),
            "mysql": write_config(
                tmp / "mysql.yaml",
                pipeline_id="hist-mysql",
                sink={
                    "type": "mysql",
                    "host": target.host,
                    "port": target.port,
                    "user": target.user,
                    "password": target.password,
                    "schema_map": {db: target_db},
                    "checkpoint_schema": target_db,
                },
                server_id=4603,
                **common,
            ),
        }
        self.nodes = {
            (name, node): FerryNode(config, node)
            for name, config in self.configs.items()
            for node in ("a", "b")
        }

    def start(self, node: str) -> None:
        for name in self.configs:
            self.nodes[(name, node)].start()

    def active(self, node: str) -> None:
        for name, config in self.configs.items():
            wait_until(
                lambda config=config: ferry_status(config)["active_node"] == node,
                30,
                f"{node} active in {name}",
            )

    def stop(self, node: str) -> None:
        for name in self.configs:
            self.nodes[(name, node)].stop()

    def freeze(self, node: str) -> None:
        for name in self.configs:
            self.nodes[(name, node)].signal(signal.SIGSTOP)

    def kill(self, node: str) -> None:
        for name in self.configs:
            process = self.nodes[(name, node)]
            process.signal(signal.SIGKILL)
            process.wait(30)

    def logs(self) -> str:
        return "\n".join(f"--- {k}\n{n.log(3000)}" for k, n in self.nodes.items())

    def close(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()


@pytest.mark.parametrize("metadata", ["NO_LOG", "MINIMAL", "FULL"])
def test_restarts_and_takeovers_between_schema_changes(
    metadata: str,
    tmp_path: Path,
    source: Any,
    mariadb_target: Any,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
) -> None:
    source.execute(f"SET GLOBAL binlog_row_metadata = '{metadata}'")
    db = f"hist_{metadata.lower()}"
    source.execute(f"DROP DATABASE IF EXISTS `{db}`")
    source.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
    src = Source(source, db)
    pipelines = Pipelines(tmp_path, source, db, mariadb_target, target_db, redis_server, key_prefix)
    table = "t1"

    def caught_up() -> None:
        expected = [e for e in src.events]

        def done() -> bool:
            ok = all(len(delivered(p)[0]) >= len(expected) for p in pipelines.outputs.values())
            return ok and target_rows() == source_rows()

        wait_until(done, 60, f"the pipelines to deliver {len(expected)} row events")

    def source_rows() -> Any:
        return source.execute(f"SELECT * FROM `{db}`.`{table}` ORDER BY id")

    def target_rows() -> Any:
        try:
            return mariadb_target.execute(f"SELECT * FROM `{target_db}`.`{table}` ORDER BY id")
        except Exception:
            return None

    try:
        pipelines.start("a")
        pipelines.active("a")
        src.ddl(
            "CREATE TABLE t1 (id INT PRIMARY KEY, a VARCHAR(20), b DECIMAL(10,2),"
            " d VARCHAR(10) DEFAULT 'dflt')",
            "t1",
        )
        src.insert("t1", 1, a="one", b=Decimal("1.50"), d="x")
        src.insert("t1", 2, a="two", b=Decimal("2.25"))
        caught_up()

        # restart: every node down while the table changes
        pipelines.stop("a")
        src.insert("t1", 3, a="three", b=Decimal("3.00"))
        src.ddl("ALTER TABLE t1 ADD COLUMN c INT AFTER id", "t1")
        src.insert("t1", 4, c=40, a="four", b=Decimal("4.40"))
        src.insert("t1", 5, c=50, a="five", b=Decimal("5.50"))  # d left to its default
        src.update("t1", 1, a="uno")
        pipelines.start("a")
        caught_up()

        # takeover: the active node freezes before the change, a standby goes on
        pipelines.start("b")
        pipelines.freeze("a")
        src.insert("t1", 6, c=60, a="six", b=Decimal("6.00"))
        src.ddl("ALTER TABLE t1 DROP COLUMN a", "t1")
        src.insert("t1", 7, c=70, b=Decimal("7.70"))
        pipelines.kill("a")
        pipelines.active("b")
        caught_up()

        # restart
        pipelines.stop("b")
        src.insert("t1", 8, c=80, b=Decimal("8.25"))
        src.ddl("ALTER TABLE t1 MODIFY b DOUBLE", "t1")
        src.insert("t1", 9, c=90, b=9.5)
        src.update("t1", 8, b=8.5)
        pipelines.start("b")
        caught_up()

        # takeover
        pipelines.start("a")
        pipelines.freeze("b")
        src.insert("t1", 10, c=100, b=10.0, d="ten")
        src.ddl("ALTER TABLE t1 CHANGE d e VARCHAR(12) DEFAULT 'dflt'", "t1")
        src.insert("t1", 11, c=110, b=11.0, e="eleven")
        pipelines.kill("b")
        pipelines.active("a")
        caught_up()

        # restart
        pipelines.stop("a")
        src.insert("t1", 12, c=120, b=12.0, e="twelve")
        src.ddl("RENAME TABLE t1 TO t2", "t2")
        table = "t2"
        src.insert("t2", 13, c=130, b=13.0, e="thirteen")
        src.delete("t2", 2)
        pipelines.start("a")
        caught_up()

        # takeover
        pipelines.start("b")
        pipelines.freeze("a")
        src.insert("t2", 14, c=140, b=14.0, e="café")
        src.ddl("ALTER TABLE t2 CONVERT TO CHARACTER SET latin1", "t2")
        src.insert("t2", 15, c=150, b=15.0, e="naïve €")
        src.update("t2", 14, e="déjà vu")
        pipelines.kill("a")
        pipelines.active("b")
        caught_up()

        # restart: a table created and dropped while no node runs
        pipelines.stop("b")
        src.ddl("CREATE TABLE t3 (id INT PRIMARY KEY, x VARCHAR(5), y INT UNSIGNED)", "t3")
        src.insert("t3", 1, x="gone", y=4000000000)
        src.update("t3", 1, x="soon")
        src.ddl("DROP TABLE t3")
        src.insert("t2", 16, c=160, b=16.0)
        pipelines.start("b")
        caught_up()
        for name in pipelines.configs:
            assert pipelines.nodes[(name, "b")].stop() == 0
    except BaseException:
        print(pipelines.logs())
        raise
    finally:
        pipelines.close()
        source.execute("SET GLOBAL binlog_row_metadata = 'FULL'")

    expected = [(t, op, readable(before), readable(after)) for t, op, before, after in src.events]
    ferry_rows, _ = delivered(pipelines.outputs["ferry"])
    assert ferry_rows == expected
    debezium_rows, schema_changes = delivered(pipelines.outputs["debezium"])
    assert debezium_rows == expected
    # every schema change carries the table's columns as of that change, not later ones
    changed = [
        (change["id"].split(".")[-1].strip('"'), [c["name"] for c in change["table"]["columns"]])
        for message in schema_changes
        for change in message["tableChanges"]
        if change["type"] != "DROP"
    ]
    assert changed == src.columns
    assert target_rows() == source_rows()
    tables = {t for (t,) in mariadb_target.execute(f"SHOW TABLES FROM `{target_db}`")}
    assert "t2" in tables and not tables & {"t1", "t3"}


def test_a_corrupt_or_lost_history_stops_the_pipeline_and_rebuild_recovers(
    tmp_path: Path, source: Any, redis_server: Any, key_prefix: str
) -> None:
    source.execute("SET GLOBAL binlog_row_metadata = 'NO_LOG'")
    db = "hist_corrupt"
    source.execute(f"DROP DATABASE IF EXISTS `{db}`")
    source.execute(f"CREATE DATABASE `{db}`")
    src = Source(source, db)
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="hist-corrupt",
        mariadb=source,
        schema=db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(out), "format": "ferry-json"},
        start=source_position(source),
        server_id=4604,
    )
    keys = f"{key_prefix.rstrip(':')}:hist-corrupt"
    client = redis_server.client(decode_responses=True)
    node = FerryNode(config, "a")

    def arrived() -> bool:
        return len(delivered(out)[0]) >= len(src.events)

    def paused_with(text: str) -> str:
        def error() -> str:
            status = ferry_status(config)
            return str(status["error"]) if status["state"] == "paused" else ""

        found = wait_until(error, 30, f"a pause naming {text!r}")
        assert text in found, found
        return found

    def rebuild() -> None:
        done = ferry(config, "schema", "rebuild", "--yes")
        assert done.returncode == 0, done.stderr
        assert "WARNING: `ferry schema rebuild` replaces" in done.stderr
        assert ferry(config, "resume").returncode == 0

    try:
        node.start()
        wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
        src.ddl("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))", "t")
        src.insert("t", 1, a="one")
        src.ddl("ALTER TABLE t ADD COLUMN b INT", "t")
        src.insert("t", 2, a="two", b=2)
        wait_until(arrived, 30, "the first rows")
        shown = ferry(config, "schema", "show", f"{db}.t")
        assert shown.returncode == 0, shown.stderr
        assert "up to record 2 of 2" in shown.stdout and "    b INT" in shown.stdout, shown.stdout
        assert node.stop() == 0

        # a record changed in Redis: the node stops, naming it
        record = client.lindex(f"{keys}:history", 0)
        client.lset(f"{keys}:history", 0, record.replace("VARCHAR(10)", "VARCHAR(99)"))
        src.insert("t", 3, a="three", b=3)
        node.start()
        paused_with("record 1 does not match its checksum")
        shown = ferry(config, "schema", "show")
        assert shown.returncode == 1 and "record 1" in shown.stderr, shown
        rebuild()
        wait_until(arrived, 30, "the rows after the rebuild")

        # Redis loses everything: the state file's guard, then the history's
        node.stop()
        committed = ferry_status(config)["position"]
        client.delete(*client.keys(f"{keys}:*"))
        src.insert("t", 4, a="four", b=4)
        node.start()
        paused_with("the committed position is missing from Redis")
        spec = f"{committed['file']}:{committed['pos']}"
        assert ferry(config, "position", "--set", spec, "--yes").returncode == 0
        assert ferry(config, "resume").returncode == 0
        paused_with("the schema history of pipeline 'hist-corrupt' is missing from Redis")
        rebuild()
        wait_until(arrived, 30, "the rows after the second rebuild")
        assert node.stop() == 0
    except BaseException:
        print(node.log(20_000))
        raise
    finally:
        node.stop()
        client.close()
        source.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
    expected = [(t, op, readable(before), readable(after)) for t, op, before, after in src.events]
    assert delivered(out)[0] == expected


def _no_log_pipeline(
    tmp_path: Path,
    source: Any,
    redis_server: Any,
    key_prefix: str,
    db: str,
    pipeline_id: str,
    server_id: int,
) -> tuple[Source, Path, Path]:
    """A fresh database ``db`` on a source switched to NO_LOG (the caller switches it back)
    and a ferry-json pipeline starting at the binlog's end: (source, output, config)."""
    source.execute("SET GLOBAL binlog_row_metadata = 'NO_LOG'")
    source.execute(f"DROP DATABASE IF EXISTS `{db}`")
    source.execute(f"CREATE DATABASE `{db}`")
    out = tmp_path / "out.jsonl"
    config = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id=pipeline_id,
        mariadb=source,
        schema=db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(out), "format": "ferry-json"},
        start=source_position(source),
        server_id=server_id,
    )
    return Source(source, db), out, config


def test_a_start_ahead_of_the_history_reads_the_ddl_in_between_first(
    tmp_path: Path, source: Any, redis_server: Any, key_prefix: str
) -> None:
    """An operator moves the position forward, past DDL the history has not seen: the node
    reads that DDL from the binlog before it streams (NO_LOG: or the rows would not fit)."""
    db = "hist_ahead"
    src, out, config = _no_log_pipeline(
        tmp_path, source, redis_server, key_prefix, db, "hist-ahead", 4605
    )
    node = FerryNode(config, "a")
    try:
        node.start()
        wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
        src.ddl("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))", "t")
        src.insert("t", 1, a="one")
        wait_until(lambda: len(delivered(out)[0]) == 1, 30, "the first row")
        assert ferry(config, "pause").returncode == 0
        wait_until(lambda: "paused: selecting stopped" in node.log(100_000), 30, "the pause")
        src.insert("t", 2, a="skipped")
        src.ddl("ALTER TABLE t ADD COLUMN b INT FIRST, MODIFY a VARCHAR(10) CHARACTER SET latin1")
        src.insert("t", 3, b=3, a="skipped")
        assert ferry(config, "position", "--set", "latest", "--yes").returncode == 0
        src.events = src.events[:1]  # the rows before the new position are not read
        src.insert("t", 4, b=4, a="quatre é")
        assert ferry(config, "resume").returncode == 0
        wait_until(lambda: len(delivered(out)[0]) >= 2, 30, "the row after the position")
        shown = ferry(config, "schema", "show", f"{db}.t")
        assert "    b INT" in shown.stdout and "up to record 2 of 2" in shown.stdout, shown
        assert node.stop() == 0
    except BaseException:
        print(node.log(20_000))
        raise
    finally:
        node.stop()
        source.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
    expected = [(t, op, readable(before), readable(after)) for t, op, before, after in src.events]
    assert delivered(out)[0] == expected
    assert "reading the DDL from" in node.log(100_000)


def test_a_table_map_that_does_not_fit_the_history_stops_the_pipeline(
    tmp_path: Path, source: Any, redis_server: Any, key_prefix: str
) -> None:
    """What `ferry schema rebuild` warns of: rows written before a later ALTER, read with
    the rebuilt (later) definition. On NO_LOG the table map's types show it: the pipeline
    stops, naming the table, the position and the difference, and delivers nothing wrong."""
    db = "hist_mismatch"
    src, out, config = _no_log_pipeline(
        tmp_path, source, redis_server, key_prefix, db, "hist-mismatch", 4606
    )
    node = FerryNode(config, "a")
    try:
        node.start()
        wait_until(lambda: ferry_status(config)["active_node"] == "a", 30, "a active")
        src.ddl("CREATE TABLE t (id INT PRIMARY KEY, n DECIMAL(10,2))", "t")
        src.insert("t", 1, n=Decimal("1.50"))
        wait_until(lambda: len(delivered(out)[0]) == 1, 30, "the first row")
        assert ferry(config, "pause").returncode == 0
        wait_until(lambda: "paused: selecting stopped" in node.log(100_000), 30, "the pause")
        src.insert("t", 2, n=Decimal("2.50"))
        src.ddl("ALTER TABLE t MODIFY n DOUBLE", "t")
        src.insert("t", 3, n=3.5)
        done = ferry(config, "schema", "rebuild", "--yes")
        assert done.returncode == 0, done.stderr
        assert ferry(config, "resume").returncode == 0

        def error() -> str:
            status = ferry_status(config)
            return str(status["error"]) if status["state"] == "paused" else ""

        found = wait_until(error, 30, "a pause")
        assert node.stop() == 0
    except BaseException:
        print(node.log(20_000))
        raise
    finally:
        node.stop()
        source.execute("SET GLOBAL binlog_row_metadata = 'FULL'")
    assert f"the binlog's table map of {db}.t does not fit the schema history's" in found, found
    assert "column 2 (n) is DOUBLE in the history, DECIMAL(10,2) in the binlog" in found, found
    assert "(position mysql-bin." in found, found
    assert len(delivered(out)[0]) == 1  # nothing read with the wrong definition
