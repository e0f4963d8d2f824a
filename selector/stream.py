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
  ``passwd``); :func:`pymysql_connect` translates them and connects through
  :func:`pipeline.dialect.connect`, which holds ``source.tls``. The library
  copies the dump's settings (with their ``ssl`` context) for its own control
  connection when it is given no ``ctl_connection_settings``, so both connections
  carry the same TLS.
* A table map's ENUM and SET members are bytes in the column's charset; the library
  decodes them as UTF-8 and makes a member it cannot decode ``''`` (a latin1
  ``ENUM('café')`` would read as ``''``). ``TableMapEvent._read_type_values`` is
  replaced by :func:`_read_type_values`, which gives the same strings as
  :class:`RawMember` s that keep the bytes; ``selector.values`` decodes those with the
  column's charset.
* :func:`collation_ids` walks a table map's charset metadata as the library's
  ``_sync_column_info`` does, for the collation ids the library could not name.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import TableMapEvent

from pipeline.dialect import connect
from pipeline.errors import ResumableError

PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone or invalid


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
    """pymysql.connect without the deprecated names the library passes (db, passwd),
    holding the TLS mode of the settings' ``ssl`` context (see pipeline.dialect)."""
    if "db" in settings:
        settings["database"] = settings.pop("db")
    if "passwd" in settings:
        settings["password"] = settings.pop("passwd")
    return connect(**settings)


def connection_trouble(exc: BaseException) -> bool:
    """Errors that mean the dump connection is gone (reopen), not that an event is bad."""
    if isinstance(exc, StreamLost | OSError | EOFError):
        return True
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return isinstance(exc, (pymysql.err.OperationalError, ResumableError))


class RawMember(str):
    """An ENUM or SET member as the library decodes it (UTF-8, or ``''``), with ``raw``:
    its bytes in the column's charset."""

    raw: bytes


def _read_type_values(self: Any, length: int) -> list[list[RawMember]] | None:
    """``TableMapEvent._read_type_values`` (mysql-replication 1.0.x), keeping the bytes."""
    result = []
    read_until = self.packet.read_bytes + length
    if self.packet.read_bytes >= read_until:
        return None
    while self.packet.read_bytes < read_until:
        members = []
        for _ in range(self.packet.read_length_coded_binary()):
            raw = bytes(self.packet.read_variable_length_string())
            try:
                member = RawMember(raw.decode())
            except UnicodeDecodeError:
                member = RawMember("")
            member.raw = raw
            members.append(member)
        result.append(members)
    return result


if hasattr(TableMapEvent, "_read_type_values"):
    TableMapEvent._read_type_values = _read_type_values


def collation_ids(table_map: Any) -> list[int | None]:
    """The collation id of each column of a table map (None: not a text, ENUM or SET
    column, or no charset metadata), in the order the library assigns them."""
    meta = getattr(table_map, "optional_metadata", None)
    text = list(getattr(meta, "charset_collation_list", None) or ())
    members = list(getattr(meta, "enum_and_set_collation_list", None) or ())
    dbms = getattr(table_map, "dbms", None) or "mysql"
    found: list[int | None] = []
    for column in table_map.columns:
        if TableMapEvent._is_character_column(column.type, dbms=dbms):
            found.append(int(text.pop(0)) if text else None)
        elif TableMapEvent._is_enum_or_set_column(column.type, dbms=dbms):
            found.append(int(members.pop(0)) if members else None)
        else:
            found.append(None)
    return found
