"""The binlog stream: a thin shim over mysql-replication's ``BinLogStreamReader``.

This is the one module that touches the library's internals. What it relies on
(mysql-replication 1.0.x):

* ``fetchone`` calls the name-mangled ``__connect_to_stream`` again after a
  lost connection and silently resumes at its last event, which may be inside
  a transaction. :class:`Stream` refuses that second call and raises
  :class:`StreamLost` instead, so the selector reopens at a transaction start
  it knows.
* Rows events whose ``table_id`` is not in ``table_map`` are dropped without
  decoding their rows (how excluded tables cost nothing).
* The library calls ``pymysql.connect`` with deprecated names (``db``,
  ``passwd``); :func:`pymysql_connect` translates them.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader

from pipeline.errors import ResumableError

PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone or invalid
SAME_SERVER_ID = 4052  # MariaDB's ER_SLAVE_SAME_ID (MySQL: 1236 with the same text)


class StreamLost(Exception):
    """The dump connection broke; the selector reopens it itself."""


class Stream(BinLogStreamReader):
    """A BinLogStreamReader that connects once and never reconnects on its own."""

    _ferry_connected = False

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._ferry_connected:
            raise StreamLost("binlog dump connection lost")
        self._ferry_connected = True
        BinLogStreamReader._BinLogStreamReader__connect_to_stream(self)

    def open(self) -> None:
        """Connect now (control and dump), so that connection errors surface here."""
        self._BinLogStreamReader__connect_to_ctl()
        self._BinLogStreamReader__connect_to_stream()

    def interrupt(self) -> None:
        """Wake a blocked read from another thread."""
        conn = getattr(self, "_stream_connection", None)
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def forget_table(self, table_id: int) -> None:
        """Drop a table map: the reader then skips that table's rows undecoded."""
        self.table_map.pop(table_id, None)


def pymysql_connect(**settings: Any) -> Any:
    """pymysql.connect without the deprecated names the library passes (db, passwd)."""
    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return pymysql.connect(**settings)


def same_server_id(exc: BaseException) -> bool:
    """The server dropped the dump because another client connected with its server id
    (MariaDB 4052; MySQL 1236 "A slave/replica with the same server_uuid/server_id")."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    return code == SAME_SERVER_ID or "same server_uuid/server_id" in str(exc)


def connection_trouble(exc: BaseException) -> bool:
    """Errors that mean the dump connection is gone (reopen), not that an event is bad."""
    if isinstance(exc, StreamLost | OSError | EOFError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return isinstance(exc, (pymysql.err.OperationalError, ResumableError))
