"""PyMySQL's exceptions (mysql-replication raises them too), resumable or fatal.

The selector and the MySQL sink register :func:`pymysql_errors` with
``pipeline.errors.register_classifier``.
"""

from __future__ import annotations

import pymysql

from pipeline.errors import tls_refused

#: MySQL/MariaDB error codes that say "try again" (server or client side).
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


def pymysql_errors(exc: BaseException) -> bool | None:
    """PyMySQL's exceptions (mysql-replication raises them too): resumable, fatal, or None
    when ``exc`` is not one. The selector and the MySQL sink register it
    (``pipeline.errors.register_classifier``)."""
    if isinstance(exc, pymysql.err.InterfaceError):  # the client's connection is closed
        return True
    if isinstance(exc, pymysql.err.MySQLError):
        if tls_refused(getattr(exc, "original_exception", None)):
            return False  # PyMySQL wraps a failed TLS handshake as 2003 "can't connect"
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return code in RESUMABLE_MYSQL_CODES
    return None
