"""`ferry` — the command line. Exit status: 0 success, 2 bad config or usage, 1 anything else."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from pipeline.config import FerryConfig, load_config
from pipeline.errors import ConfigError, FatalError, FerryError
from pipeline.logs import setup_logging
from pipeline.model import Position

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
ferry streams every row change of a MySQL/MariaDB database, in order and
without loss, into Kafka, another MySQL or files. Run one `ferry run` per
pipeline; start a second one as a standby and it takes over when the first dies.
"""

EPILOG = """\
examples:
  ferry check -c configs/mysql-to-kafka.yaml     validate the file, then check source, Redis, sink
  ferry run -c configs/mysql-to-kafka.yaml       run a node (standby until it holds the lock)
  ferry status -c configs/mysql-to-kafka.yaml    who is active, position, lag, last error
  ferry pause -c FILE / ferry resume -c FILE     stop / restart selecting on the active node
  ferry position -c FILE --set mysql-bin.000042:4 --yes   move the position (while paused)
  ferry schema show -c FILE [SCHEMA.TABLE]       table definitions in the schema history
  ferry schema rebuild -c FILE --yes             replace the history by the source's definitions

exit status: 0 success, 2 bad configuration or usage, 1 anything else.
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", required=True, metavar="FILE", help="pipeline file (YAML)"
    )
    common.add_argument(
        "--log-level",
        choices=["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default: pipeline.log_level, INFO)",
    )
    common.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")

    parser = argparse.ArgumentParser(
        prog="ferry",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", parents=[common], help="run a node: standby until it holds the lock, then replicate"
    )
    run.add_argument(
        "--node-id",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="this node's name in status and locks (default: HOST-PID)",
    )
    status = commands.add_parser(
        "status", parents=[common], help="active node, epoch, state, position, lag, last error"
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    pause = commands.add_parser("pause", parents=[common], help="pause the pipeline")
    pause.add_argument("--reason", default="paused by operator", help="shown by status")
    commands.add_parser(
        "resume", parents=[common], help="resume; clears a stored error, restarts from position"
    )
    position = commands.add_parser(
        "position", parents=[common], help="show, or (while paused) set, the committed position"
    )
    position.add_argument(
        "--set",
        dest="spec",
        metavar="SPEC",
        help="FILE:POS, gtid:SET or latest (the source's current end); only while paused",
    )
    position.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    commands.add_parser(
        "check",
        parents=[common],
        help="validate the config, then check the source, Redis and the sink",
    )
    snapshot = commands.add_parser(
        "snapshot",
        parents=[common],
        help="ask the active node to snapshot these tables while streaming goes on",
    )
    snapshot.add_argument(
        "tables", nargs="+", metavar="SCHEMA.TABLE", help="included tables to copy again"
    )
    schema = commands.add_parser(
        "schema",
        parents=[common],
        help="the schema history: show it, or (while paused) rebuild it from the source",
    )
    schema.add_argument(
        "action",
        choices=["show", "rebuild"],
        help="show: the definitions at the committed position; rebuild: replace the history"
        " by the source's current definitions (rows older than a later ALTER may then read"
        " wrong)",
    )
    schema.add_argument("table", nargs="?", metavar="SCHEMA.TABLE", help="show: only this table")
    schema.add_argument("--yes", action="store_true", help="rebuild: do not ask")
    schema.add_argument("--json", action="store_true", help="show: print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    node_id = getattr(args, "node_id", "cli")
    setup_logging(
        args.log_level or config.pipeline.log_level, args.log_json, config.pipeline.id, node_id
    )
    command: Callable[[argparse.Namespace, FerryConfig], int] = COMMANDS[args.command]
    try:
        return command(args, config)
    except ConfigError as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FerryError as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- builders


def build_arbiter(config: FerryConfig, node_id: str) -> Any:
    from arbitrate.redis import RedisArbiter

    return RedisArbiter(config.arbiter, config.pipeline.id, node_id)


def build_node(config: FerryConfig, node_id: str, log_level: str = "INFO") -> Any:
    from pipeline.node import Node
    from pipeline.recovery import StateFile
    from pipeline.stages import encoding_ahead
    from selector.base import PositionStore, Selector
    from selector.process import open_selector
    from sinks.registry import create_sink

    sink = create_sink(config.sink, config.pipeline.id)
    encoding = encoding_ahead(config, sink)

    def selector(store: PositionStore) -> Selector:
        batch = config.pipeline.batch
        return open_selector(
            config.source,
            batch.max_rows,
            batch.max_wait_ms,
            store,
            config.pipeline.id,
            log_level,
            encoding,
        )

    return Node(
        config,
        node_id,
        arbiter=build_arbiter(config, node_id),
        sink=sink,
        selector_factory=selector,
        state=StateFile(config.pipeline.state_dir, config.pipeline.id),
    )


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, config: FerryConfig) -> int:
    from pipeline.signals import StopSignals

    node = build_node(config, args.node_id, args.log_level or config.pipeline.log_level)
    StopSignals(node.request_stop).install()  # a second signal exits at once
    port = config.pipeline.metrics_port
    if port is not None:
        from pipeline.metrics import serve

        try:
            server = serve(config.pipeline.id, node.report, port)
        except OSError as exc:
            raise FatalError(f"cannot serve metrics on port {port}: {exc}") from exc
        logger.info("metrics on http://{}:{}/metrics", *server.server_address[:2])
    logger.info(
        "node {} starting for pipeline {}, sink {}",
        args.node_id,
        config.pipeline.id,
        node.sink.describe(config.sink),
    )
    from pipeline.progress import SnapshotProgressDisplay

    progress = SnapshotProgressDisplay(node.report)
    progress.start()
    try:
        return int(node.run())
    finally:
        progress.stop()


def cmd_status(args: argparse.Namespace, config: FerryConfig) -> int:
    arbiter = build_arbiter(config, "cli")
    try:
        status = arbiter.status()
        requests = arbiter.snapshot_requests()
    finally:
        arbiter.close()
    data = {
        "pipeline": status.pipeline,
        "state": status.state.state,
        "reason": status.state.reason,
        "error": status.state.error,
        "since": status.state.since,
        "active_node": status.active_node,
        "epoch": status.epoch,
        "position": status.position.to_dict() if status.position else None,
        "position_epoch": status.position_epoch,
        "server_id": config.source.dump_server_id(config.pipeline.id),
        "server_id_derived": config.source.server_id is None,
        "nodes": status.nodes,
        "snapshot_requests": [
            {"request": r.request, "tables": list(r.tables), "state": r.state}
            for r in requests
            if r.state != "done" or time.time() - r.requested_at < 86400
        ],
    }
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return EXIT_OK
    print(render_status(data))
    return EXIT_OK


def _ago(ts: Any) -> str:
    try:
        seconds = time.time() - float(ts)
    except (TypeError, ValueError):
        return "-"
    return f"{seconds:.0f}s ago" if seconds < 120 else time.strftime("%F %T", time.localtime(ts))


def render_status(data: dict[str, Any]) -> str:
    state = data["state"]
    if state == "paused":
        state = f"paused ({data['reason'] or 'no reason'})"
        if data["error"]:
            state = f"error: paused on {data['error']}"
    active = f"{data['active_node']} (epoch {data['epoch']})" if data["active_node"] else "none"
    position = data["position"]
    position_text = str(Position.from_dict(position)) if position else "none committed yet"
    if position and data["position_epoch"] is None:
        position_text += " (set by operator)"
    lines = [
        f"pipeline  {data['pipeline']}",
        f"state     {state}",
        f"active    {active}",
        f"position  {position_text}",
    ]
    if data.get("server_id") is not None:
        derived = " (derived from the pipeline id)" if data.get("server_id_derived") else ""
        lines.append(f"server id {data['server_id']}{derived}")
    nodes = data["nodes"]
    if nodes:
        header = ("NODE", "ROLE", "EPOCH", "LAG", "ROWS/S", "ROWS", "UPDATED")
        rows = [header]
        for node in nodes:
            lag = node.get("lag_ms")
            role = str(node.get("role", "?")) + (" (stale)" if node.get("stale") else "")
            rows.append(
                (
                    str(node.get("node_id", "?")),
                    role,
                    str(node.get("epoch") or "-"),
                    "-" if lag in (None, "") else f"{float(lag) / 1000:.1f}s",
                    str(node.get("rows_per_s", "-")),
                    str(node.get("rows_total", "-")),
                    _ago(node.get("updated_at")),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("nodes")
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        ]
        for node in nodes:
            lines += _snapshot_lines(node.get("snapshot"))
        for request in data.get("snapshot_requests") or ():
            lines.append(
                f"request   {request['request']} {request['state']}: {', '.join(request['tables'])}"
            )
        for node in nodes:
            skipped = node.get("skipped") or {}
            dml = {k: v for k, v in skipped.items() if k.startswith("dml ")}
            if dml:
                counts = ", ".join(f"{k[4:]} ({v})" for k, v in sorted(dml.items()))
                lines.append(
                    f"warning   statement-format DML skipped ({node.get('node_id')}), changes"
                    f" missing: {counts}; set binlog_format=ROW"
                )
        for node in nodes:
            if node.get("server_id_clashes_total"):
                lines.append(
                    f"warning   server id clashes ({node.get('node_id')}):"
                    f" {node['server_id_clashes_total']}; another binlog client uses server id"
                    f" {data.get('server_id')}"
                )
        errors = [n for n in nodes if n.get("last_error")]
        for node in errors:
            lines.append(
                f"last error ({node.get('node_id')}, {_ago(node.get('last_error_at'))}):"
                f" {node['last_error']}"
            )
    else:
        lines.append("nodes     none seen (no node running?)")
    return "\n".join(lines)


def _snapshot_lines(snapshot: dict[str, Any] | None) -> list[str]:
    """The snapshot a node reports: one line overall, one per table."""
    if not snapshot:
        return []
    eta = snapshot.get("eta_s")
    lines = [
        f"snapshot  {snapshot['request']} {snapshot['state']}: {snapshot['rows']:,}"
        f" of ~{snapshot['estimate']:,} rows, {snapshot['rows_per_s']:,.0f} rows/s"
        + ("" if eta in (None, 0) else f", ETA {_duration(float(eta))}")
    ]
    for name, table in (snapshot.get("tables") or {}).items():
        share = 100 * table["rows"] / table["estimate"] if table["estimate"] else 100
        lines.append(
            f"  {name}  {table['state']}  {table['rows']:,} / ~{table['estimate']:,}"
            f" ({min(share, 100):.0f}%)"
        )
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def cmd_pause(args: argparse.Namespace, config: FerryConfig) -> int:
    arbiter = build_arbiter(config, "cli")
    try:
        arbiter.pause(args.reason)
    finally:
        arbiter.close()
    print(f"pipeline {config.pipeline.id} paused; the active node stops selecting within a second")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, config: FerryConfig) -> int:
    arbiter = build_arbiter(config, "cli")
    try:
        was = arbiter.get_state()
        arbiter.resume()
    finally:
        arbiter.close()
    cleared = f" (cleared error: {was.error})" if was.error else ""
    print(f"pipeline {config.pipeline.id} resumed from the committed position{cleared}")
    return EXIT_OK


def parse_position_spec(spec: str, config: FerryConfig) -> Position:
    """FILE:POS, gtid:SET or latest (asks the source for its current binlog end)."""
    if spec == "latest":
        return current_source_position(config)
    if spec.startswith("gtid:"):
        gtid = spec.removeprefix("gtid:").strip()
        if not gtid:
            raise ConfigError("--set gtid: needs a GTID set, e.g. gtid:0-1-1234")
        return Position(file="", pos=4, gtid_set=gtid)
    file, sep, pos = spec.rpartition(":")
    if not sep or not file or not pos.isdigit() or int(pos) < 4:
        raise ConfigError(
            f"--set {spec!r}: expected FILE:POS (e.g. mysql-bin.000042:4), gtid:SET or latest"
        )
    return Position(file=file, pos=int(pos))


def current_source_position(config: FerryConfig) -> Position:
    from pipeline.errors import classify
    from selector.checks import connect, master_status

    try:
        connection = connect(config.source)
        try:
            status = master_status(connection)
        finally:
            connection.close()
    except Exception as exc:  # a FatalError (log_bin OFF) passes through classify as is
        raise classify(exc, f"cannot read the source's binlog position: {exc}") from exc
    return Position(file=str(status[0]), pos=int(status[1]))


def cmd_position(args: argparse.Namespace, config: FerryConfig) -> int:
    arbiter = build_arbiter(config, "cli")
    try:
        current, epoch = arbiter.load_position_record()
        if args.spec is None:
            if current is None:
                print(f"pipeline {config.pipeline.id}: no committed position")
            else:
                by = "operator" if epoch is None else f"epoch {epoch}"
                print(f"pipeline {config.pipeline.id}: {current} (committed by {by})")
            return EXIT_OK
        if not arbiter.get_state().paused:
            print(
                f"ferry: pipeline {config.pipeline.id} is running; `ferry pause -c"
                f" {args.config}` first, so no node commits over the new position",
                file=sys.stderr,
            )
            return EXIT_FAIL
        new = parse_position_spec(args.spec, config)
        if not args.yes:
            if not sys.stdin.isatty():
                print("ferry: refusing to move the position without --yes", file=sys.stderr)
                return EXIT_USAGE
            answer = input(f"move pipeline {config.pipeline.id} from {current} to {new}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("position unchanged")
                return EXIT_FAIL
        arbiter.set_position(new)
        print(f"pipeline {config.pipeline.id}: position set to {new}; `ferry resume` to continue")
        return EXIT_OK
    finally:
        arbiter.close()


def cmd_check(args: argparse.Namespace, config: FerryConfig) -> int:
    from pipeline.check import run_checks

    print(f"config {args.config}: valid")
    print(config.summary())
    print()
    return EXIT_OK if run_checks(config) else EXIT_FAIL


def cmd_snapshot(args: argparse.Namespace, config: FerryConfig) -> int:
    """Store a snapshot request; the active node (or the next one) carries it out."""
    from selector.checks import connect
    from selector.snapshot import plan_table
    from selector.tables import TableFilter

    source = config.source
    wanted = TableFilter(source.include, source.exclude)
    tables = []
    for name in args.tables:
        schema, dot, table = name.partition(".")
        if not dot or not schema or not table:
            print(f"ferry: {name!r} is not SCHEMA.TABLE", file=sys.stderr)
            return EXIT_USAGE
        if not wanted(schema, table):
            print(
                f"ferry: {name} is not replicated (source.include / source.exclude):"
                " add it to source.include first",
                file=sys.stderr,
            )
            return EXIT_USAGE
        tables.append(name)
    try:
        conn = connect(source)
    except Exception as exc:
        raise FerryError(f"cannot reach the source to check the tables: {exc}") from exc
    try:
        for name in tables:
            plan_table(conn, *name.split(".", 1))  # exists, and the user may read it all
    finally:
        conn.close()
    arbiter = build_arbiter(config, "cli")
    try:
        busy = [r for r in arbiter.snapshot_requests() if r.state in ("pending", "running")]
        committed = arbiter.load_position()
        if busy or (committed is not None and committed.snapshot and committed.snapshot.table):
            what = (
                f"{busy[0].request} ({', '.join(busy[0].tables)}, {busy[0].state})"
                if busy
                else f"{committed.snapshot.request} ({committed.snapshot.table})"
            )
            print(
                f"ferry: a snapshot is already running: {what}; `ferry status -c {args.config}`"
                " shows its progress; ask again when it is done",
                file=sys.stderr,
            )
            return EXIT_FAIL
        request = arbiter.request_snapshot(tables)
    finally:
        arbiter.close()
    print(
        f"snapshot {request.request} of {', '.join(tables)} requested; the active node starts it"
        f" within a second; `ferry status -c {args.config}` shows its progress"
    )
    return EXIT_OK


def _history_at(arbiter: Any, config: FerryConfig) -> tuple[Any, Any, Position | None]:
    """(the stored history, the state recovered at the committed position, that position)."""
    from arbitrate.common import recover_history

    stored = arbiter.load_history()
    committed = arbiter.load_position()
    at = committed
    if at is None and stored.coverage:
        at = Position.from_json(stored.coverage)  # started, nothing committed yet
    if at is None:
        return stored, None, None
    return stored, recover_history(stored, at, config.pipeline.id).state, committed


def _column_line(column: Any, key: tuple[str, ...]) -> str:
    from pipeline.dialect import TEXT_TYPES

    parts = [column.name, column.column_type or column.type_name]
    if column.charset and column.jdbc_type in TEXT_TYPES:
        parts.append(f"CHARACTER SET {column.charset}")
    if not column.optional:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT {column.default!r}")
    if column.auto_increment:
        parts.append("AUTO_INCREMENT")
    if column.name in key:
        parts.append("KEY")
    return "    " + " ".join(parts)


def cmd_schema(args: argparse.Namespace, config: FerryConfig) -> int:
    """`ferry schema show|rebuild`: the schema history (selector.schemas, arbitrate)."""
    arbiter = build_arbiter(config, "cli")
    try:
        if args.action == "rebuild":
            return _schema_rebuild(args, config, arbiter)
        stored, state, committed = _history_at(arbiter, config)
    finally:
        arbiter.close()
    if state is None:
        print(f"pipeline {config.pipeline.id}: no schema history (no node has started yet)")
        return EXIT_OK
    tables = sorted(state.tables.items())
    if args.table:
        schema, dot, table = args.table.partition(".")
        if not dot:
            print(f"ferry: {args.table!r} is not SCHEMA.TABLE", file=sys.stderr)
            return EXIT_USAGE
        tables = [(k, t) for k, t in tables if k == (schema, table)]
        if not tables:
            print(
                f"ferry: the schema history has no table {args.table} at {state.position}",
                file=sys.stderr,
            )
            return EXIT_FAIL
    if args.json:
        from pipeline.model import table_to_dict

        print(
            json.dumps(
                {
                    "position": state.position.to_dict() if state.position else None,
                    "record": state.seq,
                    "records": stored.seq,
                    "tables": [table_to_dict(t) for _, t in tables],
                    "charsets": state.charsets,
                },
                indent=2,
            )
        )
        return EXIT_OK
    where = "the committed position" if committed is not None else "its start"
    print(
        f"schema history of pipeline {config.pipeline.id} at {where} {state.position}:"
        f" {len(state.tables)} tables in {len(state.charsets)} databases, up to record"
        f" {state.seq} of {stored.seq}"
    )
    for (schema, table), definition in tables:
        charset = f" (charset {definition.charset})" if definition.charset else ""
        print(f"{schema}.{table}{charset}")
        for column in definition.columns:
            print(_column_line(column, definition.primary_key))
    return EXIT_OK


REBUILD_WARNING = """\
WARNING: `ferry schema rebuild` replaces pipeline {pipeline}'s schema history by the
definitions the source has NOW, taken as the definitions at the committed position
{position}. Rows the pipeline reads after it that were written before a later ALTER
(still in the binlog between {position} and now) are then read with the later
definition: without binlog_row_metadata=FULL their values can come out under wrong
columns or fail to decode; with FULL, ferry stops at the first table map that does not
fit. Use it when the history is lost or corrupt and no DDL ran since the position, or
after moving the position to the binlog's end (`ferry position --set latest`)."""


def _schema_rebuild(args: argparse.Namespace, config: FerryConfig, arbiter: Any) -> int:
    from pipeline.errors import classify
    from selector.checks import connect
    from selector.schemas import SchemaHistory
    from selector.tables import TableFilter

    if not arbiter.get_state().paused:
        print(
            f"ferry: pipeline {config.pipeline.id} is running; `ferry pause -c {args.config}`"
            " first",
            file=sys.stderr,
        )
        return EXIT_FAIL
    position = arbiter.load_position()
    if position is None:
        print(
            f"ferry: pipeline {config.pipeline.id} has no committed position: a new"
            " pipeline's history is made when it first starts",
            file=sys.stderr,
        )
        return EXIT_FAIL
    print(REBUILD_WARNING.format(pipeline=config.pipeline.id, position=position), file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            print("ferry: refusing to rebuild the schema history without --yes", file=sys.stderr)
            return EXIT_USAGE
        if input("rebuild it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("schema history unchanged")
            return EXIT_FAIL
    try:
        connection = connect(config.source)
    except Exception as exc:
        raise classify(exc, f"cannot reach the source: {exc}") from exc
    try:

        def query(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())

        wanted = TableFilter(config.source.include, config.source.exclude)
        state = SchemaHistory(query).capture(wanted.schema_wanted, position)
    finally:
        connection.close()
    state.position = position
    arbiter.rebuild_history(state.to_json(), position.to_json())
    print(
        f"pipeline {config.pipeline.id}: schema history rebuilt from the source's current"
        f" definitions ({len(state.tables)} tables) at {position}; `ferry resume` to continue"
    )
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, FerryConfig], int]] = {
    "snapshot": cmd_snapshot,
    "run": cmd_run,
    "status": cmd_status,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "position": cmd_position,
    "check": cmd_check,
    "schema": cmd_schema,
}
