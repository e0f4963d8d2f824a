"""ferry end to end beside the raw binlog decode ceiling, on the same binlog, in one run.

    python bench/run.py --sink jsonl
    python bench/run.py --sink kafka --client confluent-kafka
    python bench/run.py --sink kafka --client kafka-python
    python bench/run.py --sink mysql
    python bench/run.py --sink kafka --client confluent-kafka --rate 5000     # lag
    python bench/run.py --sink jsonl --big-txn --rows 1000000 --runs 1      # memory
    python bench/run.py --sink jsonl --peer debezium                        # + real Debezium
    python bench/run.py --sink kafka --client confluent-kafka --peer debezium
    python bench/run.py --sink kafka --broker kafka --sink-option exactly_once=true  # EOS
    python bench/run.py --sink postgresql --compare-sink mysql --peer pg_chameleon

Services: private ``mariadbd`` (source; and a second one as the MySQL sink's
target), ``redis-server``, a Kafka broker and PostgreSQL are started from local binaries in
temp dirs (``tests/services.py``) unless ``--mysql-url`` / ``--target-mysql-url``
/ ``--redis-url`` / ``--kafka-bootstrap`` name existing ones. The broker is Tansu
(``--broker tansu``, the default, in memory: what the older rows were measured on) or
Apache Kafka 4.x (``--broker kafka``, KRaft, on disk, from the jars ``scripts/test``
fetches): exactly-once (``--sink-option exactly_once=true``) needs the latter, since
Tansu's transactions are not Kafka's.

What one invocation does:

1. writes the workload (``bench/workload.py``) into the source once, so the
   binlog range exists: ``--rows`` changes (70 % insert / 20 % update / 10 %
   delete, 500-row transactions) into a ``--shape`` table, or with
   ``--big-txn`` ``--rows`` inserts in ONE transaction, or with ``--inserts-only`` inserts
   only, in 500-row transactions;
2. ``--runs`` times, each phase in its own fresh Python process, over exactly
   that binlog range (raw first and last; ferry and debezium in turns first):

   * **raw**: ``BinLogStreamReader`` iterating ``event.rows`` (the ceiling a
     pure-Python select meets). Timed from "dump connection open" to the last row.
   * **ferry**: the real ``Node`` (SelectTask threads, the real ``RedisArbiter``
     on the private Redis, the chosen sink) in-process. Timed from the
     selector's ``start()`` returning (dump connection open, as for raw) to the
     moment the committed position in Redis reaches the end of the range (the
     last ack, i.e. after the sink made the last batch durable). The process is
     the node's alone, so its peak RSS (``ru_maxrss``) is the node's.
   * **producer** (kafka only): the chosen client's raw produce rate of the same
     messages, pre-encoded (decoded and encoded before the clock starts), with
     the sink's settings (acks=all, idempotence, linger, batch size).
   * **debezium** (``--peer debezium``): Debezium 3.6.3's embedded engine and MySQL
     connector over the same binlog (``tests/debezium.py``: a child JVM whose small
     Java ``ChangeConsumer`` writes JSON lines, fsync per batch, like ferry's JSONL
     sink; no tombstones and no schema-change events, as ferry's JSONL writes none).
     Timed from the JVM's spawn until the last change is in the file ("from start",
     JVM start-up and JIT warm-up included) and from its first batch on ("steady");
     CPU and peak RSS are the JVM process's. ferry's own rate from its process spawn
     is reported beside it (``ferry_from_start``). Debezium streams from the server's
     first binlog (it has no start position), so it needs the private source server,
     started with the version string Debezium accepts for MariaDB.
   * **pg_chameleon** (``--peer pg_chameleon``, beside ``--sink postgresql``): pg_chameleon
     2.0.21 (``bench/chameleon.py``, its own venv) into its own database on the same
     PostgreSQL server. Its ``init_replica`` runs on the empty table before the workload
     is written (one database per run), so its stream starts at the workload's first
     change, into an empty table, as ferry's does. Timed from the spawn of
     ``chameleon start_replica`` until the target table holds the source's final rows
     (polled every 0.25 s: row count and the sum of the column the updates change),
     beside ferry's rate from its process spawn; both targets are then compared with the
     source row by row.
   * **ferry_mysql** (``--compare-sink mysql``): ferry again, same binlog range, with the
     MySQL sink into a private MariaDB: the PostgreSQL sink's rate beside the MySQL sink's.

3. prints medians and writes ``bench/results/<name>.json``.

``--rate R`` (lag mode): the node runs first, then a separate writer process
inserts R rows/s for ``--seconds``. Lag of a row = the time its batch's position
was committed in Redis minus the ``written_at`` column the writer filled with its
wall clock just before sending the INSERT (the binlog's event time has only 1 s
resolution). p50/p99 over every row; raw decode of the same range is run after.
"""

# ruff: noqa: E402  (sys.path is fixed before the project imports)
from __future__ import annotations

import os
import signal
import sys

# bench/select.py would shadow the standard library's ``select`` (imported by subprocess):
# drop bench/ from the path before anything imports it.
_HERE_S = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE_S]
sys.path.insert(0, os.path.dirname(_HERE_S))

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

_HERE = Path(_HERE_S)
ROOT = _HERE.parent

from bench import workload as wl

RESULTS = _HERE / "results"


# ============================================================================ helpers


def conn_args_from_url(url: str) -> dict[str, Any]:
    u = urlparse(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
    }


def pg_conn_args_from_url(url: str) -> dict[str, Any]:
    u = urlparse(url)
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 5432,
        "user": unquote(u.username or "postgres"),
        "password": unquote(u.password or ""),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


DECODER_PIDS: list[int] = []  # decoder processes of the node under test (source.decoder=process)


def decoder_rss_mb() -> float | None:
    """Peak RSS (VmHWM) of the live decoder processes, None when there are none."""
    peaks = []
    for pid in DECODER_PIDS:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [
            int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")
        ]
    return max(peaks) if peaks else None


def cpu_s() -> float:
    """CPU seconds (user + system) of this process, all threads, plus its live decoder process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    for pid in DECODER_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def quiet_logs() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


# ============================================================================ phases (child)


def phase_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """mysql-replication alone: iterate ``event.rows`` over the range."""
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    src = spec["source"]
    settings = {k: src[k] for k in ("host", "port", "user")}
    settings["passwd"] = src["password"]
    file, pos = spec["start"]
    rows = spec["rows"]
    stream = BinLogStreamReader(
        settings,
        server_id=9900 + os.getpid() % 90,
        log_file=file,
        log_pos=pos,
        resume_stream=True,
        blocking=True,
        slave_heartbeat=1,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[wl.SCHEMA],
        enable_logging=False,
    )
    # connect before the clock starts, as the selector does in start()
    stream._BinLogStreamReader__connect_to_ctl()  # type: ignore[attr-defined]
    stream._BinLogStreamReader__connect_to_stream()  # type: ignore[attr-defined]
    seen = 0
    c0 = cpu_s()
    t0 = time.perf_counter()
    for event in stream:
        seen += len(event.rows)
        if seen >= rows:
            break
    elapsed = time.perf_counter() - t0
    cpu = cpu_s() - c0
    stream.close()
    if seen != rows:
        raise SystemExit(f"raw decode saw {seen} rows, expected {rows}")
    return {"rows": seen, "seconds": elapsed, "rows_per_s": seen / elapsed, "cpu_s": cpu}


def _config(spec: dict[str, Any], pipeline_id: str, tmp: str) -> Any:
    from pipeline.config import parse_config

    src = spec["source"]
    sink: dict[str, Any]
    kind = spec["sink"]
    if kind == "jsonl":
        sink = {"type": "jsonl", "path": os.path.join(tmp, "out.jsonl")}
    elif kind == "kafka":
        sink = {
            "type": "kafka",
            "bootstrap_servers": spec["kafka"],
            "client": spec["client"],
            "topic": spec["topic"],
        }
    elif kind == "mysql":
        tgt = spec["target"]
        sink = {
            "type": "mysql",
            "host": tgt["host"],
            "port": tgt["port"],
            "user": tgt["user"],
            "password": tgt["password"],
            "schema_map": {wl.SCHEMA: spec["target_schema"]},
            "checkpoint_schema": spec["target_schema"],
        }
    elif kind == "postgresql":
        pg = spec["postgresql"]
        sink = {
            "type": "postgresql",
            "host": pg["host"],
            "port": pg["port"],
            "user": pg["user"],
            "password": pg["password"],
            "database": spec["target_database"],
        }
    else:
        raise SystemExit(f"unknown sink {kind}")
    sink.update(spec.get("sink_options") or {})
    doc = {
        "pipeline": {
            "id": pipeline_id,
            "parallelism": spec["parallelism"],
            # no max_rows: the sink's choice (5000 for exactly-once Kafka, else 1000)
            "batch": {"max_wait_ms": spec["batch_wait_ms"]}
            | ({"max_rows": spec["batch_rows"]} if spec["batch_rows"] else {}),
            "state_dir": os.path.join(tmp, "state"),
            "retry_backoff_ms": 100,
        },
        "source": {
            "host": src["host"],
            "port": src["port"],
            "user": src["user"],
            "password": src["password"],
            "server_id": 5000 + os.getpid() % 1000,
            "start": {"file": spec["start"][0], "pos": spec["start"][1]},
            "include": [f"{wl.SCHEMA}.*"],
            "decoder": spec["decoder"],
        },
        "arbiter": {"url": spec["redis"], "key_prefix": f"bench-{uuid.uuid4().hex[:8]}"},
        "sink": sink,
    }
    return parse_config(json.dumps(doc), "<bench>")


def phase_ferry(spec: dict[str, Any]) -> dict[str, Any]:
    """The real Node in this process; returns rows/s, peak RSS, rollbacks, and lags."""
    from arbitrate.redis import RedisArbiter
    from pipeline.model import Batch, Position, RowChange
    from pipeline.node import Node
    from pipeline.recovery import StateFile
    from pipeline.stages import encoding_ahead
    from selector.base import PositionStore, Selector
    from selector.mysql import MySQLSelector
    from selector.process import ProcessSelector
    from sinks.base import Sink
    from sinks.registry import create_sink

    rss_before = peak_rss_mb()
    tmp = tempfile.mkdtemp(prefix="ferry-bench-node-")
    pipeline_id = f"bench-{uuid.uuid4().hex[:8]}"
    config = _config(spec, pipeline_id, tmp)
    lag_mode = spec.get("rate") is not None
    end: list[tuple[str, int] | None] = [None if lag_mode else tuple(spec["end"])]
    done = threading.Event()
    marks: dict[str, float] = {}
    pending: dict[Position, list[Any]] = {}
    lags: list[float] = []

    class WatchStore(PositionStore):
        def __init__(self, inner: PositionStore) -> None:
            self.inner = inner

        def load(self) -> Position | None:
            return self.inner.load()

        def save(self, position: Position) -> None:
            self.inner.save(position)
            now = time.time()
            decoder = decoder_rss_mb()  # sampled per ack: the child is gone after the run
            if decoder is not None:
                marks["decoder_rss_mb"] = max(marks.get("decoder_rss_mb", 0.0), decoder)
            if lag_mode:
                for written_at in pending.pop(position, ()):
                    lags.append(now - written_at.timestamp())
            if "half" not in marks and not lag_mode:
                # rows acked before this batch (its own are counted after the save)
                acked = node.stats.rows_total
                if acked >= spec["rows"] / 2:
                    marks["half"] = time.perf_counter()
                    marks["half_count"] = acked
            target = end[0]
            if target is not None and (position.file, position.pos) >= target:
                marks["cpu_end"] = cpu_s()
                marks["end"] = time.perf_counter()
                marks["end_epoch"] = time.time()
                done.set()

    base: type[Any] = ProcessSelector if config.source.decoder == "process" else MySQLSelector

    class TimedSelector(base):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            super().start()
            if getattr(self, "decoder_pid", None):
                DECODER_PIDS.append(self.decoder_pid)
            if "start" not in marks:
                marks["cpu"] = cpu_s()
                marks["start"] = time.perf_counter()

    class LagSink(Sink):
        """The real sink; remembers ``written_at`` of each loaded batch's rows (lag mode)."""

        def __init__(self, inner: Sink) -> None:
            super().__init__(inner.config, inner.pipeline_id)
            self.inner = inner

        def open(self) -> None:
            self.inner.open()

        def load(self, batch: Batch, epoch: int) -> None:
            self.inner.load(batch, epoch)
            if batch.position is not None:
                pending[batch.position] = [
                    c.after["written_at"]
                    for c in batch.changes
                    if isinstance(c, RowChange) and c.after is not None
                ]

        def checkpoint(self) -> Any:
            return self.inner.checkpoint()

        # no encoding(): it reads the rows' values, so rows must cross to the node whole

        def close(self) -> None:
            self.inner.close()

    def selector(store: PositionStore) -> Selector:
        batch = config.pipeline.batch
        more = {"encoding": encoding} if base is ProcessSelector else {}
        return TimedSelector(
            config.source,
            batch.max_rows,
            batch.max_wait_ms,
            WatchStore(store),
            pipeline_id,
            **more,
        )

    if spec["sink"] == "kafka":
        from tests.services import ExternalKafka

        ExternalKafka(spec["kafka"]).create_topic(
            spec["topic"].format(schema=wl.SCHEMA, table="t", pipeline=pipeline_id)
        )
    sink = create_sink(config.sink, pipeline_id)
    if lag_mode:
        sink = LagSink(sink)
    encoding = encoding_ahead(config, sink)  # as `ferry run` (pipeline.cli.build_node)
    node = Node(
        config,
        "bench",
        arbiter=RedisArbiter(config.arbiter, pipeline_id, "bench"),
        sink=sink,
        selector_factory=selector,
        state=StateFile(config.pipeline.state_dir, pipeline_id),
    )
    thread = threading.Thread(target=node.run, name="node", daemon=True)
    thread.start()
    writer: dict[str, Any] = {}
    timeout = spec["timeout_s"]
    if lag_mode:
        deadline = time.monotonic() + 60
        while "start" not in marks and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the dump is idle at the start position
        proc = subprocess.run(
            [sys.executable, __file__, "--phase", "writer", "--spec", json.dumps(spec)],
            check=True,
            capture_output=True,
            text=True,
        )
        writer = json.loads(proc.stdout.strip().splitlines()[-1])
        end[0] = tuple(writer["end"])
        if not done.is_set() and node.stats.position is not None:
            pos = node.stats.position
            if (pos.file, pos.pos) >= end[0]:
                done.set()
    finished = done.wait(timeout)
    node.request_stop()
    thread.join(30)
    if not finished:
        raise SystemExit(f"ferry did not reach the end of the range within {timeout} s")
    stats = node.stats.snapshot()
    task = node.task
    seconds = marks["end"] - marks["start"] if "end" in marks else None
    result: dict[str, Any] = {
        "rows": stats["rows_total"],
        "batches": stats["batches_total"],
        "seconds": seconds,
        "rows_per_s": stats["rows_total"] / seconds if seconds else None,
        # over the second half of the rows (as Debezium's warm rate: tests/debezium.py)
        "warm_rows_per_s": (stats["rows_total"] - marks["half_count"])
        / (marks["end"] - marks["half"])
        if "half" in marks and "end" in marks and marks["end"] > marks["half"]
        else None,
        "cpu_s": marks["cpu_end"] - marks["cpu"] if "cpu_end" in marks else None,
        "rollbacks": stats["rollbacks_total"],
        "retries": stats.get("retries_total"),
        "max_in_flight": task.max_in_flight if task is not None else None,
        "peak_rss_mb": peak_rss_mb(),
        "decoder_peak_rss_mb": marks.get("decoder_rss_mb"),
        "rss_before_node_mb": rss_before,
        "end_epoch": marks.get("end_epoch"),
        # the whole process since its start (interpreter, imports) + the decoder child
        "cpu_total_s": marks.get("cpu_end"),
    }
    if lag_mode:
        result.update(
            lag_p50_ms=(percentile(lags, 50) or 0) * 1000,
            lag_p99_ms=(percentile(lags, 99) or 0) * 1000,
            lag_max_ms=max(lags) * 1000 if lags else None,
            lag_rows=len(lags),
            writer=writer,
        )
    elif stats["rows_total"] != spec["rows"]:
        raise SystemExit(f"ferry acked {stats['rows_total']} rows, expected {spec['rows']}")
    if spec["sink"] == "jsonl":
        with open(os.path.join(tmp, "out.jsonl"), "rb") as f:
            result["output_lines"] = sum(1 for _ in f)
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def phase_writer(spec: dict[str, Any]) -> dict[str, Any]:
    w = wl.write_at_rate(
        spec["source"], spec["shape"], spec["rate"], spec["seconds"], first_row=spec["first_row"]
    )
    return {"end": list(w.end), "rows": w.rows, "seconds": w.seconds}


def phase_producer(spec: dict[str, Any]) -> dict[str, Any]:
    """The chosen client alone, on the same messages ferry sends, pre-encoded."""
    from pipeline.config import parse_config  # noqa: F401  (config models)
    from pipeline.model import Position
    from selector.mysql import MySQLSelector
    from selector.store import MemoryPositionStore
    from sinks.formats.base import get_format, now_ns
    from sinks.kafka import KafkaSinkConfig
    from sinks.producers import make_producer

    tmp = tempfile.mkdtemp(prefix="ferry-bench-prod-")
    pipeline_id = f"bench-{uuid.uuid4().hex[:8]}"
    config = _config(spec, pipeline_id, tmp)
    sel = MySQLSelector(config.source, 1000, 200, MemoryPositionStore(), pipeline_id)
    sel.start()
    topic = spec["topic"].format(schema=wl.SCHEMA, table="t", pipeline=pipeline_id)
    fmt = get_format("debezium-json", pipeline_id)
    now = now_ns()
    messages: list[tuple[bytes | None, bytes | None]] = []
    end = tuple(spec["end"])
    while True:
        batch = sel.select()
        for change in batch.changes:
            messages += fmt.messages(change, now)
        sel.ack(batch.batch_id)
        pos: Position | None = batch.position
        if pos is not None and (pos.file, pos.pos) >= end:
            break
    sel.stop()
    from tests.services import ExternalKafka

    ExternalKafka(spec["kafka"]).create_topic(topic)
    sink_config: KafkaSinkConfig = config.sink
    adapter = make_producer(sink_config, f"bench-{pipeline_id}")
    n = len(messages)
    t0 = time.perf_counter()
    send = adapter.send  # the sink's own accounting: every send confirmed, as ferry waits
    for key, value in messages:
        send(topic, key, value)
    outcome = adapter.confirm(120)
    confirmed = outcome.confirmed
    elapsed = time.perf_counter() - t0
    adapter.close(5)
    shutil.rmtree(tmp, ignore_errors=True)
    if confirmed != n:
        raise SystemExit(f"producer confirmed {confirmed} of {n}")
    values = [v for _, v in messages if v is not None]  # not the tombstones after deletes
    avg = sum(len(v) for v in values) / max(1, len(values))
    return {"rows": n, "seconds": elapsed, "rows_per_s": n / elapsed, "avg_message_bytes": avg}


def phase_debezium(spec: dict[str, Any]) -> dict[str, Any]:
    """Real Debezium over the whole binlog (first file on), until every row change is written."""
    from types import SimpleNamespace

    from tests.debezium import Debezium

    tmp = tempfile.mkdtemp(prefix="ferry-bench-dbz-")
    dbz = Debezium(
        SimpleNamespace(**spec["source"]),
        tmp,
        tables=[f"{wl.SCHEMA}.t"],
        properties={
            # ferry's JSONL sink writes one line per row change and nothing else
            "tombstones.on.delete": "false",
            "include.schema.changes": "false",
        },
    )
    run = dbz.run(expect=spec["rows"], timeout_s=spec["timeout_s"])
    shutil.rmtree(tmp, ignore_errors=True)
    if run.count != spec["rows"]:
        raise SystemExit(f"Debezium wrote {run.count} records, expected {spec['rows']}")
    return {
        "rows": run.count,
        "seconds": run.last_record_s,
        "rows_per_s": run.rows_per_s,
        "steady_rows_per_s": run.steady_rows_per_s,
        "warm_rows_per_s": run.warm_rows_per_s,
        "first_record_s": run.first_record_s,
        "cpu_s": run.cpu_s,
        "peak_rss_mb": run.peak_rss_mb,
        "handler": "java ChangeConsumer (tests/java/FerryDebeziumLines.java), plain java -cp",
    }


def phase_pg_chameleon(spec: dict[str, Any]) -> dict[str, Any]:
    """pg_chameleon's start_replica until its target holds the source's final rows."""
    expect = tuple(spec["digest"])
    run = chameleon(spec, spec["chameleon_database"]).replicate(
        done=lambda cur: digest(cur, spec["shape"]) == expect,
        started=lambda cur: cur.execute(f"SELECT EXISTS (SELECT FROM {wl.SCHEMA}.t)").fetchone()[0],
        timeout_s=spec["timeout_s"],
    )
    return {
        "rows": spec["rows"],
        "seconds": run.seconds,
        "rows_per_s": spec["rows"] / run.seconds,
        "first_row_s": run.first_row_s,
        "polls": run.polls,
    }


def phase_verify_pg(spec: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL target compared with the source row by row, in a process of its own:
    the rows it reads would otherwise stay in the orchestrator's peak RSS, which every
    later phase process inherits (Linux carries ``ru_maxrss`` across fork and exec)."""
    # pg_chameleon maps types its own way (JSON as text, …): its copy is held to the values
    ours = spec["verify_database"] != spec["chameleon_database"]
    compare_pg_target(spec, spec["verify_database"], check_types=ours)
    return {"database": spec["verify_database"], "equal": True}


PHASES = {
    "debezium": phase_debezium,
    "verify_pg": phase_verify_pg,
    "pg_chameleon": phase_pg_chameleon,
    "raw": phase_raw,
    "ferry": phase_ferry,
    "producer": phase_producer,
    "writer": phase_writer,
}


def run_phase(name: str, spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--spec", json.dumps(spec)]
    profile = os.environ.get("FERRY_BENCH_PROFILE")  # e.g. /tmp/prof: py-spy the ferry phase
    if profile and name == "ferry":
        out = f"{profile}-{int(time.time())}.txt"
        cmd = [
            "py-spy",
            "record",
            "--format",
            "raw",
            "--threads",
            *os.environ.get("FERRY_BENCH_PROFILE_ARGS", "").split(),
            "-r",
            "200",
            "-o",
            out,
            "--",
        ]
        cmd += [sys.executable, __file__, "--phase", name, "--spec", json.dumps(spec)]
    spawned_at = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"phase {name} failed (exit {proc.returncode})")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = dict(json.loads(lines[-1]))
    if result.get("end_epoch") and result.get("rows"):
        # from the phase process's spawn, as Debezium's rate is from its JVM's spawn
        result["rows_per_s_from_start"] = result["rows"] / (result["end_epoch"] - spawned_at)
    return result


# ============================================================================ orchestration


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPU {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


def start_services(args: argparse.Namespace, base: Path) -> tuple[dict[str, Any], list[Any]]:
    from tests.debezium import MARIADB_ARGS
    from tests.services import ApacheKafka, KafkaBroker, MariaDB, PostgreSQL, Redis

    own: list[Any] = []
    found: dict[str, Any] = {}
    if args.mysql_url:
        found["source"] = conn_args_from_url(args.mysql_url)
    else:
        # ferry reads the same binlog with either version string
        db = MariaDB(base / "source", MARIADB_ARGS if args.peer == "debezium" else ()).start()
        own.append(db)
        found["source"] = {"host": db.host, "port": db.port, "user": db.user, "password": ""}
    if args.redis_url:
        found["redis"] = args.redis_url
    else:
        r = Redis(base / "redis").start()
        own.append(r)
        found["redis"] = r.url
    if args.sink == "kafka":
        if args.kafka_bootstrap:
            found["kafka"] = args.kafka_bootstrap
        else:
            k = (ApacheKafka if args.broker == "kafka" else KafkaBroker)(base / "kafka").start()
            own.append(k)
            found["kafka"] = k.bootstrap
    if "postgresql" in (args.sink, args.compare_sink) or args.peer == "pg_chameleon":
        if args.target_postgresql_url:
            found["postgresql"] = pg_conn_args_from_url(args.target_postgresql_url)
        else:
            p = PostgreSQL(base / "postgresql").start()
            own.append(p)
            found["postgresql"] = {
                "host": p.host,
                "port": p.port,
                "user": p.user,
                "password": p.password,
            }
    if "mysql" in (args.sink, args.compare_sink):
        if args.target_mysql_url:
            found["target"] = conn_args_from_url(args.target_mysql_url)
        else:
            t = MariaDB(base / "target").start()
            own.append(t)
            found["target"] = {"host": t.host, "port": t.port, "user": t.user, "password": ""}
    return found, own


def prepare_target(spec: dict[str, Any], schema: str) -> None:
    import pymysql

    conn = pymysql.connect(**spec["target"], autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {schema}")
        cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(wl.ddl(spec["shape"]).replace(f"{wl.SCHEMA}.t", f"{schema}.t", 1))
    conn.close()


# ---------------------------------------------------------------------- PostgreSQL targets

#: the column each shape's updates change (``workload._update_set``): with the row count,
#: a digest that reaches the source's only once every change is applied
_UPDATED = {"narrow": "a", "composite": "qty", "wide": "i0"}


def digest(cur: Any, shape: str) -> tuple[int, int]:
    """(rows, sum of the updated column) of ``ferry_bench.t`` on a MySQL or PostgreSQL cursor."""
    cur.execute(f"SELECT COUNT(*), COALESCE(SUM({_UPDATED[shape]}), 0) FROM {wl.SCHEMA}.t")
    count, total = cur.fetchone()
    return int(count), int(total)


def source_digest(spec: dict[str, Any]) -> tuple[int, int]:
    import pymysql

    conn = pymysql.connect(**spec["source"], autocommit=True)
    with conn.cursor() as cur:
        found = digest(cur, spec["shape"])
    conn.close()
    return found


def pg_connect(spec: dict[str, Any], database: str) -> Any:
    import psycopg

    pg = spec["postgresql"]
    return psycopg.connect(
        host=pg["host"],
        port=pg["port"],
        user=pg["user"],
        password=pg["password"],
        dbname=database,
        autocommit=True,
    )


def create_pg_database(spec: dict[str, Any], database: str) -> None:
    with pg_connect(spec, "postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def chameleon(spec: dict[str, Any], database: str) -> Any:
    """The pg_chameleon configuration of one run (its database on the shared server)."""
    from bench.chameleon import Chameleon

    home = Path(spec["chameleon_home"]) / database
    home.mkdir(parents=True, exist_ok=True)
    return Chameleon(home, spec["source"], spec["postgresql"], database, wl.SCHEMA)


def compare_pg_target(spec: dict[str, Any], database: str, check_types: bool) -> None:
    """Every row of the PostgreSQL target equal to the source's (SystemExit otherwise);
    ``check_types``: its column types too, as ferry's mapping has them."""
    from tests.pgcanon import compare_table

    with pg_connect(spec, database) as pg:
        differences = compare_table(
            spec["source"], pg, wl.SCHEMA, "t", wl.SCHEMA, "t", check_types=check_types
        )
    if differences:
        raise SystemExit(
            f"{database}.{wl.SCHEMA}.t differs from the source:\n" + "\n".join(differences[:10])
        )


def count_target(spec: dict[str, Any]) -> int:
    import pymysql

    conn = pymysql.connect(**spec["target"], autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {spec['target_schema']}.t")
        count = int(cur.fetchone()[0])
    conn.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sink", choices=["jsonl", "kafka", "mysql", "postgresql"], default="jsonl"
    )
    parser.add_argument(
        "--compare-sink",
        choices=["mysql"],
        help="also run ferry with this sink over the same binlog, in the same run (phase"
        " ferry_<sink>): --sink postgresql --compare-sink mysql sets the two sinks side by side",
    )
    parser.add_argument(
        "--client", choices=["kafka-python", "confluent-kafka"], default="confluent-kafka"
    )
    parser.add_argument(
        "--decoder",
        choices=["process", "thread"],
        default="process",
        help="source.decoder: binlog decoding in a child process (default) or a thread",
    )
    parser.add_argument("--shape", choices=wl.SHAPES, default="narrow")
    parser.add_argument(
        "--rows",
        type=int,
        default=300_000,
        help="row changes to write (long enough for steady state)",
    )
    parser.add_argument("--runs", type=int, default=3, help="median over this many runs")
    parser.add_argument("--rate", type=float, help="lag mode: writer inserts this many rows/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="lag mode duration")
    parser.add_argument("--big-txn", action="store_true", help="--rows inserts in ONE transaction")
    parser.add_argument(
        "--inserts-only", action="store_true", help="inserts only (500-row transactions)"
    )
    parser.add_argument("--txn-rows", type=int, default=500, help="rows per transaction")
    parser.add_argument(
        "--statement-rows",
        type=int,
        help="rows per INSERT/UPDATE/DELETE statement, so per rows event: 1 is what"
        " applications write (the default with --peer debezium); default otherwise: the"
        " whole transaction in one statement",
    )
    parser.add_argument(
        "--peer",
        choices=["debezium", "pg_chameleon"],
        help="also run this CDC tool over the same binlog, in the same run"
        " (debezium: JSON lines, beside ferry's jsonl or kafka sink; pg_chameleon: into the"
        " same PostgreSQL, beside ferry's postgresql sink)",
    )
    parser.add_argument(
        "--skip-raw",
        action="store_true",
        help="leave out the raw mysql-replication decode (on one-row statements it reads"
        " ~9k rows/s and would take most of the run)",
    )
    parser.add_argument("--parallelism", type=int, default=3)
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="pipeline.batch.max_rows (default: unset, the sink's choice: 1000, or 5000 for"
        " exactly-once Kafka)",
    )
    parser.add_argument("--batch-wait-ms", type=int, default=200)
    parser.add_argument("--sink-option", action="append", default=[], help="KEY=JSON, repeatable")
    parser.add_argument("--name", help="results/<name>.json (default: from the options)")
    parser.add_argument("--mysql-url", help="source server instead of a private mariadbd")
    parser.add_argument("--target-mysql-url", help="MySQL sink target instead of a private one")
    parser.add_argument(
        "--target-postgresql-url",
        help="postgresql://user:pass@host:port for the PostgreSQL sink and pg_chameleon"
        " instead of a private server",
    )
    parser.add_argument("--redis-url", help="Redis instead of a private redis-server")
    parser.add_argument("--kafka-bootstrap", help="Kafka instead of a private broker")
    parser.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="the private broker: tansu (in memory, starts at once) or kafka (Apache Kafka"
        " 4.x, KRaft; needed for exactly_once)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase, seconds")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # SIGTERM must unwind like Ctrl-C so the services this run started are stopped
    # (the default action kills the process without running finally blocks or atexit).
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))

    if args.phase:
        quiet_logs()
        result = PHASES[args.phase](json.loads(args.spec))
        print(json.dumps(result))
        return 0

    if args.peer == "debezium" and (args.mysql_url or args.rate or args.sink == "mysql"):
        parser.error(
            "--peer debezium needs the private source server (it streams from the first binlog),"
            " no --rate, and --sink jsonl or kafka (Debezium writes JSON lines either way)"
        )
    if args.peer == "pg_chameleon" and args.rate:
        parser.error("--peer pg_chameleon needs no --rate (its rate is to the last row)")
    if args.compare_sink == args.sink or (args.compare_sink and args.rate):
        parser.error("--compare-sink names a second sink, and needs no --rate")
    if args.statement_rows is None and args.peer == "debezium":
        args.statement_rows = 1
    if args.peer == "debezium":
        from tests.debezium import classes_dir

        classes_dir()  # Java, javac, the jars: fail before the workload is written
    if args.peer == "pg_chameleon":
        from bench.chameleon import python

        python()  # its venv: created on first use, before the workload is written

    from loguru import logger

    logger.remove()
    base = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    services, own = start_services(args, base)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sink_options = {}
    for item in args.sink_option:
        key, _, value = item.partition("=")
        sink_options[key] = json.loads(value)
    spec: dict[str, Any] = {
        **services,
        "sink": args.sink,
        "client": args.client,
        "decoder": args.decoder,
        "shape": args.shape,
        "parallelism": args.parallelism,
        "batch_rows": args.batch_rows,
        "batch_wait_ms": args.batch_wait_ms,
        "timeout_s": args.timeout,
        "topic": "bench.{pipeline}.{table}",
        "sink_options": sink_options,
        "chameleon_home": str(base / "chameleon"),
    }
    name = args.name or "-".join(
        [args.sink]
        + ([args.client] if args.sink == "kafka" else [])
        + (["apache"] if args.sink == "kafka" and args.broker == "kafka" else [])
        + (["eos"] if sink_options.get("exactly_once") else [])
        + [args.shape]
        + (["thread"] if args.decoder == "thread" else [])
        + (["bigtxn"] if args.big_txn else [])
        + (["inserts"] if args.inserts_only else [])
        + ([f"stmt{args.statement_rows}"] if args.statement_rows else [])
        + ([f"batch{args.batch_rows}"] if args.batch_rows else [])
        + ([f"rate{int(args.rate)}"] if args.rate else [f"{args.rows}"])
        + ([f"vs-{args.compare_sink}"] if args.compare_sink else [])
        + ([args.peer] if args.peer else [])
    )
    runs: list[dict[str, Any]] = []
    written: dict[str, Any] = {}
    try:
        src = services["source"]
        if args.rate:
            wl.create(src, args.shape)
        else:
            # pg_chameleon can only start where its init_replica read the source: run that
            # on the empty table, once per run, before the workload is written
            wl.create(src, args.shape)
            chameleon_at: list[tuple[str, int]] = []
            if args.peer == "pg_chameleon":
                for k in range(args.runs):
                    create_pg_database(spec, f"chameleon_{k}")
                    cham = chameleon(spec, f"chameleon_{k}")
                    cham.init()
                    chameleon_at.append(cham.start_position())
            t0 = time.perf_counter()
            if args.big_txn:
                w = wl.write_big_transaction(src, args.shape, args.rows, create_table=False)
            else:
                w = wl.write_changes(
                    src,
                    args.shape,
                    args.rows,
                    args.txn_rows,
                    inserts_only=args.inserts_only,
                    statement_rows=args.statement_rows,
                    create_table=False,
                )
            if any(at != w.start for at in chameleon_at):
                raise SystemExit(
                    f"pg_chameleon starts at {chameleon_at}, the workload at {w.start}:"
                    " something else wrote to the source's binlog"
                )
            written = dict(w.__dict__)
            spec.update(
                start=list(w.start), end=list(w.end), rows=w.rows, digest=source_digest(spec)
            )
            print(
                f"workload: {w.rows} row changes ({w.inserts} ins, {w.updates} upd,"
                f" {w.deletes} del) in {time.perf_counter() - t0:.1f} s,"
                f" binlog {w.start[0]}:{w.start[1]} .. {w.end[0]}:{w.end[1]}",
                flush=True,
            )
        for k in range(args.runs):
            run: dict[str, Any] = {}
            if "mysql" in (args.sink, args.compare_sink):
                spec["target_schema"] = f"bench_target_{k}"
                prepare_target(spec, spec["target_schema"])
            if args.sink == "postgresql":
                spec["target_database"] = f"ferry_{k}"
                create_pg_database(spec, spec["target_database"])
            spec["chameleon_database"] = f"chameleon_{k}"
            if args.rate:
                conn = wl.connect(src)
                with conn.cursor() as cur:
                    start = wl.binlog_position(cur)
                conn.close()
                spec.update(
                    start=list(start),
                    rate=args.rate,
                    seconds=args.seconds,
                    first_row=k * 10_000_000,
                )
                run["ferry"] = run_phase("ferry", spec, env)
                writer = run["ferry"]["writer"]
                raw_spec = dict(spec, end=writer["end"], rows=writer["rows"])
                raw_spec.pop("rate")
                run["raw"] = run_phase("raw", raw_spec, env)
            else:
                # raw before and after ferry: the machine's noise hits both sides alike
                before = None if args.skip_raw else run_phase("raw", spec, env)
                # ferry and its peers in rotating order: none always runs on a warmer machine
                order = ["ferry"]
                order += [f"ferry_{args.compare_sink}"] if args.compare_sink else []
                order += [args.peer] if args.peer else []
                for phase in order[k % len(order) :] + order[: k % len(order)]:
                    if phase == "ferry_mysql":  # --sink-option is the main sink's
                        mysql = dict(spec, sink="mysql", sink_options={})
                        run[phase] = run_phase("ferry", mysql, env)
                    else:
                        run[phase] = run_phase(phase, spec, env)
                if args.sink == "kafka":
                    run["producer"] = run_phase("producer", spec, env)
                if before is not None:
                    run["raw"] = mean_raw(before, run_phase("raw", spec, env))
                if "mysql" in (args.sink, args.compare_sink):
                    run["target_rows"] = count_target(spec)
                    live = written["inserts"] - written["deletes"]
                    if run["target_rows"] != live:
                        raise SystemExit(f"target has {run['target_rows']} rows, expected {live}")
                for database in ([spec["target_database"]] if args.sink == "postgresql" else []) + (
                    [spec["chameleon_database"]] if args.peer == "pg_chameleon" else []
                ):
                    run_phase("verify_pg", dict(spec, verify_database=database), env)
            f = run["ferry"]
            raw = run.get("raw")
            if raw and f.get("rows_per_s") and not args.rate:  # at a fixed rate, the rate
                run["ratio"] = f["rows_per_s"] / raw["rows_per_s"]
            if raw and f.get("cpu_s") and not args.rate:
                # CPU seconds per row, ferry vs raw: less sensitive to a busy machine
                run["cpu_ratio"] = raw["cpu_s"] / f["cpu_s"]
            if "pg_chameleon" in run:  # both from their process's spawn
                run["vs_pg_chameleon"] = (
                    f["rows_per_s_from_start"] / run["pg_chameleon"]["rows_per_s"]
                )
            if "ferry_mysql" in run:  # both from the dump connection, as the table's rates
                run["vs_mysql_sink"] = f["rows_per_s"] / run["ferry_mysql"]["rows_per_s"]
            runs.append(run)
            print(f"run {k + 1}/{args.runs}: {summary_line(run)}", flush=True)
    finally:
        for service in reversed(own):
            try:
                service.stop()
            except Exception as exc:
                print(f"stopping {service.name}: {exc}", file=sys.stderr)
        shutil.rmtree(base, ignore_errors=True)

    result = summarise(args, name, runs, written)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


def mean_raw(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    seconds = (before["seconds"] + after["seconds"]) / 2
    return {
        "rows": before["rows"],
        "seconds": seconds,
        "rows_per_s": before["rows"] / seconds,
        "cpu_s": (before["cpu_s"] + after["cpu_s"]) / 2,
        "before_rows_per_s": before["rows_per_s"],
        "after_rows_per_s": after["rows_per_s"],
    }


def summary_line(run: dict[str, Any]) -> str:
    f = run["ferry"]
    parts = [f"raw {run['raw']['rows_per_s']:,.0f} rows/s"] if "raw" in run else []
    if f.get("rows_per_s"):
        ratio = f" ({run['ratio']:.0%})" if "ratio" in run else ""
        parts.append(f"ferry {f['rows_per_s']:,.0f} rows/s{ratio}")
    if run.get("cpu_ratio"):
        parts.append(f"cpu raw/ferry {run['cpu_ratio']:.0%}")
    if "producer" in run:
        parts.append(f"producer {run['producer']['rows_per_s']:,.0f} msg/s")
    if "debezium" in run:
        d = run["debezium"]
        parts.append(
            f"from start: ferry {f.get('rows_per_s_from_start') or 0:,.0f} rows/s,"
            f" debezium {d['rows_per_s']:,.0f} rows/s (steady {d['steady_rows_per_s']:,.0f},"
            f" second half: ferry {f.get('warm_rows_per_s') or 0:,.0f},"
            f" debezium {d.get('warm_rows_per_s') or 0:,.0f},"
            f" {d['cpu_s']:.0f} CPU s vs ferry {f.get('cpu_total_s') or 0:.0f},"
            f" {d['peak_rss_mb']:.0f} MB)"
        )
    if "pg_chameleon" in run:
        c = run["pg_chameleon"]
        parts.append(
            f"from start: ferry {f['rows_per_s_from_start']:,.0f} rows/s, pg_chameleon"
            f" {c['rows_per_s']:,.0f} rows/s ({run['vs_pg_chameleon']:.2f}x; its first change"
            f" applied {c['first_row_s'] or 0:.1f} s after spawn)"
        )
    if "ferry_mysql" in run:
        m = run["ferry_mysql"]
        parts.append(
            f"ferry's mysql sink {m['rows_per_s']:,.0f} rows/s (postgresql/mysql"
            f" {run['vs_mysql_sink']:.0%})"
        )
    if "lag_p99_ms" in f:
        parts.append(f"lag p50 {f['lag_p50_ms']:.0f} ms p99 {f['lag_p99_ms']:.0f} ms")
    decoder = f.get("decoder_peak_rss_mb")
    parts.append(
        f"rss {f['peak_rss_mb']:.0f} MB"
        + (f" + decoder {decoder:.0f} MB" if decoder else "")
        + f", rollbacks {f['rollbacks']}, retries {f.get('retries')}"
    )
    return ", ".join(parts)


def summarise(
    args: argparse.Namespace, name: str, runs: list[dict[str, Any]], written: dict[str, Any]
) -> dict[str, Any]:
    def med(phase: str, key: str) -> Any:
        return median([r[phase][key] for r in runs if phase in r and r[phase].get(key) is not None])

    summary = {
        "raw_rows_per_s": med("raw", "rows_per_s"),
        "ferry_rows_per_s": None if args.rate else med("ferry", "rows_per_s"),
        "ratio": median([r["ratio"] for r in runs if "ratio" in r]),
        "cpu_ratio": median([r["cpu_ratio"] for r in runs if "cpu_ratio" in r]),
        "producer_msgs_per_s": med("producer", "rows_per_s"),
        "peak_rss_mb": max(r["ferry"]["peak_rss_mb"] for r in runs),
        "decoder_peak_rss_mb": max(
            (r["ferry"].get("decoder_peak_rss_mb") or 0 for r in runs), default=0
        )
        or None,
        "rollbacks": sum(r["ferry"]["rollbacks"] for r in runs),
        "retries": sum(r["ferry"].get("retries") or 0 for r in runs),
        "lag_p50_ms": med("ferry", "lag_p50_ms"),
        "lag_p99_ms": med("ferry", "lag_p99_ms"),
        "ferry_cpu_s": med("ferry", "cpu_s"),
        "ferry_cpu_total_s": med("ferry", "cpu_total_s"),
        "ferry_rows_per_s_from_start": med("ferry", "rows_per_s_from_start"),
        "ferry_warm_rows_per_s": med("ferry", "warm_rows_per_s"),
        "debezium_rows_per_s": med("debezium", "rows_per_s"),
        "debezium_steady_rows_per_s": med("debezium", "steady_rows_per_s"),
        "debezium_warm_rows_per_s": med("debezium", "warm_rows_per_s"),
        "debezium_first_record_s": med("debezium", "first_record_s"),
        "debezium_cpu_s": med("debezium", "cpu_s"),
        "debezium_peak_rss_mb": max(
            (r["debezium"]["peak_rss_mb"] for r in runs if "debezium" in r), default=None
        ),
        "pg_chameleon_rows_per_s": med("pg_chameleon", "rows_per_s"),
        "pg_chameleon_first_row_s": med("pg_chameleon", "first_row_s"),
        "vs_pg_chameleon": median([r["vs_pg_chameleon"] for r in runs if "vs_pg_chameleon" in r]),
        "ferry_mysql_rows_per_s": med("ferry_mysql", "rows_per_s"),
        "ferry_mysql_rows_per_s_from_start": med("ferry_mysql", "rows_per_s_from_start"),
        "vs_mysql_sink": median([r["vs_mysql_sink"] for r in runs if "vs_mysql_sink" in r]),
    }
    return {
        "name": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "git": _git_head(),
        "options": {k: v for k, v in vars(args).items() if k not in ("phase", "spec")},
        "workload": written,
        "summary": summary,
        "runs": runs,
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def print_table(result: dict[str, Any]) -> None:
    s = result["summary"]
    o = result["options"]
    what = o["sink"] + (f" ({o['client']})" if o["sink"] == "kafka" else "")
    if o["sink"] == "kafka" and o.get("broker") == "kafka":
        eos = any(opt.startswith("exactly_once=true") for opt in o.get("sink_option") or [])
        what += ", Apache Kafka" + (", exactly-once" if eos else "")

    def fmt(v: Any, spec: str = ",.0f") -> str:
        return "-" if v is None else format(v, spec)

    print()
    print(f"{result['machine']}")
    print(
        f"{'sink':<24} {'shape':<10} {'raw rows/s':>11} {'ferry rows/s':>13} {'ratio':>6}"
        f" {'producer/s':>11} {'lag p50/p99 ms':>15} {'peak RSS':>9} {'rollbk/retry':>12}"
    )
    lag = "-" if s["lag_p99_ms"] is None else f"{s['lag_p50_ms']:.0f}/{s['lag_p99_ms']:.0f}"
    print(
        f"{what:<24} {o['shape']:<10} {fmt(s['raw_rows_per_s']):>11}"
        f" {fmt(s['ferry_rows_per_s']):>13} {fmt(s['ratio'], '.0%'):>6}"
        f" {fmt(s['producer_msgs_per_s']):>11} {lag:>15} {s['peak_rss_mb']:>6.0f} MB"
        f" {s['rollbacks']:>6}/{s['retries']:<5}"
    )
    decoder = s.get("decoder_peak_rss_mb")
    print(
        f"(medians of {len(result['runs'])} runs; peak RSS = max over runs, node process"
        + (f"; the decoder process peaked at {decoder:.0f} MB)" if decoder else ")")
    )
    if s.get("debezium_rows_per_s"):
        print(
            f"\n{'from process spawn':<24} {'rows/s':>9} {'steady rows/s':>14}"
            f" {'2nd half rows/s':>16} {'CPU s':>7} {'peak RSS':>9}\n"
            f"{'ferry':<24} {fmt(s['ferry_rows_per_s_from_start']):>9}"
            f" {fmt(s['ferry_rows_per_s']):>14} {fmt(s.get('ferry_warm_rows_per_s')):>16}"
            f" {fmt(s['ferry_cpu_total_s'], '.1f'):>7}"
            f" {s['peak_rss_mb'] + (decoder or 0):>6.0f} MB\n"
            f"{'debezium 3.6.3 (java)':<24} {fmt(s['debezium_rows_per_s']):>9}"
            f" {fmt(s['debezium_steady_rows_per_s']):>14}"
            f" {fmt(s.get('debezium_warm_rows_per_s')):>16} {fmt(s['debezium_cpu_s'], '.1f'):>7}"
            f" {s['debezium_peak_rss_mb']:>6.0f} MB\n"
            f"(ferry steady = from the dump connection; Debezium steady = from its first batch,"
            f" {fmt(s['debezium_first_record_s'], '.1f')} s after spawn; CPU = whole processes;"
            " ferry's RSS = node + decoder)"
        )
    if s.get("pg_chameleon_rows_per_s"):
        print(
            f"\n{'from process spawn':<24} {'rows/s':>9}\n"
            f"{'ferry (' + o['sink'] + ')':<24} {fmt(s['ferry_rows_per_s_from_start']):>9}\n"
            f"{'pg_chameleon 2.0.21':<24} {fmt(s['pg_chameleon_rows_per_s']):>9}"
            f"   ferry/pg_chameleon {fmt(s['vs_pg_chameleon'], '.2f')}x (median of the runs';"
            f" its first change applied {fmt(s['pg_chameleon_first_row_s'], '.1f')} s after spawn)"
        )
    if s.get("ferry_mysql_rows_per_s"):
        print(
            f"ferry's mysql sink, same runs: {fmt(s['ferry_mysql_rows_per_s'])} rows/s"
            f" ({fmt(s['ferry_mysql_rows_per_s_from_start'])} from spawn);"
            f" postgresql/mysql {fmt(s['vs_mysql_sink'], '.0%')}"
        )


if __name__ == "__main__":
    sys.exit(main())
