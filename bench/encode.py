"""debezium-json encoding speed of row changes (``DebeziumJson.messages``), without a server.

    python bench/encode.py [--rows 20000] [--repeat 7] [--shape narrow wide] [--root DIR]
                           [--option decimal.handling.mode=string ...]

Row changes as the binlog of applications gives them: one row per statement, so every
row is its own rows event (its own ``SourceEvent``), 500 rows per transaction (one
``Position`` and GTID each), of the tables of ``bench/workload.py`` (``narrow``,
``wide``, ``composite``), with the Python types the row decoder makes (int, str,
Decimal at the column's scale, naive datetime with µs, date, float, JsonText, None).
Updates carry both images (``binlog_row_image=FULL``). Prints µs per row, best of
``--repeat``, for inserts, updates, deletes and the 70/20/10 mix in binlog order.
``--root`` imports ferry from another checkout (to compare a change with main on the
same machine, in the same minute).
"""

# ruff: noqa: E402  (sys.path is fixed before the imports)
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import random
import sys
import time
from decimal import Decimal
from typing import Any


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="row changes per op")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--shape", nargs="+", default=["narrow", "wide"])
    parser.add_argument("--option", action="append", default=[], help="sink.debezium NAME=VALUE")
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(__file__)))
    return parser.parse_args()


ARGS = _args()
_HERE = os.path.dirname(os.path.abspath(__file__))
# bench/select.py would shadow the standard library's select module: drop this folder
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.abspath(ARGS.root))

_spec = importlib.util.spec_from_file_location("workload", os.path.join(_HERE, "workload.py"))
assert _spec is not None and _spec.loader is not None
workload = sys.modules["workload"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(workload)

from pipeline.model import JsonText, Position, RowChange, SourceEvent
from selector.schemas import SchemaHistory
from sinks.formats.debezium.envelope import DebeziumJson
from sinks.formats.debezium.options import DebeziumOptions

TXN_ROWS = 500
NOW_NS = 1_714_571_100_123_456_789


def definition(shape: str) -> Any:
    history = SchemaHistory()
    history._server_charset = "utf8mb4"
    history._charsets[workload.SCHEMA] = "utf8mb4"
    [change] = history.apply(workload.ddl(shape), workload.SCHEMA)
    return change.definition


def _decimal(rng: random.Random, digits: int, scale: int) -> Decimal:
    # as the decoder makes it: from text with exactly ``scale`` fraction digits
    unscaled = rng.randrange(-(10**digits) + 1, 10**digits)
    sign = "-" if unscaled < 0 else ""
    text = f"{abs(unscaled):0{scale + 1}d}"
    return Decimal(f"{sign}{text[:-scale]}.{text[-scale:]}")


def row(shape: str, i: int, rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    """Row number ``i`` of ``shape``, as the row decoder gives it."""
    if shape == "narrow":
        return {
            "id": i,
            "a": rng.randrange(10**6),
            "b": f"name-{i:09d}",
            "c": _decimal(rng, 8, 2),
            "written_at": now,
        }
    if shape == "composite":
        tenant, rest = divmod(i, 1_000_000)
        order, line = divmod(rest, 10)
        return {
            "tenant": tenant,
            "order_id": order,
            "line": line,
            "qty": rng.randrange(100),
            "price": _decimal(rng, 6, 2),
            "sku": f"SKU-{rng.randrange(10**8):08d}",
            "written_at": now,
        }
    values: dict[str, Any] = {"id": i, "written_at": now}
    values.update({f"i{n}": rng.randrange(-(2**31), 2**31) for n in range(8)})
    values.update({f"l{n}": rng.randrange(-(2**62), 2**62) for n in range(4)})
    values.update({f"v{n}": f"v{n}-{rng.randrange(10**12)}" for n in range(8)})
    values.update({f"t{n}": workload._TEXT[: 40 + rng.randrange(160)] for n in range(3)})
    values["t3"] = None
    values.update({f"m{n}": _decimal(rng, 12, 4) for n in range(6)})
    values.update({f"f{n}": rng.random() * 1e6 for n in range(4)})
    doc = {"id": i, "tags": ["a", "b", str(rng.randrange(100))], "price": rng.randrange(10**5)}
    values["j0"] = JsonText(json.dumps(doc))
    values["j1"] = None
    values["day"] = dt.date(2024, 1 + i % 12, 1 + i % 28)
    values["flag"] = i % 2
    return values


def updated(shape: str, before: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """``bench/workload.py``'s UPDATE of one row."""
    after = dict(before, written_at=now)
    if shape == "narrow":
        after.update(a=before["a"] + 1, b=f"upd-{before['id']}")
    elif shape == "composite":
        after.update(qty=before["qty"] + 1, price=before["price"] + 1)
    else:
        after.update(i0=before["i0"] + 1, v0=f"upd-{before['id']}", m0=before["m0"] + 1)
    return after


def changes(shape: str, rows: int) -> dict[str, list[RowChange]]:
    """``rows`` inserts, updates and deletes, and a 70/20/10 mix, one row per rows event."""
    table = definition(shape)
    rng = random.Random(7)
    key = table.primary_key
    out: dict[str, list[RowChange]] = {"insert": [], "update": [], "delete": [], "mix": []}
    pos = 4
    clock = dt.datetime(2024, 5, 1, 13, 45, 0, 123456)

    def change(op: str, before: Any, after: Any, index: int, txn: Position, gtid: str) -> Any:
        nonlocal pos, clock
        pos += 120
        clock += dt.timedelta(microseconds=137)
        ts = float(int(clock.timestamp()))
        event = SourceEvent(pos, 1, index)
        return RowChange(
            workload.SCHEMA, "t", op, before, after, key, ts, txn, gtid, index, table, event
        )

    def stream(ops: list[str]) -> list[RowChange]:
        made = []
        for k, op in enumerate(ops):
            index = k % TXN_ROWS
            if index == 0:
                txn = Position("mysql-bin.000001", pos, f"0-1-{k // TXN_ROWS}")
                gtid = f"0-1-{k // TXN_ROWS + 1}"
            image = row(shape, k, rng, clock)
            if op == "insert":
                made.append(change(op, None, image, index, txn, gtid))
            elif op == "update":
                made.append(change(op, image, updated(shape, image, clock), index, txn, gtid))
            else:
                made.append(change(op, image, None, index, txn, gtid))
        return made

    for op in ("insert", "update", "delete"):
        out[op] = stream([op] * rows)
    cycle = ["insert"] * 7 + ["update"] * 2 + ["delete"]  # transactions of one cycle
    out["mix"] = stream([cycle[k // TXN_ROWS % 10] for k in range(rows)])
    return out


def timed(fmt: Any, stream: list[RowChange]) -> float:
    """µs per row change, best of ``--repeat``."""
    messages = fmt.messages
    best = float("inf")
    for _ in range(ARGS.repeat):
        start = time.perf_counter()
        for change in stream:
            messages(change, NOW_NS)
        best = min(best, time.perf_counter() - start)
    return best / len(stream) * 1e6


def main() -> int:
    options = dict(o.split("=", 1) for o in ARGS.option)
    print(f"ferry from {os.path.abspath(ARGS.root)}; options {options or 'default'}")
    for shape in ARGS.shape:
        streams = changes(shape, ARGS.rows)
        fmt = DebeziumJson("bench", 1, DebeziumOptions.model_validate(options))
        result = {op: timed(fmt, stream) for op, stream in streams.items()}
        print(f"{shape:10s} " + "  ".join(f"{op} {us:6.2f} µs" for op, us in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
