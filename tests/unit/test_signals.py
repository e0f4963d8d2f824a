"""Signals of `ferry run`: the handler only counts; the stop request runs in another thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from pipeline.signals import StopSignals

ROOT = Path(__file__).parents[2]


def test_a_signal_while_the_main_thread_holds_the_stop_lock_does_not_deadlock() -> None:
    """The old handler called node.request_stop() -> Event.set() in the main thread, which
    deadlocks when the signal lands while that thread holds the Event's lock (Event.wait)."""
    lock = threading.Lock()  # stands for the lock inside Event.set / Event.wait
    calls: list[tuple[str, bool]] = []
    done = threading.Event()

    def request_stop() -> None:
        acquired = lock.acquire(timeout=5)
        calls.append((threading.current_thread().name, acquired))
        if acquired:
            lock.release()
        done.set()

    signals = StopSignals(request_stop).install()
    try:
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler has run by now, with the lock held
            assert calls == [], "the stop request ran in the signal handler"
        assert done.wait(5)
    finally:
        signals.uninstall()
    assert calls == [("ferry-signals", True)]
    assert signals.received == 1


def test_a_second_signal_exits_at_once() -> None:
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from pipeline.signals import StopSignals
        asked = threading.Event()
        StopSignals(asked.set).install()
        print("ready", flush=True)
        asked.wait(30)
        print("stopping gracefully", flush=True)
        time.sleep(30)  # a slow graceful stop
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.stdout.readline() == "stopping gracefully\n"
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 128 + signal.SIGTERM
        assert time.monotonic() - began < 2
    finally:
        process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()
