"""SIGTERM/SIGINT for `ferry run`: the first asks for a graceful stop, a second exits at once.

A Python signal handler runs in the main thread between two bytecodes, possibly
while that thread holds a lock — inside ``Event.wait()``, for one, which holds the
Event's condition lock around its checks. A handler that sets an Event (or logs, or
takes any lock) can then deadlock the shutdown it was asked for. So the handler only
counts (and, on the second signal, ends the process with ``os._exit``, which takes
no lock), and the stop request is made from a watcher thread: the C-level handler
writes the signal number to ``signal.set_wakeup_fd``'s pipe, which the watcher reads.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any


class StopSignals:
    """Installs the handlers; ``on_stop`` runs once per signal, in the watcher thread."""

    def __init__(
        self,
        on_stop: Callable[[], None],
        signums: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        self._on_stop = on_stop
        self._signums = tuple(signums)
        self.received = 0  # only the handler writes it, in the main thread
        self._previous: dict[signal.Signals, Any] = {}
        self._previous_fd = -1
        self._read_fd = self._write_fd = -1
        self._watcher: threading.Thread | None = None

    def install(self) -> StopSignals:
        """Call from the main thread (Python's rule for signal handlers)."""
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # set_wakeup_fd requires it
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in self._signums:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._watcher = threading.Thread(target=self._watch, name="ferry-signals", daemon=True)
        self._watcher.start()
        return self

    def uninstall(self) -> None:
        """Restore the previous handlers and end the watcher (tests; `ferry run` just exits)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # the watcher reads EOF and ends
        if self._watcher is not None:
            self._watcher.join(5)
        os.close(self._read_fd)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # No lock, no I/O, no logging here (see the module docstring).
        self.received += 1
        if self.received > 1:
            os._exit(128 + signum)

    def _watch(self) -> None:
        wanted = {int(s) for s in self._signums}
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            if not data:
                return
            if wanted.intersection(data):
                self._on_stop()
