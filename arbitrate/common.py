"""Logic shared by the Redis arbiter and its in-memory twin.

Both store the same encoded values (mainstem value, position record, state
fields, node reports), so encoding, decoding and the staleness rule live here
once and the twin cannot drift from the real thing.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger

from pipeline.errors import FatalError, FencedError
from pipeline.model import HistoryCorrupt, Position, SchemaRecord, SchemaState

from .base import PipelineState, PipelineStatus, SnapshotRequest, StoredHistory

# Fields of a node report as published by `publish_status` (others are kept too).
REPORT_FIELDS = (
    "node_id",
    "role",
    "epoch",
    "position",
    "lag_ms",
    "rows_total",
    "rows_per_s",
    "last_error",
    "updated_at",
)


def mainstem_value(epoch: int, node_id: str) -> str:
    """The mainstem lock value: ``<epoch>:<node_id>`` (the epoch first: node ids may hold ':')."""
    return f"{epoch}:{node_id}"


def parse_mainstem(value: str | None) -> tuple[str | None, int | None]:
    """(node_id, epoch) of a mainstem value, (None, None) when there is no holder."""
    if not value:
        return None, None
    epoch, _, node_id = value.partition(":")
    try:
        return node_id, int(epoch)
    except ValueError:  # not written by ferry; show it rather than crash `status`
        return value, None


def position_record(position: Position, epoch: int | None, node_id: str, now: float) -> str:
    """JSON stored under ``position``: the position and the epoch (and node) that wrote it."""
    return json.dumps(
        {"position": position.to_dict(), "epoch": epoch, "node_id": node_id, "committed_at": now},
        sort_keys=True,
    )


def parse_position_record(text: str | None) -> tuple[Position | None, int | None]:
    if not text:
        return None, None
    data = json.loads(text)
    epoch = data.get("epoch")
    return Position.from_dict(data["position"]), (int(epoch) if epoch is not None else None)


def state_fields(state: str, reason: str, error: str, now: float) -> dict[str, str]:
    """The ``state`` hash: state, reason, error, since."""
    return {"state": state, "reason": reason, "error": error, "since": repr(now)}


def parse_state(fields: Mapping[str, str] | None) -> PipelineState:
    """A missing state means running: a fresh pipeline needs no `ferry resume`."""
    if not fields or "state" not in fields:
        return PipelineState("running")
    return PipelineState(
        state=fields["state"],
        reason=fields.get("reason", ""),
        error=fields.get("error", ""),
        since=float(fields.get("since") or 0.0),
    )


def encode_report(report: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, str]:
    """A node report as hash fields, each value JSON-encoded (so types survive the hash).

    ``defaults`` (node_id, role, epoch, updated_at as the arbiter knows them) fill
    what the report leaves out; ``node_id`` and ``updated_at`` always come from
    ``defaults`` because staleness must not be forged by a report.
    """
    merged: dict[str, Any] = {**defaults, **report}
    merged["node_id"] = defaults["node_id"]
    merged["updated_at"] = defaults["updated_at"]
    out = {}
    for name, value in merged.items():
        if isinstance(value, Position):
            value = value.to_dict()
        out[name] = json.dumps(value, default=str)
    return out


def decode_report(fields: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in fields.items():
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


def build_status(
    *,
    pipeline: str,
    state: PipelineState,
    mainstem: str | None,
    epoch_counter: int | None,
    position_text: str | None,
    reports: list[Mapping[str, str]],
    now: float,
    stale_ms: int,
) -> PipelineStatus:
    """`ferry status` from the raw stored values.

    ``epoch`` is the active node's epoch, or the last epoch handed out when no
    node is active. A report is ``stale`` when its ``updated_at`` is older than
    ``stale_ms`` (the node stopped publishing: dead, hung or partitioned); a
    stale report claiming ``role: active`` is not trusted by anyone, the lock is.
    """
    active, epoch = parse_mainstem(mainstem)
    position, position_epoch = parse_position_record(position_text)
    nodes = []
    for raw in reports:
        report = decode_report(raw)
        updated = report.get("updated_at")
        age_ms = (now - float(updated)) * 1000 if isinstance(updated, int | float) else None
        report["stale"] = age_ms is None or age_ms > stale_ms
        report["age_ms"] = None if age_ms is None else round(age_ms)
        nodes.append(report)
    nodes.sort(key=lambda r: str(r.get("node_id")))
    return PipelineStatus(
        pipeline=pipeline,
        state=state,
        active_node=active,
        epoch=epoch if active is not None else epoch_counter,
        position=position,
        position_epoch=position_epoch,
        nodes=nodes,
    )


NOT_HOLDER = "does not hold the mainstem"
STALE_EPOCH = "holds an epoch that is no longer current"


def fenced(arbiter: Any, epoch: int, why: str, position: Position | None = None) -> FencedError:
    """The refusal of a fenced operation (commit, pause on error) by a node that is not the
    current holder; ``why`` is ``NOT_HOLDER`` or ``STALE_EPOCH``."""
    return FencedError(
        f"fenced: node {arbiter.node_id} with epoch {epoch} {why}",
        pipeline=arbiter.pipeline_id,
        position=position,
    )


def announce_state(arbiter: Any, state: str, reason: str, log: Any = logger) -> None:
    """The one log line of a permit change."""
    log.info(
        "pipeline {}: pipeline={} reason={!r}",
        "paused" if state == "paused" else "resumed",
        arbiter.pipeline_id,
        reason,
    )


def announce_lost(
    arbiter: Any, epoch: int, reason: str, callbacks: list[Callable[[], None]], log: Any = logger
) -> None:
    """Log the loss once and run the on_lost callbacks; a failing one cannot stop the others."""
    log.warning(
        "mainstem lost: pipeline={} node={} epoch={} reason={}",
        arbiter.pipeline_id,
        arbiter.node_id,
        epoch,
        reason,
    )
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("on_lost callback {} failed", callback)


def new_snapshot_request(tables: list[str], now: float) -> SnapshotRequest:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    return SnapshotRequest(f"snap-{stamp}-{secrets.token_hex(2)}", tuple(tables), "pending", now)


def encode_snapshot_request(request: SnapshotRequest) -> str:
    data = {"tables": list(request.tables), "state": request.state, "at": request.requested_at}
    return json.dumps(data)


def decode_snapshot_requests(fields: Mapping[str, str]) -> list[SnapshotRequest]:
    requests = []
    for request, text in fields.items():
        data = json.loads(text)
        requests.append(
            SnapshotRequest(
                str(request),
                tuple(data.get("tables") or ()),
                str(data.get("state") or "pending"),
                float(data.get("at") or 0.0),
            )
        )
    return sorted(requests, key=lambda r: (r.requested_at, r.request))


# -- the schema history ----------------------------------------------------------------------

#: snapshots kept: the newest, and the one before it (a position moved back a little)
HISTORY_SNAPSHOTS_KEPT = 2

_REBUILD = (
    "`ferry schema rebuild -c FILE` (it takes the source's current definitions, with a"
    " warning) and `ferry resume -c FILE`"
)


def history_error(pipeline: str, what: str) -> FatalError:
    return FatalError(
        f"the schema history of pipeline {pipeline!r} {what}. ferry does not guess"
        f" definitions: to go on, {_REBUILD}",
        pipeline=pipeline,
    )


@dataclass(slots=True)
class Recovered:
    """The history recovered for a start at ``at``: ``state`` (at ``at``, or at the
    coverage when the history stops before ``at``: the selector reads the DDL in between
    from the binlog), and ``keep``: the number of the last record to keep, when records or
    snapshots past ``at`` must be dropped (None: nothing to drop)."""

    state: SchemaState
    keep: int | None = None


def recover_history(stored: StoredHistory, at: Position, pipeline: str) -> Recovered:
    """The newest snapshot at or before ``at``, and the records after it up to ``at``.

    Raises FatalError when there is no history, when it has nothing at or before ``at``,
    and when a record or snapshot it needs is corrupt or missing (named)."""
    if stored.coverage is None and not stored.snapshots:
        raise history_error(
            pipeline,
            f"is missing from Redis, but the committed position is {at}"
            " (Redis lost its data, or the pipeline ran with a ferry version without a"
            " history)",
        )
    try:
        coverage = Position.from_json(stored.coverage) if stored.coverage else None
    except (ValueError, KeyError, TypeError) as exc:
        raise history_error(pipeline, f"has a corrupt coverage position ({exc})") from None
    if not at.file and coverage is not None:  # a GTID an operator set: the history's end
        at = coverage
    base: SchemaState | None = None
    for seq in sorted(stored.snapshots, reverse=True):
        what = f"snapshot {seq} (the definitions after record {seq})"
        try:
            snapshot = SchemaState.from_json(stored.snapshots[seq], what)
        except HistoryCorrupt as exc:
            raise history_error(pipeline, f"is corrupt: {exc}") from None
        if snapshot.position is None or snapshot.position.sort_key() <= at.sort_key():
            base = snapshot
            break
    if base is None:
        oldest = min(stored.snapshots, default=None)
        raise history_error(
            pipeline,
            f"has no definitions at or before the committed position {at}"
            + (f" (its oldest snapshot is number {oldest})" if oldest is not None else ""),
        )
    state = base.copy()
    keep: int | None = None
    expected = state.seq + 1
    for index, text in enumerate(stored.records):
        seq = stored.first + index
        if seq <= state.seq:
            continue
        try:
            record = SchemaRecord.from_json(text, f"record {seq}")
        except HistoryCorrupt as exc:
            raise history_error(pipeline, f"is corrupt: {exc}") from None
        if record.seq != expected:
            raise history_error(
                pipeline, f"is out of order: record {seq} says it is number {record.seq}"
            )
        expected += 1
        if record.position.sort_key() > at.sort_key():
            keep = seq - 1  # past the committed position: dropped on takeover
            break
        state.apply(record)
    if keep is None and stored.seq > state.seq and expected <= stored.seq:
        raise history_error(pipeline, f"is missing records {expected} to {stored.seq}")
    if keep is None and any(seq > state.seq for seq in stored.snapshots):
        keep = state.seq
    if coverage is not None and coverage.sort_key() < at.sort_key():
        state.position = coverage  # the DDL between coverage and `at` is read again
    else:
        state.position = at
        if coverage is not None and coverage.sort_key() > at.sort_key() and keep is None:
            keep = state.seq
    return Recovered(state, keep)
