"""The arbiter on Redis: mainstem lock with fencing epochs, pause permit, status.

Key layout (``P`` = ``<key_prefix>:<pipeline_id>``; a trailing ':' of the
prefix is dropped so keys never hold '::'):

============================  ======  =================================================
key                           type    holds
============================  ======  =================================================
``P:mainstem``                string  ``<epoch>:<node_id>`` of the active node, PX
                                      ``lock_ttl_ms``; renewed every ``lock_ttl_ms/3``
``P:epoch``                   string  INCR-style counter, the fencing token source; the
                                      holder's epoch must equal it
``P:position``                string  JSON ``{"position": {...}, "epoch": E, "node_id":
                                      N, "committed_at": T}`` (epoch null when set by
                                      an operator)
``P:state``                   hash    the permit: ``state`` running|paused, ``reason``,
                                      ``error``, ``since``; missing = running
``P:status:<node_id>``        hash    one node's report: role, epoch, position, lag_ms,
                                      rows_total, rows_per_s, last_error, updated_at
                                      (values JSON-encoded); PX ``status_ttl_ms`` so
                                      dead nodes age out; stale after
                                      ``status_stale_ms`` without an update
``P:snapshots``               hash    `ferry snapshot` requests: id -> JSON ``{"tables":
                                      [...], "state": pending|running|done, "at": T}``
``P:notify``                  pubsub  channel: ``released`` (mainstem given up),
                                      ``state`` (permit changed)
``P:history``                 list    the schema history's records, oldest first: JSON
                                      of ``pipeline.model.SchemaRecord`` (position,
                                      epoch, statement, the full definition of every
                                      table it changed) with a CRC-32; appended by the
                                      commit of the DDL's position, in the same script
``P:history:snapshots``       hash    record number -> JSON of every table's definition
                                      after that record (``SchemaState``, with a
                                      CRC-32); the newest two are kept, and the records
                                      they include are trimmed from ``P:history``
``P:history:head``            hash    ``seq`` (the last record's number), ``first`` (the
                                      number of the list's first record), ``at`` (JSON
                                      of the position the history is complete up to:
                                      the last commit's)
============================  ======  =================================================

Sizes: a definition takes about 120 bytes per column plus 80 per table in JSON (a
20-column table: ~2.5 KB); a record ~300 bytes plus its statement and the definitions it
changed; a snapshot every definition of the captured databases (1,000 tables of 20
columns: ~2.5 MB), stored with every 100th record (``pipeline.node.HISTORY_SNAPSHOT_EVERY``).

Wake-ups use pub/sub rather than BLPOP on a notify list: a release or a resume
must wake *every* waiter (several standbys, permit waiters), while a list
element wakes exactly one and is left behind (a stale wake-up) when nobody
waits. Pub/sub is fire-and-forget, so every wait is also bounded by
``poll_ms`` (and, for a standby, by the lock's remaining TTL) and re-reads
the truth from the keys: a lost message costs latency, never correctness.

Fencing and Redis restarts (Redis may come back empty):

* acquire = "SET mainstem NX" + "epoch := max(epoch, floor) + 1" in one script;
  ``floor`` is the highest epoch this process knows (held before, or raised by
  ``raise_epoch_floor`` from a sink checkpoint), so epochs keep increasing
  even when the counter was lost;
* renew and commit succeed only while ``mainstem`` holds this node's
  ``<epoch>:<node_id>`` *and* the counter equals that epoch: after an empty
  restart the mainstem is gone, so the old holder is told it lost the lock
  and cannot commit; raising the floor above a holder's epoch fences it.
* ``set_position`` (operator, while paused) also increments the epoch: the
  holder may still be draining a batch, whose ack must not overwrite the
  operator's position; fenced, it is re-elected with a new epoch and starts
  from the operator's position on resume.
* A holder that cannot reach Redis declares the lock lost ``lock_ttl_ms``
  after the *start* of its last successful renewal request (the lock in Redis
  expires no earlier than that), measured on a monotonic clock.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import redis
from loguru import logger
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from pipeline.errors import (
    FatalError,
    FerryError,
    classify,
    register_classifier,
    timed_out,
    tls_refused,
)
from pipeline.model import Position

from .base import (
    Arbiter,
    HistoryWrite,
    PipelineState,
    PipelineStatus,
    SnapshotRequest,
    StoredHistory,
)
from .common import (
    HISTORY_SNAPSHOTS_KEPT,
    NOT_HOLDER,
    STALE_EPOCH,
    announce_lost,
    announce_state,
    build_status,
    decode_snapshot_requests,
    encode_report,
    encode_snapshot_request,
    fenced,
    mainstem_value,
    new_snapshot_request,
    parse_position_record,
    parse_state,
    position_record,
    state_fields,
)
from .config import ArbiterConfig

# KEYS: mainstem, epoch. ARGV: node_id, ttl_ms, floor.
# -> {1, epoch} when won, {0, holder, pttl} when held by someone.


def redis_errors(exc: BaseException) -> bool | None:
    """redis-py's exceptions: resumable, fatal, or None when ``exc`` is not one."""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return False
    if isinstance(exc, redis.ConnectionError) and tls_refused(exc.__cause__ or exc.__context__):
        return False  # rediss:// whose certificate does not verify: retrying cannot help
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.BusyLoadingError):
        return True
    if isinstance(exc, redis.ReadOnlyError):  # a replica after failover: wait for the new master
        return True
    if isinstance(exc, redis.RedisError):
        return False
    return None


register_classifier(redis_errors)

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder, redis.call('PTTL', KEYS[1])} end
local epoch = tonumber(redis.call('GET', KEYS[2]) or '0')
local floor = tonumber(ARGV[3])
if epoch < floor then epoch = floor end
epoch = epoch + 1
redis.call('SET', KEYS[2], epoch)
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[1], 'PX', ARGV[2])
return {1, epoch}
"""

# The holder check of every fenced script. KEYS: mainstem, epoch, ... ARGV: value, epoch, ...
# -> 0 not the holder, -1 epoch not current (else the script goes on).
_HOLDER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return -1 end
"""

# KEYS: mainstem, epoch. ARGV: value, epoch. -> 1 held, 0 not ours, -1 stale epoch.
_HOLDS = _HOLDER + "return 1\n"

# KEYS: mainstem, epoch. ARGV: value, epoch, ttl_ms. -> 1 renewed, 0 not ours, -1 stale epoch.
_RENEW = (
    _HOLDER
    + """
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: mainstem. ARGV: value, channel. -> 1 released, 0 not ours (nothing done).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released')
return 1
"""

# KEYS: mainstem, epoch, position. ARGV: value, epoch, record.
# -> 1 stored, 0 not the holder, -1 epoch not current.
_COMMIT = (
    _HOLDER
    + """
redis.call('SET', KEYS[3], ARGV[3])
return 1
"""
)

# The commit with the schema history (see the key table).
# KEYS: mainstem, epoch, position, history, snapshots, head.
# ARGV: value, epoch, record ('' = the position stays), first, n, n records, snapshot ('' =
# none), snapshots kept, coverage. Records already stored (a retried script) are skipped.
# -> 1 stored, 0 not the holder, -1 epoch not current, -2 a record would leave a gap.
_COMMIT_HISTORY = (
    _HOLDER
    + """
local head = tonumber(redis.call('HGET', KEYS[6], 'seq') or '0')
local first = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
if n > 0 and first > head + 1 then return -2 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3]) end
for i = 1, n do
  if first + i - 1 == head + 1 then
    redis.call('RPUSH', KEYS[4], ARGV[5 + i])
    head = head + 1
  end
end
if redis.call('HEXISTS', KEYS[6], 'first') == 0 then redis.call('HSET', KEYS[6], 'first', 1) end
redis.call('HSET', KEYS[6], 'seq', head, 'at', ARGV[8 + n])
if ARGV[6 + n] ~= '' then
  redis.call('HSET', KEYS[5], tostring(head), ARGV[6 + n])
  local seqs = {}
  for _, key in ipairs(redis.call('HKEYS', KEYS[5])) do table.insert(seqs, tonumber(key)) end
  table.sort(seqs, function(a, b) return a > b end)
  local keep = tonumber(ARGV[7 + n])
  for i = keep + 1, #seqs do redis.call('HDEL', KEYS[5], tostring(seqs[i])) end
  local oldest = seqs[math.min(keep, #seqs)]
  local lfirst = tonumber(redis.call('HGET', KEYS[6], 'first'))
  if oldest >= lfirst then
    redis.call('LTRIM', KEYS[4], oldest - lfirst + 1, -1)
    redis.call('HSET', KEYS[6], 'first', oldest + 1)
  end
end
return 1
"""
)

# KEYS: mainstem, epoch, history, snapshots, head. ARGV: value, epoch, snapshot, coverage.
# -> 1 started, 0 not the holder, -1 epoch not current.
_START_HISTORY = (
    _HOLDER
    + """
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[4], '0', ARGV[3])
redis.call('HSET', KEYS[5], 'seq', 0, 'first', 1, 'at', ARGV[4])
return 1
"""
)

# KEYS: mainstem, epoch, history, snapshots, head. ARGV: value, epoch, seq kept, coverage.
# -> 1 done, 0 not the holder, -1 epoch not current.
_TRUNCATE_HISTORY = (
    _HOLDER
    + """
local keep = tonumber(ARGV[3])
local lfirst = tonumber(redis.call('HGET', KEYS[5], 'first') or '1')
if keep < lfirst then redis.call('DEL', KEYS[3])
else redis.call('LTRIM', KEYS[3], 0, keep - lfirst) end
for _, key in ipairs(redis.call('HKEYS', KEYS[4])) do
  if tonumber(key) > keep then redis.call('HDEL', KEYS[4], key) end
end
redis.call('HSET', KEYS[5], 'seq', keep, 'at', ARGV[4])
return 1
"""
)

# KEYS: state, epoch, history, snapshots, head. ARGV: snapshot, coverage.
# -> 1 done, 0 not paused. Bumps the epoch (fences the holder, as _SET_POSITION does).
_REBUILD_HISTORY = """
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[4], '0', ARGV[1])
redis.call('HSET', KEYS[5], 'seq', 0, 'first', 1, 'at', ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""

# KEYS: mainstem, epoch, state. ARGV: value, epoch, channel, then the state hash's
# field/value pairs. -> 1 paused, 0 not the holder, -1 epoch not current.
_PAUSE_ON_ERROR = (
    _HOLDER
    + """
redis.call('HSET', KEYS[3], unpack(ARGV, 4))
redis.call('PUBLISH', ARGV[3], 'state')
return 1
"""
)

# KEYS: epoch. ARGV: floor. -> the counter afterwards.
_RAISE_FLOOR = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if epoch < floor then redis.call('SET', KEYS[1], floor); return floor end
return epoch
"""

# KEYS: state, position, epoch. ARGV: record ('' = forget). -> 1 done, 0 not paused.
# Bumping the epoch fences the holder: a batch it was still draining when the operator
# set the position cannot commit over it (the holder is re-elected with a new epoch).
_SET_POSITION = """
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
if ARGV[1] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('INCR', KEYS[3])
return 1
"""


def connect(config: ArbiterConfig, socket_timeout_ms: int | None = None) -> redis.Redis:
    """A client from ``config.url`` (redis://, rediss://, unix://) or from Sentinel.

    redis-py retries 10 times with backoff by default; that would stretch a
    "Redis is down" verdict far beyond ``lock_ttl_ms``, so at most one
    immediate retry is allowed (it heals a pooled connection broken by a Redis
    restart). Every script here is safe to run twice: a repeated acquire finds
    the lock taken (ours; it then expires), the others are idempotent.
    """
    timeout_s = (socket_timeout_ms or config.socket_timeout_ms) / 1000
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 1),
        "decode_responses": True,
    }
    url = config.url.get_secret_value()
    if not config.sentinels:
        return redis.Redis.from_url(url, **options)
    # Sentinel: the URL contributes credentials, db and TLS; the address comes from Sentinel.
    parsed = parse_url(url)
    for name in ("username", "password", "db"):
        if parsed.get(name) is not None:
            options[name] = parsed[name]
    if url.startswith("rediss://"):
        options["ssl"] = True
        # and the URL's TLS options, as from_url would take them (ssl_ca_certs, ...)
        options.update({k: v for k, v in parsed.items() if k.startswith("ssl_")})
    sentinel = Sentinel(
        [(s.host, s.port) for s in config.sentinels],
        sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
    )
    assert config.master_name is not None  # the config validator pairs it with sentinels
    return sentinel.master_for(config.master_name, **options)


_HashFields = dict[str | bytes, bytes | float | int | str]


class HolderProbe:
    """``RedisArbiter.holder_probe``: is ``value`` (``<epoch>:<node_id>``) still the
    mainstem, with the current epoch? Picklable (the client is opened where it is called,
    e.g. in a decoder process); any Redis trouble answers False."""

    def __init__(self, config: ArbiterConfig, keys: list[str], value: str, epoch: int) -> None:
        self._config = config
        self._keys = keys
        self._value = value
        self._epoch = epoch
        self._script: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_script": None}

    def __call__(self) -> bool:
        try:
            if self._script is None:
                self._script = connect(self._config).register_script(_HOLDS)
            return int(self._script(keys=self._keys, args=[self._value, self._epoch])) == 1
        except Exception as exc:  # cannot confirm: the caller steps down
            logger.warning("cannot confirm the mainstem with Redis: {}", classify(exc))
            return False


@dataclass
class _Hold:
    """One tenure of the mainstem."""

    epoch: int
    value: str
    renewed_at: float  # clock() at the *start* of the last successful acquire/renew request
    ended: threading.Event = field(default_factory=threading.Event)


class RedisArbiter(Arbiter):
    """The ``Arbiter`` contract on Redis (see the module docstring for keys and invariants).

    ``clock`` (monotonic seconds) is injectable so that tests can simulate a
    stop-the-world pause together with ``freeze_renewer()``.
    """

    def __init__(
        self,
        config: ArbiterConfig,
        pipeline_id: str,
        node_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.pipeline_id = pipeline_id
        self.node_id = node_id
        self._clock = clock
        self._ttl_ms = config.lock_ttl_ms
        base = f"{config.key_prefix.rstrip(':')}:{pipeline_id}"
        self.keys = {
            name: f"{base}:{name}"
            for name in ("mainstem", "epoch", "position", "state", "notify", "snapshots")
        }
        for name in ("snapshots", "head"):
            self.keys[f"history:{name}"] = f"{base}:history:{name}"
        self.keys["history"] = f"{base}:history"
        self._status_prefix = f"{base}:status:"
        self._client = connect(config)
        # The renewer gets its own client whose timeout fits in a renewal interval, so a
        # hung request cannot delay the "lost" verdict much past the deadline.
        self._renew_client = connect(
            config, min(config.socket_timeout_ms, max(100, config.lock_ttl_ms // 3))
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._commit = self._client.register_script(_COMMIT)
        self._commit_history = self._client.register_script(_COMMIT_HISTORY)
        self._start_history = self._client.register_script(_START_HISTORY)
        self._truncate_history = self._client.register_script(_TRUNCATE_HISTORY)
        self._rebuild_history = self._client.register_script(_REBUILD_HISTORY)
        self._pause_on_error = self._client.register_script(_PAUSE_ON_ERROR)
        self._raise_floor = self._client.register_script(_RAISE_FLOOR)
        self._set_position = self._client.register_script(_SET_POSITION)
        self._mutex = threading.Lock()  # guards _hold transitions
        self._hold: _Hold | None = None
        self._floor = 0  # highest epoch this process knows: survives an emptied Redis
        self._frozen = False
        self._callbacks: list[Callable[[], None]] = []
        self._closed = threading.Event()
        self._log = logger.bind(pipeline=pipeline_id, node=node_id, arbiter="redis")

    # -- mainstem ------------------------------------------------------------------------

    def await_active(self, stop: Callable[[], bool] | None = None) -> int | None:
        poll_s = self.config.poll_ms / 1000
        pubsub: PubSub | None = None
        failures = 0
        try:
            while True:
                hold = self._hold
                if hold is not None:
                    return hold.epoch
                if self._closed.is_set() or (stop is not None and stop()):
                    return None
                try:
                    if pubsub is None:
                        # Subscribe before trying, so a release right after a failed
                        # attempt is not missed.
                        pubsub = self._subscribe()
                    wait_s = self._try_acquire()
                    if wait_s is None:
                        continue
                    failures = 0
                    self._wait_message(pubsub, min(poll_s, wait_s))
                except Exception as exc:
                    if self._closed.is_set():
                        # close() cut the connections this wait reads from: what redis-py
                        # raises then (even an AttributeError) is the close, not a fault.
                        return None
                    error = self._classify(exc)
                    if isinstance(error, FatalError):
                        raise error from exc
                    # Resumable for a standby: keep waiting, Redis may come back.
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        self._log.warning(
                            "standby cannot reach the arbiter ({} attempts): {}", failures, error
                        )
                    if pubsub is not None:
                        with contextlib.suppress(Exception):
                            pubsub.close()
                        pubsub = None
                    self._closed.wait(poll_s)
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _try_acquire(self) -> float | None:
        """One attempt: None when won, else how long until the lock may be free (seconds)."""
        started = self._clock()
        result = self._acquire(
            keys=[self.keys["mainstem"], self.keys["epoch"]],
            args=[self.node_id, self._ttl_ms, self._floor],
        )
        if int(result[0]) != 1:
            pttl = int(result[2])
            # pttl < 0: a lock without expiry (not ours to fix); fall back to polling.
            return pttl / 1000 + 0.002 if pttl >= 0 else float("inf")
        epoch = int(result[1])
        hold = _Hold(epoch, mainstem_value(epoch, self.node_id), started)
        with self._mutex:
            self._hold = hold
            self._floor = max(self._floor, epoch)
        self._log.info(
            "mainstem won: pipeline={} node={} epoch={}", self.pipeline_id, self.node_id, epoch
        )
        threading.Thread(
            target=self._renew_loop, args=(hold,), name=f"arbiter-renewer-{epoch}", daemon=True
        ).start()
        if self._closed.is_set():  # closed while we were acquiring
            self.release()
        return None

    def check(self) -> bool:
        hold = self._hold
        # Provable only until lock_ttl_ms after the start of the last successful renewal.
        return hold is not None and self._clock() - hold.renewed_at < self._ttl_ms / 1000

    def holder_probe(self, epoch: int) -> HolderProbe:
        keys = [self.keys["mainstem"], self.keys["epoch"]]
        return HolderProbe(self.config, keys, mainstem_value(epoch, self.node_id), epoch)

    @property
    def epoch(self) -> int | None:
        hold = self._hold
        return hold.epoch if hold is not None else None

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def release(self) -> None:
        with self._mutex:
            hold, self._hold = self._hold, None
        if hold is None:
            return
        hold.ended.set()
        try:
            self._release(keys=[self.keys["mainstem"]], args=[hold.value, self.keys["notify"]])
        except Exception as exc:  # the lock then expires by itself after the TTL
            self._log.warning("release failed, the lock will expire: {}", classify(exc))
        self._log.info(
            "mainstem released: pipeline={} node={} epoch={}",
            self.pipeline_id,
            self.node_id,
            hold.epoch,
        )

    def _lose(self, hold: _Hold, reason: str) -> None:
        with self._mutex:
            if self._hold is not hold:  # released or already lost
                return
            self._hold = None
        hold.ended.set()
        # If the lock still holds this tenure (e.g. our epoch was fenced by a raised floor),
        # give it up so a standby need not wait for the TTL. Harmless otherwise.
        with contextlib.suppress(Exception):
            self._release(
                keys=[self.keys["mainstem"]],
                args=[hold.value, self.keys["notify"]],
                client=self._renew_client,
            )
        announce_lost(self, hold.epoch, reason, list(self._callbacks), self._log)

    def _renew_loop(self, hold: _Hold) -> None:
        ttl_s = self._ttl_ms / 1000
        interval = ttl_s / 3
        retry_s = min(interval, 0.2)
        next_at = hold.renewed_at + interval
        failures = 0
        while not hold.ended.is_set():
            if self._frozen:  # test hook: a stalled process neither renews nor notices
                hold.ended.wait(interval)
                continue
            now = self._clock()
            deadline = hold.renewed_at + ttl_s
            if now >= deadline:
                self._lose(hold, f"no successful renewal for {self._ttl_ms} ms")
                return
            wait = min(next_at, deadline) - now
            if wait > 0:
                hold.ended.wait(wait)
                continue
            started = self._clock()
            try:
                result = int(
                    self._renew(
                        keys=[self.keys["mainstem"], self.keys["epoch"]],
                        args=[hold.value, hold.epoch, self._ttl_ms],
                        client=self._renew_client,
                    )
                )
            except Exception as exc:
                failures += 1
                if failures == 1:
                    self._log.warning("mainstem renewal failed, retrying: {}", classify(exc))
                next_at = self._clock() + retry_s
                continue
            if result != 1:
                why = "taken over or expired" if result == 0 else "epoch is no longer current"
                self._lose(hold, why)
                return
            if failures:
                self._log.info("mainstem renewal recovered after {} failures", failures)
                failures = 0
            hold.renewed_at = started
            next_at = started + interval

    def freeze_renewer(self) -> None:
        """Test hook: stop renewing and stop noticing (simulates a stalled process)."""
        self._frozen = True

    def unfreeze_renewer(self) -> None:
        self._frozen = False

    # -- positions -----------------------------------------------------------------------

    def commit_position(
        self, position: Position | None, epoch: int, history: HistoryWrite | None = None
    ) -> None:
        record = (
            position_record(position, epoch, self.node_id, time.time())
            if position is not None
            else ""
        )
        holder = [mainstem_value(epoch, self.node_id), epoch]
        try:
            if history is None:
                assert position is not None
                result = int(
                    self._commit(
                        keys=[self.keys["mainstem"], self.keys["epoch"], self.keys["position"]],
                        args=[*holder, record],
                    )
                )
            else:
                result = int(
                    self._commit_history(
                        keys=[
                            self.keys["mainstem"],
                            self.keys["epoch"],
                            self.keys["position"],
                            *self._history_keys(),
                        ],
                        args=[
                            *holder,
                            record,
                            history.first,
                            len(history.records),
                            *history.records,
                            history.snapshot or "",
                            HISTORY_SNAPSHOTS_KEPT,
                            history.coverage,
                        ],
                    )
                )
        except Exception as exc:
            raise self._error(exc, position) from exc
        if result == -2:
            raise FatalError(
                f"schema history record {history.first if history else '?'} would leave a gap"
                " in the stored history (another writer?)",
                pipeline=self.pipeline_id,
                position=position,
            )
        if result != 1:
            raise fenced(self, epoch, NOT_HOLDER if result == 0 else STALE_EPOCH, position)
        self._log.debug("position committed: {} epoch={}", position, epoch)

    def _history_keys(self) -> list[str]:
        return [self.keys["history"], self.keys["history:snapshots"], self.keys["history:head"]]

    def load_history(self) -> StoredHistory:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.keys["history:head"])
                pipe.lrange(self.keys["history"], 0, -1)
                pipe.hgetall(self.keys["history:snapshots"])
                head, records, snapshots = pipe.execute()
        except Exception as exc:
            raise self._error(exc) from exc
        try:
            return StoredHistory(
                records=list(records),
                first=int(head.get("first") or 1),
                seq=int(head.get("seq") or 0),
                snapshots={int(k): v for k, v in snapshots.items()},
                coverage=head.get("at"),
            )
        except ValueError as exc:
            raise FatalError(
                f"the schema history's head in Redis is corrupt ({exc})", pipeline=self.pipeline_id
            ) from exc

    def _fenced_history(self, script: Any, epoch: int, *args: Any) -> None:
        keys = [self.keys["mainstem"], self.keys["epoch"], *self._history_keys()]
        try:
            result = int(
                script(keys=keys, args=[mainstem_value(epoch, self.node_id), epoch, *args])
            )
        except Exception as exc:
            raise self._error(exc) from exc
        if result != 1:
            raise fenced(self, epoch, NOT_HOLDER if result == 0 else STALE_EPOCH)

    def start_history(self, snapshot: str, coverage: str, epoch: int) -> None:
        self._fenced_history(self._start_history, epoch, snapshot, coverage)

    def truncate_history(self, seq: int, coverage: str, epoch: int) -> None:
        self._fenced_history(self._truncate_history, epoch, seq, coverage)
        self._log.info("schema history: the records after record {} dropped (past the start)", seq)

    def rebuild_history(self, snapshot: str, coverage: str) -> None:
        keys = [self.keys["state"], self.keys["epoch"], *self._history_keys()]
        try:
            done = int(self._rebuild_history(keys=keys, args=[snapshot, coverage]))
        except Exception as exc:
            raise self._error(exc) from exc
        if not done:
            raise FatalError(
                "the schema history can only be rebuilt while the pipeline is paused",
                pipeline=self.pipeline_id,
            )
        self._log.warning("schema history rebuilt by an operator")

    def load_position(self) -> Position | None:
        return self.load_position_record()[0]

    def load_position_record(self) -> tuple[Position | None, int | None]:
        """The committed position and the epoch that wrote it."""
        try:
            text = self._client.get(self.keys["position"])
        except Exception as exc:
            raise self._error(exc) from exc
        return parse_position_record(text)

    def set_position(self, position: Position | None) -> None:
        record = (
            "" if position is None else position_record(position, None, "operator", time.time())
        )
        try:
            done = int(
                self._set_position(
                    keys=[self.keys["state"], self.keys["position"], self.keys["epoch"]],
                    args=[record],
                )
            )
        except Exception as exc:
            raise self._error(exc, position) from exc
        if not done:
            raise FatalError(
                "the position can only be set while the pipeline is paused",
                pipeline=self.pipeline_id,
            )
        self._log.info("position set by operator: {}", position)

    def raise_epoch_floor(self, epoch: int) -> None:
        with self._mutex:
            self._floor = max(self._floor, epoch)
        try:
            counter = int(self._raise_floor(keys=[self.keys["epoch"]], args=[epoch]))
        except Exception as exc:
            raise self._error(exc) from exc
        self._log.info("epoch floor raised to {} (counter now {})", epoch, counter)

    # -- permit --------------------------------------------------------------------------

    def get_state(self) -> PipelineState:
        try:
            return parse_state(self._client.hgetall(self.keys["state"]))
        except Exception as exc:
            raise self._error(exc) from exc

    def wait_for_permit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        pubsub: PubSub | None = None
        try:
            while True:
                if not self.get_state().paused:  # the common case costs one round trip
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return False
                if pubsub is None:  # subscribed before the next look: no resume is missed
                    pubsub = self._subscribe()
                    continue
                self._wait_message(pubsub, min(remaining, self.config.poll_ms / 1000))
        except Exception as exc:
            if self._closed.is_set():  # the close, as in await_active
                return False
            if isinstance(exc, FerryError):
                raise
            raise self._error(exc) from exc
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def pause(self, reason: str, error: str = "") -> None:
        self._set_state("paused", reason, error)

    def pause_on_error(self, epoch: int, error: str) -> None:
        fields = state_fields("paused", "error", error, time.time())
        try:
            result = int(
                self._pause_on_error(
                    keys=[self.keys["mainstem"], self.keys["epoch"], self.keys["state"]],
                    args=[
                        mainstem_value(epoch, self.node_id),
                        epoch,
                        self.keys["notify"],
                        *itertools.chain.from_iterable(fields.items()),
                    ],
                )
            )
        except Exception as exc:
            raise self._error(exc) from exc
        if result != 1:
            raise fenced(self, epoch, NOT_HOLDER if result == 0 else STALE_EPOCH)
        announce_state(self, "paused", "error", self._log)

    def resume(self) -> None:
        self._set_state("running", "", "")

    def _set_state(self, state: str, reason: str, error: str) -> None:
        fields = cast(_HashFields, state_fields(state, reason, error, time.time()))
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys["state"], mapping=fields)
                pipe.publish(self.keys["notify"], "state")
                pipe.execute()
        except Exception as exc:
            raise self._error(exc) from exc
        announce_state(self, state, reason, self._log)

    # -- status --------------------------------------------------------------------------

    def request_snapshot(self, tables: list[str]) -> SnapshotRequest:
        request = new_snapshot_request(tables, time.time())
        try:
            self._client.hset(
                self.keys["snapshots"], request.request, encode_snapshot_request(request)
            )
        except Exception as exc:
            raise self._error(exc) from exc
        return request

    def snapshot_requests(self) -> list[SnapshotRequest]:
        try:
            fields = self._client.hgetall(self.keys["snapshots"])
        except Exception as exc:
            raise self._error(exc) from exc
        return decode_snapshot_requests(fields)

    def set_snapshot_state(self, request: str, state: str) -> None:
        try:
            text = self._client.hget(self.keys["snapshots"], request)
            if text is not None:
                [found] = decode_snapshot_requests({request: text})
                updated = replace(found, state=state)
                self._client.hset(self.keys["snapshots"], request, encode_snapshot_request(updated))
        except Exception as exc:
            raise self._error(exc) from exc

    def publish_status(self, report: dict[str, Any]) -> None:
        defaults = {
            "node_id": self.node_id,
            "role": "active" if self.check() else "standby",
            "epoch": self.epoch,
            "updated_at": time.time(),
        }
        key = self._status_prefix + self.node_id
        fields = cast(_HashFields, encode_report(report, defaults))
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)  # a report replaces the previous one entirely
                pipe.hset(key, mapping=fields)
                pipe.pexpire(key, self.config.status_ttl_ms)
                pipe.execute()
        except Exception as exc:
            raise self._error(exc) from exc

    def status(self) -> PipelineStatus:
        try:
            pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._status_prefix) + "*"
            report_keys = sorted(self._client.scan_iter(match=pattern, count=1000))
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys["state"])
                pipe.get(self.keys["mainstem"])
                pipe.get(self.keys["epoch"])
                pipe.get(self.keys["position"])
                for key in report_keys:
                    pipe.hgetall(key)
                state, mainstem, counter, position, *reports = pipe.execute()
        except Exception as exc:
            raise self._error(exc) from exc
        return build_status(
            pipeline=self.pipeline_id,
            state=parse_state(state),
            mainstem=mainstem,
            epoch_counter=int(counter) if counter else None,
            position_text=position,
            reports=[r for r in reports if r],  # a key may expire between SCAN and HGETALL
            now=time.time(),
            stale_ms=self.config.status_stale_ms,
        )

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()  # also ends pending waits within poll_ms
        self.release()
        for client in (self._client, self._renew_client):
            with contextlib.suppress(Exception):
                client.close()

    # -- helpers -------------------------------------------------------------------------

    def _subscribe(self) -> PubSub:
        """A pub/sub connection subscribed to the notify channel, confirmed by the server."""
        pubsub = self._client.pubsub()
        pubsub.subscribe(self.keys["notify"])
        deadline = time.monotonic() + self.config.socket_timeout_ms / 1000
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=deadline - time.monotonic())
            if message is not None and message["type"] == "subscribe":
                break
        return pubsub

    @staticmethod
    def _wait_message(pubsub: PubSub, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for a notification; drains whatever else is queued."""
        if pubsub.get_message(timeout=max(0.0, timeout_s)) is not None:
            while pubsub.get_message(timeout=0) is not None:
                pass

    def _error(self, exc: BaseException, position: Any = None) -> FerryError:
        return self._classify(exc).context(pipeline=self.pipeline_id, position=position)

    def _classify(self, exc: BaseException) -> FerryError:
        """``classify``, naming arbiter.socket_timeout_ms when Redis did not answer in it."""
        if isinstance(exc, FerryError) or not timed_out(exc):
            return classify(exc)
        return classify(
            exc,
            f"Redis did not answer within arbiter.socket_timeout_ms"
            f" ({self.config.socket_timeout_ms} ms): {type(exc).__name__}: {exc}",
        )
