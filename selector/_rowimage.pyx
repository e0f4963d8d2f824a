# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled decoder of WRITE/UPDATE/DELETE_ROWS row images.

The same values as :func:`selector.values.decode_rows_py` (the pure-Python
reference, which stays the fallback): ``selector.values`` uses
:func:`decode_rows` when this extension imports. A table plan is compiled once
(cached on the :class:`~selector.values.TablePlan`); the rare kinds (MySQL
binary JSON, pre-5.6 temporal types, BIT wider than 64 bits) call the reference
module's own functions. Text decodes with the column's codec from
:mod:`selector.charsets` (the one table both decoders use): an 8-bit charset through
its 256-character table (``PyUnicode_DecodeCharmap``), UTF-8 with
``PyUnicode_DecodeUTF8`` (neither looks a codec up per value), any other by its codec's
name. Anything the compiled path cannot read (a row image
running past the end of the body) makes it decode the whole event with the
reference instead, so both always agree.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.datetime cimport date_new, datetime_new, import_datetime, timedelta_new
from cpython.dict cimport PyDict_SetItem
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_Decode, PyUnicode_DecodeCharmap, PyUnicode_DecodeUTF8
from libc.stdio cimport snprintf
from libc.stdlib cimport strtod
from libc.string cimport memcpy, memset

import_datetime()

from decimal import Decimal

from pipeline.model import JsonText, ZeroDate

# selector.values, the reference: imported on first use (it imports this module itself)
cdef object _v = None

# compiled kinds (mapped from selector.values' K_* when a plan is compiled)
cdef enum:
    C_INT = 0
    C_VARCHAR
    C_DATETIME2
    C_DECIMAL
    C_DOUBLE
    C_BLOB
    C_TIMESTAMP2
    C_DATE
    C_TIME2
    C_FLOAT
    C_ENUM
    C_SET
    C_BIT
    C_YEAR
    C_JSON
    C_TIMESTAMP
    C_DATETIME
    C_TIME

# how a text column decodes (CPlan.decoders)
cdef enum:
    D_NAMED = 0
    D_CHARMAP
    D_UTF8

cdef int[7] FSP_BYTES = [0, 1, 1, 2, 2, 3, 3]
cdef int[10] DIG2BYTES = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]
cdef long long[7] POW10 = [1, 10, 100, 1000, 10000, 100000, 1000000]


class _Overrun(Exception):
    """A row image reads past the body: the reference decoder takes the event."""


cdef inline unsigned long long _le(const unsigned char* p, int n) noexcept nogil:
    cdef unsigned long long v = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[i]
    return v


cdef inline unsigned long long _be(const unsigned char* p, int n) noexcept nogil:
    cdef unsigned long long v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef class CPlan:
    """One table's columns as C arrays, built once from a ``TablePlan``'s columns."""

    cdef int n
    cdef int* kinds
    cdef int* widths
    cdef int* fsps
    cdef int* pads
    cdef int* unsigned_
    cdef int* precisions
    cdef int* scales
    cdef int* decoders  # D_NAMED, D_CHARMAP or D_UTF8: how a text column decodes
    cdef const char** codecs
    cdef const char** errors
    cdef list names
    cdef list codec_bytes
    cdef list errors_bytes
    cdef list charmaps
    cdef list members
    cdef list columns

    def __cinit__(self, columns):
        cdef int n = len(columns)
        self.n = n
        self.kinds = <int*>PyMem_Malloc(sizeof(int) * (n + 1) * 8)
        self.codecs = <const char**>PyMem_Malloc(sizeof(char*) * (n + 1) * 2)
        if self.kinds == NULL or self.codecs == NULL:
            raise MemoryError()
        self.errors = self.codecs + (n + 1)
        self.widths = self.kinds + (n + 1)
        self.fsps = self.widths + (n + 1)
        self.pads = self.fsps + (n + 1)
        self.unsigned_ = self.pads + (n + 1)
        self.precisions = self.unsigned_ + (n + 1)
        self.scales = self.precisions + (n + 1)
        self.decoders = self.scales + (n + 1)

    def __init__(self, columns):
        global _v
        if _v is None:
            from selector import values
            _v = values
        kinds = {
            _v.K_INT: C_INT, _v.K_VARCHAR: C_VARCHAR, _v.K_DATETIME2: C_DATETIME2,
            _v.K_DECIMAL: C_DECIMAL, _v.K_DOUBLE: C_DOUBLE, _v.K_BLOB: C_BLOB,
            _v.K_TIMESTAMP2: C_TIMESTAMP2, _v.K_DATE: C_DATE, _v.K_TIME2: C_TIME2,
            _v.K_FLOAT: C_FLOAT, _v.K_ENUM: C_ENUM, _v.K_SET: C_SET, _v.K_BIT: C_BIT,
            _v.K_YEAR: C_YEAR, _v.K_JSON: C_JSON, _v.K_TIMESTAMP: C_TIMESTAMP,
            _v.K_DATETIME: C_DATETIME, _v.K_TIME: C_TIME,
        }
        self.columns = list(columns)
        self.names = [c.name for c in self.columns]
        self.codec_bytes = []
        self.errors_bytes = []
        self.charmaps = []
        self.members = []
        cdef int i
        for i, c in enumerate(self.columns):
            self.kinds[i] = kinds[c.kind]
            self.widths[i] = c.width
            self.fsps[i] = c.fsp
            self.pads[i] = c.pad
            self.unsigned_[i] = 1 if c.unsigned else 0
            self.precisions[i] = c.precision
            self.scales[i] = c.scale
            codec = None if c.text is None else c.text.encode("ascii")
            self.codec_bytes.append(codec)
            self.codecs[i] = NULL if codec is None else PyBytes_AS_STRING(codec)
            errors = c.errors.encode("ascii")
            self.errors_bytes.append(errors)
            self.errors[i] = PyBytes_AS_STRING(errors)
            self.charmaps.append(c.charmap if c.text is not None else None)
            if c.text is not None and c.charmap is not None:
                self.decoders[i] = D_CHARMAP
            elif c.text == "utf-8":
                self.decoders[i] = D_UTF8
            else:
                self.decoders[i] = D_NAMED
            self.members.append(tuple(c.members))

    def __dealloc__(self):
        PyMem_Free(self.kinds)
        PyMem_Free(<void*>self.codecs)


def compiled_plan(plan):
    """The plan's compiled form (built on first use and kept on the plan)."""
    global _v
    cplan = plan.compiled
    if cplan is None:
        if _v is None:
            from selector import values
            _v = values
        cplan = CPlan(plan.columns)
        plan.compiled = cplan
    return cplan


def decode_rows(plan, body, present, present_after=None):
    """Every row of a rows event's body: see :func:`selector.values.decode_rows_py`."""
    cdef CPlan cp = compiled_plan(plan)
    cdef bytes data = body if type(body) is bytes else bytes(body)
    cdef bytes first_map = present if type(present) is bytes else bytes(present)
    cdef bytes second_map
    cdef list rows = []
    cdef int* first = NULL
    cdef int* second = NULL
    cdef int n1, n2
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t end = len(data)
    first = <int*>PyMem_Malloc(sizeof(int) * (cp.n + 1) * 2)
    if first == NULL:
        raise MemoryError()
    second = first + (cp.n + 1)
    try:
        n1 = _selected(cp, first_map, first)
        if present_after is None:
            while pos < end:
                rows.append(_image(cp, first, n1, data, &pos, end))
            return rows
        second_map = present_after if type(present_after) is bytes else bytes(present_after)
        n2 = _selected(cp, second_map, second)
        while pos < end:
            before = _image(cp, first, n1, data, &pos, end)
            after = _image(cp, second, n2, data, &pos, end)
            rows.append((before, after))
        return rows
    except _Overrun:
        return _v.decode_rows_py(plan, body, present, present_after)
    finally:
        PyMem_Free(first)


cdef int _selected(CPlan cp, bytes bitmap, int* out) except -1:
    cdef const unsigned char* bits = <const unsigned char*>PyBytes_AS_STRING(bitmap)
    cdef Py_ssize_t size = len(bitmap)
    cdef int i, n = 0
    for i in range(cp.n):
        if (i >> 3) >= size:
            raise _Overrun()
        if bits[i >> 3] >> (i & 7) & 1:
            out[n] = i
            n += 1
    return n


cdef dict _image(CPlan cp, int* which, int count, bytes body, Py_ssize_t* at, Py_ssize_t end):
    cdef const unsigned char* data = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t pos = at[0]
    cdef Py_ssize_t null_size = (count + 7) // 8
    cdef const unsigned char* nulls = data + pos
    cdef const unsigned char* p
    cdef dict row = {}
    cdef int j, i, kind, width
    cdef unsigned long long u, length
    cdef long long s
    cdef object value
    if pos + null_size > end:
        raise _Overrun()
    pos += null_size
    for j in range(count):
        i = which[j]
        name = cp.names[i]
        if nulls[j >> 3] >> (j & 7) & 1:
            PyDict_SetItem(row, name, None)
            continue
        kind = cp.kinds[i]
        width = cp.widths[i]
        p = data + pos
        if kind == C_INT:
            if width > 8 or pos + width > end:
                raise _Overrun()
            u = _le(p, width)
            pos += width
            if cp.unsigned_[i]:
                value = PyLong_FromUnsignedLongLong(u)
            else:
                if width < 8 and (u >> (8 * width - 1)) & 1:
                    s = <long long>u - (<long long>1 << (8 * width))
                else:
                    s = <long long>u
                value = PyLong_FromLongLong(s)
        elif kind == C_VARCHAR or kind == C_BLOB or kind == C_JSON:
            if width > 8 or pos + width > end:
                raise _Overrun()
            length = _le(p, width)
            pos += width
            if length > <unsigned long long>(end - pos):
                raise _Overrun()
            value = _text(cp, i, kind, data + pos, <Py_ssize_t>length)
            pos += <Py_ssize_t>length
        elif kind == C_DATETIME2:
            value = _datetime2(cp.fsps[i], data, &pos, end)
        elif kind == C_DECIMAL:
            value = _decimal(cp.precisions[i], cp.scales[i], data, &pos, end)
        elif kind == C_DOUBLE:
            value = _double(data, &pos, end)
        elif kind == C_TIMESTAMP2:
            value = _timestamp2(cp.fsps[i], data, &pos, end)
        elif kind == C_DATE:
            if pos + 3 > end:
                raise _Overrun()
            value = _date(<long long>_le(p, 3))
            pos += 3
        elif kind == C_TIME2:
            value = _time2(cp.fsps[i], data, &pos, end)
        elif kind == C_FLOAT:
            value = _float(data, &pos, end)
        elif kind == C_ENUM:
            if width > 8 or pos + width > end:
                raise _Overrun()
            u = _le(p, width)
            pos += width
            members = cp.members[i]
            value = members[u] if u < <unsigned long long>len(members) else ""
        elif kind == C_SET:
            if width > 8 or pos + width > end:
                raise _Overrun()
            u = _le(p, width)
            pos += width
            value = _set(cp.members[i], u)
        elif kind == C_BIT:
            if pos + width > end:
                raise _Overrun()
            if width <= 8:
                value = PyLong_FromUnsignedLongLong(_be(p, width))
            else:
                value = int.from_bytes(body[pos : pos + width], "big")
            pos += width
        elif kind == C_YEAR:
            if pos + 1 > end:
                raise _Overrun()
            value = p[0] + 1900 if p[0] else 0
            pos += 1
        elif kind == C_TIMESTAMP:
            if pos + 4 > end:
                raise _Overrun()
            value = _v._instant(PyLong_FromUnsignedLongLong(_le(p, 4)), 0, 0)
            pos += 4
        elif kind == C_DATETIME:
            if pos + 8 > end:
                raise _Overrun()
            value = _v._datetime_v1(PyLong_FromUnsignedLongLong(_le(p, 8)))
            pos += 8
        elif kind == C_TIME:
            if pos + 3 > end:
                raise _Overrun()
            u = _le(p, 3)
            s = <long long>u - (1 << 24) if u & 0x800000 else <long long>u
            value = _v._time_v1(PyLong_FromLongLong(s))
            pos += 3
        else:
            raise _Overrun()
        PyDict_SetItem(row, name, value)
    at[0] = pos
    return row


cdef object _text(CPlan cp, int i, int kind, const unsigned char* p, Py_ssize_t length):
    cdef const char* codec = cp.codecs[i]
    cdef int pad
    cdef bytes padded
    if kind == C_JSON:
        if codec != NULL:  # MariaDB: LONGTEXT holding the document as typed
            return JsonText(_decode(cp, i, p, length))
        return _v._mysql_json(PyBytes_FromStringAndSize(<const char*>p, length))
    if codec == NULL:
        pad = cp.pads[i]
        if pad and length < pad:
            padded = PyBytes_FromStringAndSize(NULL, pad)
            memcpy(PyBytes_AS_STRING(padded), p, length)
            memset(PyBytes_AS_STRING(padded) + length, 0, pad - length)
            return padded
        return PyBytes_FromStringAndSize(<const char*>p, length)
    return _decode(cp, i, p, length)


cdef inline object _decode(CPlan cp, int i, const unsigned char* p, Py_ssize_t length):
    """Text in column ``i``'s charset (selector.charsets): what the server returns for it."""
    cdef int how = cp.decoders[i]
    if how == D_UTF8:
        return PyUnicode_DecodeUTF8(<const char*>p, length, cp.errors[i])
    if how == D_CHARMAP:
        return PyUnicode_DecodeCharmap(<const char*>p, length, cp.charmaps[i], cp.errors[i])
    return PyUnicode_Decode(<const char*>p, length, cp.codecs[i], cp.errors[i])


cdef object _double(const unsigned char* data, Py_ssize_t* at, Py_ssize_t end):
    cdef Py_ssize_t pos = at[0]
    cdef unsigned long long u
    cdef double d
    if pos + 8 > end:
        raise _Overrun()
    u = _le(data + pos, 8)
    memcpy(&d, &u, 8)
    at[0] = pos + 8
    return d


cdef object _float(const unsigned char* data, Py_ssize_t* at, Py_ssize_t end):
    """FLOAT: the shortest decimal whose single-precision value it is (``single_precision``)."""
    cdef Py_ssize_t pos = at[0]
    cdef unsigned int u
    cdef float f
    cdef double value, shorter
    cdef char buf[40]
    cdef int digits
    if pos + 4 > end:
        raise _Overrun()
    u = <unsigned int>_le(data + pos, 4)
    memcpy(&f, &u, 4)
    at[0] = pos + 4
    value = f
    for digits in range(6, 9):
        snprintf(buf, sizeof(buf), "%.*g", digits, value)
        shorter = strtod(buf, NULL)
        if <float>shorter == f:
            return shorter
    return value


cdef object _set(tuple members, unsigned long long bits):
    cdef set out = set()
    cdef Py_ssize_t k
    for k in range(len(members)):
        if k < 64 and (bits >> k) & 1:
            out.add(members[k])
    return out


cdef long long _fraction(int fsp, const unsigned char* data, Py_ssize_t* at, Py_ssize_t end) except -1:
    """Microseconds of a temporal value's fractional part (and moves past it)."""
    cdef int size = FSP_BYTES[fsp] if 0 <= fsp <= 6 else -1
    cdef Py_ssize_t pos = at[0]
    if size < 0 or pos + size > end:
        raise _Overrun()
    if size == 0:
        return 0
    at[0] = pos + size
    return <long long>_be(data + pos, size) * POW10[6 - 2 * size]


cdef object _zero_text(const char* text, long long micros, int fsp):
    cdef char buf[64]
    cdef char frac[16]
    if fsp:
        snprintf(frac, sizeof(frac), "%06lld", micros)
        frac[fsp] = 0
        snprintf(buf, sizeof(buf), "%s.%s", text, frac)
        return ZeroDate(buf.decode("ascii"))
    return ZeroDate(text.decode("ascii"))


cdef object _datetime2(int fsp, const unsigned char* data, Py_ssize_t* at, Py_ssize_t end):
    cdef Py_ssize_t pos = at[0]
    cdef long long packed, micros, year_month
    cdef int year, month, day, hour, minute, second
    cdef char text[48]
    if pos + 5 > end:
        raise _Overrun()
    packed = <long long>_be(data + pos, 5) - 0x8000000000
    at[0] = pos + 5
    micros = _fraction(fsp, data, at, end)
    year_month = packed >> 22 & 0x1FFFF
    year = <int>(year_month // 13)
    month = <int>(year_month % 13)
    day = packed >> 17 & 31
    hour = packed >> 12 & 31
    minute = packed >> 6 & 63
    second = packed & 63
    if 1 <= year and month >= 1 and day >= 1:
        try:
            return datetime_new(year, month, day, hour, minute, second, <int>micros, None)
        except ValueError:
            pass
    snprintf(text, sizeof(text), "%04d-%02d-%02d %02d:%02d:%02d",
             year, month, day, hour, minute, second)
    return _zero_text(text, micros, fsp)


cdef object _timestamp2(int fsp, const unsigned char* data, Py_ssize_t* at, Py_ssize_t end):
    cdef Py_ssize_t pos = at[0]
    cdef long long seconds, micros
    if pos + 4 > end:
        raise _Overrun()
    seconds = <long long>_be(data + pos, 4)
    at[0] = pos + 4
    micros = _fraction(fsp, data, at, end)
    if seconds == 0 and micros == 0:  # the zero TIMESTAMP, not 1970-01-01 00:00:00 UTC
        return _zero_text(b"0000-00-00 00:00:00", 0, fsp)
    return _v._EPOCH + timedelta_new(<int>(seconds // 86400), <int>(seconds % 86400), <int>micros)


cdef object _date(long long value):
    cdef int day = value & 31
    cdef int month = value >> 5 & 15
    cdef int year = <int>(value >> 9)
    cdef char text[32]
    if year >= 1 and month >= 1 and day >= 1:
        try:
            return date_new(year, month, day)
        except ValueError:
            pass
    snprintf(text, sizeof(text), "%04d-%02d-%02d", year, month, day)
    return ZeroDate(text.decode("ascii"))


cdef object _time2(int fsp, const unsigned char* data, Py_ssize_t* at, Py_ssize_t end):
    """TIME(n): one packed signed value, integer part and fraction together (MySQL's
    my_time_packed_from_binary): a negative fraction borrows from the integer part."""
    cdef int size = FSP_BYTES[fsp] if 0 <= fsp <= 6 else -1
    cdef Py_ssize_t pos = at[0]
    cdef long long intpart, frac = 0, packed, hms, micros, seconds
    cdef bint negative
    if size < 0 or pos + 3 + size > end:
        raise _Overrun()
    intpart = <long long>_be(data + pos, 3) - 0x800000
    if size:
        frac = <long long>_be(data + pos + 3, size)
    at[0] = pos + 3 + size
    if size == 3:
        packed = intpart * (1 << 24) + frac
    else:
        if intpart < 0 and frac:
            intpart += 1
            frac -= (<long long>1) << (8 * size)
        packed = intpart * (1 << 24) + frac * POW10[6 - 2 * size]
    negative = packed < 0
    if negative:
        packed = -packed
    hms = packed >> 24
    micros = packed & 0xFFFFFF
    seconds = (hms >> 12 & 0x3FF) * 3600 + (hms >> 6 & 63) * 60 + (hms & 63)
    if negative:
        return timedelta_new(0, <int>-seconds, <int>-micros)
    return timedelta_new(0, <int>seconds, <int>micros)


cdef object _decimal(int precision, int scale, const unsigned char* data, Py_ssize_t* at,
                     Py_ssize_t end):
    """DECIMAL(p,s) in MySQL's binary format: groups of 9 digits in 4 bytes, big-endian,
    the sign in the first bit, negative numbers with every bit inverted."""
    cdef int integral = precision - scale
    cdef int int_full, int_rest, frac_full, frac_rest, size, k, n, at_, written
    cdef unsigned char raw[64]
    cdef char text[256]
    cdef bint negative
    cdef Py_ssize_t pos = at[0]
    if integral < 0 or scale < 0 or precision > 81:
        raise _Overrun()
    int_full = integral // 9
    int_rest = integral % 9
    frac_full = scale // 9
    frac_rest = scale % 9
    size = int_full * 4 + DIG2BYTES[int_rest] + frac_full * 4 + DIG2BYTES[frac_rest]
    if size == 0 or size > 64 or pos + size > end:
        raise _Overrun()
    memcpy(raw, data + pos, size)
    at[0] = pos + size
    negative = not raw[0] & 0x80
    raw[0] ^= 0x80
    if negative:
        for k in range(size):
            raw[k] ^= 0xFF
    written = 0
    if negative:
        text[0] = b"-"
        written = 1
    at_ = 0
    k = written
    if DIG2BYTES[int_rest]:
        n = DIG2BYTES[int_rest]
        written += snprintf(text + written, 256 - written, "%llu", _be(raw + at_, n))
        at_ += n
    for _ in range(int_full):
        written += snprintf(text + written, 256 - written, "%09llu", _be(raw + at_, 4))
        at_ += 4
    if written == k:
        text[written] = b"0"
        written += 1
    if scale:
        text[written] = b"."
        written += 1
        for _ in range(frac_full):
            written += snprintf(text + written, 256 - written, "%09llu", _be(raw + at_, 4))
            at_ += 4
        if DIG2BYTES[frac_rest]:
            n = DIG2BYTES[frac_rest]
            written += snprintf(text + written, 256 - written, "%0*llu", frac_rest,
                                _be(raw + at_, n))
    return Decimal(text[:written].decode("ascii"))
