"""ferry's ``debezium-json`` against real Debezium over the same binlog, event by event.

    records = ferry_records(server, databases, {"decimal.handling.mode": "string"})
    report = compare(debezium_run.records, records)
    report.compared, report.differences            # 20692, []

``ferry_records`` reads the server's binlog from its first file with ferry's own
selector (the one ``ferry run`` uses) and encodes every change with the
``debezium-json`` format, naming topics as Debezium does (``<prefix>.<db>.<table>``,
schema changes on ``<prefix>``). ``compare`` pairs the two streams by where each event
came from in the binlog, then compares key and value with :data:`IGNORED` taken out.

Also a command line, to see every difference over the real-world corpus while working
on the format (records Debezium once, then runs ferry as often as needed):

    python -m tests.debezium_compat OUT_DIR [--config default|string-connect-schemas]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbitrate.config import ArbiterConfig
from arbitrate.redis import RedisArbiter
from pipeline.model import Batch, DdlChange
from pipeline.node import FencedPositionStore
from selector.base import PositionStore
from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector
from selector.store import MemoryPositionStore
from sinks.formats.debezium.envelope import DebeziumJson
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.values import float32
from sinks.kafka import topic_name
from tests.debezium import Record

#: What must differ between the two, and why; everything else must be equal.
IGNORED: dict[tuple[str, ...], str] = {
    # processing time: when each tool wrote the event
    ("ts_ms",): "processing time of the connector",
    ("ts_us",): "processing time of the connector",
    ("ts_ns",): "processing time of the connector",
    # the software that wrote it
    ("source", "version"): "Debezium's version against ferry's",
    # Debezium's MySQL connector reads no MariaDB GTIDs (source.gtid is always null on
    # MariaDB); ferry reads them and says which transaction a change belongs to
    ("source", "gtid"): "the MySQL connector reads no MariaDB GTIDs; ferry does",
}


@dataclass
class Report:
    """What ``compare`` found."""

    compared: int = 0
    differences: list[str] = field(default_factory=list)
    only_debezium: list[str] = field(default_factory=list)
    only_ferry: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.differences or self.only_debezium or self.only_ferry)

    def summary(self, limit: int = 40) -> str:
        lines = [
            f"{self.compared} events compared, {len(self.differences)} differ,"
            f" {len(self.only_debezium)} only from Debezium, {len(self.only_ferry)} only from ferry"
        ]
        lines += self.differences[:limit]
        lines += [f"only Debezium: {e}" for e in self.only_debezium[:limit]]
        lines += [f"only ferry: {e}" for e in self.only_ferry[:limit]]
        return "\n".join(lines)


def ferry_records(
    server: Any,
    databases: Iterable[str],
    properties: Mapping[str, Any] | None = None,
    *,
    schemas: bool = False,
    topic_prefix: str = "dbz",
    timeout_s: float = 300.0,
    nodes: Callable[[], PositionStore] | None = None,
    stops: Sequence[Callable[[Batch, int], bool]] = (),
    in_flight: bool = False,
) -> list[Record]:
    """Every change of ``databases`` from the server's first binlog, as ferry's
    ``debezium-json`` writes it (``properties``: Debezium's option names).

    ``nodes`` gives each node's position store (default: one in memory); at the first of
    ``stops`` that says so of a batch (and the number of records so far), the node stops
    and the next starts from its store, in order: with ``in_flight``, the node dies with
    that batch not acked (the next reads it again), else it acks it first."""
    known = {f.alias for f in DebeziumOptions.model_fields.values()}
    chosen = {k: v for k, v in (properties or {}).items() if k in known}
    options = DebeziumOptions.model_validate(
        {**chosen, "schemas.enable": schemas, "topic.prefix": topic_prefix}
    )
    fmt = DebeziumJson("ferry-compat", options=options)
    dbs = list(databases)
    config = MySQLSourceConfig(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password or "",
        server_id=random.randint(7000, 7999),
        include=[f"{db}.*" for db in dbs],
        start="earliest",
    )
    store = nodes() if nodes is not None else MemoryPositionStore()
    selector = MySQLSelector(config, 1000, 100, store, "ferry-compat")
    selector.start()
    pending = list(stops)
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    idle, idle_batches = 0, 15  # 1.5 s of empty batches
    try:
        while time.monotonic() < deadline:
            batch = selector.select()
            read = []
            for change in batch.changes:
                if isinstance(change, DdlChange):
                    topic = topic_prefix
                else:
                    topic = topic_name(
                        f"{topic_prefix}.{{schema}}.{{table}}", change.schema, change.table, ""
                    )
                for key, value in fmt.messages(change):
                    read.append(
                        Record(
                            topic,
                            None if key is None else json.loads(key),
                            None if value is None else json.loads(value),
                        )
                    )
            if pending and pending[0](batch, len(records) + len(read)):
                pending.pop(0)
                if not in_flight:
                    selector.ack(batch.batch_id)
                    records += read
                selector.stop()  # a new node goes on from the committed position
                assert nodes is not None
                selector = MySQLSelector(config, 1000, 100, nodes(), "ferry-compat")
                selector.start()
                continue
            records += read
            selector.ack(batch.batch_id)
            # the binlog was written before: idle means read to its end
            idle = 0 if batch.changes else idle + 1
            if idle >= idle_batches:
                return records
        raise TimeoutError(f"ferry did not read the binlog within {timeout_s:.0f} s")
    finally:
        selector.stop()


class RedisNodes:
    """Nodes of one pipeline on a real Redis, one after the other: each call makes a node
    that takes the mainstem (from the one before, which gives it up) and recovers the
    committed position and the schema history from Redis, as ``ferry run`` does. With
    ``standby``, the next node is already waiting for the mainstem when the one before
    stops."""

    def __init__(self, url: str, prefix: str, pipeline: str, standby: bool = False) -> None:
        self.config = ArbiterConfig.model_validate(
            {"url": url, "key_prefix": prefix.rstrip(":"), "lock_ttl_ms": 2000}
        )
        self.pipeline = pipeline
        self.standby = standby
        self.arbiters: list[RedisArbiter] = []
        self._active: RedisArbiter | None = None
        self._waiting: tuple[RedisArbiter, threading.Thread, dict[str, Any]] | None = None

    def _start_node(self) -> tuple[RedisArbiter, threading.Thread, dict[str, Any]]:
        """A node waiting for the mainstem (in a thread)."""
        arbiter = RedisArbiter(self.config, self.pipeline, f"node{len(self.arbiters) + 1}")
        self.arbiters.append(arbiter)
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(epoch=arbiter.await_active()))
        thread.start()
        return arbiter, thread, result

    def __call__(self) -> PositionStore:
        arbiter, thread, result = self._waiting or self._start_node()
        self._waiting = None
        if self._active is not None:
            self._active.close()  # the node before gives the mainstem up
        thread.join(30)
        self._active = arbiter
        if self.standby:
            self._waiting = self._start_node()  # waits while this one is active
        return FencedPositionStore(arbiter, result["epoch"], arbiter.load_position(), None)

    def close(self) -> None:
        for arbiter in self.arbiters:
            arbiter.close()


def _where(record: Record) -> tuple[Any, ...]:
    """Where an event came from in the binlog, and which of that event's messages it is."""
    payload = record.payload
    if payload is None:  # a tombstone: placed after the message of the same key
        return ("tombstone",)
    source = payload.get("source") or {}
    return (source.get("file"), source.get("pos"), source.get("row"))


def _pairs(records: list[Record]) -> dict[tuple[Any, ...], Record]:
    """Records by (binlog place, kind, n-th of that kind there): a tombstone takes the place
    of the message before it, with its own kind."""
    out: dict[tuple[Any, ...], Record] = {}
    seen: collections.Counter[tuple[Any, ...]] = collections.Counter()
    last: tuple[Any, ...] = ()
    for record in records:
        if record.tombstone:
            place = (*last, "tombstone")
        else:
            payload = record.payload
            kind = payload.get("op") or ("ddl:" + str(payload.get("ddl")))
            last = (*_where(record), kind)
            place = last
        seen[place] += 1
        out[(*place, seen[place])] = record
    return out


def _strip(value: Any, path: tuple[str, ...] = ()) -> Any:
    """``value`` without the IGNORED fields (looked up in a payload and under "payload")."""
    if isinstance(value, dict):
        if set(value) == {"schema", "payload"}:
            return {"schema": value["schema"], "payload": _strip(value["payload"])}
        return {k: _strip(v, (*path, k)) for k, v in value.items() if (*path, k) not in IGNORED}
    return value


def _diff(a: Any, b: Any, path: str = "", single: frozenset[str] = frozenset()) -> list[str]:
    """Where ferry's ``a`` and Debezium's ``b`` differ; at the paths in ``single`` (values
    of single-precision columns) two floats that are the same float32 are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}.{k}: only Debezium {json.dumps(b[k])[:200]}")
            elif k not in b:
                out.append(f"{path}.{k}: only ferry {json.dumps(a[k])[:200]}")
            else:
                out += _diff(a[k], b[k], f"{path}.{k}", single)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for k, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _diff(x, y, f"{path}[{k}]", single)
        ]
    if isinstance(a, float) and isinstance(b, float) and path in single and _same_float32(a, b):
        return []
    if a != b or type(a) is not type(b):
        return [f"{path}: ferry {json.dumps(a)[:200]} Debezium {json.dumps(b)[:200]}"]
    return []


def _same_float32(ours: float, theirs: float) -> bool:
    """Java 17's Float.toString does not always print the shortest decimal of a float
    (Java 19+ does): 1.79613773E9 where ferry writes 1.7961377E9. Both read back to the
    same float32; ferry's is the shortest, as Jackson writes it on newer JVMs."""
    try:
        pack = struct.pack
        return pack("<f", ours) == pack("<f", theirs) and float32(ours) == ours
    except OverflowError:
        return False


def _single_precision(column: Mapping[str, Any]) -> bool:
    """A column Debezium writes as a Connect float32 (``FLOAT``, ``FLOAT(p<=24)``, ``REAL``;
    ``FLOAT(M,D)`` and ``FLOAT(p>24)`` are doubles), from its tableChanges entry."""
    base = str(column.get("typeName") or "").split(" ")[0]
    if base == "REAL":
        return True
    length = column.get("length")
    return base in ("FLOAT", "FLOAT4") and column.get("scale") is None and (length or 0) <= 24


def _table_id(text: str) -> tuple[str, str]:
    """``"db"."table"`` (tableChanges' id) as (db, table)."""
    parts = text[1:-1].split('"."')
    return parts[0], parts[-1]


class _SinglePrecision:
    """Which paths of Debezium's events hold single-precision values: the row values of the
    columns its own schema changes (read in order) call FLOAT or REAL, and the defaults of
    the schema fields it types ``float``."""

    def __init__(self) -> None:
        self.columns: dict[tuple[str, str], frozenset[str]] = {}

    def paths(self, record: Record) -> frozenset[str]:
        payload = record.payload
        if not isinstance(payload, dict):
            return frozenset()
        for change in payload.get("tableChanges") or ():
            key = _table_id(str(change.get("id")))
            table = change.get("table")
            if change.get("type") == "DROP" or not table:
                self.columns.pop(key, None)
            else:
                names = (c["name"] for c in table["columns"] if _single_precision(c))
                self.columns[key] = frozenset(names)
        source = payload.get("source") or {}
        names = self.columns.get((source.get("db"), source.get("table")), frozenset())
        out: set[str] = set()
        for part, value, row in (
            ("key", record.key, record.key_payload),
            ("value", record.value, payload),
        ):
            prefix = part + (".payload" if value is not row else "")
            sides = ("before", "after") if part == "value" else ("",)
            for side in sides:
                out.update(f"{prefix}.{side}.{n}" if side else f"{prefix}.{n}" for n in names)
            _float_defaults(value, part, out)
        return frozenset(out)


def _float_defaults(value: Any, path: str, out: set[str]) -> None:
    """The paths of the ``default`` of every schema field typed ``float`` in ``value``."""
    if isinstance(value, dict):
        if value.get("type") == "float" and "default" in value:
            out.add(f"{path}.default")
        for k, v in value.items():
            _float_defaults(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for k, v in enumerate(value):
            _float_defaults(v, f"{path}[{k}]", out)


def compare(debezium: list[Record], ferry: list[Record]) -> Report:
    """Pair the two streams by binlog place and compare topic, key and value."""
    theirs, ours = _pairs(debezium), _pairs(ferry)
    report = Report()
    single = _SinglePrecision()  # pairs are in Debezium's order: its schema changes first
    for place, want in theirs.items():
        loose = single.paths(want)
        got = ours.get(place)
        if got is None:
            report.only_debezium.append(f"{place} {want.topic} {json.dumps(want.value)[:300]}")
            continue
        report.compared += 1
        problems = []
        if got.topic != want.topic:
            problems.append(f"topic: ferry {got.topic} Debezium {want.topic}")
        problems += _diff(_strip(got.key), _strip(want.key), "key", loose)
        problems += _diff(_strip(got.value), _strip(want.value), "value", loose)
        if problems:
            report.differences.append(f"{want.topic} {place}: " + "; ".join(problems))
    for place, got in ours.items():
        if place not in theirs:
            report.only_ferry.append(f"{place} {got.topic} {json.dumps(got.value)[:300]}")
    return report


def main() -> int:  # pragma: no cover - a development tool
    from tests.debezium import MARIADB_ARGS, read_records
    from tests.debezium_corpus import CONFIGS, corpus_databases
    from tests.services import MariaDB

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out", type=Path, help="the directory `python -m tests.debezium_corpus` wrote"
    )
    parser.add_argument("--config", default="default", choices=sorted(CONFIGS))
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    db = MariaDB(args.out / "mariadb", MARIADB_ARGS).start()
    try:
        config = CONFIGS[args.config]
        ferry = ferry_records(
            db, corpus_databases(), config["properties"], schemas=config["schemas"]
        )
    finally:
        db.stop()
    report = compare(read_records(args.out / f"{args.config}.lines"), ferry)
    print(report.summary(args.limit))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
