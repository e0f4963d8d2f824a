"""A selector whose binlog decoding runs in a child process, on the second core.

Under the GIL, decoding and everything else the node does (encoding, sink I/O, acks)
would share one core. Here a child process runs the real :class:`MySQLSelector` and
reads ahead as far as a 1 MiB pipe holds (several batches); the parent unpickles them.
For a JSON sink whose rows pass the stages untouched (``encoding``), the child also
encodes the rows of a batch into the sink's messages while the node is behind, and
ships them projected to their keys (``selector.transport``); a node that is waiting
gets rows and encodes them itself, so the encoding goes to whichever core is free.

Who owns what:

* The **parent** owns the position store and the ack order: ``ack`` checks the
  order, saves the position durably, then forwards the ack to the child so its
  ledger forgets the batch (and knows where a reconnect or rollback reopens).
* The **child** owns the binlog connection, reconnects, batching and filters,
  exactly as the in-thread selector does; its store is an in-memory copy.
* ``rollback`` is a handshake: the parent sends ``("rollback", token)`` after
  every ack it forwarded (one FIFO queue), and discards whatever the child sent
  until the child's ``("rolled_back", token, error)`` marker, so nothing read ahead
  before the rollback is ever handed out after it; an error the child met reopening
  the stream (e.g. its node no longer holds the mainstem) is raised by ``rollback``.
* The child asks Redis itself whether its node still holds the mainstem before it
  opens a dump (``PositionStore.holder_probe``): a frozen node's child must not take
  the source's dump (one per server id) from the node that replaced it.
* A child that dies or stops answering is a ResumableError; the node rolls
  back, and ``rollback`` starts a new child at the committed position. A child
  whose parent dies exits too (PR_SET_PDEATHSIG, and a parent-pid check).

Life cycle across threads: ``stop()`` may come from any thread, while ProcessTermin
respawns the child in ``rollback`` and acks. The child, its command queue and its
pipe are attached and detached together under ``_life``; a detached child is ended
before its queue is dropped, because a child still unpickling its start arguments
opens the queue's named semaphores (a dropped queue unlinks them: FileNotFoundError
in ``SemLock._rebuild``, the child exits 1). Nothing is sent to a detached queue, and
nothing here raises a FatalError for a child that could not start, died, or was
stopped meanwhile: that is a ResumableError (a rollback starts a new child).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import fcntl
import gc
import logging
import multiprocessing
import os
import queue
import signal
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.errors import FatalError, FerryError, ResumableError, classify
from pipeline.model import Batch, Encoded, Position, SchemaRecord, SchemaState

from .base import PositionStore, Selector
from .config import MySQLSourceConfig

#: Encode-ahead as the selector sees it, opaque: a picklable callable, sent to the decoder
#: process and called there once, that returns the function encoding a batch's row changes
#: into the sink's messages (``pipeline.model.Encoded``). The node builds it from the sink
#: (``pipeline.stages.EncodeAhead``): the selector never imports a sink.
EncoderFactory = Callable[[], Callable[[Batch], Encoded]]

_ANSWER_GRACE_S = 10.0  # beyond max_wait + heartbeat, how long a silent child is given
_CHILD_TICK_S = 0.2


class ProcessSelector(Selector):
    """The :class:`MySQLSelector` contract, decoded in a child process (see the module doc)."""

    def __init__(
        self,
        config: MySQLSourceConfig,
        batch_max_rows: int,
        batch_max_wait_ms: int,
        store: PositionStore,
        pipeline_id: str = "",
        prefetch_bytes: int = 1 << 20,
        log_level: str = "INFO",
        encoding: EncoderFactory | None = None,
    ) -> None:
        self.config = config
        self.max_rows = batch_max_rows
        self.max_wait_ms = batch_max_wait_ms
        self.store = store
        self.pipeline_id = pipeline_id
        self.prefetch_bytes = prefetch_bytes
        self.log_level = log_level
        self.encoding = encoding  # the child encodes rows ahead with it (Batch.encoded)
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded parent
        self._life = threading.Lock()  # guards the next four (see the module docstring)
        self._child: BaseProcess | None = None
        self._commands: Any = None
        self._out: Any = None
        self._stopping = False
        self._token = 0
        self._in_flight: deque[tuple[int, Position | None, tuple[SchemaRecord, ...]]] = deque()
        self._committed: Position | None = None
        # The start the first child resolved (`latest` means *then*): a child respawned before
        # anything was committed must reopen there, not at a new `latest`.
        self._origin: Position | None = None
        self._last_ts: float | None = None
        # a select may legitimately take a reconnect (connect_timeout_ms) in the child
        wait_ms = batch_max_wait_ms + config.heartbeat_ms + config.connect_timeout_ms
        self._answer_s = wait_ms / 1000 + _ANSWER_GRACE_S

    # ------------------------------------------------------------------ child

    def _spawn(self) -> None:
        """Start a child at the committed position and wait until its selector started."""
        self._kill_child()
        try:
            with self._life:
                if self._stopping:
                    raise ResumableError(
                        "the binlog decoder was stopped", pipeline=self.pipeline_id or None
                    )
                commands = self._context.Queue()
                # A pipe, not a Queue: the child pickles and writes in its main thread (a
                # Queue's feeder thread fights the decoder for the child's GIL). The OS buffer
                # bounds the read-ahead; a full pipe blocks the child: the backpressure wanted.
                out, out_writer = self._context.Pipe(duplex=False)
                _grow_pipe(out_writer.fileno(), self.prefetch_bytes)
                child = self._context.Process(
                    target=_child_main,
                    args=(
                        self.config,
                        self.max_rows,
                        self.max_wait_ms,
                        self._committed or self._origin,
                        self.store.load_history(),  # raises when it is missing or corrupt
                        self.pipeline_id,
                        commands,
                        out_writer,
                        self.log_level,
                        self.encoding,
                        self.store.holder_probe(),  # the child asks Redis itself
                    ),
                    name=f"ferry-decoder-{self.pipeline_id}",
                    daemon=True,
                )
                child.start()
                out_writer.close()  # the child holds the write end now
                self._child, self._commands, self._out = child, commands, out
        except FerryError:
            raise
        except Exception as exc:  # no fd, no memory, no /dev/shm: may pass; never fatal
            raise ResumableError(
                f"cannot start the binlog decoder process: {type(exc).__name__}: {exc}",
                pipeline=self.pipeline_id or None,
            ) from exc
        answer_s = self.config.connect_timeout_ms / 1000 + _ANSWER_GRACE_S
        deadline = time.monotonic() + answer_s
        while True:
            item = self._receive(deadline, "start")
            if item[0] == "alive":  # a long read at start goes on (MySQLSelector._catch_up)
                deadline = time.monotonic() + answer_s
                continue
            if item[0] == "started":
                self._origin = self._origin or item[1]
                for write in item[2]:  # what the child stored in the schema history
                    if write[0] == "start":
                        self.store.start_history(write[1])
                    else:
                        self.store.append_history(write[1], write[2])
                return
            if item[0] == "error":
                self._kill_child()
                raise item[1]

    def _receive(self, deadline: float, what: str) -> tuple[Any, ...]:
        while True:
            with self._life:  # stop() from another thread may detach both meanwhile
                child, out = self._child, self._out
            if child is None or out is None:
                state = "was stopped" if self._stopping else "is not running"
                raise ResumableError(
                    f"the binlog decoder process {state} during {what}",
                    pipeline=self.pipeline_id or None,
                )
            try:
                if out.poll(0.2):
                    return out.recv()
            except EOFError:  # the child closed its end: it is exiting
                child.join(1)
            except OSError:  # closed under us by stop(): reported like a child that exited
                pass
            if not child.is_alive():
                raise ResumableError(
                    f"the binlog decoder process exited ({_exit_cause(child)}) during {what}",
                    pipeline=self.pipeline_id or None,
                )
            if time.monotonic() > deadline:
                raise ResumableError(
                    f"the binlog decoder process did not answer {what} in time",
                    pipeline=self.pipeline_id or None,
                )

    def _send(self, command: tuple[Any, ...]) -> None:
        """Forward a command to the child; a dead or detached child needs none (it is
        respawned at the committed position)."""
        with self._life:
            if self._child is not None and self._child.is_alive():
                self._commands.put(command)

    def _kill_child(self) -> None:
        with self._life:
            child, commands, out = self._child, self._commands, self._out
            self._child = self._commands = self._out = None
        if child is not None and child.is_alive():
            with contextlib.suppress(Exception):
                commands.put(("stop",))
        if out is not None:
            # A child blocked writing to a full pipe never reads "stop": closing our end
            # breaks its write at once, so a stop (and the lock release after it) is not
            # held up by the join below.
            out.close()
        if child is not None:
            child.join(2)
            if child.is_alive():
                child.kill()
                child.join(2)
        if commands is not None:  # only now: the child may have been unpickling it
            commands.cancel_join_thread()  # never block on unread data of a dead child
            commands.close()

    # --------------------------------------------------------------- Selector

    def start(self) -> None:
        try:
            self._committed = self.store.load()
        except Exception as exc:
            raise classify(exc, f"cannot load the committed position: {exc}") from exc
        with self._life:
            self._stopping = False
        self._in_flight.clear()
        self._origin = None
        self._spawn()

    def stop(self) -> None:
        with self._life:
            self._stopping = True  # no child is started after this
        self._kill_child()

    def select(self) -> Batch:
        deadline = time.monotonic() + self._answer_s
        while True:
            try:
                item = self._receive(deadline, "select")
            except ResumableError:
                if self._stopping:
                    return Batch(0)  # stop() interrupted the stream: nothing to hand out
                raise
            kind = item[0]
            if kind == "batch":
                batch: Batch = item[1]
                self._last_ts = item[2]
                self._in_flight.append((batch.batch_id, batch.position, batch.history))
                return batch
            if kind == "error":
                raise item[1]
            # a "rolled_back" marker of an earlier handshake: nothing to do

    def ack(self, batch_id: int) -> Position | None:
        if not self._in_flight or self._in_flight[0][0] != batch_id:
            oldest = self._in_flight[0][0] if self._in_flight else None
            raise FatalError(
                f"ack of batch {batch_id} out of order: the oldest un-acked batch is {oldest}",
                pipeline=self.pipeline_id or None,
                batch_id=batch_id,
            )
        _, position, history = self._in_flight[0]
        if position is not None:
            try:
                if history:
                    self.store.save(position, history)
                else:
                    self.store.save(position)
            except Exception as exc:
                raise classify(exc, f"cannot save the committed position: {exc}").context(
                    pipeline=self.pipeline_id or None, batch_id=batch_id, position=position
                ) from exc
            self._committed = position
        self._in_flight.popleft()
        self._send(("ack", batch_id))
        return self._committed

    def request_snapshot(self, request: str, tables: list[str]) -> None:
        self._send(("snapshot", request, tables))  # a respawned child is asked again

    def rollback(self) -> None:
        self._in_flight.clear()
        child = self._child
        if child is None or not child.is_alive():
            self._spawn()
            return
        self._token += 1
        self._send(("rollback", self._token))
        deadline = time.monotonic() + self._answer_s
        try:
            item = self._receive(deadline, "rollback")
            while item[:2] != ("rolled_back", self._token):
                item = self._receive(deadline, "rollback")  # read ahead before it: discarded
        except ResumableError as exc:
            logger.warning("{}; starting a new decoder process", exc)
            self._spawn()
            return
        if item[2] is not None:  # the child could not reopen (e.g. no longer the holder)
            raise item[2]

    def last_entry_time(self) -> float | None:
        return self._last_ts

    @property
    def decoder_pid(self) -> int | None:
        """Pid of the decoder process (for operators and tests)."""
        child = self._child
        return child.pid if child is not None else None

    @property
    def committed(self) -> Position | None:
        return self._committed


def _exit_cause(child: BaseProcess) -> str:
    code = child.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _grow_pipe(fd: int, size: int) -> None:
    """Ask for a pipe buffer of ``size`` bytes (Linux F_SETPIPE_SZ); the default is 64 KiB."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, 1031, min(size, int(Path("/proc/sys/fs/pipe-max-size").read_text())))


def _unread(out: Any) -> int:
    """Bytes sent down the pipe that the node has not read yet (FIONREAD; 0 if unknown)."""
    count = array.array("i", [0])
    try:
        fcntl.ioctl(out.fileno(), termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_main(
    config: MySQLSourceConfig,
    max_rows: int,
    max_wait_ms: int,
    start: Position | None,
    history: SchemaState | None,
    pipeline_id: str,
    commands: Any,
    out: Any,
    log_level: str,
    encoding: EncoderFactory | None,
    holder: Callable[[], bool] | None,
) -> None:
    """The decoder process: select ahead, obey ack / rollback / stop in queue order."""
    _die_with_parent()
    # The ledger holds every un-acked batch, so the default gen0 threshold (700) makes the
    # cyclic GC rescan a growing heap many times a batch; measured: 77-79% -> 79-81% of raw.
    gc.set_threshold(100_000, 50, 100)
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop

    def send(item: tuple[Any, ...]) -> bool:
        """Blocks while the pipe is full; a vanished parent breaks the pipe (or PDEATHSIG)."""
        try:
            out.send(item)
            return True
        except OSError:
            return False

    try:
        from .mysql import MySQLSelector
        from .store import MemoryPositionStore
        from .transport import ship

        # the library's own warnings (e.g. that binlog_row_metadata is not FULL, which
        # ferry reads with its schema history) are not the user's business (pipeline.logs)
        logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)
        logger.remove()
        logger.add(
            sys.stderr,
            level=log_level,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} "
            + pipeline_id
            + "/decoder {message}",
            backtrace=False,
            diagnose=False,
        )
        store = MemoryPositionStore(start, history)
        # snapshot rows are only shipped from here: the node builds their RowChanges
        selector = MySQLSelector(
            config,
            max_rows,
            max_wait_ms,
            store,
            pipeline_id,
            build_reads=False,
            holder=holder,
            alive=lambda: send(("alive",)),
        )
        encode = encoding() if encoding is not None else None
    except Exception as exc:  # the process itself could not start: a retry may do better
        cause = f"{type(exc).__name__}: {exc}"
        send(("error", ResumableError(f"the binlog decoder process could not start: {cause}")))
        return
    try:
        selector.start()
    except Exception as exc:  # the source's verdict: resumable (unreachable) or fatal (auth)
        send(("error", _picklable(exc)))
        return
    send(("started", selector.resume_point, store.history_writes))
    failed = False  # after an error, wait for the parent's rollback
    while os.getppid() == parent:
        try:
            command = commands.get(timeout=_CHILD_TICK_S) if failed else commands.get_nowait()
        except queue.Empty:
            command = None
        if command is not None:
            if command[0] == "stop":
                break
            try:
                if command[0] == "ack":
                    selector.ack(command[1])
                elif command[0] == "snapshot":
                    selector.request_snapshot(command[1], command[2])
                elif command[0] == "rollback":
                    try:
                        selector.rollback()
                    except Exception as exc:  # the handshake carries it: the parent raises it
                        failed = True
                        send(("rolled_back", command[1], _picklable(exc)))
                    else:
                        failed = False
                        send(("rolled_back", command[1], None))
            except Exception as exc:  # reported in order; the parent rolls back
                failed = True
                send(("error", _picklable(exc)))
            continue
        if failed:
            continue
        try:
            batch = selector.select()
        except Exception as exc:
            failed = True
            if not send(("error", _picklable(exc))):
                break
            continue
        # Encode ahead while the node is behind (a batch of ours still unread in the pipe):
        # then this core has time to spare. A node waiting for batches gets them as rows and
        # encodes them itself, so both cores share the encoding, whichever is the slower one.
        # Snapshot chunks (Reads) are RowChanges only once unpickled: the node encodes them.
        # Every other batch crosses in runs (selector.transport), by key when encoded.
        shipped = batch
        if type(batch.changes) is list:
            encoded = None
            if encode is not None and _unread(out) > 0:
                encoded = encode(batch)
            shipped = ship(batch, encoded)
        if not send(("batch", shipped, selector.last_entry_time())):
            break
    selector.stop()


def _picklable(exc: BaseException) -> FerryError:
    error = classify(exc)
    error.__cause__ = None  # driver exceptions may not pickle; the message carries them
    error.__context__ = None
    return error


def open_selector(
    config: MySQLSourceConfig,
    batch_max_rows: int,
    batch_max_wait_ms: int,
    store: PositionStore,
    pipeline_id: str = "",
    log_level: str = "INFO",
    encoding: EncoderFactory | None = None,
) -> Selector:
    """The selector ``source.decoder`` asks for; ``encoding``: encode-ahead for the decoder
    process (:data:`EncoderFactory`) when rows reach the sink as selected."""
    if config.decoder == "process":
        return ProcessSelector(
            config,
            batch_max_rows,
            batch_max_wait_ms,
            store,
            pipeline_id,
            log_level=log_level,
            encoding=encoding,
        )
    from .mysql import MySQLSelector

    return MySQLSelector(config, batch_max_rows, batch_max_wait_ms, store, pipeline_id)
