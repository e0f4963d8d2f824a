"""Delivery checks shared by unit and integration tests.

``assert_ordered_at_least_once`` is the property every ferry run must keep:
the delivered sequence (as indexes into the expected sequence) is a
concatenation of runs, each starting at 0 or at a replay point (a committed
position, when known), never skipping ahead, together reaching the end:
nothing lost, order kept, duplicates only from replays.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Event = tuple[str, str, int, int]  # (table, op, id, seq)


def assert_ordered_at_least_once(
    delivered: Iterable[int], total: int, replay_points: set[int] | None = None
) -> None:
    expected = 0
    for index in delivered:
        if index == expected:
            expected += 1
            continue
        assert index < expected, f"skipped ahead: got #{index} while expecting #{expected}"
        if replay_points is not None:
            assert index in replay_points, f"replay from #{index}, never a committed point"
        expected = index + 1
    assert expected == total, f"delivery ended at #{expected} of {total}"


def assert_every_change_in_order_per_key(delivered: list[Event], expected: list[Event]) -> int:
    """At-least-once delivery through failovers, per key; returns the number of repeats.

    Every expected change arrives; the first delivery of each change comes after the first
    deliveries of every earlier change of its key (table, id); anything else is a repeat
    of a change already delivered (a replay of a batch that was in flight). A frozen node
    that wakes up mid-load may repeat its batch after its successor's newer writes: that
    is a repeat too, which is why repeats are not required to be in order.
    """
    where = {event: i for i, event in enumerate(expected)}
    seen: set[Event] = set()
    newest: dict[tuple[str, int], int] = {}
    repeats = 0
    for event in delivered:
        index = where.get(event)
        assert index is not None, f"delivered a change that never happened: {event}"
        if event in seen:
            repeats += 1
            continue
        seen.add(event)
        key = (event[0], event[2])
        assert index > newest.get(key, -1), f"{event} first arrived after a later change of its key"
        newest[key] = index
    missing = [event for event in expected if event not in seen]
    assert not missing, f"{len(missing)} changes never arrived, e.g. {missing[:5]}"
    return repeats


def indexes(delivered: list[Event], expected: list[Event]) -> list[int]:
    """Map delivered events to their index in the expected list (each event is unique)."""
    where = {event: i for i, event in enumerate(expected)}
    unknown = [e for e in delivered if e not in where]
    assert not unknown, f"delivered events that never happened: {unknown[:5]}"
    return [where[e] for e in delivered]


_OPS = {"c": "insert", "u": "update", "d": "delete", "r": "insert"}


def event_of(message: dict[str, Any]) -> Event | None:
    """(table, op, id, seq) of a debezium-json row change; None for a DDL message."""
    if message.get("op") not in _OPS:
        return None
    row = message["after"] if message["after"] is not None else message["before"]
    return (message["source"]["table"], _OPS[message["op"]], row["id"], row["seq"])


def jsonl_events(path: Path) -> list[Event]:
    """(table, op, id, seq) of every row change in a debezium-json lines file."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [e for e in (event_of(json.loads(line)) for line in lines) if e is not None]


class Workload:
    """Random inserts/updates/deletes over a few tables; remembers every event it caused.

    Each write sets ``seq`` to a fresh number, so every event is unique. ``keys`` ids per
    table; with ``key_changes`` (a probability) an update may also move a row to a free id
    (the event is keyed by the new id, as the sinks key it).
    """

    TABLES = ("orders", "items", "users")

    def __init__(
        self, mariadb: Any, schema: str, seed: int = 0, keys: int = 50, key_changes: float = 0.0
    ) -> None:
        self.mariadb = mariadb
        self.schema = schema
        self.random = random.Random(seed)
        self.keys = keys
        self.key_changes = key_changes
        self.expected: list[Event] = []
        self.live: dict[str, dict[int, int]] = {t: {} for t in self.TABLES}
        self.seq = 0
        for table in self.TABLES:
            mariadb.execute(
                f"CREATE TABLE `{schema}`.`{table}` (id INT PRIMARY KEY, seq BIGINT NOT NULL,"
                " note VARCHAR(64), amount DECIMAL(12,2))"
            )

    def run(
        self, transactions: int, max_rows: int = 4, connection: Any = None, min_rows: int = 1
    ) -> None:
        own = connection is None
        conn = connection or self.mariadb.connect(self.schema)
        try:
            with conn.cursor() as cursor:
                for _ in range(transactions):
                    cursor.execute("BEGIN")
                    rows = self.random.randint(min_rows, max_rows)
                    events = [self._write(cursor) for _ in range(rows)]
                    cursor.execute("COMMIT")
                    self.expected.extend(events)
        finally:
            if own:
                conn.close()

    def _write(self, cursor: Any) -> Event:
        table = self.random.choice(self.TABLES)
        key = self.random.randrange(self.keys)
        rows = self.live[table]
        self.seq += 1
        if key in rows and self.random.random() < 0.25:
            cursor.execute(f"DELETE FROM `{table}` WHERE id = %s", (key,))
            return (table, "delete", key, rows.pop(key))
        if self.key_changes and key in rows and self.random.random() < self.key_changes:
            new = self.random.randrange(self.keys)
            if new not in rows:
                cursor.execute(
                    f"UPDATE `{table}` SET id = %s, seq = %s WHERE id = %s", (new, self.seq, key)
                )
                del rows[key]
                rows[new] = self.seq
                return (table, "update", new, self.seq)
        if key in rows:
            cursor.execute(
                f"UPDATE `{table}` SET seq = %s, amount = amount + 1 WHERE id = %s", (self.seq, key)
            )
            rows[key] = self.seq
            return (table, "update", key, self.seq)
        cursor.execute(
            f"INSERT INTO `{table}` VALUES (%s, %s, %s, %s)", (key, self.seq, f"n{self.seq}", 1.5)
        )
        rows[key] = self.seq
        return (table, "insert", key, self.seq)
