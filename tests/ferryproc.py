"""Real `ferry` processes for integration tests: configs, nodes, CLI calls, a steady writer.

* ``write_config`` — a pipeline file for the session MariaDB/Redis and a given sink;
* ``FerryNode`` — one ``python -m pipeline run`` child (tracked, so it dies with the run);
* ``ferry`` / ``ferry_status`` — the CLI as users run it, in a subprocess;
* ``SteadyWriter`` — a thread writing transactions of a ``Workload`` until stopped;
* ``complete_events`` — the events of a JSONL file that may be mid-write;
* ``wait_until`` — poll a predicate with a deadline instead of sleeping.
"""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tests.delivery import Event, Workload, jsonl_events
from tests.services import track_process, untrack_process

ROOT = Path(__file__).parents[1]


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    """Poll until ``predicate()`` is truthy and return its value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def source_position(server: Any) -> dict[str, Any]:
    """The source's current binlog end, as a `source.start` mapping."""
    [row] = server.execute("SHOW MASTER STATUS")
    return {"file": row[0], "pos": int(row[1])}


def write_config(
    path: Path,
    *,
    pipeline_id: str,
    mariadb: Any,
    schema: str,
    redis_url: str,
    prefix: str,
    sink: dict[str, Any],
    start: Any = "latest",
    server_id: int = 4401,
    source: dict[str, Any] | None = None,
    lock_ttl_ms: int = 2000,
    **pipeline: Any,
) -> Path:
    """A pipeline file; ``pipeline`` overrides the fast test defaults of `pipeline:`,
    ``source`` adds to `source:` (``start=None`` leaves `source.start` out)."""
    settings: dict[str, Any] = {
        "id": pipeline_id,
        "parallelism": 3,
        "batch": {"max_rows": 50, "max_wait_ms": 50},
        "retry_backoff_ms": 50,
        "status_interval_ms": 300,
        "state_dir": str(path.parent / f"state-{pipeline_id}"),
        **pipeline,
    }
    config = {
        "pipeline": settings,
        "source": {
            "host": mariadb.host,
            "port": mariadb.port,
            "user": mariadb.user,
            "password": mariadb.password,
            "server_id": server_id,
            "include": [f"{schema}.*"],
            **({} if start is None else {"start": start}),  # None: the default (a snapshot)
            **(source or {}),
        },
        "arbiter": {"url": redis_url, "key_prefix": prefix.rstrip(":"), "lock_ttl_ms": lock_ttl_ms},
        "sink": sink,
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


class FerryNode:
    """One `ferry run` process; its output goes to ``<dir>/<node_id>-<n>.log``."""

    def __init__(self, config: Path, node_id: str) -> None:
        self.config = config
        self.node_id = node_id
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self) -> FerryNode:
        log_path = self.config.parent / f"{self.node_id}-{len(self.logs) + 1}.log"
        self.logs.append(log_path)
        command = [sys.executable, "-m", "pipeline", "run", "-c", str(self.config)]
        with log_path.open("wb") as log:  # the child keeps its own fd
            self.process = subprocess.Popen(
                [*command, "--node-id", self.node_id], stdout=log, stderr=log, cwd=ROOT
            )
        track_process(self.process)
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout_s)
        untrack_process(self.process)
        return code

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL when it does not exit. None when not running."""
        if self.process is None or self.process.poll() is not None:
            if self.process is not None:
                untrack_process(self.process)
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.wait(10)
            raise

    def selecting(self, timeout_s: float = 60) -> FerryNode:
        """Wait until this run's selector has resolved where it reads from: `latest` means
        then, so a test that writes earlier would write before the pipeline's start."""
        runs = len(self.logs)
        wait_until(
            lambda: (
                self.logs[-1].exists()
                and "selector start " in self.logs[-1].read_text(errors="replace")
            ),
            timeout_s,
            f"{self.node_id}'s selector (run {runs}) to start",
        )
        return self

    def log(self, chars: int = 4000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in self.logs if p.exists())


def ferry(config: Path, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a `ferry` command as a user would; returns the completed process (text)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args[:1], "-c", str(config), *args[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout_s,
    )


def ferry_status(config: Path) -> dict[str, Any]:
    done = ferry(config, "status", "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def complete_events(path: Path) -> list[Event]:
    """``jsonl_events`` of the whole lines only: a writer may be mid-line while we read."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = path.with_name(path.name + ".whole")
    whole.write_bytes(data[: data.rfind(b"\n") + 1])
    return jsonl_events(whole)


def node_report(status: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """The fresh (not stale) report of ``node_id`` in a `ferry status --json` answer."""
    for node in status["nodes"]:
        if node.get("node_id") == node_id and not node.get("stale"):
            return dict(node)
    return None


class Writes(Protocol):
    """What ``SteadyWriter`` writes with (``Workload``, ``OrderWorkload``)."""

    mariadb: Any
    schema: str

    @property
    def TABLES(self) -> tuple[str, ...]: ...

    @property
    def changes(self) -> int: ...

    def run(
        self, transactions: int, max_rows: int = ..., connection: Any = None, min_rows: int = ...
    ) -> None: ...


class SteadyWriter:
    """Writes ``Workload`` transactions in a thread, about ``rate`` per second, until stopped.

    With ``large_every`` N, every N-th round also writes one large transaction
    (``large_rows`` rows: more than a batch holds, so the node splits it);
    ``write_large()`` asks for one now.
    """

    def __init__(
        self,
        workload: Writes,
        rate: float = 300,
        per_round: int = 5,
        large_every: int = 0,
        large_rows: tuple[int, int] = (200, 600),
    ) -> None:
        self.workload = workload
        self.per_round = per_round
        self.interval_s = per_round / rate
        self.large_every = large_every
        self.large_rows = large_rows
        self._large_now: queue.Queue[tuple[tuple[int, int], threading.Event]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> SteadyWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        connection = self.workload.mariadb.connect(self.workload.schema)
        try:
            next_at = time.monotonic()
            for rounds in itertools.count(1):
                if self._stop.is_set():
                    break
                self.workload.run(self.per_round, connection=connection)
                if self.large_every and rounds % self.large_every == 0:
                    self._large_now.put((self.large_rows, threading.Event()))
                while not self._large_now.empty():
                    (low, high), committed = self._large_now.get()
                    self.workload.run(1, max_rows=high, connection=connection, min_rows=low)
                    committed.set()
                next_at += self.interval_s
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            connection.close()

    def write_large(self, rows: tuple[int, int], timeout_s: float = 30) -> None:
        """Have the writer commit one transaction of ``rows`` (low, high) rows now; returns
        once it is committed."""
        committed = threading.Event()
        self._large_now.put((rows, committed))
        assert committed.wait(timeout_s), "the writer did not write the large transaction"

    def stop(self) -> int:
        """Stop writing; returns how many events were written in all."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error
        return self.workload.changes

    @property
    def written(self) -> int:
        return self.workload.changes


def tables_of(
    server: Any, db: str, tables: Sequence[str] = Workload.TABLES
) -> dict[str, tuple[tuple[Any, ...], ...]]:
    """Every row of ``tables`` (the workload's by default), by table, in the order of their
    first column (each table's primary key)."""
    return {t: server.execute(f"SELECT * FROM `{db}`.`{t}` ORDER BY 1") for t in tables}


def checksums(server: Any, db: str, tables: Sequence[str] = Workload.TABLES) -> list[int]:
    """CHECKSUM TABLE of ``tables``, in their order."""
    names = ", ".join(f"`{db}`.`{t}`" for t in tables)
    return [int(checksum) for _, checksum in server.execute(f"CHECKSUM TABLE {names}")]


def assert_same_tables(
    source: Any,
    source_db: str,
    target: Any,
    target_db: str,
    tables: Sequence[str] = Workload.TABLES,
) -> None:
    """The target holds exactly the source's rows of ``tables``: same rows, same CHECKSUM
    TABLE. A difference is reported per table, with a few of the rows."""
    rows = tables_of(source, source_db, tables)
    held = tables_of(target, target_db, tables)
    differences = []
    for table in tables:
        if held[table] != rows[table]:
            lost = sorted(set(rows[table]) - set(held[table]), key=repr)
            extra = sorted(set(held[table]) - set(rows[table]), key=repr)
            differences.append(
                f"{table}: {len(lost)} source rows not on the target, e.g. {lost[:5]};"
                f" {len(extra)} target rows not in the source, e.g. {extra[:5]}"
            )
    assert not differences, "the target differs from the source:\n" + "\n".join(differences)
    assert sum(len(table) for table in rows.values()) > 0
    assert checksums(target, target_db, tables) == checksums(source, source_db, tables)


def mysql_target(
    mariadb: Any,
    target: Any,
    source_db: str,
    target_db: str,
    tables: Sequence[str] = Workload.TABLES,
) -> dict[str, Any]:
    """Create ``tables`` (the workload's by default) on ``target`` and return the sink section
    that writes there."""
    for table in tables:
        [(_, ddl)] = mariadb.execute(f"SHOW CREATE TABLE `{source_db}`.`{table}`")
        target.execute(ddl, database=target_db)
    return mysql_sink(target, source_db, target_db)


def mysql_sink(target: Any, source_db: str, target_db: str) -> dict[str, Any]:
    """The `sink:` section that writes ``source_db``'s tables into ``target_db`` on ``target``."""
    return {
        "type": "mysql",
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "password": target.password,
        "schema_map": {source_db: target_db},
        "checkpoint_schema": target_db,
    }
