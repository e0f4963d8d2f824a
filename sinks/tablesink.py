"""What the MySQL and PostgreSQL sinks share around their I/O: how a batch is loaded.

A DDL is a batch of its own; row changes are merged per key (``sinks.merge``) and applied
in one transaction with the checkpoint; when the merged apply meets a constraint that a
unique value moving between rows inside the batch explains, the batch is applied again
unmerged, in binlog order. Batches without rows write the checkpoint at most every
``empty_checkpoint_interval_ms``. Tables without a key follow ``no_primary_key``.

A subclass supplies the I/O: :meth:`TableSink._write_rows` (one transaction),
:meth:`TableSink._load_ddl`, :meth:`TableSink._conflict` (is this the constraint the
unmerged retry may fix) and ``kind`` for messages ("MySQL sink").
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from typing import Annotated, Any, ClassVar, Literal

from loguru import logger
from pydantic import Field

from pipeline.errors import FatalError, FerryError
from pipeline.model import Batch, DdlChange, RowChange
from sinks.base import Sink, fence

# The config fields both sinks have, described once.
SchemaMap = Annotated[
    dict[str, str], Field(default_factory=dict, description="source database -> target schema")
]
TableMap = Annotated[
    dict[str, str],
    Field(
        default_factory=dict,
        description="'schema.table' -> 'schema.table' on the target (wins over schema_map)",
    ),
]
NoPrimaryKey = Annotated[
    Literal["match_row", "reject"],
    Field(
        default="match_row",
        description="tables without a primary key: match on the full row (with a warning) or fail",
    ),
]
CheckpointSchema = Annotated[
    str, Field(default="ferry", description="schema of the ferry_checkpoint table on the target")
]
EmptyCheckpointInterval = Annotated[
    int,
    Field(
        default=1000,
        ge=0,
        description="batches without changes still move the stored checkpoint, at most this often",
    ),
]


class TableSink(Sink):
    """A sink that writes rows into tables of a database with a checkpoint row."""

    #: how messages name the sink ("MySQL sink")
    kind: ClassVar[str]
    #: the checkpoint table, ``<checkpoint_schema>.ferry_checkpoint`` quoted for the target
    _ckpt: str

    def __init__(self, config: Any, pipeline_id: str) -> None:
        super().__init__(config, pipeline_id)
        self._conn: Any = None
        self._warned_no_pk: set[tuple[str, str]] = set()
        self._last_checkpoint_write = 0.0

    def load(self, batch: Batch, epoch: int) -> None:
        ddls = [c for c in batch.changes if isinstance(c, DdlChange)]
        rows = [c for c in batch.changes if isinstance(c, RowChange)]
        if ddls:
            if rows:  # the model's contract: a DDL is a batch of its own
                raise FatalError(
                    f"{self.kind}: batch {batch.batch_id} mixes DDL with row changes; "
                    "a DDL must be a batch of its own (selector bug)",
                    pipeline=self.pipeline_id,
                    batch_id=batch.batch_id,
                    position=batch.position,
                )
            for ddl in ddls:
                self._load_ddl(batch, ddl, epoch)
            return
        if not rows:
            due = self.config.empty_checkpoint_interval_ms / 1000.0
            if batch.position is None or time.monotonic() - self._last_checkpoint_write < due:
                return
        self._check_no_pk(batch, rows)
        started = time.monotonic()
        try:
            n = self._write_rows(batch, epoch, rows, merged=True)
        except FerryError as exc:
            if not self._conflict(exc):
                raise
            logger.warning(
                "{}: merged apply of batch {} hit a constraint ({}); "
                "applying it again unmerged, in binlog order",
                self.kind,
                batch.batch_id,
                exc.message,
            )
            n = self._write_rows(batch, epoch, rows, merged=False)
        logger.debug(
            "{}: batch {} ({} changes, {} statements) committed in {:.1f} ms at {}",
            self.kind,
            batch.batch_id,
            len(rows),
            n,
            (time.monotonic() - started) * 1000,
            batch.position,
        )

    @abstractmethod
    def _write_rows(self, batch: Batch, epoch: int, rows: list[RowChange], merged: bool) -> int:
        """Fence, write ``rows`` (merged per key, or one by one in binlog order), write the
        checkpoint, commit — or roll back and raise. Returns the statements sent."""

    @abstractmethod
    def _load_ddl(self, batch: Batch, ddl: DdlChange, epoch: int) -> None:
        """Apply (or skip, as configured) a DDL batch with its checkpoint."""

    @abstractmethod
    def _conflict(self, exc: FerryError) -> bool:
        """``exc`` is a constraint the unmerged, in-order retry may get past."""

    def _fence(self, cur: Any, epoch: int, batch: Batch) -> None:
        """Refuse the batch if a newer epoch wrote the checkpoint row (``sinks.base.fence``),
        which stays locked until the transaction ends: a zombie's load waits for the lock,
        then finds the successor's epoch."""
        fence(self.kind, self._lock_checkpoint(cur), epoch, batch, self.pipeline_id)

    def _lock_checkpoint(self, cur: Any) -> int | None:
        """Lock this pipeline's checkpoint row until the transaction ends: its epoch."""
        cur.execute(
            f"SELECT epoch FROM {self._ckpt} WHERE pipeline_id=%s FOR UPDATE",
            (self.pipeline_id,),
        )
        row = cur.fetchone()
        return int(row[0]) if row else None

    # -- ferry check

    @abstractmethod
    def _connection(self) -> Any:
        """The open connection (opened if needed)."""

    @abstractmethod
    def _reach(self) -> str:
        """Where ``ferry check`` says the sink connects to (no secret)."""

    @abstractmethod
    def _grant_hint(self) -> str:
        """What to grant when the checkpoint table cannot be written."""

    def _session_checks(self, conn: Any) -> list[tuple[str, bool, str]]:
        """More ``ferry check`` lines about the open session (the MySQL sink's TLS)."""
        return []

    def _begin(self, conn: Any) -> None:
        """Start a transaction (a driver in autocommit mode needs it)."""

    def check(self) -> list[tuple[str, bool, str]]:
        kind, schema = self.config.type, self.config.checkpoint_schema
        reach = f"sink {kind} reachable {self._reach()}"
        table = f"sink {kind} checkpoint table {schema}.ferry_checkpoint writable"
        try:
            conn = self._connection()
        except Exception as exc:
            return [(reach, False, str(exc)), (table, False, "needs a connection first")]
        results = [(reach, True, ""), *self._session_checks(conn)]
        try:
            # what a batch does to the checkpoint row, rolled back
            self._begin(conn)
            with conn.cursor() as cur:
                self._lock_checkpoint(cur)
                cur.execute(
                    f"UPDATE {self._ckpt} SET updated_at=updated_at WHERE pipeline_id=%s",
                    (self.pipeline_id,),
                )
            conn.rollback()
            results.append((table, True, ""))
        except Exception as exc:
            results.append((table, False, f"{exc}; {self._grant_hint()}"))
        finally:
            self.close()
        return results

    def _check_no_pk(self, batch: Batch, rows: list[RowChange]) -> None:
        for change in rows:
            if change.primary_key:
                continue
            name = (change.schema, change.table)
            if self.config.no_primary_key == "reject":
                raise FatalError(
                    f"{self.kind}: table {change.schema}.{change.table} has no primary key"
                    " and sink.no_primary_key is 'reject'; add a key or set it to 'match_row'",
                    pipeline=self.pipeline_id,
                    batch_id=batch.batch_id,
                    position=batch.position,
                )
            if name not in self._warned_no_pk:
                self._warned_no_pk.add(name)
                logger.warning(
                    "{}: table {}.{} has no primary key: rows are matched on every column"
                    " (one statement per update/delete, at-least-once)",
                    self.kind,
                    *name,
                )

    def _drop(self) -> None:
        """Roll back (best effort) and drop the connection; the next call reconnects."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                conn.rollback()
        self.close()
