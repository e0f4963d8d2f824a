"""`ferry check`: one line per check, ✓ or ✗ with the fix; the source, the arbiter, the sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.config import FerryConfig
from pipeline.errors import FerryError, classify

Check = tuple[str, bool, str]  # (what, ok, fix); ok with a fix text is a warning


def _guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    try:
        return run()
    except Exception as exc:
        return [(name, False, str(classify(exc)))]


def source_checks(config: FerryConfig) -> list[Check]:
    from selector.checks import check_source

    return list(check_source(config.source, config.pipeline.id))


def arbiter_checks(config: FerryConfig) -> list[Check]:
    from arbitrate.redis import RedisArbiter

    arbiter = RedisArbiter(config.arbiter, config.pipeline.id, "check")
    try:
        status = arbiter.status()
        checks: list[Check] = [(f"redis reachable at {config.arbiter.redacted_url()}", True, "")]
        holder = f"{status.active_node} (epoch {status.epoch})" if status.active_node else "nobody"
        checks.append((f"mainstem held by {holder}, state {status.state.state}", True, ""))
        if not _redis_persistent(config):
            checks.append(
                (
                    "redis persistence (RDB or AOF) is off",
                    True,
                    "a Redis restart forgets positions and epochs; enable appendonly yes."
                    " (A MySQL sink checkpoint or the local state file keeps ferry from"
                    " replaying, but the pipeline pauses until you set the position.)",
                )
            )
        if status.position is not None:
            checks += _position_on_source(config, status.position.file)
        checks += _history_check(arbiter, config, status.position)
        return checks
    finally:
        arbiter.close()


def _history_check(arbiter: Any, config: FerryConfig, position: Any) -> list[Check]:
    """The schema history recovers at the committed position (README: the schema history)."""
    from arbitrate.common import recover_history

    stored = arbiter.load_history()
    if position is None:
        return (
            [("schema history: started, nothing committed yet", True, "")]
            if stored.coverage
            else []
        )
    try:
        state = recover_history(stored, position, config.pipeline.id).state
    except FerryError as exc:
        return [("schema history at the committed position", False, exc.message)]
    return [
        (
            f"schema history at the committed position: {len(state.tables)} tables,"
            f" up to record {state.seq}",
            True,
            "",
        )
    ]


def _redis_persistent(config: FerryConfig) -> bool:
    """True when RDB snapshots or AOF are on, or when CONFIG GET is not allowed (unknown)."""
    import redis

    from arbitrate.redis import connect

    client = connect(config.arbiter)
    try:
        settings = client.config_get("save") | client.config_get("appendonly")
    except redis.ResponseError:  # CONFIG renamed or forbidden (managed Redis): cannot tell
        return True
    finally:
        client.close()
    return bool(settings.get("save")) or settings.get("appendonly") == "yes"


def _position_on_source(config: FerryConfig, file: str) -> list[Check]:
    if not file:
        return []
    from selector.checks import binlog_files, connect

    connection = connect(config.source)
    try:
        files = [name for name, _size in binlog_files(connection)]
    finally:
        connection.close()
    return [
        (
            f"committed position's binlog {file} still on the source",
            file in files,
            f"the source purged it (oldest is {files[0] if files else '?'}): changes were lost"
            " to ferry; set a new position with `ferry position --set` and re-snapshot",
        )
    ]


def sink_checks(config: FerryConfig) -> list[Check]:
    from sinks.registry import create_sink

    return create_sink(config.sink, config.pipeline.id).check()


def run_checks(config: FerryConfig, out: Callable[[str], None] = print) -> bool:
    """Run every check, print one line each; True when none failed (warnings do not fail)."""
    ok = True
    for name, run in (
        ("source", source_checks),
        ("arbiter", arbiter_checks),
        ("sink", sink_checks),
    ):
        for what, passed, fix in _guarded(name, lambda run=run: run(config)):  # type: ignore[misc]
            if passed and fix.startswith("note: "):
                out(f"✓ {what}\n    {fix}")
            elif passed and fix:
                fix = fix.removeprefix("warning: ")  # the selector's warnings say so already
                out(f"! {what}\n    warning: {fix}")
            elif passed:
                out(f"✓ {what}")
            else:
                ok = False
                out(f"✗ {what}\n    fix: {fix}")
    return ok
