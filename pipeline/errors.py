"""The error tree: every failure in ferry is resumable or fatal, decided by type alone.

``FerryError``
  ``ResumableError``  the same work may succeed if retried after a rollback
                      (connection lost, deadlock, lock-wait timeout, broker or
                      Redis unavailable). The node rolls back and retries with
                      backoff; beyond ``pipeline.max_retries`` it pauses.
  ``FatalError``      retrying cannot help (auth, unknown column, data too
                      long, bad config, purged binlog). The node pauses the
                      pipeline with the error stored in its status.

``FencedError`` (fatal) and ``NotActiveError`` (resumable) are neither retried nor
paused for: they mean another node is, or may be, active, and the node steps down
to standby (see ``pipeline.task``).

Driver exceptions are mapped with :func:`classify`. This module imports nothing
from the project; driver modules are imported lazily so that a missing
optional driver never breaks the import.

What an error may show of a row is decided here too, once for the selector and every
sink: values of columns whose name looks secret are masked, others shortened
(:func:`mask`, :func:`masked_key`, :func:`masked_row`).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterable
from typing import Any

# MySQL/MariaDB error codes that say "try again" (server or client side).
RESUMABLE_MYSQL_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout exceeded
        1213,  # deadlock found
        1927,  # connection was killed (MariaDB)
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
        3024,  # query execution interrupted, max_execution_time exceeded
    }
)


#: Column names whose values are masked in error messages and logs.
SECRET_COLUMN = re.compile(r"pass|pwd|secret|token|key|salt|credential|private", re.IGNORECASE)


def mask(column: str, value: Any, limit: int = 80) -> str:
    """A value for an error message: masked for secret-like columns, shortened otherwise."""
    if value is not None and SECRET_COLUMN.search(column):
        return "***"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def masked_row(row: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{c}: {mask(c, v)}" for c, v in row.items()) + "}"


def masked_key(columns: Iterable[str], values: Iterable[Any]) -> str:
    return "(" + ", ".join(f"{c}={mask(c, v)}" for c, v in zip(columns, values, strict=True)) + ")"


class FerryError(Exception):
    """Root of every ferry error. Carries the pipeline, batch and position it concerns."""

    def __init__(
        self,
        message: str,
        *,
        pipeline: str | None = None,
        batch_id: int | None = None,
        position: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pipeline = pipeline
        self.batch_id = batch_id
        self.position = position

    def context(self, **fields: Any) -> FerryError:
        """Fill in context fields still unknown; returns self, for `raise e.context(...)`."""
        for name, value in fields.items():
            if getattr(self, name, None) is None:
                setattr(self, name, value)
        return self

    def __str__(self) -> str:
        where = []
        if self.pipeline is not None:
            where.append(f"pipeline {self.pipeline}")
        if self.batch_id is not None:
            where.append(f"batch {self.batch_id}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ResumableError(FerryError):
    """Retrying after a rollback may succeed."""


class FatalError(FerryError):
    """Retrying cannot succeed; an operator must act."""


class ConfigError(FatalError):
    """The configuration file is invalid. The CLI exits with status 2."""


class FencedError(FatalError):
    """A write came from a node whose epoch is no longer current; it steps down."""


class NotActiveError(ResumableError):
    """This node does not hold the mainstem (any more); back to standby."""


class ServerIdClash(FatalError):
    """Another binlog client of the source uses this pipeline's server id (see
    ``selector.identity``): the pipeline pauses rather than fight it."""


def classify(exc: BaseException, message: str | None = None) -> FerryError:
    """Map any exception to a ResumableError or FatalError (a FerryError is returned as is).

    The original exception is kept as ``__cause__``. Unknown exceptions are
    fatal: retrying a bug or a bad user transform only hides it.
    """
    if isinstance(exc, FerryError):
        return exc
    kind = _resumable(exc)
    text = message or f"{type(exc).__name__}: {exc}"
    error: FerryError = ResumableError(text) if kind else FatalError(text)
    error.__cause__ = exc
    return error


def timed_out(exc: BaseException) -> bool:
    """``exc`` is a socket timeout, or was raised from or while handling one (drivers wrap
    them: pymysql's "Lost connection … (timed out)", redis-py's ``TimeoutError``).

    Whoever reports such an error should name the ferry setting the timeout came from.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | socket.timeout):
            return True
        if type(current).__name__ == "TimeoutError":  # redis.exceptions.TimeoutError
            return True
        original = getattr(current, "original_exception", None)  # pymysql's connect
        current = (
            original
            if isinstance(original, BaseException)
            else current.__cause__ or current.__context__
        )
    return False


def _resumable(exc: BaseException) -> bool:
    for check in (_mysql, _redis, _kafka, _librdkafka):
        verdict = check(exc)
        if verdict is not None:
            return verdict
    # Plain socket-level trouble from any driver.
    return isinstance(exc, ConnectionError | TimeoutError | socket.timeout | BrokenPipeError)


def _mysql(exc: BaseException) -> bool | None:
    try:
        import pymysql.err as my
    except ImportError:  # pragma: no cover - pymysql is a runtime dependency
        return None
    if isinstance(exc, my.InterfaceError):  # the client's connection is closed
        return True
    if isinstance(exc, my.MySQLError):
        if _tls_refused(getattr(exc, "original_exception", None)):
            return False  # PyMySQL wraps a failed TLS handshake as 2003 "can't connect"
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in RESUMABLE_MYSQL_CODES
    return None


def _tls_refused(exc: BaseException | None) -> bool:
    """A TLS handshake that failed on its merits: the certificate did not verify, or the
    peers share no protocol or cipher, or the server refused the client certificate.
    An EOF or reset in the middle of it is the network's (resumable)."""
    if not isinstance(exc, ssl.SSLError):
        return False
    transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    return not isinstance(exc, transient)


def _redis(exc: BaseException) -> bool | None:
    try:
        import redis.exceptions as rd
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, rd.AuthenticationError | rd.NoPermissionError):
        return False
    if isinstance(exc, rd.ConnectionError) and _tls_refused(exc.__cause__ or exc.__context__):
        return False  # rediss:// whose certificate does not verify: retrying cannot help
    if isinstance(exc, rd.ConnectionError | rd.TimeoutError | rd.BusyLoadingError):
        return True
    if isinstance(exc, rd.ReadOnlyError):  # a replica after failover: wait for the new master
        return True
    if isinstance(exc, rd.RedisError):
        return False
    return None


def _kafka(exc: BaseException) -> bool | None:
    """kafka-python errors."""
    try:
        import kafka.errors as kf
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, kf.KafkaError):
        fatal = (
            kf.MessageSizeTooLargeError,
            kf.RecordListTooLargeError,
            kf.TopicAuthorizationFailedError,
            kf.ClusterAuthorizationFailedError,
            kf.TransactionalIdAuthorizationFailedError,
            kf.InvalidTopicError,
            kf.UnsupportedVersionError,
        )
        if isinstance(exc, fatal):
            return False
        unavailable = (
            kf.BrokerNotAvailableError,
            kf.KafkaTimeoutError,
            kf.KafkaConnectionError,
            kf.NodeNotReadyError,
            kf.RequestTimedOutError,
            # The idempotent producer's state was lost (broker restarted empty);
            # the sink rebuilds its client before the retry.
            kf.OutOfOrderSequenceNumberError,
            kf.UnknownProducerIdError,
            kf.InvalidProducerEpochError,
        )
        return isinstance(exc, unavailable) or bool(getattr(exc, "retriable", False))
    return None


# librdkafka (confluent-kafka) error names, by class. Names, not numbers, so
# that a code missing from an older client is simply skipped.
LIBRDKAFKA_FATAL = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_MSG_SIZE",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "_SSL",
        "TOPIC_EXCEPTION",  # invalid topic name
        "INVALID_CONFIG",
        "_INVALID_ARG",
        "UNSUPPORTED_VERSION",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "POLICY_VIOLATION",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_PARTITIONS",
    }
)
LIBRDKAFKA_RESUMABLE = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_RESOLVE",
        "_QUEUE_FULL",
        "_UNKNOWN_TOPIC",  # not (yet) created; may appear
        "_UNKNOWN_PARTITION",
        "_PURGE_QUEUE",  # dropped while the client was being rebuilt
        "_PURGE_INFLIGHT",
        "_DESTROY",
        "_FATAL",  # the idempotent producer gave up; the sink rebuilds it
        "_ISR_INSUFF",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "UNKNOWN_TOPIC_OR_PART",
        "KAFKA_STORAGE_ERROR",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "UNKNOWN_PRODUCER_ID",
        "INVALID_PRODUCER_EPOCH",
        "THROTTLING_QUOTA_EXCEEDED",
    }
)


def _librdkafka(exc: BaseException) -> bool | None:
    """confluent-kafka errors: a ``KafkaException`` carrying a ``KafkaError``.

    Known codes decide (``LIBRDKAFKA_FATAL`` / ``LIBRDKAFKA_RESUMABLE``); other
    codes follow librdkafka's own ``retriable()`` flag. librdkafka's
    ``fatal()`` flag means the client instance is unusable, not that retrying
    the batch cannot work: the sink rebuilds the client, so it does not make
    the error fatal by itself.
    """
    try:
        import confluent_kafka as ck
    except ImportError:
        return None
    error = exc.args[0] if isinstance(exc, ck.KafkaException) and exc.args else exc
    if not isinstance(error, ck.KafkaError):
        return None
    name = error.name()
    if name in LIBRDKAFKA_FATAL:
        return False
    if name in LIBRDKAFKA_RESUMABLE:
        return True
    return bool(error.retriable())
