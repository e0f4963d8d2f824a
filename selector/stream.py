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
* The hot path skips the library's event objects (``fetchone``): on a binlog of
  one-row statements every row is a table map and a rows event, and building the
  library's ``TableMapEvent`` (column objects, optional metadata) and ``RowsEvent``
  cost ~80 µs per row. A table map whose bytes equal the last one seen for its table
  id changes nothing and is skipped (:meth:`Stream.remember_map` records what the
  selector handled); a rows event of a table in ``table_map`` comes out as a
  :class:`RowsBody` (its header read here, its row images for ``selector.values``).
  Every other packet goes to the library's ``fetchone`` (the packet pushed back for
  its ``_read_packet``): the reference path, which every packet takes when
  :data:`HOT_PATH` is False (the differential tests compare both).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any, Literal

import pymysql
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import TableMapEvent

from pipeline.dialect import connect
from pipeline.errors import ResumableError

_compiled: Any = None  # the compiled hot path (selector/_binlog.pyx); else the Python one
try:
    from selector import _binlog  # type: ignore[attr-defined]

    _compiled = _binlog
except ImportError:  # built by pip install; without a C compiler, the Python hot path runs
    pass

PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: position gone or invalid


class StreamLost(Exception):
    """The dump connection broke; the selector reopens it itself."""


#: False: every event through the library's objects (the reference path), for tests.
HOT_PATH = True

_TABLE_MAP = 19
# rows event type -> operation (v1: MariaDB, MySQL 5.x; v2: MySQL 5.6+)
_ROWS: dict[int, Literal["insert", "update", "delete"]] = {
    23: "insert",
    24: "update",
    25: "delete",
    30: "insert",
    31: "update",
    32: "delete",
}
_V2 = frozenset({30, 31, 32})
_HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event size, log pos, flags


class RowsBody:
    """A rows event read on the hot path (see the module docstring): its header fields,
    columns-present bitmaps (``present_after`` for an update) and row images."""

    __slots__ = (
        "body",
        "event_size",
        "log_pos",
        "op",
        "present",
        "present_after",
        "server_id",
        "table_id",
        "timestamp",
    )

    def __init__(
        self,
        op: Literal["insert", "update", "delete"],
        table_id: int,
        timestamp: int,
        server_id: int,
        event_size: int,
        log_pos: int,
        body: bytes,
        present: bytes,
        present_after: bytes | None,
    ) -> None:
        self.op = op
        self.table_id = table_id
        self.timestamp = timestamp
        self.server_id = server_id
        self.event_size = event_size
        self.log_pos = log_pos
        self.body = body
        self.present = present
        self.present_after = present_after


class Stream(BinLogStreamReader):
    """A BinLogStreamReader that connects once and never reconnects on its own."""

    _ferry_connected = False

    def __init__(self, *args: Any, skip_table_maps: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a reader of statements only (the schema history's catch-up): table maps are not
        # built (the library's costliest event), so no rows event is known or decoded either
        self.skip_table_maps = skip_table_maps
        self._maps: dict[int, bytes] = {}  # table id -> its last table map's bytes, handled
        self._pushed: Any = None  # a packet handed back to the library's fetchone

    def _BinLogStreamReader__connect_to_stream(self) -> None:
        if self._ferry_connected:
            raise StreamLost("binlog dump connection lost")
        self._ferry_connected = True
        BinLogStreamReader._BinLogStreamReader__connect_to_stream(self)
        conn = self._stream_connection
        read = conn._read_packet
        self._reader: Any = None
        if HOT_PATH and _compiled is not None:
            checksum = bool(self._BinLogStreamReader__use_checksum)
            self._reader = _compiled.Reader(conn, self, RowsBody, checksum)
            self._reader.maps = self._maps
            encoding = conn.encoding

            def read(*_: Any, **__: Any) -> Any:  # the compiled reader owns the socket now
                return _packet(self._reader.packet(), encoding)

        def read_packet(*args: Any, **kwargs: Any) -> Any:
            pushed, self._pushed = self._pushed, None
            return pushed if pushed is not None else read(*args, **kwargs)

        conn._read_packet = read_packet  # the library reads a pushed-back packet first
        self._read = read

    def read(self, translator: Any, limit: int) -> Any:
        """The next event for ``translator`` (``StreamLost`` when the server ended the dump).
        The compiled reader translates the common rows events into it itself, and then
        returns None: after at most ``limit`` of them, or one that left a piece ready or
        ended the transaction."""
        if HOT_PATH and self._ferry_connected and self._reader is not None:
            event = self._reader.next_event(translator, limit)
            if event is None or type(event) is RowsBody:
                return event
            self._pushed = _packet(event, self._stream_connection.encoding)
            event = super().fetchone()
        else:
            event = self.fetchone()
        if event is None:  # the library read the EOF packet (and closed the stream)
            raise StreamLost("the server ended the binlog dump")
        return event

    def fetchone(self) -> Any:
        if not HOT_PATH or not self._ferry_connected:
            return super().fetchone()
        if self._reader is not None:
            while True:
                event = self._reader.next_event()
                if type(event) is RowsBody:
                    return event
                if not (self.skip_table_maps and _table_map(event)):
                    break
            self._pushed = _packet(event, self._stream_connection.encoding)
            return super().fetchone()
        checksum = 4 if self._BinLogStreamReader__use_checksum else 0
        maps, table_map = self._maps, self.table_map
        while True:
            packet = self._read()
            data = packet._data
            if data[0] == 0 and len(data) > 26:
                kind = data[5]
                if kind == _TABLE_MAP:
                    if self.skip_table_maps:
                        continue
                    table_id = int.from_bytes(data[20:26], "little")
                    known = maps.get(table_id)
                    if known is not None and known == data[20 : len(data) - checksum]:
                        continue  # the same definition: nothing to do
                elif kind in _ROWS:
                    table_id = int.from_bytes(data[20:26], "little")
                    if table_id not in table_map:
                        continue  # a table the selector does not replicate: not decoded
                    rows = _rows_body(data, kind, table_id, checksum)
                    if rows is not None:
                        return rows
            self._pushed = packet
            return super().fetchone()

    def remember_map(self, event: Any) -> None:
        """The selector handled this table map: an identical one later is skipped."""
        checksum = 4 if self._BinLogStreamReader__use_checksum else 0
        data = event.packet.packet._data
        self._maps[event.table_id] = data[20 : len(data) - checksum]

    def forget_maps(self) -> None:
        """Table maps read after this go to the selector again (DDL, rotation)."""
        self._maps.clear()

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


def _table_map(payload: bytes) -> bool:
    return payload[0] == 0 and len(payload) > 26 and payload[5] == _TABLE_MAP


def _packet(payload: bytes, encoding: str) -> Any:
    """A payload the compiled reader read, as the packet pymysql's reader would return."""
    packet = MysqlPacket(payload, encoding)
    if packet.is_error_packet():
        packet.raise_for_error()
    return packet


def _rows_body(data: bytes, kind: int, table_id: int, checksum: int) -> RowsBody | None:
    """A rows event's header and row images (None: a shape left to the library)."""
    timestamp, _, server_id, event_size, log_pos, _ = _HEADER.unpack_from(data, 1)
    at = 28  # OK byte, header, table id, flags
    if kind in _V2:
        at += int.from_bytes(data[28:30], "little")  # extra data, its length included
    columns = data[at]
    if columns >= 251:  # a length-encoded column count above 250: the library reads it
        return None
    at += 1
    width = (columns + 7) >> 3
    present = data[at : at + width]
    at += width
    present_after = None
    op = _ROWS[kind]
    if op == "update":
        present_after = data[at : at + width]
        at += width
    body = data[at : len(data) - checksum]
    return RowsBody(
        op, table_id, timestamp, server_id, event_size, log_pos, body, present, present_after
    )


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
