"""The classifier maps real driver exceptions to resumable or fatal."""

from __future__ import annotations

import kafka.errors as kafka_errors
import pymysql.err
import pytest
import redis.exceptions

import arbitrate.redis  # noqa: F401  (registers redis-py's classifier)
import selector  # noqa: F401  (registers PyMySQL's)
import sinks.kafka  # noqa: F401  (registers kafka-python's and confluent-kafka's)
from pipeline.errors import FatalError, FencedError, FerryError, ResumableError, classify


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(2006, "MySQL server has gone away"),
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
        pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
        pymysql.err.InterfaceError(0, ""),
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.BusyLoadingError("loading"),
        kafka_errors.KafkaTimeoutError("Failed to update metadata"),
        kafka_errors.KafkaConnectionError("broker down"),
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.RequestTimedOutError(),
        ConnectionResetError(104, "reset"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: f"{type(e).__name__}{getattr(e, 'args', ('',))[:1]}",
)
def test_resumable(exc: BaseException) -> None:
    error = classify(exc)
    assert isinstance(error, ResumableError)
    assert error.__cause__ is exc


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(1045, "Access denied for user"),
        pymysql.err.OperationalError(1054, "Unknown column 'x' in 'field list'"),
        pymysql.err.ProgrammingError(1146, "Table 'shop.nope' doesn't exist"),
        pymysql.err.DataError(1406, "Data too long for column 'name' at row 1"),
        pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"),
        pymysql.err.OperationalError(1236, "Could not find first log file name in binary log"),
        redis.exceptions.AuthenticationError("invalid password"),
        redis.exceptions.ResponseError("WRONGTYPE"),
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.TopicAuthorizationFailedError(),
        ValueError("a bug in a user transform"),
    ],
    ids=lambda e: f"{type(e).__name__}{getattr(e, 'args', ('',))[:1]}",
)
def test_fatal(exc: BaseException) -> None:
    assert isinstance(classify(exc), FatalError)


def test_ferry_errors_pass_through_and_carry_context() -> None:
    original = FencedError("epoch 3 is older than 4")
    assert classify(original) is original
    error = ResumableError("lost", pipeline="p").context(batch_id=7, position="f:4", pipeline="q")
    assert (error.pipeline, error.batch_id, error.position) == ("p", 7, "f:4")
    assert str(error) == "lost (pipeline p, batch 7, position f:4)"
    assert isinstance(error, FerryError)


def test_a_decoder_process_error_keeps_its_message_and_position_across_the_pipe() -> None:
    import pickle

    from pipeline.model import Position
    from selector.process import _picklable

    error = FatalError("cannot decode column 'note' of db.t", position=Position("mysql-bin.7", 9))
    error.__cause__ = UnicodeDecodeError("cp1252", b"\x81", 0, 1, "undefined")
    shipped = pickle.loads(pickle.dumps(_picklable(error)))
    assert type(shipped) is FatalError
    assert shipped.position == Position("mysql-bin.7", 9)
    assert str(shipped) == "cannot decode column 'note' of db.t (position mysql-bin.7:9)"


def test_masking_is_one_rule_for_the_selector_and_the_sinks() -> None:
    from pipeline.errors import masked_key
    from sinks import redact

    assert redact.masked_key is masked_key
    assert masked_key(["id", "api_key"], [7, "s3cret"]) == "(id=7, api_key=***)"
