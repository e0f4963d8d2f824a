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

    @property
    def changes(self) -> int:
        """Row changes written so far."""
        return len(self.expected)

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


class _Ids:
    """Live ids with O(1) add, remove and random pick."""

    def __init__(self) -> None:
        self.ids: list[Any] = []
        self.where: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: Any) -> bool:
        return key in self.where

    def add(self, key: Any) -> None:
        self.where[key] = len(self.ids)
        self.ids.append(key)

    def remove(self, key: Any) -> None:
        at = self.where.pop(key)
        last = self.ids.pop()
        if last != key:
            self.ids[at] = last
            self.where[last] = at

    def pick(self, rng: random.Random) -> Any:
        return self.ids[rng.randrange(len(self.ids))]


class OrderWorkload:
    """Issue 20's workload: orders with their order lines, and a ``kv`` table whose keys move.

    ``backlog(rows)`` commits one transaction inserting orders with 1-3 lines each, ``rows``
    rows in all (issue 20 started its nodes behind five of 100k rows). ``run(n)`` commits
    ``n`` transactions of ``STEPS`` random steps each:

    * insert an order with 1-3 order lines;
    * update an order;
    * delete an order and its lines;
    * move a kv row to a new key, ``UPDATE kv SET k='moved-<n>' WHERE k=...``, so a later
      move of that row removes ``moved-<n>`` again (until kv holds ``kv_rows`` keys, the
      step inserts one instead).

    Deletes mostly pick one of the latest orders and kv is small, so a batch of a few
    thousand rows often holds both the insert of a key and its delete (or the later move
    that removes it) — what issue 20's merge lost when the target was ahead of the batch.
    ``changes`` counts the row changes written; the same interface as ``Workload`` for
    ``SteadyWriter`` (a transaction's "rows" are its steps here).
    """

    TABLES = ("orders", "order_lines", "kv")
    STEPS = 20
    RECENT = 40  # a delete or update picks one of the latest orders this often
    _STEP_WEIGHTS = {"insert": 35, "update": 25, "delete": 20, "move": 20}

    def __init__(self, mariadb: Any, schema: str, seed: int = 0, kv_rows: int = 64) -> None:
        self.mariadb = mariadb
        self.schema = schema
        self.random = random.Random(seed)
        self.kv_rows = kv_rows
        self.changes = 0
        self.orders = _Ids()
        self.lines: dict[int, list[int]] = {}  # live order -> its line ids
        self.kv = _Ids()
        self.next_order = self.next_line = self.moves = 0
        for ddl in (
            "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(32) NOT NULL,"
            " status VARCHAR(16) NOT NULL, amount DECIMAL(12,2) NOT NULL, version INT NOT NULL)",
            "CREATE TABLE order_lines (id INT PRIMARY KEY, order_id INT NOT NULL,"
            " sku VARCHAR(32) NOT NULL, qty INT NOT NULL, price DECIMAL(10,2) NOT NULL,"
            " KEY (order_id))",
            "CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL, note VARCHAR(64))",
        ):
            mariadb.execute(ddl, database=schema)

    def _money(self) -> str:
        return f"{self.random.randrange(100, 1_000_000) / 100:.2f}"

    def _new_order(self) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        self.next_order += 1
        order = self.next_order
        row = (order, f"c{self.random.randrange(5000)}", "new", self._money(), 0)
        lines = []
        for _ in range(self.random.randint(1, 3)):
            self.next_line += 1
            sku = f"sku-{self.random.randrange(10_000)}"
            lines.append((self.next_line, order, sku, self.random.randint(1, 9), self._money()))
        self.orders.add(order)
        self.lines[order] = [line[0] for line in lines]
        self.changes += 1 + len(lines)
        return row, lines

    def backlog(self, rows: int, connection: Any = None) -> None:
        """One transaction of order inserts (multi-row statements), ``rows`` rows in all."""
        conn = connection or self.mariadb.connect(self.schema)
        try:
            with conn.cursor() as cursor:
                cursor.execute("BEGIN")
                written = 0
                while written < rows:
                    orders: list[tuple[Any, ...]] = []
                    lines: list[tuple[Any, ...]] = []
                    while written < rows and len(orders) < 1000:
                        order, its_lines = self._new_order()
                        orders.append(order)
                        lines.extend(its_lines)
                        written += 1 + len(its_lines)
                    cursor.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", orders)
                    cursor.executemany("INSERT INTO order_lines VALUES (%s, %s, %s, %s, %s)", lines)
                cursor.execute("COMMIT")
        finally:
            if connection is None:
                conn.close()

    def run(
        self,
        transactions: int,
        max_rows: int = STEPS,
        connection: Any = None,
        min_rows: int = STEPS,
    ) -> None:
        conn = connection or self.mariadb.connect(self.schema)
        kinds, weights = zip(*self._STEP_WEIGHTS.items(), strict=True)
        try:
            with conn.cursor() as cursor:
                for _ in range(transactions):
                    cursor.execute("BEGIN")
                    changes = self.changes
                    for _ in range(self.random.randint(min_rows, max_rows)):
                        self._step(cursor, self.random.choices(kinds, weights)[0])
                    cursor.execute("COMMIT")
                    assert self.changes > changes
        finally:
            if connection is None:
                conn.close()

    def _pick_order(self) -> int | None:
        if not self.orders:
            return None
        if self.random.random() < 0.7:
            recent = self.next_order - self.random.randrange(self.RECENT)
            if recent in self.orders:
                return recent
        return int(self.orders.pick(self.random))

    def _step(self, cursor: Any, kind: str) -> None:
        if kind == "move":
            self._move(cursor)
            return
        order = None if kind == "insert" else self._pick_order()
        if order is None:
            row, lines = self._new_order()
            cursor.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", row)
            cursor.executemany("INSERT INTO order_lines VALUES (%s, %s, %s, %s, %s)", lines)
        elif kind == "update":
            status = self.random.choice(("paid", "packed", "shipped", "returned"))
            cursor.execute(
                "UPDATE orders SET status = %s, amount = %s, version = version + 1 WHERE id = %s",
                (status, self._money(), order),
            )
            self.changes += 1
        else:
            cursor.execute("DELETE FROM order_lines WHERE order_id = %s", (order,))
            cursor.execute("DELETE FROM orders WHERE id = %s", (order,))
            self.orders.remove(order)
            self.changes += 1 + len(self.lines.pop(order))

    def _move(self, cursor: Any) -> None:
        self.moves += 1
        if len(self.kv) < self.kv_rows:
            key = f"k-{self.moves}"
            cursor.execute("INSERT INTO kv VALUES (%s, %s, %s)", (key, 0, f"n{self.moves}"))
            self.kv.add(key)
        else:
            old, key = self.kv.pick(self.random), f"moved-{self.moves}"
            cursor.execute("UPDATE kv SET k = %s, v = v + 1 WHERE k = %s", (key, old))
            self.kv.remove(old)
            self.kv.add(key)
        self.changes += 1
