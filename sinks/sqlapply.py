"""The pure half of the SQL sinks: what merged actions become, and how a failure reads.

No I/O here (``statement_bytes`` only renders with the driver, offline). The MySQL
sink's statements are built here (:func:`build_statements`: multi-row
``INSERT … ON DUPLICATE KEY UPDATE`` and ``DELETE … IN``, full-row matches for tables
without a key), with what it must know of a target table (:class:`TargetTable`) and
its failure messages (:func:`describe_failure`, :func:`packet_reason`). The kind of
write an action needs (:func:`kind_of`: upsert/delete by key, or insert/update/delete
of a whole row for a table without a key), the columns it writes (:func:`columns_of`)
and its masked key (:func:`key_text`) are the same for every SQL target: the
PostgreSQL sink uses them with its own dialect (``sinks.postgresql``).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pymysql

from sinks.merge import Merged
from sinks.redact import masked_key, masked_row, scrub

Kind = Literal["upsert", "delete", "insert", "update_row", "delete_row"]
Target = Callable[[str, str], tuple[str, str]]


def ident(name: str) -> str:
    """A backquoted identifier, safe inside a statement executed with parameters (``%`` doubled)."""
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | timedelta):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_PLAIN = frozenset({int, str, bytes, Decimal, datetime, date, timedelta, float, bool, type(None)})


def to_db(value: Any) -> Any:
    """A selector value as a driver parameter: SET → 'a,b', JSON → text, the rest as is."""
    if type(value) in _PLAIN:  # the common case, checked first (hot path)
        return value
    if isinstance(value, set | frozenset):
        return ",".join(sorted(str(item) for item in value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def _estimate(values: Sequence[Any]) -> int:
    """Upper-bound guess of the bytes the escaped values take in a statement."""
    size = 4 + 32 * len(values)
    for value in values:
        kind = type(value)
        if kind is str:
            size += 3 * len(value)
        elif kind is bytes or kind is bytearray:
            size += 2 * len(value)
    return size


@dataclass(slots=True)
class Statement:
    """One statement to execute: SQL with ``%s`` placeholders, flat args, the actions it carries."""

    kind: Kind
    target: tuple[str, str]
    sql: str
    args: list[Any]
    actions: list[Merged]

    @property
    def shape(self) -> str:
        """The SQL with one row's placeholders and a row count (for messages)."""
        n = len(self.actions)
        sql = self.sql
        if n > 1:
            sql = re.sub(r"(\((?:%s,?)+\))(?:,\1)+", r"\1", sql)
            sql = re.sub(r"IN \(((?:%s,?)+)\)", "IN (%s…)", sql)
        return f"{sql} -- {n} row(s)" if n > 1 else sql


def kind_of(action: Merged) -> Kind:
    if action.primary_key:
        return "delete" if action.op == "delete" else "upsert"
    if action.op == "delete":
        return "delete_row"
    return "update_row" if action.op == "update" else "insert"


def columns_of(action: Merged, kind: Kind) -> tuple[str, ...]:
    if kind in ("upsert", "insert"):
        assert action.after is not None
        return tuple(action.after)
    if kind == "delete":
        return action.primary_key
    assert action.before is not None
    return tuple(action.before)


def _render(
    kind: Kind,
    target: tuple[str, str],
    columns: tuple[str, ...],
    pk: tuple[str, ...],
    rows: int,
    set_columns: tuple[str, ...] = (),
) -> str:
    table = f"{ident(target[0])}.{ident(target[1])}"
    if kind in ("upsert", "insert"):
        one = "(" + ",".join(["%s"] * len(columns)) + ")"
        sql = f"INSERT INTO {table} ({','.join(ident(c) for c in columns)}) VALUES " + ",".join(
            [one] * rows
        )
        if kind == "upsert":
            update = [c for c in columns if c not in pk] or list(pk[:1])
            sql += " ON DUPLICATE KEY UPDATE " + ",".join(
                f"{ident(c)}=VALUES({ident(c)})" for c in update
            )
        return sql
    if kind == "delete":
        if len(pk) == 1:
            return f"DELETE FROM {table} WHERE {ident(pk[0])} IN ({','.join(['%s'] * rows)})"
        one = "(" + ",".join(["%s"] * len(pk)) + ")"
        cols = ",".join(ident(c) for c in pk)
        return f"DELETE FROM {table} WHERE ({cols}) IN ({','.join([one] * rows)})"
    match = " AND ".join(f"{ident(c)} <=> %s" for c in columns)
    if kind == "delete_row":
        return f"DELETE FROM {table} WHERE {match} LIMIT 1"
    assignments = ",".join(f"{ident(c)}=%s" for c in set_columns)
    return f"UPDATE {table} SET {assignments} WHERE {match} LIMIT 1"


@dataclass(frozen=True, slots=True)
class TargetTable:
    """What the sink must know of a target table to store every value exactly as the source.

    ``generated``: VIRTUAL/STORED columns, never written (the target computes them;
    writing one is an error). ``floats``: FLOAT columns, with (M, D) when declared
    ``FLOAT(M,D)``. A FLOAT holds a single-precision value: a row is matched on the
    exact double of that value (a decimal like 42.42 never equals it), and a value
    MySQL rounded up past FLOAT(M,D)'s range on insert (-99999999.99 is stored as
    -1e8 in FLOAT(10,2)) is written back as the range limit, which rounds to the
    same stored value, instead of being refused as out of range.
    """

    generated: frozenset[str] = frozenset()
    floats: dict[str, tuple[int, int] | None] = field(default_factory=dict)

    def write_value(self, column: str, value: Any) -> Any:
        """The driver parameter that stores ``value`` in ``column`` exactly."""
        if type(value) is float and column in self.floats:
            declared = self.floats[column]
            if declared is not None:
                m, d = declared
                limit = Decimal(10) ** (m - d) - Decimal(10) ** -d
                if abs(value) > limit and _single(float(limit)) == _single(abs(value)):
                    return limit if value > 0 else -limit
        return to_db(value)

    def match_value(self, column: str, value: Any) -> Any:
        """The driver parameter that equals ``value`` stored in ``column`` (``<=>``)."""
        if type(value) is float and column in self.floats:
            return _single(value)
        return to_db(value)


_NO_FACTS = TargetTable()


def _single(value: float) -> float:
    """The exact double of the single-precision value nearest to ``value``."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _no_facts(_: tuple[str, str]) -> TargetTable:
    return _NO_FACTS


def build_statements(
    actions: Iterable[Merged],
    target: Target,
    max_rows: int = 1000,
    max_bytes: int = 4 << 20,
    facts: Callable[[tuple[str, str]], TargetTable] = _no_facts,
) -> list[Statement]:
    """Group consecutive actions of one table and kind into multi-row statements.

    The order of ``actions`` is kept (it is the apply order chosen by
    :mod:`sinks.merge`). Upserts and deletes by key, and inserts into tables
    without a key, are chunked by ``max_rows`` and by ``max_bytes`` of
    estimated statement size; full-row matches (no-key update/delete) are one
    statement each, since each must hit exactly one row. ``facts(target)``
    says how to write each target table's values (see :class:`TargetTable`).
    """
    out: list[Statement] = []
    run: list[Merged] = []
    run_args: list[Any] = []
    run_key: tuple[Kind, tuple[str, str], tuple[str, ...], tuple[str, ...]] | None = None
    size = 0

    def flush() -> None:
        nonlocal run, run_args, size
        if run and run_key is not None:
            kind, tgt, columns, pk = run_key
            sql = _render(kind, tgt, columns, pk, len(run))
            out.append(Statement(kind, tgt, sql, run_args, run))
        run, run_args, size = [], [], 0

    for action in actions:
        kind = kind_of(action)
        tgt = target(action.schema, action.table)
        table = facts(tgt)
        computed = table.generated
        columns = columns_of(action, kind)
        if computed:
            columns = tuple(c for c in columns if c not in computed)
        if kind in ("update_row", "delete_row"):
            flush()
            assert action.before is not None
            match_args = [table.match_value(c, action.before[c]) for c in columns]
            if kind == "delete_row":
                sql, args = _render(kind, tgt, columns, (), 1), match_args
            else:
                assert action.after is not None
                set_columns = tuple(c for c in action.after if c not in computed)
                sql = _render(kind, tgt, columns, (), 1, set_columns)
                args = [table.write_value(c, action.after[c]) for c in set_columns] + match_args
            out.append(Statement(kind, tgt, sql, args, [action]))
            run_key = None
            continue
        image = action.row
        if table.floats:
            values = [table.write_value(c, image.get(c)) for c in columns]
        else:
            values = [to_db(image.get(c)) for c in columns]
        est = _estimate(values)
        key = (kind, tgt, columns, action.primary_key)
        if run and (key != run_key or len(run) >= max_rows or size + est > max_bytes):
            flush()
        run_key = key
        run.append(action)
        run_args.extend(values)
        size += est
    flush()
    return out


def describe_failure(stmt: Statement, exc: BaseException, reason: str = "") -> str:
    """Table, key, statement and (masked) row of a failed statement; ``reason`` (ferry's
    words) instead of the server's message when given."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    server = str(exc.args[1]) if code is not None and len(exc.args) > 1 else str(exc)
    server = scrub(server, (action.row for action in stmt.actions))
    if reason:
        code, server = None, reason
    at_row = re.search(r"at row (\d+)", server)
    index = int(at_row.group(1)) - 1 if at_row else (0 if len(stmt.actions) == 1 else None)
    first = stmt.actions[0]
    source = f"{first.schema}.{first.table}"
    target = f"{stmt.target[0]}.{stmt.target[1]}"
    parts = [f"MySQL sink: {source} (target {target}): " + (f"[{code}] " if code else "") + server]
    if index is not None and 0 <= index < len(stmt.actions):
        action = stmt.actions[index]
        if action.primary_key:
            parts.append(f"key {key_text(action)}")
        parts.append(f"row {masked_row(action.row)}")
    else:
        keys = [key_text(a) for a in stmt.actions[:5]]
        more = "…" if len(stmt.actions) > 5 else ""
        parts.append(f"one of {len(stmt.actions)} keys {', '.join(keys)}{more}")
    parts.append(f"statement: {stmt.shape}")
    return "; ".join(parts)


#: What a statement larger than the server's max_allowed_packet gets: 1153 when the server
#: answers, or a dropped connection (2006/2013) when it closes it while the client still
#: sends (seen on MariaDB 10.11 from about 3x the limit).
PACKET_CODES = frozenset({1153, 2006, 2013})


def statement_bytes(conn: Any, stmt: Statement) -> int:
    """The bytes ``stmt`` takes on the wire, as the driver renders it (no server needed)."""
    sql = pymysql.cursors.Cursor(conn).mogrify(stmt.sql, stmt.args)
    return len(sql.encode(conn.encoding, "surrogateescape")) + 1  # + the command byte


def packet_reason(size: int, packet: int, rows: int, configured: int, dropped: bool) -> str:
    """Ferry's words for a statement over the target's max_allowed_packet."""
    said = "refused it and dropped the connection" if dropped else "refused it"
    reason = (
        f"the statement is {size} bytes, larger than the target's max_allowed_packet"
        f" ({packet} bytes): the server {said}"
    )
    if rows == 1:
        return reason + (
            f". One row is that large, and a row is never split: raise max_allowed_packet"
            f" on the target to at least {size} (SET GLOBAL and its my.cnf;"
            " sink.max_statement_bytes only bounds statements of several rows)"
        )
    return reason + (
        f". Lower sink.max_statement_bytes (now {configured}) or raise the target's"
        " max_allowed_packet"
    )


def key_text(action: Merged) -> str:
    """The masked primary key of an action, for messages."""
    return masked_key(action.primary_key, action.key())
