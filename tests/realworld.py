"""The real-world SQL corpus (``../shared/realworld-sql``): loading it and comparing copies.

The corpus is 54 public SQL scripts nobody on the team wrote (python-mysql-
replication's type tests, Debezium's test schemas, Sakila); its README lists
sources and special cases. It is looked for in ``$FERRY_REALWORLD_SQL``, then
beside the repository (``../shared/realworld-sql``), then in
``/work/shared/realworld-sql``.
"""

from __future__ import annotations

import base64
import collections
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.ferryproc import FerryNode, ferry_status, wait_until

ROOT = Path(__file__).parents[1]


def corpus_dir() -> Path | None:
    candidates = [
        os.environ.get("FERRY_REALWORLD_SQL", ""),
        str(ROOT.parent / "shared" / "realworld-sql"),
        "/work/shared/realworld-sql",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "manifest.json").is_file():
            return Path(candidate)
    return None


def scripts(corpus: Path) -> list[Path]:
    """Every script, in the order the corpus README loads them."""
    return [
        *sorted(corpus.glob("pmr/*.sql")),
        *sorted(corpus.glob("debezium/*.sql")),
        corpus / "sakila" / "sakila.sql",
    ]


def databases(corpus: Path) -> list[str]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    return sorted({db for entry in manifest["files"] for db in entry["databases"]})


def mysql_client() -> str:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        raise RuntimeError("the mariadb command-line client is needed to load the corpus")
    return client


def load(server: Any, script: Path) -> None:
    """Run one script with the mysql client (the scripts use DELIMITER), as the README does."""
    with script.open("rb") as sql:
        done = subprocess.run(
            [mysql_client(), "-h", server.host, "-P", str(server.port), "-u", server.user],
            stdin=sql,
            capture_output=True,
            timeout=300,
        )
    if done.returncode != 0:
        raise AssertionError(f"loading {script.name} failed: {done.stderr.decode()[-2000:]}")


# -- comparing a source and a copy -----------------------------------------------------


def base_tables(server: Any, dbs: list[str]) -> list[tuple[str, str]]:
    marks = ",".join(["%s"] * len(dbs))
    rows = server.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
        f" WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA IN ({marks})",
        dbs,
    )
    return sorted((str(a), str(b)) for a, b in rows)


def quoted(schema: str, table: str) -> str:
    return "`" + schema.replace("`", "``") + "`.`" + table.replace("`", "``") + "`"


def rows_of(server: Any, schema: str, table: str) -> collections.Counter[tuple[Any, ...]]:
    """The table as a multiset of rows (``SELECT *``; TIMESTAMPs read in UTC)."""
    conn = server.connect(init_command="SET time_zone='+00:00'")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {quoted(schema, table)}")
            return collections.Counter(tuple(row) for row in cur.fetchall())
    finally:
        conn.close()


def checksum(server: Any, schema: str, table: str) -> Any:
    [(_, value)] = server.execute(f"CHECKSUM TABLE {quoted(schema, table)} EXTENDED")
    return value


def definition(server: Any, schema: str, table: str) -> str:
    [(_, ddl)] = server.execute(f"SHOW CREATE TABLE {quoted(schema, table)}")
    return re.sub(r" AUTO_INCREMENT=\d+", "", str(ddl))


def differences(source: Any, target: Any, dbs: list[str]) -> list[str]:
    """Every way ``target`` differs from ``source`` in the corpus databases (empty: identical).

    Rows are compared as multisets of ``SELECT *`` (tables without a key may hold
    equal rows) and with ``CHECKSUM TABLE … EXTENDED`` (exact stored bytes: a FLOAT
    that prints like the source's but holds other bits shows here); definitions
    with ``SHOW CREATE TABLE`` (auto-increment counters aside).
    """
    problems = []
    ours, theirs = base_tables(source, dbs), base_tables(target, dbs)
    if ours != theirs:
        problems.append(
            f"tables missing on the target: {sorted(set(ours) - set(theirs))[:10]};"
            f" extra: {sorted(set(theirs) - set(ours))[:10]}"
        )
    for schema, table in sorted(set(ours) & set(theirs)):
        want, got = rows_of(source, schema, table), rows_of(target, schema, table)
        if want != got:
            problems.append(
                f"{schema}.{table}: rows only in the source {list((want - got).elements())[:2]},"
                f" only in the target {list((got - want).elements())[:2]}"
            )
        elif checksum(source, schema, table) != checksum(target, schema, table):
            problems.append(f"{schema}.{table}: same rows as read, different stored values")
        if definition(source, schema, table) != definition(target, schema, table):
            problems.append(f"{schema}.{table}: different definition")
    return problems


# -- a pipeline over the corpus ---------------------------------------------------------


def pipeline(
    tmp_path: Path,
    name: str,
    source: Any,
    redis: Any,
    prefix: str,
    dbs: list[str],
    sink: dict,
    start: str | None = "earliest",
) -> Path:
    """A pipeline file over the corpus databases; ``start=None``: no ``source.start``, so
    the pipeline begins with a snapshot (``source.snapshot`` defaults to initial)."""
    config = {
        "pipeline": {
            "id": name,
            "batch": {"max_rows": 300, "max_wait_ms": 100},
            "retry_backoff_ms": 100,
            "status_interval_ms": 300,
            "state_dir": str(tmp_path / f"state-{name}"),
        },
        "source": {
            "host": source.host,
            "port": source.port,
            "user": source.user,
            "server_id": 4500 + len(name),
            "include": [f"{db}.*" for db in dbs],
            **({} if start is None else {"start": start}),
        },
        "arbiter": {"url": redis.url, "key_prefix": prefix.rstrip(":"), "lock_ttl_ms": 2000},
        "sink": sink,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return path


def committed(redis: Any, prefix: str, name: str) -> tuple[str, int]:
    client = redis.client()
    try:
        raw = client.get(f"{prefix}{name}:position")
    finally:
        client.close()
    if not raw:
        return ("", 0)
    data = json.loads(raw)
    position = data.get("position", data)
    return (position["file"], int(position["pos"]))


def run_with_one_restart(config: Path, redis: Any, prefix: str, name: str, end: Any) -> None:
    """Replicate to ``end``, stopping the node with SIGTERM once when halfway there."""
    node = FerryNode(config, f"{name}-a").start()
    wait_until(
        lambda: committed(redis, prefix, name) >= (end[0], end[1] // 2),
        120,
        f"{name} halfway",
        interval_s=0.02,
    )
    node.signal(signal.SIGTERM)
    assert node.wait(60) == 0, node.log()
    node = FerryNode(config, f"{name}-b").start()
    try:
        wait_until(lambda: committed(redis, prefix, name) >= end, 180, f"{name} at the end")
        status = ferry_status(config)
        assert (status["state"], status["error"]) == ("running", ""), status
    finally:
        assert node.stop() == 0, node.log()
    log = "\n".join(p.read_text(errors="replace") for p in config.parent.glob(f"{name}-*.log"))
    assert " paused" not in log and "ERROR" not in log, log[-5000:]


# -- JSON lines back to rows -----------------------------------------------------------


def column_types(server: Any, dbs: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """DATA_TYPE of every column, per table (as the source has them at the end)."""
    marks = ",".join(["%s"] * len(dbs))
    types: dict[tuple[str, str], dict[str, str]] = collections.defaultdict(dict)
    for schema, table, column, kind in server.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS"
        f" WHERE TABLE_SCHEMA IN ({marks})",
        dbs,
    ):
        types[(str(schema), str(table))][str(column)] = str(kind).lower()
    return types


_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_SPATIAL = {
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
}


def decode(value: Any, kind: str) -> Any:
    """A JSON value of ferry's encoding (docs/formats.md) as pymysql reads the column."""
    if value is None:
        return None
    if kind == "uuid":  # MariaDB's UUID is BINARY(16) in the binlog: base64 of its bytes
        return str(uuid.UUID(bytes=base64.b64decode(value)))
    if kind in ("inet6", "inet4"):
        address = ipaddress.ip_address(base64.b64decode(value))
        mapped = getattr(address, "ipv4_mapped", None)
        return f"::ffff:{mapped}" if mapped is not None else str(address)
    if kind in _BINARY or kind in _SPATIAL:
        return base64.b64decode(value)
    if kind == "bit":
        return int(value)
    if kind == "decimal":
        return Decimal(value)
    if kind in ("datetime", "timestamp"):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value  # zero or partial: as MySQL writes it
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(datetime.UTC).replace(tzinfo=None)
        return parsed
    if kind == "date":
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return value
    if kind == "time":
        negative = value.startswith("-")
        hours, minutes, seconds = value.lstrip("-").split(":")
        whole, _, fraction = seconds.partition(".")
        delta = datetime.timedelta(
            hours=int(hours),
            minutes=int(minutes),
            seconds=int(whole),
            microseconds=int(fraction.ljust(6, "0")),
        )
        return -delta if negative else delta
    if kind == "set":
        return set(value)
    return value


def normalise(value: Any, kind: str) -> Any:
    """A value as pymysql reads the source, in the form ``decode`` gives."""
    if kind == "bit" and isinstance(value, bytes):
        return int.from_bytes(value, "big")
    if kind == "set" and isinstance(value, bytes):  # a SET of CHARACTER SET binary
        value = value.decode()
    if kind == "set" and isinstance(value, set | str):
        members = set(value.split(",")) if isinstance(value, str) else value
        return members - {""}
    return value


def primary_keys(server: Any, dbs: list[str]) -> dict[tuple[str, str], tuple[str, ...]]:
    marks = ",".join(["%s"] * len(dbs))
    keys: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for schema, table, column in server.execute(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
        f" WHERE CONSTRAINT_NAME='PRIMARY' AND TABLE_SCHEMA IN ({marks})"
        " ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        dbs,
    ):
        keys[(str(schema), str(table))].append(str(column))
    return {table: tuple(columns) for table, columns in keys.items()}


def replay(lines: list[str], tables_of: Any) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Apply ferry-json lines in order: the rows each table holds at the end.

    Rows are matched by their whole image (JSON values as written, on the columns
    both images have: ALTER TABLE adds and drops columns midway), so tables
    without a key and tables with equal rows replay exactly too. A DDL that
    creates, drops or truncates a table starts that table over:
    ``tables_of(statement, session database)`` names them.
    """
    state: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for line in lines:
        message = json.loads(line)
        if "ddl" in message:
            for table in tables_of(message["ddl"], message["source"]["db"]):  # session's
                state.pop(table, None)
            continue
        table = (message["source"]["db"], message["source"]["table"])
        rows = state[table]
        before, after = message["before"], message["after"]
        if before is not None:
            for i, row in enumerate(rows):
                if all(row[k] == v for k, v in before.items() if k in row):
                    del rows[i]
                    break
            else:
                raise AssertionError(f"{table}: {message['op']} of a row never seen: {before}")
        if after is not None:
            rows.append(after)
    return state


def decoded(rows: list[dict[str, Any]], types: dict[str, str], columns: list[str]) -> Any:
    return collections.Counter(
        tuple(_hashable(decode(row.get(c), types[c])) for c in columns) for row in rows
    )


def read_back(
    server: Any, schema: str, table: str, types: dict[str, str], columns: list[str]
) -> Any:
    conn = server.connect(init_command="SET time_zone='+00:00'")
    try:
        with conn.cursor() as cur:
            names = ",".join("`" + c.replace("`", "``") + "`" for c in columns)
            cur.execute(f"SELECT {names} FROM {quoted(schema, table)}")
            return collections.Counter(
                tuple(_hashable(normalise(v, types[c])) for v, c in zip(row, columns, strict=True))
                for row in cur.fetchall()
            )
    finally:
        conn.close()


def _hashable(value: Any) -> Any:
    return frozenset(value) if isinstance(value, set) else value
