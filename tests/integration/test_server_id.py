"""One binlog client per server id: clashes are refused or paused for, named, and cost
another replica at most one reconnect (``selector.identity``).

Real `ferry run` processes, a real MariaDB source and Redis; for the replica cases a
second MariaDB replicating from a private source (``CHANGE MASTER TO …
MASTER_USE_GTID=slave_pos``) that owns the server id ferry is given.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.ferryproc import (
    FerryNode,
    ferry,
    ferry_status,
    source_position,
    wait_until,
    write_config,
)

SERVER_ID = 5151
# every dump ferry opens after the first: a reconnect, or a kick answered
_RECONNECTS = re.compile(r"binlog reconnected at|binlog dump dropped")


def reconnects(*nodes: FerryNode) -> int:
    return sum(len(_RECONNECTS.findall(node.log(1 << 24))) for node in nodes)


def rows_in(path: Path) -> int:
    """Complete lines of a JSONL sink file (one per inserted row here)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kicks_of(replica: Any) -> int:
    """How often the replica's IO thread lost its connection to another client's id."""
    text = Path(replica.error_log).read_text(errors="replace")
    return len(re.findall(r"same server_uuid/server_id", text))


def state(config: Path) -> dict[str, Any]:
    return ferry_status(config)


def insert(server: Any, db: str, first: int, count: int) -> None:
    with server.connect(db) as conn, conn.cursor() as cur:
        for i in range(first, first + count):
            cur.execute("INSERT INTO t VALUES (%s)", (i,))


def jsonl_pipeline(
    tmp_path: Path, name: str, server: Any, db: str, redis_url: str, prefix: str, **source: Any
) -> Path:
    return write_config(
        tmp_path / f"{name}.yaml",
        pipeline_id=name,
        mariadb=server,
        schema=db,
        redis_url=redis_url,
        prefix=prefix,
        sink={"type": "jsonl", "path": str(tmp_path / f"{name}.jsonl")},
        start=source_position(server),
        server_id=SERVER_ID,
        source=source or None,
    )


def paused_on(config: Path) -> Callable[[], str]:
    def error() -> str:
        status = state(config)
        return str(status["error"]) if status["state"] == "paused" else ""

    return error


def test_a_second_pipeline_with_the_same_server_id_is_refused_naming_the_first(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    mariadb.execute(f"CREATE TABLE `{source_db}`.t (id INT PRIMARY KEY)")
    one_config = jsonl_pipeline(tmp_path, "one", mariadb, source_db, redis_server.url, key_prefix)
    two_config = jsonl_pipeline(tmp_path, "two", mariadb, source_db, redis_server.url, key_prefix)
    one, two = FerryNode(one_config, "a"), FerryNode(two_config, "b")
    try:
        one.start().selecting()
        insert(mariadb, source_db, 0, 50)
        wait_until(lambda: rows_in(tmp_path / "one.jsonl") == 50, 30, "one's rows")
        two.start()
        error = wait_until(paused_on(two_config), 30, "the second pipeline to pause")
        assert f"server id {SERVER_ID} (source.server_id) is in use by ferry pipeline 'one'" in (
            error
        ), error
        insert(mariadb, source_db, 50, 50)
        wait_until(lambda: rows_in(tmp_path / "one.jsonl") == 100, 30, "the rest")
        assert state(one_config)["state"] == "running"
        assert reconnects(one, two) == 0, one.log() + two.log()
        done = ferry(two_config, "status")
        assert f"server id {SERVER_ID}" in done.stdout and "in use by" in done.stdout, done.stdout
    finally:
        for node in (one, two):
            node.stop()


def test_two_pipelines_that_cannot_list_replicas_pause_one_within_30s(
    tmp_path: Path, mariadb: Any, source_db: str, redis_server: Any, key_prefix: str
) -> None:
    """Without REPLICATION MASTER ADMIN the clash shows only as kicks: each is answered by
    a reconnect a few seconds later, and the third within a minute pauses."""
    user = f"nolist_{source_db[-8:]}"
    mariadb.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
    mariadb.execute(f"GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO '{user}'@'%'")
    mariadb.execute(f"CREATE TABLE `{source_db}`.t (id INT PRIMARY KEY)")
    configs = [
        jsonl_pipeline(
            tmp_path,
            name,
            mariadb,
            source_db,
            redis_server.url,
            key_prefix,
            user=user,
            password="pw",
        )
        for name in ("left", "right")
    ]
    nodes = [FerryNode(configs[0], "l"), FerryNode(configs[1], "r")]
    try:
        nodes[0].start().selecting()
        began = time.monotonic()
        nodes[1].start()

        def one_paused() -> list[str]:
            return [error for config in configs if (error := paused_on(config)())]

        [error] = wait_until(one_paused, 30, "one of the two pipelines to pause")
        print(f"paused after {time.monotonic() - began:.1f}s: {error}")
        assert f"server id {SERVER_ID}" in error and "times within a minute" in error
        insert(mariadb, source_db, 0, 30)
        survivor = next(i for i, config in enumerate(configs) if not paused_on(config)())
        out = tmp_path / ("left.jsonl" if survivor == 0 else "right.jsonl")
        wait_until(lambda: rows_in(out) == 30, 30, "the other pipeline's rows")
        assert reconnects(*nodes) < 20, reconnects(*nodes)
        assert "cannot list the source's replicas" in nodes[0].log(1 << 24)
    finally:
        for node in nodes:
            node.stop()
        mariadb.execute(f"DROP USER '{user}'@'%'")


def start_replica(make_mariadb: Callable[..., Any], primary: Any) -> Any:
    replica = make_mariadb([f"--server-id={SERVER_ID}"])
    replica.execute(
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port},"
        " MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos,"
        " MASTER_CONNECT_RETRY=1"
    )
    replica.execute("START SLAVE")
    wait_until(lambda: primary.execute("SHOW SLAVE HOSTS"), 30, "the replica to register")
    return replica


def replica_rows(replica: Any) -> int:
    try:
        return int(replica.execute("SELECT COUNT(*) FROM shop.t")[0][0])
    except Exception:  # not replicated yet
        return -1


def test_ferry_refuses_the_server_id_of_a_listed_replica_before_connecting(
    tmp_path: Path, make_mariadb: Callable[..., Any], redis_server: Any, key_prefix: str
) -> None:
    primary = make_mariadb()
    primary.execute("CREATE DATABASE shop")
    primary.execute("CREATE TABLE shop.t (id INT PRIMARY KEY)")
    replica = start_replica(make_mariadb, primary)
    config = jsonl_pipeline(tmp_path, "taken", primary, "shop", redis_server.url, key_prefix)
    node = FerryNode(config, "a")
    try:
        node.start()
        error = wait_until(paused_on(config), 30, "ferry to pause")
        assert f"server id {SERVER_ID}" in error, error
        assert f"the replica at 127.0.0.1:{replica.port}" in error, error
        check = ferry(config, "check")
        assert check.returncode == 1 and f"in use by the replica at 127.0.0.1:{replica.port}" in (
            check.stdout
        ), check.stdout
        insert(primary, "shop", 0, 100)
        wait_until(lambda: replica_rows(replica) == 100, 30, "the replica to have every row")
        assert kicks_of(replica) == 0, "ferry never connected: the replica was never kicked"
    finally:
        node.stop()


def test_a_replica_that_connects_after_ferry_pauses_it_at_the_first_kick(
    tmp_path: Path, make_mariadb: Callable[..., Any], redis_server: Any, key_prefix: str
) -> None:
    primary = make_mariadb()
    primary.execute("CREATE DATABASE shop")
    primary.execute("CREATE TABLE shop.t (id INT PRIMARY KEY)")
    config = jsonl_pipeline(tmp_path, "first", primary, "shop", redis_server.url, key_prefix)
    node = FerryNode(config, "a")
    try:
        node.start().selecting()
        insert(primary, "shop", 0, 20)
        wait_until(lambda: rows_in(tmp_path / "first.jsonl") == 20, 30, "ferry rows")
        replica = start_replica(make_mariadb, primary)
        error = wait_until(paused_on(config), 30, "ferry to pause at the kick")
        assert f"the replica at 127.0.0.1:{replica.port}" in error, error
        insert(primary, "shop", 20, 80)
        wait_until(lambda: replica_rows(replica) == 100, 30, "the replica to have every row")
        assert kicks_of(replica) <= 1, Path(replica.error_log).read_text()
        assert reconnects(node) == 0, node.log()
        report = ferry_status(config)["nodes"]
        assert any(n.get("server_id_clashes_total") == 1 for n in report), report
    finally:
        node.stop()
