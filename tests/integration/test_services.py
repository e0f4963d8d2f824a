"""The test fixtures start real, correctly configured services."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kafka import KafkaProducer

from tests.conftest import require_controllable, unavailable
from tests.services import KafkaBroker, ServiceUnavailable


def test_mariadb_binlog_settings(mariadb: Any) -> None:
    v = {k: v for k, v in mariadb.execute("SHOW GLOBAL VARIABLES")}
    assert v["log_bin"] == "ON"
    assert v["binlog_format"] == "ROW"
    assert v["binlog_row_image"] == "FULL"
    assert v["binlog_row_metadata"] == "FULL"


def test_row_write_reaches_binlog(mariadb: Any, source_db: str) -> None:
    marker = f"m-{uuid.uuid4().hex}"
    conn = mariadb.connect(source_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            binlog_file, start_pos = cur.fetchone()[:2]
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(64))")
            cur.execute("INSERT INTO t VALUES (1, %s)", (marker,))
            cur.execute("SELECT note FROM t WHERE id = 1")
            assert cur.fetchone() == (marker,)
            cur.execute(f"SHOW BINLOG EVENTS IN '{binlog_file}' FROM {int(start_pos)}")
            events = cur.fetchall()
    finally:
        conn.close()
    kinds = [e[2] for e in events]
    infos = " ".join(str(e[5]) for e in events)
    # ROW format: the insert is a Table_map + Write_rows pair, not a Query with the SQL text.
    assert "Table_map" in kinds, kinds
    assert any(k.startswith("Write_rows") for k in kinds), kinds
    assert f"({source_db}.t)" in infos  # the Table_map event names the table
    assert "CREATE TABLE t" in infos


def test_source_and_target_are_separate(mariadb: Any, mariadb_target: Any) -> None:
    if not getattr(mariadb, "controllable", False):
        pytest.skip("external MySQL: source and target share one server")
    assert (mariadb.host, mariadb.port) != (mariadb_target.host, mariadb_target.port)
    assert mariadb.pid != mariadb_target.pid


def test_target_db_is_usable(mariadb_target: Any, target_db: str) -> None:
    mariadb_target.execute("CREATE TABLE t (id INT PRIMARY KEY)", database=target_db)
    mariadb_target.execute("INSERT INTO t VALUES (7)", database=target_db)
    assert mariadb_target.execute("SELECT id FROM t", database=target_db) == ((7,),)


def test_redis_set_get(redis_server: Any, key_prefix: str) -> None:
    client = redis_server.client()
    try:
        client.set(key_prefix + "k", "hello")
        assert client.get(key_prefix + "k") == b"hello"
        assert client.get(key_prefix + "missing") is None
    finally:
        client.close()


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, value=value, key=key).get(timeout=15)
    finally:
        producer.close()


def test_kafka_produce_and_read_back(kafka_broker: Any, kafka_topic: str) -> None:
    records = [(b"k%d" % i, b"v%d-" % i + uuid.uuid4().hex.encode()) for i in range(5)]
    _produce(kafka_broker.bootstrap, kafka_topic, records)
    got = kafka_broker.read_all(kafka_topic, timeout_s=15, min_count=len(records))
    assert [(k, v) for k, v, _p, _o in got] == records
    assert [o for _k, _v, _p, o in got] == list(range(len(records)))


def test_kafka_multi_partition_topic(kafka_broker: Any) -> None:
    topic = kafka_broker.create_topic(f"ferrytest_mp_{uuid.uuid4().hex[:8]}", partitions=3)
    assert kafka_broker.partitions(topic) == {0, 1, 2}
    records = [(b"key-%d" % i, b"val-%d" % i) for i in range(12)]
    _produce(kafka_broker.bootstrap, topic, records)
    got = kafka_broker.read_all(topic, timeout_s=15, min_count=len(records))
    assert sorted((k, v) for k, v, _p, _o in got) == sorted(records)
    by_key = {k: p for k, _v, p, _o in got}
    assert set(by_key.values()) <= {0, 1, 2}


def test_private_redis_kill_and_restart(make_redis: Any) -> None:
    r = make_redis()
    require_controllable(r)
    port, pid = r.port, r.pid
    client = r.client()
    try:
        client.set("k", "v")
        r.kill()
        with pytest.raises(Exception):  # noqa: B017 - any connection error will do
            client.get("k")
        r.start()
        assert r.port == port
        assert r.pid != pid
        # no persistence: the restart lost the data
        assert client.get("k") is None
        client.set("k", "v2")
        assert client.get("k") == b"v2"
    finally:
        client.close()


def test_private_kafka_kill_and_restart(make_kafka: Any) -> None:
    k = make_kafka()
    require_controllable(k)
    port, pid = k.port, k.pid
    topic = k.create_topic("restart_me")
    _produce(k.bootstrap, topic, [(b"a", b"1")])
    assert [(key, v) for key, v, _p, _o in k.read_all(topic, min_count=1)] == [(b"a", b"1")]
    k.kill()
    k.start()
    assert (k.port, k.pid != pid) == (port, True)
    # Apache Kafka keeps its log on disk: the record survived the crash
    _produce(k.bootstrap, topic, [(b"b", b"2")])
    got = [(key, v) for key, v, _p, _o in k.read_all(topic, min_count=2)]
    assert got == [(b"a", b"1"), (b"b", b"2")]


def test_tansu_for_the_demo_starts_and_forgets_on_restart(tmp_path: Any) -> None:
    """The demo's broker (Tansu, in memory): the Kafka tests use Apache Kafka instead."""
    try:
        k = KafkaBroker(tmp_path / "tansu").start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    try:
        topic = k.create_topic("restart_me")
        _produce(k.bootstrap, topic, [(b"a", b"1")])
        assert [(key, v) for key, v, _p, _o in k.read_all(topic, min_count=1)] == [(b"a", b"1")]
        k.kill()
        k.start()
        assert "restart_me" not in k.topics()  # in-memory storage: gone after a restart
    finally:
        k.stop()


@pytest.mark.slow
def test_private_mariadb_extra_args_kill_and_restart(make_mariadb: Any) -> None:
    db = make_mariadb(["--binlog-format=STATEMENT"])
    require_controllable(db)
    assert db.variables("binlog_format") == {"binlog_format": "STATEMENT"}
    db.execute("CREATE DATABASE d")
    db.execute("CREATE TABLE d.t (id INT PRIMARY KEY)")
    db.execute("INSERT INTO d.t VALUES (1)")
    port, pid = db.port, db.pid
    db.kill()
    db.start()
    assert (db.port, db.pid != pid) == (port, True)
    # same datadir: committed data survived the crash
    assert db.execute("SELECT id FROM d.t") == ((1,),)
    db.stop()
    assert db.pid is None


def test_postgresql_fresh_database(postgresql: Any, postgresql_db: str) -> None:
    postgresql.execute("CREATE TABLE t (id bigint PRIMARY KEY, note text)", database=postgresql_db)
    postgresql.execute("INSERT INTO t VALUES (7, 'x')", database=postgresql_db)
    assert postgresql.execute("SELECT id, note FROM t", database=postgresql_db) == ((7, "x"),)
    assert postgresql.execute("SHOW fsync") == (("off",),)


def test_postgresql_kill_and_restart_keeps_data(make_postgresql: Any) -> None:
    pg = make_postgresql()
    pg.execute("CREATE TABLE t (id int)")
    pg.execute("INSERT INTO t VALUES (1)")
    pid = pg.pid
    pg.kill()
    pg.start()
    assert pg.pid != pid
    assert pg.execute("SELECT id FROM t") == ((1,),)
    pg.stop()
    pg.start()
    assert pg.execute("SELECT count(*) FROM t") == ((1,),)
