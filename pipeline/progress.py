"""Live snapshot progress for `ferry run`: a bar on a terminal, a line every 10 s in a log.

Reads the node's own report (``Node.report()["snapshot"]``, the acked progress)
from a daemon thread; it never touches the pipeline.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

_TICK_S = 0.5
_LOG_EVERY_S = 10.0


class SnapshotProgressDisplay:
    """Shows a running snapshot's progress while ``ferry run`` runs."""

    def __init__(self, report: Callable[[], dict[str, Any]], tty: bool | None = None) -> None:
        self._report = report
        self._tty = sys.stderr.isatty() if tty is None else tty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        bar: Any = None
        last_log = 0.0
        while not self._stop.wait(_TICK_S):
            snapshot = self._report().get("snapshot")
            if not snapshot:
                continue
            running = snapshot["state"] == "running"
            if self._tty:
                if bar is None and running:
                    from tqdm import tqdm

                    bar = tqdm(total=snapshot["estimate"], unit="rows", unit_scale=True)
                if bar is not None:
                    bar.total = max(snapshot["estimate"], snapshot["rows"])
                    bar.n = snapshot["rows"]
                    bar.set_description(f"snapshot {snapshot['table'] or ''}".strip())
                    bar.refresh()
                    if not running:
                        bar.close()
                        bar = None
            elif running and time.monotonic() - last_log >= _LOG_EVERY_S:
                last_log = time.monotonic()
                eta = snapshot.get("eta_s")
                logger.info(
                    "snapshot {}: {} at {:,} of ~{:,} rows, {:,.0f} rows/s{}",
                    snapshot["request"],
                    snapshot["table"],
                    snapshot["rows"],
                    snapshot["estimate"],
                    snapshot["rows_per_s"],
                    "" if eta is None else f", ETA {eta:.0f} s",
                )
        if bar is not None:
            bar.close()
