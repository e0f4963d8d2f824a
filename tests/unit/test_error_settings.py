"""A failure that one of ferry's settings is behind names that setting and its value, not
the option of the client library that ferry set from it (issue 20: "errors speak ferry's
words"). Kafka's message size and delivery timeout: tests/unit/test_sink_kafka.py."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
import redis.exceptions

from pipeline.errors import FatalError, ResumableError, timed_out
from pipeline.model import Batch, Position, RowChange
from selector.checks import connect_timeout_hint
from selector.config import MySQLSourceConfig
from sinks.merge import merge
from sinks.mysql import MySQLSink, MySQLSinkConfig
from sinks.sqlapply import TargetTable, build_statements, statement_bytes

POS = Position("mysql-bin.000003", 4)


def pymysql_read_timeout() -> pymysql.err.OperationalError:
    """What pymysql raises when a read times out (connections.py ``_read_bytes``: inside
    the ``except OSError`` handler, so the timeout is its ``__context__``)."""
    exc = pymysql.err.OperationalError(
        2013, "Lost connection to MySQL server during query (timed out)"
    )
    exc.__context__ = TimeoutError("timed out")
    return exc


def pymysql_connect_timeout() -> pymysql.err.OperationalError:
    exc = pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'h' (timed out)")
    exc.original_exception = TimeoutError("timed out")  # type: ignore[attr-defined]
    return exc


def test_timed_out_sees_through_the_drivers_wrapping() -> None:
    assert timed_out(pymysql_read_timeout())
    assert timed_out(pymysql_connect_timeout())
    assert timed_out(redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert not timed_out(pymysql.err.OperationalError(2006, "MySQL server has gone away"))
    assert not timed_out(redis.exceptions.ConnectionError("Connection refused"))


def test_a_source_connect_timeout_names_source_connect_timeout_ms() -> None:
    config = MySQLSourceConfig(user="repl", server_id=9, connect_timeout_ms=2500)
    hint = connect_timeout_hint(config, pymysql_connect_timeout())
    assert hint == " (no answer within source.connect_timeout_ms, 2500 ms)"
    refused = pymysql.err.OperationalError(2003, "Can't connect (Connection refused)")
    assert connect_timeout_hint(config, refused) == ""


# --- the MySQL sink ------------------------------------------------------------------


class Cursor:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def execute(self, sql: str, args: Any = None) -> None:
        if sql.startswith("SELECT epoch"):  # the fence
            return
        self.conn.executed.append(sql)
        if self.conn.fail is not None:
            raise self.conn.fail

    def fetchone(self) -> tuple[int]:
        return (1,)


class Conn(pymysql.connections.Connection):  # type: ignore[type-arg]
    """A pymysql connection that never connects (its escaping is what sizes a statement),
    whose statements fail with ``fail``."""

    def __init__(self, fail: BaseException | None) -> None:
        super().__init__(defer_connect=True, charset="utf8mb4")
        self.server_status = 0  # set by a handshake: backslash escapes on
        self.fail = fail
        self.executed: list[str] = []

    def cursor(self, cursor: Any = None) -> Any:
        return Cursor(self)

    def begin(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


def mysql_sink(fail: BaseException | None, packet: int = 1 << 20, **kw: Any) -> MySQLSink:
    sink = MySQLSink(MySQLSinkConfig(type="mysql", user="ferry", **kw), "pipe")
    sink._conn = Conn(fail)
    sink._packet = packet
    sink._target_table = lambda table: TargetTable()  # type: ignore[method-assign]
    return sink


def doc(i: int, size: int, secret: str = "") -> RowChange:
    after = {"id": i, "body": "x" * size, **({"api_key": secret} if secret else {})}
    return RowChange("shop", "docs", "insert", None, after, ("id",), 1.0, POS)


@pytest.mark.parametrize(
    "error,dropped",
    [
        (
            pymysql.err.OperationalError(
                1153, "Got a packet bigger than 'max_allowed_packet' bytes"
            ),
            False,
        ),
        (
            pymysql.err.OperationalError(2006, "MySQL server has gone away (ConnectionResetError)"),
            True,
        ),
    ],
)
def test_a_row_over_the_targets_max_allowed_packet_is_fatal_and_says_so(
    error: BaseException, dropped: bool
) -> None:
    """The server answers 1153, or (a row a few times its limit) drops the connection: 2006
    would be retried until pipeline.max_retries, then pause with "server has gone away"."""
    sink = mysql_sink(error, packet=1 << 20)
    change = doc(7, 3_000_000, secret="k-2b7e151628aed2a6")
    with pytest.raises(FatalError) as info:
        sink.load(Batch(3, [change], POS), epoch=1)
    text = str(info.value)
    assert "larger than the target's max_allowed_packet (1048576 bytes)" in text, text
    assert "raise max_allowed_packet on the target to at least 3000" in text, text
    assert ("dropped the connection" in text) is dropped
    assert "shop.docs (target shop.docs)" in text and "key (id=7)" in text, text
    assert "k-2b7e151628aed2a6" not in text and "x" * 100 not in text
    assert "MySQL server has gone away" not in text
    assert info.value.batch_id == 3


def test_the_statement_size_is_what_the_driver_sends() -> None:
    conn = Conn(None)
    [stmt] = build_statements(merge([doc(1, 1000)]), lambda s, t: (s, t))
    rendered = pymysql.cursors.Cursor(conn).mogrify(stmt.sql, stmt.args)
    assert statement_bytes(conn, stmt) == len(rendered.encode()) + 1
    assert 1000 < statement_bytes(conn, stmt) < 1200


def test_a_lost_connection_of_a_small_statement_stays_resumable() -> None:
    sink = mysql_sink(pymysql.err.OperationalError(2013, "Lost connection"), packet=1 << 20)
    with pytest.raises(ResumableError) as info:
        sink.load(Batch(3, [doc(7, 100)], POS), epoch=1)
    assert "max_allowed_packet" not in str(info.value)


def test_a_target_read_timeout_names_sink_timeout_s() -> None:
    sink = mysql_sink(pymysql_read_timeout(), timeout_s=45)
    with pytest.raises(ResumableError) as info:
        sink.load(Batch(3, [doc(7, 100)], POS), epoch=1)
    assert "no answer within sink.timeout_s, 45 s" in str(info.value), str(info.value)


# --- the Redis arbiter -----------------------------------------------------------------


def test_a_redis_timeout_names_arbiter_socket_timeout_ms() -> None:
    from arbitrate.config import ArbiterConfig
    from arbitrate.redis import RedisArbiter

    config = ArbiterConfig(url="redis://127.0.0.1:1/0", socket_timeout_ms=750)
    arbiter = RedisArbiter(config, "pipe", "node")  # clients connect lazily: nothing yet
    try:
        error = arbiter._error(redis.exceptions.TimeoutError("Timeout reading from socket"))
        assert isinstance(error, ResumableError)
        assert "within arbiter.socket_timeout_ms (750 ms)" in str(error), str(error)
        refused = arbiter._error(redis.exceptions.ConnectionError("Connection refused"))
        assert "socket_timeout_ms" not in str(refused)
    finally:
        arbiter.close()
