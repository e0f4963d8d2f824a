"""The chaos soak's machinery: three supervised `ferry run` nodes of one pipeline, and
faults injected one at a time, each printed with its time.

* ``Cluster`` — the nodes. A supervisor thread restarts every node that exited, so
  every node keeps existing; an exit the fault did not ask for (a SIGKILL ends with
  -9, a SIGTERM with 0) is recorded as a failure. It also watches the permit: the
  pipeline must never pause itself, and a pause is recorded with its stored error.
* ``Chaos`` — before each fault it waits until one node is active and the others are
  standbys again (the pipeline recovered), then draws the next fault from a shuffled
  bag (every kind ``weights[kind]`` times, default once, before any kind comes again),
  and counts what survived. When the time is up it goes on with the kinds that have not
  yet reached their ``at_least`` count.

The fault functions themselves (which service to restart, which connection to kill)
belong to the test that knows its services; the node faults are here.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.ferryproc import FerryNode, wait_until
from tests.services import untrack_process

Say = Callable[[str], None]
_ZOMBIE_HOLD_S = 10.0  # at most this long a frozen node waits for its successor's commit


class Cluster:
    """Two or more `ferry run` nodes of one pipeline, restarted whenever one exits."""

    def __init__(self, config: Path, node_ids: list[str], redis_url: str, keys: str) -> None:
        self.nodes = {node_id: FerryNode(config, node_id) for node_id in node_ids}
        self._keys = keys  # "<prefix>:<pipeline>"
        self._client = redis.Redis.from_url(
            redis_url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        )
        self._expected_exit: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self.restarts = 0
        self.unexpected_exits: list[str] = []
        self.pauses: list[str] = []
        self.notes: list[str] = []  # what the supervisor did, printed by the main thread

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        self._thread.start()

    def stop(self) -> dict[str, int | None]:
        """Stop supervising, then SIGTERM every node; returns their exit codes."""
        self._stop.set()
        self._thread.join(10)
        codes = {}
        for node_id, node in self.nodes.items():
            if node.process is not None and node.process.poll() is None:
                node.signal(signal.SIGCONT)  # a stopped node cannot act on SIGTERM
            codes[node_id] = node.stop()
        self._client.close()
        return codes

    def expect_exit(self, node_id: str, code: int) -> None:
        with self._lock:
            self._expected_exit[node_id] = code

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            for node_id, node in self.nodes.items():
                process = node.process
                if process is None or process.poll() is None:
                    continue
                untrack_process(process)
                with self._lock:
                    expected = self._expected_exit.pop(node_id, None)
                if process.returncode != expected:
                    self.unexpected_exits.append(
                        f"{node_id} exited with {process.returncode} (no fault asked for it):\n"
                        + node.log(3000)
                    )
                node.start()
                self.restarts += 1
                self.notes.append(f"supervisor: {node_id} exited ({process.returncode}), restarted")
            state = self._read(lambda c: c.hgetall(f"{self._keys}:state"))
            if state and state.get("state") == "paused" and not self.pauses:
                self.pauses.append(f"{state.get('reason')}: {state.get('error')}")

    def _read(self, query: Callable[[redis.Redis], Any]) -> Any:
        try:
            return query(self._client)
        except redis.RedisError:  # Redis is being restarted by a fault
            return None

    def holder(self) -> tuple[int, str] | None:
        """(epoch, node) holding the mainstem now (read from Redis: the exact moment)."""
        value = self._read(lambda c: c.get(f"{self._keys}:mainstem"))
        if not value:
            return None
        epoch, _, node_id = value.partition(":")
        return int(epoch), node_id

    def active(self) -> str | None:
        holder = self.holder()
        return holder[1] if holder else None

    def committed_epoch(self) -> int:
        """The epoch that committed the position now in Redis (0 when none)."""
        record = self._read(lambda c: c.get(f"{self._keys}:position"))
        return int(json.loads(record).get("epoch") or 0) if record else 0

    def standby(self, node_id: str) -> bool:
        """Running, and its latest report (fresh) says standby."""
        process = self.nodes[node_id].process
        if process is None or process.poll() is not None:
            return False
        report = self._read(lambda c: c.hgetall(f"{self._keys}:status:{node_id}")) or {}
        try:
            role = json.loads(report["role"])
            age_s = time.time() - float(json.loads(report["updated_at"]))
        except (KeyError, ValueError, TypeError):
            return False
        return role == "standby" and age_s < 2.0

    def recovered(self) -> bool:
        """One node active, every other one a standby."""
        active = self.active()
        others = [n for n in self.nodes if n != active]
        return active is not None and all(self.standby(n) for n in others)

    def takeover(self, epoch: int, timeout_s: float = 30) -> tuple[str, float]:
        """Wait until the mainstem is held with a newer epoch than ``epoch`` (by any node: the
        supervisor may have restarted the old one under its name); (node, seconds)."""
        began = time.monotonic()

        def successor() -> str | None:
            holder = self.holder()
            return holder[1] if holder and holder[0] > epoch else None

        node = wait_until(successor, timeout_s, f"a holder with an epoch above {epoch}", 0.005)
        return str(node), time.monotonic() - began


class Chaos:
    """Injects one fault at a time until the time is up; ``faults`` name → fault function
    (returns what it did, for the log)."""

    def __init__(
        self,
        cluster: Cluster,
        faults: dict[str, Callable[[], str]],
        seed: int,
        say: Say,
        weights: dict[str, int] | None = None,
    ) -> None:
        self.cluster = cluster
        self.faults = faults
        self.weights = weights or {}
        self.random = random.Random(seed)
        self._say = say
        self._began = time.monotonic()
        self.survived: Counter[str] = Counter()

    def say(self, text: str) -> None:
        notes, self.cluster.notes[:] = list(self.cluster.notes), []
        for note in notes:
            self._say(f"[{time.monotonic() - self._began:6.1f}s]   {note}")
        self._say(f"[{time.monotonic() - self._began:6.1f}s] {text}")

    def check(self) -> None:
        """Fail at once, with the reason, when the pipeline paused or a node died unasked."""
        assert not self.cluster.pauses, f"the pipeline paused itself: {self.cluster.pauses[0]}"
        assert not self.cluster.unexpected_exits, self.cluster.unexpected_exits[0]

    def run(self, seconds: float, at_least: dict[str, int] | None = None) -> None:
        """Faults for ``seconds``, then only the kinds short of their ``at_least`` count
        until none is."""
        bag: list[str] = []
        deadline = time.monotonic() + seconds
        recovered = "one active node, the others standbys"
        while True:
            short = [k for k, n in sorted((at_least or {}).items()) if self.survived[k] < n]
            if time.monotonic() >= deadline and not short:
                break
            wait_until(self.cluster.recovered, 90, recovered)
            self.check()
            if time.monotonic() >= deadline:
                kind = short[0]
            else:
                if not bag:
                    bag = [k for k in sorted(self.faults) for _ in range(self.weights.get(k, 1))]
                    self.random.shuffle(bag)
                kind = bag.pop()
            self.say(f"{kind}: {self.faults[kind]()}")
            self.survived[kind] += 1
            time.sleep(self.random.uniform(1.0, 4.0))
        wait_until(self.cluster.recovered, 90, recovered)
        self.check()
        self.say(f"faults done: {sum(self.survived.values())}")


class NodeFaults:
    """The faults that hit the active node; SIGKILL takeovers are timed.

    A freeze past the TTL aims at the worst moment. ``load()`` (when given) commits a
    large transaction at the source and the freeze follows within 0.6 s, while the node
    is likely loading it (maybe between its lock check and the sink's fence). With
    ``stutter`` the node is first stopped for half the TTL (it keeps the lock) while the
    writer goes on, so it wakes with batches queued. ``aim`` (called before that stop)
    returns a wait for the moment to freeze, e.g. "the sink committed its next load"; it
    replaces the random pause: a node that just committed a load and has more queued is
    then past its lock check with the next one and short of the sink's fence, where issue
    20's late zombie load came from (``aimed`` counts the freezes that found the moment).
    Then:

    * ``sigstop_past_ttl``: the frozen node wakes only after its successor committed (so
      wrote to the sink) — a VM suspended for a while, not a blip — or after
      ``_ZOMBIE_HOLD_S``: a node frozen inside its MySQL transaction holds the checkpoint
      row, and its successor waits for it (the README's limit);
    * ``sigstop_wake_after_takeover`` (issue 20): it wakes one of ``wake_after_takeover_s``
      after its successor took over, whatever the successor did meanwhile, so its last
      load may land after the successor chose where to start, before its first write.
      The short wakes are the ones that land there: a successor writes within a second
      of its takeover (before issue 20's fix, the frozen node's decoder kept taking the
      dump back, and held it off for seconds); the long one is the issue's 4 s.
    """

    def __init__(
        self,
        cluster: Cluster,
        lock_ttl_s: float,
        rng: random.Random,
        load: Callable[[], None] | None = None,
        wake_after_takeover_s: tuple[float, ...] = (0.2, 0.5, 4.0),
        stutter: bool = False,
        aim: Callable[[], Callable[[], bool]] | None = None,
    ) -> None:
        self.cluster = cluster
        self.ttl_s = lock_ttl_s
        self.random = rng
        self.load = load
        self.stutter = stutter
        self.aim = aim
        self.aimed = 0  # freezes that came at the moment ``aim`` waited for
        self.woke_first = 0  # zombies that woke before their successor committed
        self.wake_after_takeover_s = wake_after_takeover_s
        self.kill_takeovers: list[float] = []
        self.takeovers: list[float] = []

    def _active(self) -> tuple[str, int, FerryNode]:
        epoch, node_id = wait_until(self.cluster.holder, 30, "an active node")
        return node_id, epoch, self.cluster.nodes[node_id]

    def sigkill_active(self) -> str:
        node_id, epoch, node = self._active()
        self.cluster.expect_exit(node_id, -signal.SIGKILL)
        node.signal(signal.SIGKILL)
        successor, took = self.cluster.takeover(epoch)
        self.kill_takeovers.append(took)
        self.takeovers.append(took)
        return f"SIGKILL {node_id}; {successor} active {took:.2f}s later"

    def sigterm_active(self) -> str:
        node_id, epoch, node = self._active()
        self.cluster.expect_exit(node_id, 0)
        node.signal(signal.SIGTERM)
        successor, took = self.cluster.takeover(epoch)
        self.takeovers.append(took)
        return f"SIGTERM {node_id}; {successor} active {took:.2f}s later (lock released)"

    def _freeze_past_ttl(self, meanwhile: Callable[[int], str]) -> str:
        """SIGSTOP the active node until it lost the mainstem and ``meanwhile(its epoch)``
        returned (what happened meanwhile, for the log), then SIGCONT."""
        node_id, epoch, node = self._active()
        if self.load is not None:
            self.load()
        moment = None if self.aim is None else self.aim()
        if self.stutter:
            node.signal(signal.SIGSTOP)
            try:
                time.sleep(self.ttl_s * 0.5)
            finally:
                node.signal(signal.SIGCONT)
        if moment is not None:
            self.aimed += moment()
        else:
            time.sleep(self.random.uniform(0.0, 0.6))
        began = time.monotonic()
        node.signal(signal.SIGSTOP)
        try:
            successor, took = self.cluster.takeover(epoch)
            self.takeovers.append(took)
            then = meanwhile(epoch)
        finally:
            node.signal(signal.SIGCONT)
        stopped = time.monotonic() - began
        return (
            f"{'a short stop, then ' if self.stutter else ''}SIGSTOP {node_id} for"
            f" {stopped:.1f}s (TTL {self.ttl_s:.0f}s; {successor} active {took:.2f}s after the"
            f" stop, then {then}), then SIGCONT"
        )

    def sigstop_past_ttl(self) -> str:
        def until_committed(epoch: int) -> str:
            deadline = time.monotonic() + _ZOMBIE_HOLD_S
            while self.cluster.committed_epoch() <= epoch and time.monotonic() < deadline:
                time.sleep(0.05)
            committed = self.cluster.committed_epoch() > epoch
            time.sleep(self.random.uniform(0.0, 1.0))
            return "committed" if committed else "waited for the frozen node's transaction"

        return self._freeze_past_ttl(until_committed)

    def sigstop_wake_after_takeover(self) -> str:
        def for_a_while(epoch: int) -> str:
            wake_s = self.random.choice(self.wake_after_takeover_s)
            time.sleep(wake_s)
            committed = self.cluster.committed_epoch() > epoch
            self.woke_first += not committed
            return (
                f"{wake_s:g}s in which it {'committed' if committed else 'had not committed yet'}"
            )

        return self._freeze_past_ttl(for_a_while)

    def sigstop_short(self) -> str:
        node_id, _, node = self._active()
        stop_s = self.ttl_s * 0.4
        node.signal(signal.SIGSTOP)
        time.sleep(stop_s)
        node.signal(signal.SIGCONT)
        return f"SIGSTOP {node_id} for {stop_s:.1f}s (under the TTL), then SIGCONT"

    def all(self) -> dict[str, Callable[[], str]]:
        return {
            "sigkill_active": self.sigkill_active,
            "sigstop_past_ttl": self.sigstop_past_ttl,
            "sigterm_active": self.sigterm_active,
            "sigstop_short": self.sigstop_short,
        }
