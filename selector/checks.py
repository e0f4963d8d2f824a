"""Startup checks of the source server (also printed by ``ferry check``).

Each check is ``(what, ok, fix)``: ``fix`` says what to change when ``ok`` is
False (and carries a warning when ``ok`` is True but something is degraded).
"""

from __future__ import annotations

import re
from typing import Any

import pymysql

from pipeline.dialect import TlsError, connect_kwargs, describe
from pipeline.dialect import connect as tls_connect
from pipeline.errors import FatalError, ServerIdClash, classify, timed_out

from .config import MySQLSourceConfig
from .identity import refuse_clash

Check = tuple[str, bool, str]


def connect(config: MySQLSourceConfig, **extra: Any) -> pymysql.connections.Connection[Any]:
    """A plain autocommit connection to the source (control queries, snapshot reads; not
    the dump), with ``source.tls``."""
    return tls_connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password.get_secret_value(),
        connect_timeout=max(1, config.connect_timeout_ms // 1000),
        autocommit=True,
        charset="utf8mb4",
        **connect_kwargs(config.tls, "source.tls"),
        **extra,
    )


def connect_timeout_hint(config: MySQLSourceConfig, exc: BaseException) -> str:
    """For a connection attempt that timed out: the setting the timeout came from."""
    if not timed_out(exc):
        return ""
    return f" (no answer within source.connect_timeout_ms, {config.connect_timeout_ms} ms)"


def master_status(conn: Any) -> tuple[Any, ...]:
    """The source's binlog end: (file, pos, ...). MySQL 8.4 removed SHOW MASTER STATUS."""
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW BINARY LOG STATUS")
        except pymysql.err.ProgrammingError:
            cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if not row:
        raise FatalError("the source has no binary log (log_bin is OFF)")
    return tuple(row)


def binlog_files(conn: Any) -> list[tuple[str, int]]:
    """(name, size) of every binlog file the source still has, oldest first."""
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [(str(row[0]), int(row[1])) for row in cur.fetchall()]


def variables(conn: Any, *names: str) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ",".join(["%s"] * len(names)) + ")",
            names,
        )
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def server_checks(conn: Any, user: str) -> list[Check]:
    found = variables(
        conn, "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "version"
    )
    checks: list[Check] = []

    def expect(name: str, want: str, fix: str) -> None:
        have = found.get(name, "").upper()
        ok = have == want
        checks.append((f"{name} = {want} (is {have or 'unset'})", ok, "" if ok else fix))

    expect(
        "log_bin", "ON", "start the server with log_bin (e.g. --log-bin=mysql-bin) and a server_id"
    )
    expect(
        "binlog_format",
        "ROW",
        "SET GLOBAL binlog_format = 'ROW' and binlog_format=ROW in the server config",
    )
    expect(
        "binlog_row_image",
        "FULL",
        "SET GLOBAL binlog_row_image = 'FULL' and binlog_row_image=FULL in the server config",
    )
    metadata = found.get("binlog_row_metadata", "").upper()
    if metadata == "FULL":
        checks.append(("binlog_row_metadata = FULL", True, ""))
    elif metadata in ("NO_LOG", "MINIMAL"):
        checks.append(
            (
                f"binlog_row_metadata = {metadata}",
                True,
                "note: rows are read with the table definitions of ferry's schema history"
                " (README: the schema history); FULL also puts column names in the binlog,"
                " which ferry then checks against the history",
            )
        )
    elif "binlog_row_metadata" in found:
        expect(
            "binlog_row_metadata",
            "FULL",
            "SET GLOBAL binlog_row_metadata = 'FULL' (MySQL 8.0+, MariaDB 10.5+) and in the"
            " server config, or NO_LOG or MINIMAL",
        )
    else:
        checks.append(
            (
                "binlog_row_metadata (not on this server version)",
                True,
                "note: rows are read with the table definitions of ferry's schema history"
                " (README: the schema history)",
            )
        )
    checks.append(privileges(conn, user))
    return checks


def row_metadata(conn: Any) -> str:
    """What the server's table maps carry: ``FULL``, ``MINIMAL``, ``NO_LOG``, or ``NONE`` (a
    server without the variable: MySQL 5.7, MariaDB before 10.5, whose maps have no
    metadata)."""
    found = variables(conn, "binlog_row_metadata").get("binlog_row_metadata", "").upper()
    return found if found in ("FULL", "MINIMAL", "NO_LOG") else "NONE"


_REPLICA = re.compile(r"\b(ALL PRIVILEGES|REPLICATION SLAVE|REPLICATION REPLICA)\b")
_CLIENT = re.compile(r"\b(ALL PRIVILEGES|REPLICATION CLIENT|BINLOG MONITOR|SUPER)\b")


def privileges(conn: Any, user: str) -> Check:
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = [str(row[0]).upper() for row in cur.fetchall()]
    global_grants = " ".join(g for g in grants if " ON *.* " in g)
    ok = bool(_REPLICA.search(global_grants) and _CLIENT.search(global_grants))
    return (
        "privileges REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR)",
        ok,
        ""
        if ok
        else f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '{user}'@'%'"
        " (MariaDB 10.5+: REPLICATION SLAVE, BINLOG MONITOR, SELECT)",
    )


def server_id_check(conn: Any, config: MySQLSourceConfig, pipeline_id: str) -> Check:
    """No replica that is not this pipeline's uses its server id (``selector.identity``)."""
    server_id = config.dump_server_id(pipeline_id)
    origin = "source.server_id" if config.server_id is not None else "derived from pipeline.id"
    what = f"server id {server_id} ({origin}) is not used by another replica"
    try:
        checked, found = refuse_clash(conn, server_id, config.server_id is None, pipeline_id)
    except ServerIdClash as exc:
        return (what, False, exc.message)
    if not checked:
        return (what, True, f"warning: {found}")
    return (f"{what} ({found})", True, "")


def check_source(config: MySQLSourceConfig, pipeline_id: str) -> list[Check]:
    """Run every source check; a failed connection is itself one failed check."""
    where = f"{config.user}@{config.host}:{config.port}"
    try:
        conn = connect(config)
    except Exception as exc:
        error = classify(exc)
        hint = (
            ""
            if isinstance(error, TlsError)
            else f"{connect_timeout_hint(config, exc)}; check host, port, user, password"
        )
        return [(f"connect to {where}", False, f"{error.message}{hint}")]
    try:
        checks = [
            (f"connect to {where}", True, ""),
            describe(conn, config.tls, "source.tls"),
            *server_checks(conn, config.user),
            server_id_check(conn, config, pipeline_id),
        ]
        if config.snapshot_mode != "never":
            checks += snapshot_checks(conn, config)
        return checks
    finally:
        conn.close()


def snapshot_checks(conn: Any, config: MySQLSourceConfig) -> list[Check]:
    """A snapshot reads every included table whole; on MySQL it also takes a brief global
    read lock per chunk (RELOAD; see selector.snapshot)."""
    from .tables import TableFilter

    wanted = TableFilter(config.include, config.exclude)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
            " WHERE TABLE_TYPE='BASE TABLE' AND TABLE_SCHEMA NOT IN"
            " ('mysql', 'information_schema', 'performance_schema', 'sys')"
        )
        tables = [(str(s), str(t)) for s, t in cur.fetchall() if wanted(str(s), str(t))]
        unreadable = []
        for schema, table in tables:
            try:
                cur.execute(f"SELECT * FROM `{schema}`.`{table}` LIMIT 0")
            except pymysql.err.MySQLError:
                unreadable.append(f"{schema}.{table}")
        cur.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
        cur.execute("SHOW GRANTS")
        grants = " ".join(str(row[0]).upper() for row in cur.fetchall())
    checks: list[Check] = [
        (
            f"snapshot: SELECT on the {len(tables)} included tables",
            not unreadable,
            "" if not unreadable else f"grant SELECT on {', '.join(unreadable[:5])}",
        )
    ]
    flavour = config.flavor if config.flavor != "auto" else "mariadb" if mariadb else "mysql"
    if flavour == "mysql":
        reload_ok = bool(re.search(r"\b(ALL PRIVILEGES|RELOAD)\b", grants))
        checks.append(
            (
                "snapshot on MySQL: RELOAD (a brief FLUSH TABLES WITH READ LOCK per chunk)",
                reload_ok,
                "" if reload_ok else f"GRANT RELOAD ON *.* TO '{config.user}'@'%'",
            )
        )
    return checks


def require(checks: list[Check]) -> list[str]:
    """Raise one FatalError naming every failed check; returns the warnings."""
    failed = [f"{what}: {fix}" for what, ok, fix in checks if not ok]
    if failed:
        raise FatalError("source server is not ready for ferry: " + "; ".join(failed))
    return [f"{what}: {fix}" for what, ok, fix in checks if ok and fix.startswith("warning")]
