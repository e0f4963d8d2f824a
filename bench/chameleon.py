"""pg_chameleon (PyPI, 2.0.21) as the benchmark's peer of ferry's PostgreSQL sink.

    cham = Chameleon(tmp / "cham", source, pg, database="chameleon_0", schema="ferry_bench")
    cham.init()                       # create_replica_schema, add_source, init_replica
    cham.start_position()             # ('mysql-bin.000001', 940): where its stream starts
    run = cham.replicate(done=lambda cur: ..., timeout_s=600)
    run.seconds, run.first_row_s      # from the spawn of `chameleon start_replica`

pg_chameleon lives in its own virtualenv (``~/.cache/ferry/pg_chameleon/venv``, or
``$FERRY_PG_CHAMELEON_VENV``), created on first use with ``pip install
pg_chameleon==2.0.21``: it pins old libraries (psycopg2, mysql-replication, Sphinx) that
ferry's environment must not get.

How it replicates (and so what the benchmark times): ``init_replica`` copies the source
tables into PostgreSQL and records the binlog position it read them at;
``start_replica`` then runs two processes, a reader that stores the binlog's row
images in its log tables (``sch_chameleon.t_log_replica_*``) and a replayer that applies
them to the target tables with a PL/pgSQL function, ``replay_max_rows`` at a time. It has
no "start at this binlog position" option, so the benchmark runs ``init_replica`` on the
still-empty source table *before* the workload is written: the position it records is
the workload's first, and its target table is empty, as ferry's is.

Facts (pg_chameleon 2.0.21, MariaDB 10.11, PostgreSQL 15):

- It refuses to run as root (``os.geteuid() == 0``: a policy check, nothing else in it
  reads the uid). Where the benchmark runs as root (this sandbox), its entry point is
  started with ``os.geteuid`` answering a non-root id; the venv under root's home is
  unreadable to other users, so it cannot simply run as one.
- It builds its libpq connection string by formatting ``password=%(password)s``: an
  empty password swallows the next keyword (``password= port=…`` sets the password to
  ``port=…``), so a trust-authenticated server still gets a placeholder password.
- ``--debug`` forces debug logging of every batch to stdout; the benchmark runs it with
  ``log_dest: stdout`` at ``info`` level instead (foreground, one line per batch).
- On MariaDB its reader closes a batch (the unit its replayer applies) only where the
  readable binlog ends or rotates: it closes them at MySQL's GTID events, which MariaDB
  does not write. So its first change lands only after it has read the whole range
  (about 3 s after start on 30k changes, 18-24 s on 300k, 46-69 s on 300k one-row
  statements): a property of the tool, not of ``sleep_loop`` or the batch sizes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = "2.0.21"

#: read/replay sizes and the idle sleep: pg_chameleon's example configuration's values
SOURCE_SETTINGS: dict[str, Any] = {
    "replica_batch_size": 10000,
    "replay_max_rows": 10000,
    "sleep_loop": 1,
}

# Runs pg_chameleon's own command line; as root, os.geteuid answers "nobody" first (see
# the module's docstring).
_ENTRY = (
    "import os, runpy, sys\n"
    "if os.geteuid() == 0:\n"
    "    os.geteuid = lambda: 65534\n"
    "sys.argv = ['chameleon'] + sys.argv[1:]\n"
    "runpy.run_path(os.path.join(os.path.dirname(sys.executable), 'chameleon.py'),"
    " run_name='__main__')\n"
)


class ChameleonFailed(RuntimeError):
    """A pg_chameleon command failed or the replica did not finish in time."""


def venv() -> Path:
    return Path(
        os.environ.get("FERRY_PG_CHAMELEON_VENV", "~/.cache/ferry/pg_chameleon/venv")
    ).expanduser()


def python() -> Path:
    """The venv's interpreter; creates the venv and installs pg_chameleon when missing."""
    env = venv()
    binary = env / "bin" / "python"
    if (env / "bin" / "chameleon.py").is_file():
        return binary
    env.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(binary), "-m", "pip", "install", "-q", f"pg_chameleon=={VERSION}"], check=True
    )
    return binary


@dataclass
class Replicated:
    """One ``start_replica`` until the target was complete."""

    seconds: float  # spawn of start_replica .. the poll that found the target complete
    first_row_s: float | None  # spawn .. the first poll that saw any change applied
    polls: int


class Chameleon:
    """One pg_chameleon configuration: a MySQL source, one PostgreSQL database."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        source: dict[str, Any],
        pg: dict[str, Any],
        database: str,
        schema: str,
    ) -> None:
        self.home = Path(home)
        self.source = source
        self.pg = pg
        self.database = database
        self.schema = schema
        self.log_path = self.home / "chameleon.log"
        for sub in ("configuration", "logs", "pid", "out"):
            (self.home / ".pg_chameleon" / sub).mkdir(parents=True, exist_ok=True)
        config = {
            "pid_dir": str(self.home / ".pg_chameleon" / "pid"),
            "log_dir": str(self.home / ".pg_chameleon" / "logs"),
            "log_dest": "stdout",
            "log_level": "info",
            "log_days_keep": 1,
            "rollbar_key": "",
            "rollbar_env": "",
            "type_override": {},
            "pg_conn": {
                "host": pg["host"],
                "port": str(pg["port"]),
                "user": pg["user"],
                "password": pg["password"] or "unused",  # see the module's docstring
                "database": database,
                "charset": "utf8",
            },
            "sources": {
                "mysql": {
                    "db_conn": {
                        "host": source["host"],
                        "port": str(source["port"]),
                        "user": source["user"],
                        "password": source["password"],
                        "charset": "utf8",
                        "connect_timeout": 10,
                    },
                    "schema_mappings": {schema: schema},
                    "limit_tables": [],
                    "skip_tables": [],
                    "grant_select_to": [],
                    "lock_timeout": "120s",
                    "my_server_id": 7100 + os.getpid() % 100,
                    "batch_retention": "1 day",
                    "copy_max_memory": "300M",
                    "copy_mode": "file",
                    "out_dir": str(self.home / ".pg_chameleon" / "out"),
                    "on_error_replay": "exit",
                    "on_error_read": "exit",
                    "auto_maintenance": "disabled",
                    "gtid_enable": False,
                    "type": "mysql",
                    "skip_events": {"insert": [], "delete": [], "update": []},
                    "keep_existing_schema": False,
                    "net_read_timeout": 600,
                    **SOURCE_SETTINGS,
                },
            },
        }
        path = self.home / ".pg_chameleon" / "configuration" / "bench.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def _command(self, command: str) -> list[str]:
        args = [command, "--config", "bench"]
        if command != "create_replica_schema":
            args += ["--source", "mysql"]
        return [str(python()), "-c", _ENTRY, *args]

    def _env(self) -> dict[str, str]:
        return dict(os.environ, HOME=str(self.home), PYTHONPATH="")

    def run(self, command: str) -> None:
        """One pg_chameleon command to its end; its output goes to ``log_path``."""
        with open(self.log_path, "ab") as log:
            offset = log.tell()
            rc = subprocess.run(
                self._command(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                timeout=600,
            ).returncode
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            output = log.read().decode(errors="replace")
        # it reports most failures on stdout and still exits 0 (and Daemonize prints a
        # traceback of its own SystemExit(0) at every exit: not a failure)
        if rc != 0 or re.search(r" (ERROR|CRITICAL): |^(FATAL|ERROR)\b", output, re.M):
            raise ChameleonFailed(f"chameleon {command} failed ({rc}):\n{_tail(self.log_path)}")

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.pg["host"],
            port=self.pg["port"],
            user=self.pg["user"],
            password=self.pg["password"],
            dbname=self.database,
            autocommit=True,
        )

    def init(self) -> None:
        """The catalogue, the source, and the initial copy (of what the source holds now)."""
        for command in ("create_replica_schema", "add_source", "init_replica"):
            self.run(command)

    def start_position(self) -> tuple[str, int]:
        """Where ``start_replica`` will start reading: the batch ``init_replica`` saved."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT t_binlog_name, i_binlog_position FROM sch_chameleon.t_replica_batch"
                " WHERE NOT b_processed ORDER BY i_id_batch LIMIT 1"
            ).fetchone()
        if row is None:
            raise ChameleonFailed("no unprocessed batch in sch_chameleon.t_replica_batch")
        return str(row[0]), int(row[1])

    def replicate(
        self,
        done: Callable[[Any], bool],
        started: Callable[[Any], bool],
        timeout_s: float,
        poll_s: float = 0.25,
    ) -> Replicated:
        """``start_replica`` until ``done(cursor)`` holds on the target, then stop it.

        ``started(cursor)`` says whether any change has been applied yet (for
        ``first_row_s``). Both are polled every ``poll_s`` on one connection.
        """
        conn = self.connect()
        with open(self.log_path, "ab") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                self._command("start_replica"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        first: float | None = None
        polls = 0
        try:
            with conn.cursor() as cur:
                while True:
                    polls += 1
                    if first is None and started(cur):
                        first = time.perf_counter() - t0
                    if done(cur):
                        seconds = time.perf_counter() - t0
                        break
                    if proc.poll() is not None:
                        raise ChameleonFailed(
                            f"start_replica exited ({proc.returncode}) before the target was"
                            f" complete:\n{_tail(self.log_path)}"
                        )
                    if time.perf_counter() - t0 > timeout_s:
                        raise ChameleonFailed(
                            f"the target was not complete within {timeout_s:.0f} s:\n"
                            f"{_tail(self.log_path)}"
                        )
                    time.sleep(poll_s)
        finally:
            conn.close()
            _stop(proc)
        return Replicated(seconds, first, polls)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT is pg_chameleon's own stop (``stop_replica`` sends it): it ends its readers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"
