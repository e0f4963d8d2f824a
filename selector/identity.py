"""The replication identity: the server id a pipeline dumps the binlog with, and clashes.

A MySQL or MariaDB source serves one binlog client per server id: when a client
connects with an id in use, the server drops the older dump connection, which gets
``ER_SLAVE_SAME_ID`` (MariaDB: 4052; MySQL: 1236 with the same text). Two clients
sharing an id kick each other in a loop, and a real replica with that id stops
replicating. What ferry does about it:

* **One id per pipeline.** ``source.server_id``, or, when it is left out, an id
  derived from the pipeline id (:func:`derived_server_id`). Every node of a pipeline
  uses the same id: only the holder of the mainstem may dump, and a kicked decoder
  asks Redis (a round trip, not its clock) before it reconnects.
* **Named in SHOW SLAVE HOSTS.** Every dump registers (``COM_REGISTER_SLAVE``) with
  the report host ``ferry:<pipeline id>`` (:func:`report_host`), so a DBA sees which
  pipeline a dump belongs to, and a kicked node can tell its own pipeline's node from
  a foreign client.
* **Checked before the first dump** (:func:`refuse_clash`, also in ``ferry check``):
  a replica registered with the id that is not this pipeline's refuses the start with
  a ``ServerIdClash`` naming it. Listing replicas needs REPLICATION MASTER ADMIN on
  MariaDB 10.5+ (REPLICATION SLAVE on MySQL); without it the check is skipped with a
  warning and a clash shows at the first kick.
* **A kick while streaming** (:class:`KickPolicy`): the node first confirms that it
  still holds the mainstem; if not, its decoder stops and it steps down. If it does,
  the kicker is identified in the replica list: a client that is not this pipeline's
  is a clash, and the pipeline pauses at once, so another replica loses its
  connection at most once. A node of this pipeline (one that connected before it
  learnt it had lost the mainstem) is answered with one reconnect, and steps down
  when kicked back. When the list cannot be read, a kick is answered with a reconnect
  at most once every few seconds (jittered), and the third kick within a minute
  pauses.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import pymysql

from pipeline.errors import ServerIdClash

#: Derived server ids lie in [DERIVED_MIN, DERIVED_MIN + DERIVED_SPAN): far above the
#: small ids people give their servers.
DERIVED_MIN = 1_000_000_000
DERIVED_SPAN = 1_000_000_000

ER_SLAVE_SAME_ID = 4052  # MariaDB: another client connected with this server id
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236  # MySQL reports the same kick with this code
ER_SPECIFIC_ACCESS_DENIED = 1227

KICKS_PER_MINUTE = 3  # kicks we answer with a reconnect before the pipeline pauses
_UNNAMED_DELAY_S = (2.0, 5.0)  # reconnect delay after a kick by an unidentified client
_OWN_DELAY_S = (0.2, 1.0)  # after a kick by a node of this pipeline (it steps down)
# A dump that just ended stays listed until its server thread notices (its next
# heartbeat): a clash must outlast this to refuse a start.
_STALE_S = 2.0
_TAG = "ferry:"
_TAG_MAX = 60  # MySQL 5.7 refuses a report host longer than 60 bytes


def derived_server_id(pipeline_id: str) -> int:
    """The server id of a pipeline without ``source.server_id``: stable, CRC-32 based."""
    return DERIVED_MIN + zlib.crc32(pipeline_id.encode()) % DERIVED_SPAN


def report_host(pipeline_id: str) -> str:
    """How this pipeline's dumps are named in SHOW SLAVE HOSTS (at most 60 bytes)."""
    tag = _TAG + pipeline_id
    if len(tag) <= _TAG_MAX:
        return tag
    digest = f"{zlib.crc32(pipeline_id.encode()):08x}"
    return tag[: _TAG_MAX - len(digest) - 1] + "~" + digest


def kicked(exc: BaseException) -> bool:
    """The dump connection was dropped because another client connected with its id."""
    if not isinstance(exc, pymysql.MySQLError) or not exc.args:
        return False
    code = exc.args[0]
    text = str(exc.args[1]) if len(exc.args) > 1 else ""
    return code == ER_SLAVE_SAME_ID or (
        code == ER_MASTER_FATAL_ERROR_READING_BINLOG and "same server_uuid/server_id" in text
    )


Replica = tuple[str, int]  # (host as registered, port)


def registered(conn: Any, server_id: int) -> list[Replica] | None:
    """Replicas registered with ``server_id`` (SHOW REPLICAS / SHOW SLAVE HOSTS);
    None when this user may not list them."""
    rows: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for statement in ("SHOW REPLICAS", "SHOW SLAVE HOSTS"):  # MySQL 8.0.22+; the rest
            try:
                cur.execute(statement)
            except pymysql.err.ProgrammingError:  # a syntax error: the older spelling
                continue
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] == ER_SPECIFIC_ACCESS_DENIED:
                    return None
                raise
            rows = list(cur.fetchall())
            break
    return [(str(row[1] or ""), int(row[2] or 0)) for row in rows if int(row[0]) == server_id]


def describe(replica: Replica) -> str:
    host, port = replica
    if host.startswith(_TAG):
        return f"ferry pipeline {host[len(_TAG) :]!r}"
    where = f"{host}:{port}" if host else f"a replica without report_host, port {port}"
    return f"the replica at {where}"


def clash_error(server_id: int, derived: bool, other: str, pipeline_id: str) -> ServerIdClash:
    origin = "derived from the pipeline id" if derived else "source.server_id"
    return ServerIdClash(
        f"server id {server_id} ({origin}) is in use by {other}. Two binlog clients with"
        " one server id disconnect each other, and a replica with it stops replicating:"
        " give this pipeline an id that no replica and no other pipeline of this source"
        " uses (source.server_id, 1-4294967295), then `ferry resume`",
        pipeline=pipeline_id or None,
    )


def refuse_clash(conn: Any, server_id: int, derived: bool, pipeline_id: str) -> tuple[bool, str]:
    """Before the first dump: raise ``ServerIdClash`` if a replica that is not this
    pipeline's is registered with ``server_id``. Returns (checked, what was found)."""
    ours = report_host(pipeline_id)
    deadline = time.monotonic() + _STALE_S
    while True:
        replicas = registered(conn, server_id)
        if replicas is None:
            return False, (
                "cannot list the source's replicas (MariaDB 10.5+: GRANT REPLICATION MASTER"
                " ADMIN; MySQL: REPLICATION SLAVE): a server id clash shows only when a client"
                " is disconnected"
            )
        foreign = [replica for replica in replicas if replica[0] != ours]
        if not foreign:
            return True, "in use by this pipeline's node" if replicas else "not in use"
        if time.monotonic() >= deadline:
            raise clash_error(server_id, derived, describe(foreign[0]), pipeline_id)
        time.sleep(0.25)


class KickPolicy:
    """What a kicked dump does next (see the module docstring): ``after_kick`` raises
    ``ServerIdClash`` for a clash, else returns how long to wait before reconnecting."""

    def __init__(
        self,
        server_id: int,
        derived: bool,
        pipeline_id: str,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.server_id = server_id
        self.derived = derived
        self.pipeline_id = pipeline_id
        self._clock = clock
        self._random = rng or random.Random()
        self._kicks: deque[float] = deque()

    def after_kick(self, kickers: list[Replica] | None) -> float:
        """``kickers``: the replicas registered with our id now (None: cannot list)."""
        if kickers is not None:
            ours = report_host(self.pipeline_id)
            foreign = [replica for replica in kickers if replica[0] != ours]
            if foreign or not kickers:
                # not this pipeline's: named, or a client that does not register
                other = describe(foreign[0]) if foreign else "a client that does not register"
                raise clash_error(self.server_id, self.derived, other, self.pipeline_id)
        now = self._clock()
        while self._kicks and now - self._kicks[0] > 60.0:
            self._kicks.popleft()
        self._kicks.append(now)
        if len(self._kicks) >= KICKS_PER_MINUTE:
            other = (
                "another client, which dropped this pipeline's binlog dump"
                f" {len(self._kicks)} times within a minute (ferry cannot name it: listing"
                " the source's replicas needs REPLICATION MASTER ADMIN on MariaDB)"
                if kickers is None
                else "clients registered as this pipeline, which dropped its binlog dump"
                f" {len(self._kicks)} times within a minute (another ferry deployment with"
                " the same pipeline id?)"
            )
            raise clash_error(self.server_id, self.derived, other, self.pipeline_id)
        low, high = _UNNAMED_DELAY_S if kickers is None else _OWN_DELAY_S
        return self._random.uniform(low, high)
