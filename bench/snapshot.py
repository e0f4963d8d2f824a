"""Snapshot speed: ferry copying an existing table, beside a raw read of the same table.

    python bench/snapshot.py --sink jsonl --shape narrow --rows 1000000
    python bench/snapshot.py --sink mysql --shape wide --rows 200000

One invocation starts a private MariaDB (and a second one as the MySQL sink's
target) and Redis, fills ``ferry_bench.t`` with ``--rows`` rows of ``--shape``
(bench/workload.py), then runs each phase in its own fresh Python process,
``--runs`` times, on that same table:

* **raw**: pymysql's unbuffered cursor ``SELECT * FROM t``, every row fetched
  and converted to Python values by the driver — the read rate any Python
  snapshot meets;
* **dump**: ``mariadb-dump --single-transaction`` of the table to /dev/null
  (C, no Python at all);
* **ferry**: the real node (decoder process, SelectTask, the sink) with
  ``source.snapshot: initial_only``, timed from the selector's start until the
  position that says "snapshot complete" is committed — every row durably
  written by the sink. Peak RSS is the node process's plus its decoder's.

Prints rows/s of each and ferry's share of the raw read, and writes
``bench/results/snapshot-<sink>-<shape>-<rows>.json``.
"""

# ruff: noqa: E402  (sys.path is fixed before the project imports)
from __future__ import annotations

import os
import sys

# bench/select.py would shadow the standard library's ``select``: drop bench/ from the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import json
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import workload as wl
from bench.run import machine, median, quiet_logs


def phase_raw(spec: dict[str, Any]) -> dict[str, Any]:
    import pymysql
    import pymysql.cursors

    conn = pymysql.connect(**spec["source"], cursorclass=pymysql.cursors.SSCursor)
    started = time.perf_counter()
    rows = 0
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {wl.SCHEMA}.t")
        while batch := cur.fetchmany(10_000):
            rows += len(batch)
    seconds = time.perf_counter() - started
    conn.close()
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def phase_dump(spec: dict[str, Any]) -> dict[str, Any]:
    dump = shutil.which("mariadb-dump") or shutil.which("mysqldump")
    if dump is None:
        return {"rows": 0, "rows_per_s": None}
    src = spec["source"]
    started = time.perf_counter()
    subprocess.run(
        [dump, "--single-transaction", "-h", src["host"], "-P", str(src["port"]), "-u",
         src["user"], wl.SCHEMA, "t"],
        stdout=subprocess.DEVNULL,
        check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return {"rows": spec["rows"], "seconds": seconds, "rows_per_s": spec["rows"] / seconds}


def phase_ferry(spec: dict[str, Any]) -> dict[str, Any]:
    from arbitrate.redis import RedisArbiter
    from pipeline.config import parse_config
    from pipeline.node import Node
    from pipeline.recovery import StateFile
    from selector.process import open_selector
    from sinks.registry import create_sink

    tmp = tempfile.mkdtemp(prefix="ferry-bench-snapshot-")
    pipeline_id = f"snap-{uuid.uuid4().hex[:8]}"
    if spec["sink"] == "jsonl":
        sink: dict[str, Any] = {"type": "jsonl", "path": os.path.join(tmp, "out.jsonl")}
    else:
        sink = {
            "type": "mysql",
            **spec["target"],
            "schema_map": {wl.SCHEMA: spec["target_schema"]},
            "checkpoint_schema": spec["target_schema"],
        }
    doc = {
        "pipeline": {
            "id": pipeline_id,
            "batch": {"max_rows": spec["batch_rows"], "max_wait_ms": 200},
            "state_dir": os.path.join(tmp, "state"),
        },
        "source": {
            **spec["source"],
            "server_id": 5100 + os.getpid() % 1000,
            "include": [f"{wl.SCHEMA}.t"],
            "snapshot": "initial_only",
            "snapshot_chunk_rows": spec["chunk_rows"],
        },
        "arbiter": {"url": spec["redis"], "key_prefix": f"bench-{uuid.uuid4().hex[:8]}"},
        "sink": sink,
    }
    config = parse_config(json.dumps(doc), "<bench>")
    arbiter = RedisArbiter(config.arbiter, pipeline_id, "bench")
    marks: dict[str, float] = {}
    node: Node | None = None

    def selector(store: Any) -> Any:
        made = open_selector(config.source, config.pipeline.batch.max_rows, 200, store, pipeline_id)
        original = made.start

        def start() -> None:
            original()
            marks.setdefault("start", time.perf_counter())

        made.start = start  # type: ignore[method-assign]
        return made

    node = Node(
        config,
        "bench",
        arbiter=arbiter,
        sink=create_sink(config.sink, pipeline_id),
        selector_factory=selector,
        state=StateFile(Path(tmp) / "state", pipeline_id),
    )
    runner = threading.Thread(target=node.run, daemon=True)
    runner.start()
    decoder_peak = 0.0
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        time.sleep(0.05)
        selected = node._selector
        pid = getattr(selected, "decoder_pid", None)
        if pid:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                peak = [
                    int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmHWM:")
                ]
                decoder_peak = max([decoder_peak, *peak])
            except OSError:
                pass
        progress = node.stats.snapshot_progress
        if progress is not None and not progress.tables:
            marks["end"] = time.perf_counter()
            break
    rows = (
        sum(n for _, n in node.stats.snapshot_progress.done) if node.stats.snapshot_progress else 0
    )
    node.request_stop()
    runner.join(60)
    shutil.rmtree(tmp, ignore_errors=True)
    seconds = marks["end"] - marks["start"]
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "node_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "decoder_rss_mb": decoder_peak,
    }


PHASES = {"raw": phase_raw, "dump": phase_dump, "ferry": phase_ferry}


def run_phase(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", name, "--spec", json.dumps(spec)]
    profile = os.environ.get("FERRY_BENCH_PROFILE")  # e.g. /tmp/prof: py-spy the ferry phase
    if profile and name == "ferry":
        out = f"{profile}-{int(time.time())}.txt"
        command = ["py-spy", "record", "--format", "raw", "--subprocesses", "-r", "200", "-o", out,
                   "--", *command]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"phase {name} failed (exit {done.returncode})")
    return dict(json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", choices=("jsonl", "mysql"), default="jsonl")
    parser.add_argument("--shape", choices=("narrow", "wide"), default="narrow")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--batch-rows", type=int, default=2000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        quiet_logs()
        print(json.dumps(PHASES[args.phase](json.loads(args.spec))))
        return 0

    from tests.services import MariaDB, Redis

    base = Path(tempfile.mkdtemp(prefix="ferry-bench-snapshot-"))
    own: list[Any] = []
    try:
        source = MariaDB(base / "source").start()
        own.append(source)
        redis = Redis(base / "redis").start()
        own.append(redis)
        spec: dict[str, Any] = {
            "source": {"host": source.host, "port": source.port, "user": "root", "password": ""},
            "redis": redis.url,
            "sink": args.sink,
            "rows": args.rows,
            "chunk_rows": args.chunk_rows,
            "batch_rows": args.batch_rows,
        }
        if args.sink == "mysql":
            target = MariaDB(base / "target").start()
            own.append(target)
            spec["target"] = {"host": target.host, "port": target.port, "user": "root"}
        written = wl.write_big_transaction(spec["source"], args.shape, args.rows)
        print(f"table: {args.rows:,} rows ({args.shape}) in {written.seconds:.1f} s", flush=True)
        runs = []
        for n in range(args.runs):
            result: dict[str, Any] = {}
            for phase in ("raw", "dump", "ferry"):
                if phase == "ferry" and args.sink == "mysql":
                    spec["target_schema"] = f"bench_target_{n}"
                result[phase] = run_phase(phase, spec)
            share = result["ferry"]["rows_per_s"] / result["raw"]["rows_per_s"]
            print(
                f"run {n + 1}/{args.runs}: raw {result['raw']['rows_per_s']:,.0f} rows/s,"
                f" dump {result['dump']['rows_per_s'] or 0:,.0f}, ferry"
                f" {result['ferry']['rows_per_s']:,.0f} ({share:.0%} of raw), rss"
                f" {result['ferry']['node_rss_mb']:.0f} MB + decoder"
                f" {result['ferry']['decoder_rss_mb']:.0f} MB",
                flush=True,
            )
            runs.append(result)
    finally:
        for service in reversed(own):
            service.stop()
        shutil.rmtree(base, ignore_errors=True)
    summary = {
        name: median([r[name]["rows_per_s"] for r in runs]) for name in ("raw", "dump", "ferry")
    }
    peak = max(r["ferry"]["node_rss_mb"] + r["ferry"]["decoder_rss_mb"] for r in runs)
    out = {
        "sink": args.sink,
        "shape": args.shape,
        "rows": args.rows,
        "machine": machine(),
        "runs": runs,
        "median_rows_per_s": summary,
        "ferry_share_of_raw": summary["ferry"] / summary["raw"],
        "peak_rss_mb": peak,
    }
    path = ROOT / "bench" / "results" / f"snapshot-{args.sink}-{args.shape}-{args.rows}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"| {args.sink} | {args.shape} | {args.rows:,} | {summary['raw']:,.0f} |"
        f" {summary['dump'] or 0:,.0f} | {summary['ferry']:,.0f} |"
        f" **{out['ferry_share_of_raw']:.0%}** | {peak:.0f} MB |"
    )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
