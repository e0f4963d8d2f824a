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


def indexes(delivered: list[Event], expected: list[Event]) -> list[int]:
    """Map delivered events to their index in the expected list (each event is unique)."""
    where = {event: i for i, event in enumerate(expected)}
    unknown = [e for e in delivered if e not in where]
    assert not unknown, f"delivered events that never happened: {unknown[:5]}"
    return [where[e] for e in delivered]


_OPS = {"c": "insert", "u": "update", "d": "delete", "r": "insert"}


def jsonl_events(path: Path) -> list[Event]:
    """(table, op, id, seq) of every row change in a debezium-json lines file."""
    events: list[Event] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        if "op" not in message or message["op"] not in _OPS:
            continue  # DDL line
        row = message["after"] if message["after"] is not None else message["before"]
        events.append((message["source"]["table"], _OPS[message["op"]], row["id"], row["seq"]))
    return events


class Workload:
    """Random inserts/updates/deletes over a few tables; remembers every event it caused.

    Each write sets ``seq`` to a fresh number, so every event is unique.
    """

    TABLES = ("orders", "items", "users")

    def __init__(self, mariadb: Any, schema: str, seed: int = 0) -> None:
        self.mariadb = mariadb
        self.schema = schema
        self.random = random.Random(seed)
        self.expected: list[Event] = []
        self.live: dict[str, dict[int, int]] = {t: {} for t in self.TABLES}
        self.seq = 0
        for table in self.TABLES:
            mariadb.execute(
                f"CREATE TABLE `{schema}`.`{table}` (id INT PRIMARY KEY, seq BIGINT NOT NULL,"
                " note VARCHAR(64), amount DECIMAL(12,2))"
            )

    def run(self, transactions: int, max_rows: int = 4, connection: Any = None) -> None:
        own = connection is None
        conn = connection or self.mariadb.connect(self.schema)
        try:
            with conn.cursor() as cursor:
                for _ in range(transactions):
                    cursor.execute("BEGIN")
                    events = [self._write(cursor) for _ in range(self.random.randint(1, max_rows))]
                    cursor.execute("COMMIT")
                    self.expected.extend(events)
        finally:
            if own:
                conn.close()

    def _write(self, cursor: Any) -> Event:
        table = self.random.choice(self.TABLES)
        key = self.random.randrange(50)
        rows = self.live[table]
        self.seq += 1
        if key in rows and self.random.random() < 0.25:
            cursor.execute(f"DELETE FROM `{table}` WHERE id = %s", (key,))
            return (table, "delete", key, rows.pop(key))
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
