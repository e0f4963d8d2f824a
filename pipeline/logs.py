"""Logging: loguru, set up once per process.

Every line carries the pipeline id and node id (bound as ``extra``); state
changes add fields such as ``batch``, ``position`` and ``epoch`` with
``logger.bind(...)``. Human-readable lines by default, JSON lines with
``--log-json`` (loguru's ``serialize``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from loguru import logger

_RESERVED = ("pipeline", "node")


def _human(record: Any) -> str:
    extra = record["extra"]
    fields = " ".join(f"{k}={extra[k]}" for k in extra if k not in _RESERVED)
    ident = f"{extra.get('pipeline', '-')}/{extra.get('node', '-')}"
    tail = f" | {fields}" if fields else ""
    return (
        "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
        f"<cyan>{ident}</cyan> {{message}}{tail.replace('{', '{{').replace('}', '}}')}\n"
        "{exception}"
    )


class _ToLoguru(logging.Handler):
    """Send the drivers' stdlib log records (kafka, redis, pymysqlreplication) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


def setup_logging(
    level: str = "INFO", json: bool = False, pipeline: str = "-", node: str = "-"
) -> None:
    """Route loguru to stderr with the given format; safe to call again."""
    logger.remove()
    logger.configure(extra={"pipeline": pipeline, "node": node})
    if json:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            format=_human,
            colorize=sys.stderr.isatty(),
            backtrace=False,
            diagnose=False,
        )
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)
    # The selector owns reconnects and says so itself; mysql-replication's own "re-request
    # the connection" warning (logger "pymysqlreplication") suggests a silent retry that the
    # selector refuses.
    logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
