"""A node frozen mid-load, for the fencing tests on the twins and on real services.

``FrozenMidLoad`` is a sink mixin: the ``freeze_at``-th load of epoch 1 stops after
the loader's lock check and before the sink's own load (and so before its fence),
until ``thaw`` is set — a GC pause, SIGSTOP or suspended VM at the worst moment.
``running`` runs in-process nodes in threads and always stops them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.model import Batch
from pipeline.node import Node


class FrozenMidLoad:
    """Mix in before a Sink class: ``class S(FrozenMidLoad, MySQLSink)``."""

    def __init__(self, *args: Any, freeze_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_at = freeze_at
        self.first_epoch_loads = 0
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    def load(self, batch: Batch, epoch: int) -> None:
        if epoch == 1:
            self.first_epoch_loads += 1
            if self.first_epoch_loads == self.freeze_at:
                self.frozen.set()
                self.thaw.wait(120)  # a failed test never thaws: the thread ends anyway
        super().load(batch, epoch)  # type: ignore[misc]


@contextlib.contextmanager
def running(*nodes: Node) -> Iterator[list[threading.Thread]]:
    """The nodes' ``run`` threads (not started: start each when the test wants it)."""
    threads = [threading.Thread(target=node.run, daemon=True) for node in nodes]
    try:
        yield threads
    finally:
        for node in nodes:
            node.request_stop()
        for thread in threads:
            if thread.ident is not None:
                thread.join(30)
