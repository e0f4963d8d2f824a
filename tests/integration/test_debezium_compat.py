"""ferry's debezium-json against real Debezium 3.6.3 over the same binlog, event by event.

One private MariaDB (with the version string Debezium accepts) gets a type table of
every column type with INSERT, UPDATE, an UPDATE of the key and DELETE, a table with a
composite key, DDL (ADD COLUMN, ALTER COLUMN … SET/DROP DEFAULT, CONVERT TO CHARACTER
SET, a table charset option, MODIFY, CHANGE, CREATE TABLE … LIKE, RENAME, CREATE INDEX,
DROP), latin1 tables holding every byte (also in a key), and the whole real-world
corpus (``../shared/realworld-sql``: its type tables and everything else). Debezium and
ferry's selector + ``debezium-json`` then read that binlog from its start, twice: with
Debezium's default options, and with ``decimal.handling.mode=string``,
``time.precision.mode=connect`` and the JSON schema envelope (what schema-aware
consumers such as the JDBC sink read). Key and value of every event are compared
(``tests/debezium_compat.py``); nothing may differ but what ``IGNORED`` lists there and
the float text below, each with its reason:

* ``ts_ms``/``ts_us``/``ts_ns`` of the envelope: processing time, when each tool wrote
  the event;
* ``source.version``: Debezium's version string against ferry's;
* ``source.gtid``: the MySQL connector reads no MariaDB GTIDs (always ``null``); ferry
  names the transaction's GTID;
* the text of a single-precision value (a FLOAT or REAL column's, or the default of a
  schema field typed ``float``): Java 17's ``Float.toString`` does not always write the
  shortest decimal (``1.79613773E9`` where ferry writes ``1.7961377E9``, as Java 19+
  does). Such two are equal when they are the same float32 and ferry's is the shortest;
  only where Debezium's own schema changes say the column is single-precision, so a
  DOUBLE (or ``FLOAT(M,D)``, a double in Debezium) narrowed to float precision differs.

``pos`` and ``row`` are compared: ferry numbers events as Debezium does (the rows
event's start, the row's index in it). Left out of the comparison, with reasons:

* the corpus database ``dbz_uuid_column_test``: Debezium's DDL parser cannot read
  MariaDB's ``UUID`` type and drops every event of that table; ferry replicates it
  (its schema changes still come out of Debezium, past its database filter: below);
* with ``time.precision.mode=connect``, the 12 corpus events holding a TIME outside
  0-24 h in a NOT NULL column: Connect's Time cannot hold them; both leave them out
  (``event.processing.failure.handling.mode=warn``, the same option in both).

Each run starts one JVM (about 20 s over these ~21,000 events); the two runs are the
whole cost of this file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.model import Batch, DdlChange
from tests import realworld
from tests.conftest import unavailable
from tests.debezium import MARIADB_ARGS, Debezium
from tests.debezium_compat import RedisNodes, compare, ferry_records

pytestmark = [pytest.mark.debezium, pytest.mark.slow]

DB = "compat_types"
WORKLOAD = [
    f"CREATE DATABASE {DB} CHARACTER SET utf8mb4",
    f"""CREATE TABLE {DB}.t (
        id INT NOT NULL PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT,
        mi MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
        b BOOLEAN, dc DECIMAL(20,6), f FLOAT, f2 FLOAT(10,2), db DOUBLE, d DATE,
        dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(3), y YEAR,
        c CHAR(3), v VARCHAR(20), tx TEXT, bn BINARY(3), vb VARBINARY(8), bl BLOB,
        e ENUM('a','b,c'), s SET('a','b','c'), b1 BIT(1), b10 BIT(10), j JSON,
        g GEOMETRY, p POINT, df INT DEFAULT 7, nd DATE NOT NULL DEFAULT '2000-01-01'
    )""",
    f"""INSERT INTO {DB}.t VALUES (1, -128, 255, -32768, 16777215, -2147483648, 4294967295,
        -9223372036854775808, 18446744073709551615, TRUE, 12345678901234.567891, 3.14, 5.61,
        1.7976931348623157e308, '2024-05-01', '2024-05-01 13:45:00',
        '2024-05-01 13:45:00.123456', '2024-05-01 11:45:00.123', '-838:59:59.000', 2024,
        'ab', 'héllo 😀', 'some text', x'0a', x'00ff', x'0001', 'b,c', 'a,c', b'1',
        b'1000000001', '{{"a": [1, 2.5, "x"]}}', ST_GeomFromText('POINT(1 1)', 4326),
        ST_GeomFromText('POINT(37.123 125.987)'), NULL, '0000-00-00')""",
    f"INSERT INTO {DB}.t (id, nd) VALUES (2, '2024-02-29')",
    f"UPDATE {DB}.t SET v = 'uno', dc = -0.000001, s = '' WHERE id = 1",
    f"UPDATE {DB}.t SET id = 20 WHERE id = 2",  # a key change
    f"DELETE FROM {DB}.t WHERE id = 1",
    f"""CREATE TABLE {DB}.ck (tenant INT NOT NULL, id BIGINT NOT NULL, note VARCHAR(10),
        PRIMARY KEY (tenant, id))""",
    f"INSERT INTO {DB}.ck VALUES (1, 1, 'a'), (1, 2, 'b'), (2, 1, 'c')",
    f"UPDATE {DB}.ck SET id = 3 WHERE tenant = 1 AND id = 2",
    f"DELETE FROM {DB}.ck WHERE tenant = 2",
    f"ALTER TABLE {DB}.t ADD COLUMN extra VARCHAR(5) DEFAULT 'x' AFTER id",
    f"INSERT INTO {DB}.t (id, nd, extra) VALUES (3, '2024-01-01', NULL)",
    # ALTER forms that change defaults and charsets: the NULLs are written as the default
    # the table has then (replace.null.with.default), the text in the converted charset
    f"""CREATE TABLE {DB}.dflt (id INT PRIMARY KEY, a INT DEFAULT 1, b INT DEFAULT 2,
        n INT DEFAULT 3, c VARCHAR(5) DEFAULT 'q', e ENUM('x','y') DEFAULT 'x')""",
    f"""ALTER TABLE {DB}.dflt ALTER COLUMN a SET DEFAULT 9, ALTER b DROP DEFAULT,
        ALTER n SET DEFAULT NULL, ALTER COLUMN c SET DEFAULT 'hello'""",
    f"INSERT INTO {DB}.dflt (id, a, b, n, c) VALUES (1, NULL, NULL, NULL, NULL)",
    f"ALTER TABLE {DB}.dflt CONVERT TO CHARACTER SET latin1 COLLATE latin1_bin",
    f"INSERT INTO {DB}.dflt (id, c, e) VALUES (2, 'café', 'y')",
    f"ALTER TABLE {DB}.dflt DEFAULT CHARSET=utf8mb4",
    f"ALTER TABLE {DB}.dflt ADD COLUMN d VARCHAR(3)",
    f"INSERT INTO {DB}.dflt (id, d) VALUES (3, 'abc')",  # ASCII: Debezium says latin1 here
    # MODIFY makes a new column (no default unless written), CHANGE too for the default
    f"ALTER TABLE {DB}.dflt MODIFY a BIGINT, CHANGE n n INT",
    f"INSERT INTO {DB}.dflt (id, a, n) VALUES (4, NULL, NULL)",
    f"CREATE TABLE {DB}.copy LIKE {DB}.ck",
    f"INSERT INTO {DB}.copy VALUES (9, 9, 'copied')",
    f"CREATE UNIQUE INDEX u ON {DB}.copy (note)",
    f"RENAME TABLE {DB}.copy TO {DB}.copy2",
    f"UPDATE {DB}.copy2 SET note = 'renamed'",
    f"DROP TABLE {DB}.ck, {DB}.copy2",
    # issue 23's workload: a restart right after the first ALTER (RESTARTS) must not read
    # the earlier rows, or the later schema changes, with the table's final definition
    f"""CREATE TABLE {DB}.hist (id INT PRIMARY KEY, a VARCHAR(10), amount DECIMAL(10,2),
        note VARCHAR(10) DEFAULT 'dflt')""",
    f"INSERT INTO {DB}.hist (id, a, amount) VALUES (1, 'x', 1.25)",
    f"ALTER TABLE {DB}.hist ADD COLUMN c VARCHAR(10) DEFAULT 'dflt' AFTER id",
    f"INSERT INTO {DB}.hist (id, a, amount, note) VALUES (2, 'y', 2.5, NULL)",
    f"ALTER TABLE {DB}.hist DROP COLUMN a",
    f"INSERT INTO {DB}.hist (id, amount) VALUES (3, 3.75)",
    f"ALTER TABLE {DB}.hist MODIFY amount DOUBLE",
    f"INSERT INTO {DB}.hist (id, c, amount) VALUES (4, NULL, 4.5)",
    f"CREATE TABLE {DB}.later (id INT PRIMARY KEY, v VARCHAR(5) DEFAULT 'v')",
    f"INSERT INTO {DB}.later (id) VALUES (1)",
    f"UPDATE {DB}.hist SET amount = 9 WHERE id = 1",
    # latin1 as legacy applications fill it: every byte, and 0x81/0x8D/0x8F/0x90/0x9D
    # (MariaDB: the C1 controls; Debezium streams them as U+FFFD), also in a key
    f"""CREATE TABLE {DB}.legacy (id INT PRIMARY KEY, c CHAR(8), v VARCHAR(300), t TEXT,
        e ENUM('a\x81', 'b'), s SET('\x90', 'z'), u VARCHAR(10) CHARACTER SET utf8mb4)
        DEFAULT CHARSET latin1""",
    f"""INSERT INTO {DB}.legacy VALUES (1, _binary X'41818D8F909D42',
        _binary X'{bytes(range(256)).hex()}', _binary X'C381', 1, 3, 'x\x81')""",
    f"UPDATE {DB}.legacy SET c = _binary X'9D', e = 2 WHERE id = 1",
    f"CREATE TABLE {DB}.lkey (k VARCHAR(5) PRIMARY KEY, n INT) DEFAULT CHARSET latin1",
    f"INSERT INTO {DB}.lkey VALUES (_binary X'8141', 1), ('plain', 2)",
    f"UPDATE {DB}.lkey SET n = 3 WHERE n = 1",
    f"DELETE FROM {DB}.lkey WHERE n = 3",
]
# Debezium: go on past the corpus's one statement its parser cannot read (MariaDB UUID)
CONTINUE = {
    "schema.history.internal.skip.unparseable.ddl": "true",
    "inconsistent.schema.handling.mode": "warn",
}
RUNS = {
    "default": (False, {}),
    "string-connect-schemas": (
        True,
        {
            "decimal.handling.mode": "string",
            "time.precision.mode": "connect",
            "event.processing.failure.handling.mode": "warn",
        },
    ),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A private server with the workload and the corpus in its binlog (module-scoped: the
    two runs read the same binlog)."""
    corpus = realworld.corpus_dir()
    if corpus is None:
        unavailable("the real-world SQL corpus (../shared/realworld-sql) is not here")
    assert corpus is not None
    from tests.services import MariaDB, ServiceUnavailable, stop_quietly

    try:
        server = MariaDB(tmp_path_factory.mktemp("compat-mariadb"), MARIADB_ARGS).start()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION sql_mode = ''")  # the zero date in a NOT NULL column
            for sql in WORKLOAD:
                cur.execute(sql)
    finally:
        conn.close()
    for script in realworld.scripts(corpus):
        realworld.load(server, script)
    databases = [DB] + [d for d in realworld.databases(corpus) if d != "dbz_uuid_column_test"]
    yield server, databases
    stop_quietly([server])


def _first_alter_of_hist(batch: Batch, _: int) -> bool:
    return any(
        isinstance(c, DdlChange) and c.verb == "ALTER" and ("compat_types", "hist") in c.tables
        for c in batch.changes
    )


def _halfway(batch: Batch, records: int) -> bool:
    return records >= 10_000  # about half of the corpus


#: ferry stopped and a new node started from what Redis holds (position, schema history):
#: right after the first ALTER of issue 23's workload, and halfway through the corpus;
#: with "takeover", a standby takes over from a node that died with a batch in flight
RESTARTS = {"default": "restarts", "string-connect-schemas": "takeover"}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_debezium_json_equals_debezium(
    source: Any,
    run: str,
    make_debezium: Callable[..., Debezium],
    tmp_path: Path,
    redis_server: Any,
    key_prefix: str,
) -> None:
    server, databases = source
    schemas, options = RUNS[run]
    ferry = ferry_records(server, databases, options, schemas=schemas)
    debezium = make_debezium(
        server, databases=databases, schemas=schemas, properties={**CONTINUE, **options}
    ).run(expect=len(ferry), idle_s=20, timeout_s=600)
    # Debezium's filter lets through the DDL of an excluded database when the session's
    # database is included (the corpus scripts run CREATE DATABASE x before USE x): the
    # UUID database's CREATE DATABASE and its unreadable CREATE TABLE come out anyway
    theirs = [r for r in debezium.records if _database(r) != "dbz_uuid_column_test"]
    report = compare(theirs, ferry)
    print(f"\n{run}: {report.summary(20)}")
    assert report.compared > 20_000
    assert report.clean, report.summary(40)

    variant = RESTARTS[run]
    nodes = RedisNodes(redis_server.url, key_prefix, f"compat-{variant}", variant == "takeover")
    try:
        restarted = ferry_records(
            server,
            databases,
            options,
            schemas=schemas,
            nodes=nodes,
            stops=[_first_alter_of_hist, _halfway],
            in_flight=variant == "takeover",
        )
    finally:
        nodes.close()
    assert len(nodes.arbiters) >= 3  # two stops: three nodes
    report = compare(theirs, restarted)
    print(f"{run}, {variant}: {report.summary(20)}")
    assert report.compared > 20_000
    assert report.clean, report.summary(40)


def _database(record: Any) -> Any:
    payload = record.payload
    if not isinstance(payload, dict):
        return None
    return payload.get("databaseName", (payload.get("source") or {}).get("db"))
