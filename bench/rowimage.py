"""Row-image decoding speed of ``selector.values.decode_rows``, without a server.

    python bench/rowimage.py [--rows 20000] [--repeat 7] [--root DIR]

Synthetic WRITE_ROWS bodies of a few table shapes, text in several charsets, decoded by
whichever decoder ``selector.values`` uses (the compiled one when it is built;
``FERRY_ROW_DECODER=python`` for the pure-Python one). Prints the best of ``--repeat``
runs per shape, in rows/s. ``--root`` imports ferry from another checkout (to compare
a change with main on the same machine, in the same minute).
"""

# ruff: noqa: E402  (sys.path is fixed before the imports)
from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace
from typing import Any


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(__file__)))
    return parser.parse_args()


ARGS = _args()
# bench/select.py would shadow the standard library's select module: drop this folder
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.abspath(ARGS.root))

from pymysqlreplication.constants import FIELD_TYPE as F

from selector import values as vals


def col(name: str, kind: int, **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=kind, unsigned=False, **extra)


def varchar(name: str, charset: str, max_length: int = 200) -> SimpleNamespace:
    return col(name, F.VARCHAR, max_length=max_length, character_set_name=charset)


def field(text: str, codec: str) -> bytes:
    raw = text.encode(codec)
    return bytes([len(raw)]) + raw


INT = col("id", F.LONG)
# (name, columns, one row's fields after the NULL bitmap)
SHAPES = [
    (
        "narrow utf8mb4 (int, 3 varchar)",
        [INT, varchar("a", "utf8mb4"), varchar("b", "utf8mb4"), varchar("c", "utf8mb4")],
        (7).to_bytes(4, "little")
        + field("alice@example.com", "utf-8")
        + field("Zoë Ångström", "utf-8")
        + field("some plain ascii text here", "utf-8"),
    ),
    (
        "narrow latin1 (int, 3 varchar)",
        [INT, varchar("a", "latin1"), varchar("b", "latin1"), varchar("c", "latin1")],
        (7).to_bytes(4, "little")
        + field("alice@example.com", "cp1252")
        + field("Zoë Ångström €", "cp1252")
        + field("some plain ascii text here", "cp1252"),
    ),
    (
        "narrow cp1250 + ascii (int, 3 varchar)",
        [INT, varchar("a", "cp1250"), varchar("b", "cp1250"), varchar("c", "ascii")],
        (7).to_bytes(4, "little")
        + field("Příliš žluťoučký", "cp1250")
        + field("kůň úpěl", "cp1250")
        + field("some plain ascii text here", "ascii"),
    ),
    (
        "wide utf8mb4 (int, 12 varchar)",
        [INT, *(varchar(f"v{k}", "utf8mb4") for k in range(12))],
        (7).to_bytes(4, "little")
        + b"".join(field(f"value number {k}", "utf-8") for k in range(12)),
    ),
]


def main() -> int:
    print(f"decoder: {'compiled' if vals._compiled is not None else 'pure Python'}")
    for name, columns, fields in SHAPES:
        plan = vals.plan_for(columns)
        nulls = bytes((len(columns) + 7) // 8)
        present = b"\xff" * ((len(columns) + 7) // 8)
        rows_per_event = 50
        body = (nulls + fields) * rows_per_event
        events = max(1, ARGS.rows // rows_per_event)
        best = float("inf")
        for _ in range(ARGS.repeat):
            start = time.perf_counter()
            for _ in range(events):
                vals.decode_rows(plan, body, present)
            best = min(best, time.perf_counter() - start)
        print(f"{name:45s} {events * rows_per_event / best:12,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
