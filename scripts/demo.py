"""ferry demo: local MariaDB + Redis + Kafka-compatible broker, a live workload, two pipelines.

Everything runs on free ports under .demo/ and is stopped at the end; servers
already running on this machine are never touched.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arbitrate.config import ArbiterConfig  # noqa: E402
from arbitrate.redis import RedisArbiter  # noqa: E402
from tests.services import KafkaBroker, MariaDB, Redis  # noqa: E402

TABLES = {
    "customers": "id INT PRIMARY KEY, name VARCHAR(64), email VARCHAR(128),"
    " tier ENUM('free','pro')",
    "orders": "id INT PRIMARY KEY, customer_id INT, total DECIMAL(12,2), status VARCHAR(16),"
    " placed_at DATETIME(6)",
    "items": "order_id INT, line INT, sku VARCHAR(32), qty INT UNSIGNED, attrs JSON,"
    " PRIMARY KEY (order_id, line)",
}

PIPELINE = """\
pipeline:
  id: {id}
  batch: {{max_rows: 500, max_wait_ms: 100}}
  status_interval_ms: 1000
  state_dir: {base}/state
source:
  host: 127.0.0.1
  port: {mysql_port}
  user: root
  server_id: {server_id}
  start: earliest
  include: ["shop.*"]
arbiter:
  url: {redis_url}
  lock_ttl_ms: 3000
sink:
{sink}
"""


def say(text: str) -> None:
    print(text, flush=True)


class Writer(threading.Thread):
    """A steady mix of inserts, updates and deletes on the shop schema."""

    def __init__(self, mariadb: MariaDB, rate: int) -> None:
        super().__init__(daemon=True, name="writer")
        self.mariadb, self.rate = mariadb, rate
        self.stop = threading.Event()
        self.changes = 0  # approximate (affected rows), for the progress display

    def run(self) -> None:
        rng = random.Random(42)
        conn = self.mariadb.connect("shop")
        next_order = 1
        with conn.cursor() as cur:
            while not self.stop.is_set():
                started = time.monotonic()
                cur.execute("BEGIN")
                customer = rng.randrange(1, 200)
                changed = cur.execute(
                    "INSERT INTO customers VALUES (%s, %s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE tier = VALUES(tier)",
                    (
                        customer,
                        f"customer {customer}",
                        f"c{customer}@example.com",
                        rng.choice(["free", "pro"]),
                    ),
                )
                changes = 1 if changed else 0  # 1 inserted, 2 updated, 0 unchanged: one event
                changes += cur.execute(
                    "INSERT INTO orders VALUES (%s, %s, %s, 'new', NOW(6))",
                    (next_order, customer, round(rng.uniform(5, 500), 2)),
                )
                for line in range(rng.randint(1, 3)):
                    changes += cur.execute(
                        "INSERT INTO items VALUES (%s, %s, %s, %s, %s)",
                        (
                            next_order,
                            line,
                            f"SKU-{rng.randrange(999)}",
                            rng.randint(1, 5),
                            json.dumps({"gift": rng.random() < 0.1}),
                        ),
                    )
                    self.changes += 1
                if next_order > 5:
                    cur.execute(
                        "UPDATE orders SET status = 'paid' WHERE id = %s", (next_order - 5,)
                    )
                if next_order > 50 and rng.random() < 0.3:
                    gone = next_order - 50
                    changes += cur.execute("DELETE FROM items WHERE order_id = %s", (gone,))
                    changes += cur.execute("DELETE FROM orders WHERE id = %s", (gone,))
                cur.execute("COMMIT")
                self.changes += changes
                next_order += 1
                pause = 5.0 / self.rate - (time.monotonic() - started)  # ~5 changes per txn
                if pause > 0:
                    self.stop.wait(pause)
        conn.close()


KEYS = {"customers": "id", "orders": "id", "items": "order_id, line"}


def replay_keys(lines: list[str]) -> dict[str, set[tuple[Any, ...]]]:
    """Apply debezium-json lines by primary key: the set of keys that exist at the end."""
    keys: dict[str, set[tuple[Any, ...]]] = {table: set() for table in TABLES}
    for line in lines:
        message = json.loads(line)
        table = message["source"]["table"]
        columns = [c.strip() for c in KEYS[table].split(",")]
        image = message["after"] or message["before"]
        key = tuple(image[c] for c in columns)
        if message["op"] == "d":
            keys[table].discard(key)
        else:
            keys[table].add(key)
    return keys


def start_node(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "-c", str(config)],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )


def report(arbiter: RedisArbiter) -> dict[str, Any]:
    status = arbiter.status()
    active = next((n for n in status.nodes if n.get("role") == "active"), {})
    return {
        "state": status.state.state + (f" ({status.state.error})" if status.state.error else ""),
        "rows": int(active.get("rows_total") or 0),
        "rate": float(active.get("rows_per_s") or 0),
        "lag_ms": active.get("lag_ms"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=30, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--rate", type=int, default=500, help="changes per second written")
    args = parser.parse_args()

    base = ROOT / ".demo"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    say(f"ferry demo: starting MariaDB (binlog on), Redis and a Kafka-compatible broker in {base}")
    mariadb, redis_server, kafka = (
        MariaDB(base / "mariadb"),
        Redis(base / "redis"),
        KafkaBroker(base / "kafka"),
    )
    for service in (mariadb, redis_server, kafka):
        service.start()
    nodes: list[subprocess.Popen[bytes]] = []
    arbiters: list[RedisArbiter] = []
    writer: Writer | None = None
    try:
        mariadb.execute("CREATE DATABASE shop")
        for table, columns in TABLES.items():
            mariadb.execute(f"CREATE TABLE shop.{table} ({columns})")
            kafka.create_topic(f"ferry.shop.{table}")
        sinks = {
            "shop-to-kafka": f"  type: kafka\n  bootstrap_servers: {kafka.bootstrap}\n"
            "  topic: ferry.{schema}.{table}\n  create_topics: true",
            "shop-to-file": f"  type: jsonl\n  path: {base}/out/shop.jsonl",
        }
        for server_id, (pipeline_id, sink) in enumerate(sinks.items(), start=5001):
            config = base / f"{pipeline_id}.yaml"
            config.write_text(
                PIPELINE.format(
                    id=pipeline_id,
                    base=base,
                    mysql_port=mariadb.port,
                    server_id=server_id,
                    redis_url=redis_server.url,
                    sink=sink,
                )
            )
            nodes.append(start_node(config, base / f"{pipeline_id}.log"))
            arbiters.append(
                RedisArbiter(
                    ArbiterConfig.model_validate({"url": redis_server.url}), pipeline_id, "demo"
                )
            )
        writer = Writer(mariadb, args.rate)
        writer.start()
        say(f"writing ~{args.rate} changes/s into shop.*; replicating to Kafka and to a file")
        head = f"{'rows':>10} {'rows/s':>7} {'lag':>6}"
        say(f"{'elapsed':>8}  {'written':>8}  {'kafka:':<6}{head}  {'file:':<5}{head}")
        started = time.monotonic()
        try:
            while not args.duration or time.monotonic() - started < args.duration:
                time.sleep(1)
                if any(n.poll() is not None for n in nodes):
                    say("a ferry node exited early; see the logs in .demo/")
                    break
                cells = []
                for arbiter in arbiters:
                    r = report(arbiter)
                    lag = "-" if r["lag_ms"] in (None, "") else f"{float(r['lag_ms']) / 1000:.1f}s"
                    cells.append(f"{r['rows']:>10} {r['rate']:>7.0f} {lag:>6}")
                elapsed = time.monotonic() - started
                say(f"{elapsed:>7.0f}s  {writer.changes:>8}        {cells[0]}       {cells[1]}")
        except KeyboardInterrupt:
            say("\nCtrl-C: stopping")
        writer.stop.set()
        writer.join(10)
        say("workload stopped; letting the pipelines catch up...")
        time.sleep(3)
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            node.wait(30)
        lines = [
            line
            for line in (base / "out" / "shop.jsonl").read_text().splitlines()
            if '"op":' in line  # row changes; DDL lines have no op
        ]
        records = [r for t in TABLES for r in kafka.read_all(f"ferry.shop.{t}", timeout_s=10)]
        # debezium-json follows each delete with a tombstone (a null value) for log
        # compaction on Kafka; the file leaves tombstones out
        messages = sum(1 for _key, value, *_ in records if value is not None)
        tombstones = len(records) - messages
        say("")
        say(
            f"Kafka messages:         {messages} in topics ferry.shop.customers|orders|items"
            f" (and {tombstones} tombstones)"
        )
        say(f"JSON-lines file:        {len(lines)} row changes in {base / 'out' / 'shop.jsonl'}")
        say(f"pipeline files, logs:   {base}/*.yaml, {base}/*.log")
        replayed = replay_keys(lines)
        source = {
            table: {
                tuple(row) for row in mariadb.execute(f"SELECT {KEYS[table]} FROM shop.{table}")
            }
            for table in TABLES
        }
        complete = messages == len(lines) and replayed == source
        say(
            "check: Kafka and the file hold the same changes, and replaying the file gives"
            f" exactly the source's rows ({sum(map(len, source.values()))} rows): "
            + ("OK" if complete else "MISMATCH, see the logs in .demo/")
        )
        say("stopping the services (temporary ports); the output stays in .demo/")
        return 0 if complete else 1
    finally:
        if writer is not None:
            writer.stop.set()
        for node in nodes:
            if node.poll() is None:
                node.kill()
        for arbiter in arbiters:
            arbiter.close()
        for service in (kafka, redis_server, mariadb):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
