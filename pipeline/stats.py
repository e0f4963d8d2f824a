"""Counters of one node, updated by ProcessTermin and read by the status publisher.

Statements the selector read and did not pass on (``Batch.skipped``) are
counted per kind and table, and the first one of each kind and table is
logged here: statement-format DML means changes of that table are missing
from the output, which the operator must hear about once, not per statement.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from loguru import logger

from pipeline.errors import FerryError, ServerIdClash
from pipeline.model import UNKNOWN_TABLE, Batch, Position, Skipped, SnapshotProgress

_SKIPPED_WHY = {
    "dml": "statement-format {verb} on {table} skipped: its changes are NOT replicated; ferry"
    " needs binlog_format=ROW (a session or the server logged this statement as text)",
    "account": "account/privilege statements ({verb}) are skipped: they never leave the source",
    "other": "statements that change no replicated data ({verb}) are skipped",
}


def snapshot_report(progress: SnapshotProgress | None, at: float) -> dict[str, Any] | None:
    """A snapshot's progress for status and metrics: rows per table, rate, ETA."""
    if progress is None:
        return None
    done = dict(progress.done)
    tables: dict[str, dict[str, Any]] = {}
    read = total = 0
    for name, estimate in progress.estimates:
        rows = done.get(name, progress.rows if name == progress.table else 0)
        state = "done" if name in done else "reading" if name == progress.table else "waiting"
        tables[name] = {"rows": rows, "estimate": max(estimate, rows), "state": state}
        read += rows
        total += max(estimate, rows)
    elapsed = max(at - progress.started, 1e-3)
    rate = read / elapsed
    remaining = max(total - read, 0)
    complete = not progress.tables
    return {
        "request": progress.request,
        "state": "complete" if complete else "running",
        "table": progress.table,
        "rows": read,
        "estimate": max(total, read),
        "rows_per_s": round(rate, 1),
        "eta_s": 0 if complete else round(remaining / rate) if rate > 0 else None,
        "tables": tables,
    }


def _table_text(table: str) -> str:
    """``shop.orders``; a statement that names no table: what ``shop.?`` means."""
    schema, _, name = table.rpartition(".")
    if name != UNKNOWN_TABLE:
        return table
    where = f"database {schema}" if schema else "no default database"
    return f"{table} (tables it does not name, run in {where})"


def skipped_key(skipped: Skipped) -> str:
    """How a skipped statement is counted: ``dml shop.orders``, ``account``, ``other``."""
    return f"{skipped.kind} {skipped.table}" if skipped.table else skipped.kind


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows_total = 0
        self.batches_total = 0
        self.rollbacks_total = 0
        self.retries_total = 0  # resumable failures retried (after a rollback or a failed start)
        self.server_id_clashes_total = 0  # pauses because another client used our server id
        self.position: Position | None = None
        self.last_error = ""
        self.last_error_at = 0.0
        self.ack_lag_ms: float | None = None  # now - first event time, at the last ack
        self.skipped: dict[str, int] = {}  # skipped_key -> statements not passed on
        self.snapshot_progress: SnapshotProgress | None = None  # of the last acked position
        self._snapshot_seen = 0.0  # when it was last acked
        self._rate_mark = (time.monotonic(), 0)
        self.rows_per_s = 0.0

    def on_ack(self, batch: Batch, position: Position | None) -> None:
        with self._lock:
            self.rows_total += batch.row_count
            self.batches_total += 1
            if position is not None:
                self.position = position
                if position.snapshot is not None:
                    self.snapshot_progress = position.snapshot
                    self._snapshot_seen = time.time()
            if batch.first_event_ts is not None:
                self.ack_lag_ms = max(0.0, (time.time() - batch.first_event_ts) * 1000)
            elif batch.is_empty:
                self.ack_lag_ms = 0.0  # caught up: nothing was waiting
            for skipped in batch.skipped:
                key = skipped_key(skipped)
                seen = self.skipped.get(key, 0)
                self.skipped[key] = seen + 1
                if not seen:
                    why = _SKIPPED_WHY.get(skipped.kind, _SKIPPED_WHY["other"])
                    log = logger.warning if skipped.kind == "dml" else logger.info
                    log(why.format(verb=skipped.verb, table=_table_text(skipped.table)))

    def on_rollback(self, error: FerryError) -> None:
        with self._lock:
            self.rollbacks_total += 1
        self.on_error(error)

    def on_error(self, error: FerryError) -> None:
        """A failure of a batch or of a start: the last error shown, and clashes counted."""
        with self._lock:
            self.last_error = str(error)
            self.last_error_at = time.time()
            if isinstance(error, ServerIdClash):
                self.server_id_clashes_total += 1

    def on_retry(self) -> None:
        with self._lock:
            self.retries_total += 1

    def snapshot(self, last_event_ts: float | None = None) -> dict[str, Any]:
        """Counters plus rows/s since the previous snapshot and the binlog lag."""
        with self._lock:
            now = time.monotonic()
            then, rows_then = self._rate_mark
            if now - then >= 0.5:
                self.rows_per_s = (self.rows_total - rows_then) / (now - then)
                self._rate_mark = (now, self.rows_total)
            event_lag = max(0.0, (time.time() - last_event_ts) * 1000) if last_event_ts else None
            return {
                "rows_total": self.rows_total,
                "batches_total": self.batches_total,
                "rollbacks_total": self.rollbacks_total,
                "retries_total": self.retries_total,
                "server_id_clashes_total": self.server_id_clashes_total,
                "rows_per_s": round(self.rows_per_s, 1),
                "lag_ms": None if self.ack_lag_ms is None else round(self.ack_lag_ms),
                "event_lag_ms": None if event_lag is None else round(event_lag),
                "position": self.position.to_json() if self.position else "",
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "skipped": dict(self.skipped),
                "snapshot": snapshot_report(self.snapshot_progress, self._snapshot_seen),
            }
