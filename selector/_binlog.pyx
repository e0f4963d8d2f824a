# cython: language_level=3, boundscheck=False, wraparound=False
"""The hot path of ``selector.stream``, compiled: MySQL packets read straight from the
binlog dump connection's socket, table maps compared with the last one the selector
handled, rows events' headers read and, in the common case of
``selector.events.Translator._rows`` (rows of a known table in an open transaction),
translated into the translator's assembler without a Python object per event.

:class:`Reader` takes over the dump connection's reading once the dump is open (the
library keeps the handshake and the dump request). ``next_event`` returns a
``selector.stream.RowsBody`` for a rows event of a table in the library's
``table_map``, and the payload of any other packet as ``bytes``, for the library to
read (``selector.stream.Stream.fetchone``); ``packet`` returns the next payload as is.
Both do what the pure-Python hot path in ``selector.stream`` and ``selector.events``
does, event for event (``tests/integration/test_event_path_differential.py`` holds the
library's path, the Python hot path and this one equal).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcmp

import pymysql

cdef int _TABLE_MAP = 19
cdef Py_ssize_t _CHUNK = 1 << 17  # bytes asked of the socket at a time
cdef Py_ssize_t _MAX_PACKET = 0xFFFFFF  # a payload this long continues in the next packet


cdef inline unsigned long long _le(const unsigned char* p, int n) noexcept nogil:
    cdef unsigned long long value = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        value = (value << 8) | p[i]
    return value


cdef class Reader:
    """Reads the binlog dump's packets from ``connection`` (a pymysql connection whose dump
    was requested), for ``stream`` (``selector.stream.Stream``: its ``table_map``)."""

    cdef object _read1
    cdef object _stream
    cdef object _rows_body
    cdef bytes _buf
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _checksum
    cdef public dict maps  # table id -> the bytes of its last table map the selector handled
    cdef public Py_ssize_t translated  # rows events translated here (for tests)

    def __init__(self, connection, stream, rows_body, bint checksum):
        self._read1 = connection._rfile.read1
        self._stream = stream
        self._rows_body = rows_body
        self._buf = b""
        self._pos = 0
        self._checksum = 4 if checksum else 0
        self.maps = {}
        self.translated = 0

    cdef bytes _take(self, Py_ssize_t n):
        """The next ``n`` bytes of the stream."""
        cdef Py_ssize_t have = PyBytes_GET_SIZE(self._buf) - self._pos
        cdef bytes out
        cdef bytes chunk
        cdef list parts
        if have >= n:
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
            return out
        parts = [self._buf[self._pos :]]
        while True:
            chunk = self._more()  # at most _CHUNK bytes
            if have + PyBytes_GET_SIZE(chunk) >= n:
                self._buf = chunk
                self._pos = n - have
                parts.append(chunk[: self._pos])
                return b"".join(parts)
            parts.append(chunk)
            have += PyBytes_GET_SIZE(chunk)

    cdef bytes _more(self):
        try:
            chunk = self._read1(_CHUNK)
        except OSError as exc:
            raise pymysql.err.OperationalError(
                2013, f"Lost connection to MySQL server during query ({exc})"
            ) from exc
        if not chunk:
            raise pymysql.err.OperationalError(
                2013, "Lost connection to MySQL server during query"
            )
        return chunk

    cpdef bytes packet(self):
        """The next packet's payload (one that went on in following packets, joined)."""
        cdef bytes header = self._take(4)
        cdef const unsigned char* h = <const unsigned char*>PyBytes_AS_STRING(header)
        cdef Py_ssize_t length = h[0] | (h[1] << 8) | (h[2] << 16)
        cdef bytes payload = self._take(length)
        cdef list parts
        if length < _MAX_PACKET:
            return payload
        parts = [payload]
        while length == _MAX_PACKET:
            header = self._take(4)
            h = <const unsigned char*>PyBytes_AS_STRING(header)
            length = h[0] | (h[1] << 8) | (h[2] << 16)
            parts.append(self._take(length))
        return b"".join(parts)

    def next_event(self, translator=None, Py_ssize_t limit=0):
        """The next event the Python path must see: a RowsBody, or the payload of a packet
        for the library. With a ``translator``, rows events it can take in the common case
        (:func:`_translate`) are translated here, up to ``limit`` of them, and None is
        returned when the limit is reached or after one that left a piece ready or ended
        the transaction: the select loop then checks stops, snapshots and its deadline."""
        cdef bytes payload
        cdef const unsigned char* data
        cdef Py_ssize_t size, at, width, columns
        cdef Py_ssize_t done = 0
        cdef int kind
        cdef unsigned long long table_id
        cdef bytes known
        cdef object present_after, op, body, present
        while True:
            payload = self.packet()
            data = <const unsigned char*>PyBytes_AS_STRING(payload)
            size = PyBytes_GET_SIZE(payload)
            if data[0] != 0 or size <= 26:
                return payload
            kind = data[5]
            if kind == _TABLE_MAP:
                table_id = _le(data + 20, 6)
                known = self.maps.get(table_id)
                if (
                    known is not None
                    and PyBytes_GET_SIZE(known) == size - 20 - self._checksum
                    and memcmp(PyBytes_AS_STRING(known), data + 20, size - 20 - self._checksum) == 0
                ):
                    continue  # the same definition: nothing to do
                return payload
            if kind < 23 or (kind > 25 and kind < 30) or kind > 32:
                return payload
            table_id = _le(data + 20, 6)
            if table_id not in self._stream.table_map:
                continue  # a table the selector does not replicate: not decoded
            at = 28  # OK byte, header, table id, flags
            if kind >= 30:
                at += <Py_ssize_t>_le(data + 28, 2)  # extra data, its length included
            columns = data[at]
            if columns >= 251:  # a length-encoded column count: the library reads it
                return payload
            at += 1
            width = (columns + 7) >> 3
            present = payload[at : at + width]
            at += width
            present_after = None
            if kind == 24 or kind == 31:
                present_after = payload[at : at + width]
                at += width
                op = "update"
            else:
                op = "insert" if kind == 23 or kind == 30 else "delete"
            body = payload[at : size - self._checksum]
            if translator is not None and _translate(
                translator,
                op,
                table_id,
                <double>_le(data + 1, 4),
                <Py_ssize_t>_le(data + 6, 4),
                <Py_ssize_t>(_le(data + 14, 4) - _le(data + 10, 4)),
                body,
                present,
                present_after,
            ):
                done += 1
                self.translated += 1
                assembler = translator.assembler
                if done >= limit or assembler.ready or assembler.txn is None:
                    return None
                continue
            return self._rows_body(
                op,
                table_id,
                _le(data + 1, 4),
                _le(data + 6, 4),
                _le(data + 10, 4),
                _le(data + 14, 4),
                body,
                present,
                present_after,
            )


cdef bint _translate(
    translator,
    str op,
    unsigned long long table_id,
    double ts,
    Py_ssize_t server_id,
    Py_ssize_t event_pos,
    bytes body,
    bytes present,
    object present_after,
) except -1:
    """``selector.events.Translator._rows`` (with ``on_event``'s event time) in the common
    case: a table the translator knows, in an open transaction, no XA, nothing to skip.
    False (having done nothing) otherwise, or when the rows do not decode: the Python path
    then runs, and reports a decode failure with its table, column, key and position."""
    global _decode, _RowChange, _SourceEvent, _Position
    assembler = translator.assembler
    if translator._xa_rows is not None or assembler.skip or assembler.txn is None:
        return False
    known = translator._known.get(table_id)
    if known is None:
        return False
    if _decode is None:
        from pipeline.model import Position, RowChange, SourceEvent
        from selector import values
        # the row decoder selector.values chose (None: its pure-Python one, e.g. with
        # FERRY_ROW_DECODER=python): the Python path then runs, through values.decode_rows
        _decode = values._compiled or False
        _RowChange, _SourceEvent, _Position = RowChange, SourceEvent, Position
    if _decode is False:
        return False
    schema, name, info = known
    try:
        rows = _decode(info.plan, body, present, present_after)
    except Exception:
        return False
    if ts:
        translator.last_ts = ts
    start = assembler.txn_start
    cdef Py_ssize_t index = assembler.txn_done + len(assembler.txn)
    at = translator._at
    if at is None or at.ts != ts or translator._at_start is not start:
        # one object while the transaction and the second last (see the Python path)
        at = _Position(start.file, start.pos, start.gtid_set, 0, ts)
        translator._at = at
        translator._at_start = start
    pk = info.primary_key
    gtid = translator.gtids.pending
    defn = info.definition
    ev = _SourceEvent(event_pos, server_id, index)
    cdef list changes = []
    cdef Py_ssize_t i = index
    if op == "insert":
        for row in rows:
            changes.append(_RowChange(schema, name, op, None, row, pk, ts, at, gtid, i, defn, ev))
            i += 1
    elif op == "update":
        for old, new in rows:
            changes.append(_RowChange(schema, name, op, old, new, pk, ts, at, gtid, i, defn, ev))
            i += 1
    else:
        for row in rows:
            changes.append(_RowChange(schema, name, op, row, None, pk, ts, at, gtid, i, defn, ev))
            i += 1
    assembler.rows(changes)
    return True


_decode = _RowChange = _SourceEvent = _Position = None  # imported on first use
