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

Driver exceptions are mapped with :func:`classify`. This module knows no driver:
it holds the hook, :func:`register_classifier`, where each plugin registers how
its client library's exceptions classify, when its module is imported (the
selector and the MySQL sink PyMySQL's, ``pipeline.dialect.pymysql_errors``;
``arbitrate.redis`` redis-py's; ``sinks.producers`` kafka-python's and
confluent-kafka's), and the generic rules: an exception no classifier claims is
resumable when it is socket-level trouble (``ConnectionError``, ``TimeoutError``,
``BrokenPipeError``) and fatal otherwise. It imports nothing from the project.

What an error may show of a row is decided here too, once for the selector and every
sink: values of columns whose name looks secret are masked, others shortened
(:func:`mask`, :func:`masked_key`, :func:`masked_row`).
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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


def raised_from(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it was raised from (``__cause__``), and so on; each once, since
    ``raise e from e`` makes a loop. A driver's error wrapped in a ferry error is found."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        exc = exc.__cause__


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


#: A client library's rule: True resumable, False fatal, None "not one of mine".
Classifier = Callable[[BaseException], bool | None]

_CLASSIFIERS: list[Classifier] = []


def register_classifier(classifier: Classifier) -> Classifier:
    """Add ``classifier`` to the rules :func:`classify` asks, in registration order, before
    the generic ones. Registering the same function again is a no-op (the selector and the
    MySQL sink share PyMySQL's). Classifiers must tell their own exception types only:
    the order of two that claim the same exception would decide it."""
    if classifier not in _CLASSIFIERS:
        _CLASSIFIERS.append(classifier)
    return classifier


def _resumable(exc: BaseException) -> bool:
    for check in _CLASSIFIERS:
        verdict = check(exc)
        if verdict is not None:
            return verdict
    # Plain socket-level trouble from any driver.
    return isinstance(exc, ConnectionError | TimeoutError | socket.timeout | BrokenPipeError)


def tls_refused(exc: BaseException | None) -> bool:
    """A TLS handshake that failed on its merits: the certificate did not verify, or the
    peers share no protocol or cipher, or the server refused the client certificate.
    An EOF or reset in the middle of it is the network's (resumable)."""
    if not isinstance(exc, ssl.SSLError):
        return False
    transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    return not isinstance(exc, transient)
