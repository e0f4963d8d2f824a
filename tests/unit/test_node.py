"""The node's scheduling, proved on the memory twins (selector, arbiter, faulty sink).

Delivery property checked after every run (``assert_ordered_at_least_once``):
the sink's sequence of changes is a concatenation of runs of the source
sequence, each run starting at 0 or at a position that was *committed* at some
time (a replay from the committed position), never skipping ahead, and together
reaching the end. That is: nothing lost, order kept, duplicates only from
replays after a rollback.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from loguru import logger

from arbitrate.memory import MemoryArbiter, MemoryArbiterHub
from pipeline.config import FerryConfig
from pipeline.errors import FatalError, ResumableError
from pipeline.model import Position, RowChange
from pipeline.node import Node
from pipeline.recovery import StateFile
from pipeline.stats import Stats
from pipeline.task import SelectTask
from selector.memory import MemorySelector
from sinks.base import SinkCheckpoint
from sinks.memory import FaultySink, MemorySink
from tests.delivery import assert_ordered_at_least_once
from tests.frozen import FrozenMidLoad, running

PIPELINE = "unit"


def make_config(parallelism: int = 3, max_rows: int = 5, **pipeline: Any) -> FerryConfig:
    settings = {
        "id": PIPELINE,
        "parallelism": parallelism,
        "batch": {"max_rows": max_rows, "max_wait_ms": 5},
        "retry_backoff_ms": 1,
        "retry_backoff_max_ms": 5,
        "max_retries": 1000,
        "status_interval_ms": 100,
        "shutdown_grace_ms": 2000,
    }
    settings.update(pipeline)
    return FerryConfig.model_validate(
        {
            "pipeline": settings,
            "source": {"user": "u", "server_id": 1},
            "sink": {"type": "stdout"},
        }
    )


def workload(
    transactions: int, rows: tuple[int, int] = (1, 4), seed: int = 0
) -> list[list[RowChange]]:
    """Transactions of inserts/updates/deletes over a few keys; ``seq`` numbers every change."""
    rng = random.Random(seed)
    out, seq, live = [], 0, set()
    for _ in range(transactions):
        txn = []
        for _ in range(rng.randint(*rows)):
            key = rng.randrange(8)
            if key in live and rng.random() < 0.3:
                op, before, after = "delete", {"id": key, "seq": -1}, None
                live.discard(key)
            elif key in live:
                op, before, after = "update", {"id": key, "seq": -1}, {"id": key, "seq": seq}
            else:
                op, before, after = "insert", None, {"id": key, "seq": seq}
                live.add(key)
            if before is not None:
                before["seq"] = seq  # identifies the change for deletes too
            txn.append(
                RowChange("db", "t", op, before, after, ("id",), time.time(), Position("x", 0))  # type: ignore[arg-type]
            )
            seq += 1
        out.append(txn)
    return out


def seq_of(change: Any) -> int:
    return int(change.row["seq"])


class Recorder:
    """Wraps an arbiter's fenced commit to check 'never past what the sink holds'."""

    def __init__(self, arbiter: MemoryArbiter, sink: MemorySink, txns: list[list[RowChange]]):
        self.violations: list[str] = []
        self.committed_counts = {0}
        # number of source changes before (txn i, row offset r)
        starts = [0]
        for txn in txns:
            starts.append(starts[-1] + len(txn))
        original = arbiter.commit_position

        def commit(position: Position, epoch: int) -> None:
            before = starts[position.pos] + position.row_offset
            loaded = {seq_of(c) for c in sink.changes}
            missing = [s for s in range(before) if s not in loaded]
            if missing:
                self.violations.append(f"{position} committed before seq {missing[:5]} loaded")
            original(position, epoch)
            self.committed_counts.add(before)

        arbiter.commit_position = commit  # type: ignore[method-assign]


def run_node(node: Node, done: Any, timeout_s: float = 30) -> None:
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    node.request_stop()
    thread.join(10)
    assert not thread.is_alive(), "node did not stop"
    assert done(), "the pipeline did not finish in time"


def committed_at_end(arbiter: MemoryArbiter, txns: list[Any]) -> Any:
    def done() -> bool:
        position = arbiter.load_position()
        return position is not None and position.pos >= len(txns) and not position.row_offset

    return done


def build(
    txns: list[list[RowChange]],
    sink: MemorySink,
    *,
    parallelism: int = 3,
    max_rows: int = 5,
    hub: MemoryArbiterHub | None = None,
    node_id: str = "n1",
    selector_hook: Any = None,
    max_wait_ms: int = 5,
    **pipeline: Any,
) -> tuple[Node, MemoryArbiter, list[MemorySelector]]:
    hub = hub or MemoryArbiterHub()
    arbiter = hub.arbiter(PIPELINE, node_id)
    config = make_config(parallelism, max_rows, **pipeline)
    selectors: list[MemorySelector] = []

    def factory(store: Any) -> MemorySelector:
        selector = MemorySelector(
            txns, max_rows, max_wait_ms, store, PIPELINE, on_call=selector_hook
        )
        selectors.append(selector)
        return selector

    node = Node(config, node_id, arbiter=arbiter, sink=sink, selector_factory=factory)
    return node, arbiter, selectors


# --------------------------------------------------------------------------- properties


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    transactions=st.integers(20, 150),
    parallelism=st.integers(1, 5),
    max_rows=st.integers(1, 9),
    fail_loads=st.sets(st.integers(1, 60), max_size=6),
    probability=st.sampled_from([0.0, 0.05, 0.2]),
    partial=st.booleans(),
    select_faults=st.sets(st.integers(2, 80), max_size=3),
    jitter_ms=st.sampled_from([0.0, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_fault_schedules_never_lose_reorder_or_ack_past_the_sink(
    transactions: int,
    parallelism: int,
    max_rows: int,
    fail_loads: set[int],
    probability: float,
    partial: bool,
    select_faults: set[int],
    jitter_ms: float,
    seed: int,
) -> None:
    txns = workload(transactions, seed=seed)
    total = sum(len(t) for t in txns)
    rng = random.Random(seed)
    sink = FaultySink(
        fail_loads=fail_loads,
        failure_probability=probability,
        seed=seed,
        partial=partial,
        slow_ms=(lambda: rng.random() * jitter_ms) if jitter_ms else 0.0,
    )

    def hook(op: str, n: int) -> None:
        if op == "select" and n in select_faults:
            raise ResumableError(f"injected select failure {n}")

    node, arbiter, _ = build(
        txns, sink, parallelism=parallelism, max_rows=max_rows, selector_hook=hook
    )
    recorder = Recorder(arbiter, sink, txns)
    run_node(node, committed_at_end(arbiter, txns))

    assert recorder.violations == []
    assert_ordered_at_least_once(
        [seq_of(c) for c in sink.changes], total, recorder.committed_counts
    )
    assert node.task is not None and node.task.max_in_flight <= parallelism
    assert sink.max_concurrent_loads == 1
    if not (fail_loads or probability or select_faults):
        assert [seq_of(c) for c in sink.changes] == list(range(total)), "no fault, no duplicate"


def test_out_of_order_stage_completions_still_load_in_order() -> None:
    """A transform that sleeps randomly makes batches finish extract/transform out of order."""
    txns = workload(120, seed=7)
    total = sum(len(t) for t in txns)
    sink = MemorySink()
    node, arbiter, _ = build(txns, sink, parallelism=5, max_rows=3)
    rng = random.Random(1)

    def jitter(batch: Any) -> Any:
        time.sleep(rng.random() * 0.004)
        return batch

    node._stages = jitter  # type: ignore[assignment]
    run_node(node, committed_at_end(arbiter, txns))
    assert [seq_of(c) for c in sink.changes] == list(range(total))
    assert [load[0] for load in sink.loads] == sorted(load[0] for load in sink.loads)


def test_an_ack_is_not_held_back_by_a_select_waiting_for_rows() -> None:
    """select() may wait max_wait_ms for rows; the ack of the batch before must not wait too
    (it did while ack shared the selector lock: on a trickle of writes, one batch per wait)."""
    txns = workload(1, seed=12)
    sink = MemorySink()
    node, arbiter, _ = build(txns, sink, max_rows=1000, max_wait_ms=3000)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        began = time.monotonic()
        wait_for(committed_at_end(arbiter, txns), 10)
        took = time.monotonic() - began
    finally:
        node.request_stop()
        thread.join(10)
    # the first select hands the transaction out at once (input exhausted); its ack must
    # follow at once, while the next select is already waiting its 3 s for more rows
    assert took < 1.5, f"committed after {took:.1f}s"


def test_split_transactions_commit_row_offsets() -> None:
    txns = workload(10, rows=(7, 13), seed=3)
    sink = FaultySink(fail_loads={2, 5})
    node, arbiter, _ = build(txns, sink, max_rows=4)
    recorder = Recorder(arbiter, sink, txns)
    run_node(node, committed_at_end(arbiter, txns))
    assert recorder.violations == []
    assert any(count not in (0,) for count in recorder.committed_counts)
    assert_ordered_at_least_once(
        [seq_of(c) for c in sink.changes], sum(map(len, txns)), recorder.committed_counts
    )


# --------------------------------------------------------------------------- scenarios


def wait_for(predicate: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_fatal_error_pauses_with_the_error_and_resume_continues() -> None:
    txns = workload(40, seed=1)
    sink = FaultySink(fail_loads={3}, fatal=True)
    node, arbiter, _ = build(txns, sink)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: arbiter.get_state().paused)
        state = arbiter.get_state()
        assert "injected failure on load 3" in state.error
        committed = arbiter.load_position()
        time.sleep(0.2)
        assert arbiter.load_position() == committed, "nothing is acked while paused"
        arbiter.resume()
        wait_for(committed_at_end(arbiter, txns))
    finally:
        node.request_stop()
        thread.join(10)
    assert_ordered_at_least_once([seq_of(c) for c in sink.changes], sum(map(len, txns)))


def test_retries_exhausted_pause_the_pipeline() -> None:
    txns = workload(10, seed=2)
    sink = FaultySink(failure_probability=1.0)
    node, arbiter, _ = build(txns, sink, max_retries=3)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: arbiter.get_state().paused)
        assert sink.failures == 4  # first try + 3 retries
        assert arbiter.load_position() is None
        assert "retries" not in arbiter.get_state().error  # the stored error is the cause
        assert "injected failure" in arbiter.get_state().error
    finally:
        node.request_stop()
        thread.join(10)


def changes_by_epoch(sink: MemorySink) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    index = 0
    for _batch_id, epoch, count in sink.loads:
        out.setdefault(epoch, []).extend(seq_of(c) for c in sink.changes[index : index + count])
        index += count
    return out


def test_lock_loss_returns_to_standby_and_a_standby_finishes_the_work() -> None:
    txns = workload(300, seed=4)
    total = sum(len(t) for t in txns)
    hub = MemoryArbiterHub()
    sink = FaultySink(slow_ms=1.0)
    first, first_arbiter, _ = build(txns, sink, hub=hub, node_id="a", max_rows=3)
    second, second_arbiter, _ = build(txns, sink, hub=hub, node_id="b", max_rows=3)
    recorder = Recorder(second_arbiter, sink, txns)
    threads = [threading.Thread(target=n.run, daemon=True) for n in (first, second)]
    threads[0].start()
    wait_for(lambda: first.role == "active" and len(sink.changes) > 20)
    threads[1].start()
    first_arbiter.freeze_renewer()  # a stop-the-world pause of node a
    hub.advance(first_arbiter.config.lock_ttl_ms + 1)
    wait_for(lambda: second.role == "active")
    first_arbiter.unfreeze_renewer()  # node a wakes up, still believing it is active
    wait_for(lambda: first.role == "standby")  # ... notices, and goes back to standby
    wait_for(committed_at_end(second_arbiter, txns), 30)
    for node in (first, second):
        node.request_stop()
    for thread in threads:
        thread.join(10)
    by_epoch = changes_by_epoch(sink)
    assert set(by_epoch) == {1, 2}
    # epoch 2 replays from a committed point and reaches the end, in order, no gap
    resumed = by_epoch[2]
    assert resumed == list(range(resumed[0], total))
    assert resumed[0] in recorder.committed_counts or resumed[0] <= max(by_epoch[1]) + 1
    assert set(by_epoch[1]) | set(resumed) == set(range(total))
    assert recorder.violations == []


def take_over_from_frozen(
    threads: list[threading.Thread], sink: Any, hub: MemoryArbiterHub, a_arbiter: Any, b: Node
) -> None:
    """a runs until its load freezes; its renewal stops and its lock expires; b takes over."""
    threads[0].start()
    wait_for(sink.frozen.is_set)
    threads[1].start()
    a_arbiter.freeze_renewer()
    hub.advance(a_arbiter.config.lock_ttl_ms + 1)
    wait_for(lambda: b.role == "active")


class FreezingSink(FrozenMidLoad, FaultySink):
    """The shared, fenced target of two nodes, with epoch 1 frozen mid-load."""


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    transactions=st.integers(30, 120),
    parallelism=st.integers(1, 4),
    max_rows=st.integers(1, 6),
    freeze_at=st.integers(1, 8),
    successor_wrote=st.booleans(),
    load_thaws_first=st.booleans(),
    probability=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 2**16),
)
@example(  # the schedule of issue 13: the zombie's refused write used to pause the pipeline
    transactions=60,
    parallelism=3,
    max_rows=5,
    freeze_at=3,
    successor_wrote=True,
    load_thaws_first=True,
    probability=0.0,
    seed=0,
)
def test_a_holder_frozen_mid_load_never_stops_its_successor(
    transactions: int,
    parallelism: int,
    max_rows: int,
    freeze_at: int,
    successor_wrote: bool,
    load_thaws_first: bool,
    probability: float,
    seed: int,
) -> None:
    """Node a freezes between its lock check and the sink's fence; b takes over; a wakes.

    Whatever a does on waking — its write refused by the sink's fence (b wrote first) or
    let through (b has not written yet: harmless, b rewrites from the committed position),
    its ack refused by the arbiter — it steps down to standby; the pipeline is never paused,
    b delivers everything, and no epoch-1 write lands after an epoch-2 write.
    """
    txns = workload(transactions, seed=seed)
    total = sum(len(t) for t in txns)
    hub = MemoryArbiterHub()
    sink = FreezingSink(
        freeze_at=freeze_at, checkpoint=True, failure_probability=probability, seed=seed
    )
    shape = {"parallelism": parallelism, "max_rows": max_rows}
    a, a_arbiter, _ = build(txns, sink, hub=hub, node_id="a", **shape)
    b, b_arbiter, _ = build(txns, sink, hub=hub, node_id="b", **shape)
    recorder = Recorder(b_arbiter, sink, txns)
    with running(a, b) as threads:
        take_over_from_frozen(threads, sink, hub, a_arbiter, b)
        if successor_wrote:
            wait_for(lambda: any(epoch == 2 for _, epoch, _ in sink.loads))
        if load_thaws_first:  # the load goes on while a still believes it holds the lock
            sink.thaw.set()
            time.sleep(0.05)
            a_arbiter.unfreeze_renewer()
        else:
            a_arbiter.unfreeze_renewer()
            sink.thaw.set()
        wait_for(committed_at_end(b_arbiter, txns), 30)
        wait_for(lambda: a.role == "standby")
        assert not b_arbiter.get_state().paused, b_arbiter.get_state().error
        assert b.role == "active"
    epochs = [epoch for _, epoch, _ in sink.loads]
    assert epochs == sorted(epochs), "an epoch-1 write landed after the successor's"
    assert recorder.violations == []
    delivered = [seq_of(c) for c in sink.changes]
    assert_ordered_at_least_once(delivered, total)


def test_graceful_stop_acks_in_flight_releases_and_a_restart_resumes_exactly() -> None:
    txns = workload(200, seed=5)
    total = sum(len(t) for t in txns)
    hub = MemoryArbiterHub()
    sink = FaultySink(slow_ms=2.0)
    node, arbiter, _ = build(txns, sink, hub=hub)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    wait_for(lambda: len(sink.changes) > 50)
    node.request_stop()
    thread.join(10)
    assert not thread.is_alive()
    assert hub.arbiter(PIPELINE, "probe").status().active_node is None, "lock released"
    position = arbiter.load_position()
    assert position is not None
    delivered = [seq_of(c) for c in sink.changes]
    assert delivered == list(range(len(delivered))), "no duplicate on a graceful stop"

    restarted, arbiter2, _ = build(txns, sink, hub=hub, node_id="n2")
    run_node(restarted, committed_at_end(arbiter2, txns))
    assert [seq_of(c) for c in sink.changes] == list(range(total)), "resumed exactly"


def test_redis_lost_its_data_the_node_refuses_to_guess(tmp_path: Path) -> None:
    txns = workload(30, seed=6)
    hub = MemoryArbiterHub()
    sink = MemorySink()
    node, arbiter, _ = build(txns, sink, hub=hub)
    node._state = StateFile(tmp_path, PIPELINE)
    run_node(node, committed_at_end(arbiter, txns))
    assert node._state.read() is not None

    hub.wipe()  # Redis restarted without persistence
    again, arbiter2, selectors = build(txns, sink, hub=hub, node_id="n2")
    again._state = StateFile(tmp_path, PIPELINE)
    thread = threading.Thread(target=again.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: arbiter2.get_state().paused)
        assert "missing from Redis" in arbiter2.get_state().error
        assert selectors == [], "no selector was started from a guessed position"
        assert arbiter2.epoch is not None and arbiter2.epoch > 1, "epoch lifted above the old"
    finally:
        again.request_stop()
        thread.join(10)


def test_a_newer_sink_checkpoint_wins_and_lifts_the_epoch() -> None:
    txns = workload(20, seed=8)
    starts = [0]
    for txn in txns:
        starts.append(starts[-1] + len(txn))
    sink = MemorySink(checkpoint=SinkCheckpoint(Position("memory", 10), epoch=7))
    node, arbiter, _ = build(txns, sink)
    run_node(node, committed_at_end(arbiter, txns))
    assert [seq_of(c) for c in sink.changes] == list(range(starts[10], starts[20]))
    assert {epoch for _, epoch, _ in sink.loads} == {8}


def test_a_fatal_select_error_pauses_before_anything_is_lost() -> None:
    txns = workload(20, seed=9)
    fired: list[int] = []

    def hook(op: str, n: int) -> None:
        if op == "select" and n == 3 and not fired:  # once: resume starts a new selector
            fired.append(n)
            raise FatalError("binlog purged")

    sink = MemorySink()
    node, arbiter, _ = build(txns, sink, selector_hook=hook)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: arbiter.get_state().paused)
        assert "binlog purged" in arbiter.get_state().error
        arbiter.resume()
        wait_for(committed_at_end(arbiter, txns))
    finally:
        node.request_stop()
        thread.join(10)
    assert fired == [3]
    assert_ordered_at_least_once([seq_of(c) for c in sink.changes], sum(map(len, txns)))


@pytest.mark.parametrize("parallelism", [1, 4])
def test_status_is_published_with_counters(parallelism: int) -> None:
    txns = workload(50, seed=10)
    sink = MemorySink()
    node, arbiter, _ = build(txns, sink, parallelism=parallelism)
    run_node(node, committed_at_end(arbiter, txns))
    report = node.report()
    assert report["rows_total"] == sum(map(len, txns))
    assert report["rollbacks_total"] == 0
    status = arbiter.status()
    assert any(n["node_id"] == "n1" for n in status.nodes)


class RecordingEvent(threading.Event):
    """The node's stop event, recording how long each wait on it was asked to last."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def test_a_failed_start_waits_its_backoff_once() -> None:
    txns = workload(5, seed=11)
    starts: list[int] = []

    def hook(op: str, n: int) -> None:
        if op == "start":
            starts.append(n)
            if len(starts) <= 2:
                raise ResumableError("source unreachable")

    node, arbiter, _ = build(
        txns, MemorySink(), selector_hook=hook, retry_backoff_ms=7, retry_backoff_max_ms=7
    )
    stop = node._stop = RecordingEvent()
    run_node(node, committed_at_end(arbiter, txns))
    assert len(starts) == 3
    assert stop.waits.count(0.007) == 2, f"one backoff per failed start: {stop.waits}"


class RefusingArbiter(MemoryArbiter):
    """A Redis that refuses this node's credentials."""

    def __init__(self, hub: MemoryArbiterHub) -> None:
        super().__init__(hub, PIPELINE, "n1")
        self.attempts = 0

    def await_active(self, stop: Any = None) -> int | None:
        self.attempts += 1
        raise FatalError("AuthenticationError: invalid username-password pair")


def test_a_fatal_arbiter_error_while_standby_exits_1_after_a_bounded_retry() -> None:
    arbiter = RefusingArbiter(MemoryArbiterHub())
    said: list[str] = []
    handler = logger.add(lambda message: said.append(str(message)), level="INFO")
    node = Node(
        make_config(),
        "n1",
        arbiter=arbiter,
        sink=MemorySink(),
        selector_factory=lambda store: MemorySelector([], store=store),
    )
    began = time.monotonic()
    try:
        assert node.run() == 1
    finally:
        logger.remove(handler)
    assert 1 < arbiter.attempts <= 5
    assert time.monotonic() - began < 10
    assert node.role == "stopped"
    why = [line for line in said if "invalid username-password pair" in line]
    assert len(why) == 1 and "cannot work with the arbiter" in why[0], said


@pytest.mark.parametrize("ending", ["halted", "lost"])
def test_a_failure_racing_a_halt_or_a_loss_is_dropped_not_a_bad_transition(ending: str) -> None:
    """The task ends between `_fail`'s liveness check and its rollback (a stop or a lost
    lock landing from another thread): the failure is dropped, the task stays ended."""
    hub = MemoryArbiterHub()
    arbiter = hub.arbiter(PIPELINE, "n1")
    config = make_config()
    paused: list[Any] = []
    task = SelectTask(
        selector=MemorySelector([], 5, 5, None, PIPELINE),
        sink=MemorySink(),
        stages=lambda batch: batch,
        arbiter=arbiter,
        epoch=1,
        settings=config.pipeline,
        stats=Stats(),
        on_fatal=lambda error: paused.append(error) or True,
    )
    task._alive = lambda: True  # type: ignore[method-assign]  # it was, a moment ago
    task._state.to(ending)  # type: ignore[arg-type]
    task._fail(FatalError("a failure that arrived late"))
    assert task.phase == ending and paused == []


class FatalAfterThaw(MemorySink):
    """Epoch 1's loads fail with a FatalError once ``thaw`` is set (a target error that
    would pause the pipeline if the node that met it still held the lock)."""

    thaw: threading.Event
    refused = 0

    def load(self, batch: Any, epoch: int) -> None:
        if epoch == 1 and self.thaw.is_set():
            self.refused += 1
            raise FatalError("the target refused the write (disk full)")
        super().load(batch, epoch)


class FatalOnceThawed(FrozenMidLoad, FatalAfterThaw):
    """Epoch 1 freezes mid-load; the frozen load, once thawed, fails fatally."""


def test_a_fatal_error_met_after_the_lock_was_lost_never_pauses_the_successor() -> None:
    txns = workload(60, seed=5)
    hub = MemoryArbiterHub()
    sink = FatalOnceThawed(freeze_at=2, checkpoint=True)
    a, a_arbiter, _ = build(txns, sink, hub=hub, node_id="a")
    b, b_arbiter, _ = build(txns, sink, hub=hub, node_id="b")
    with running(a, b) as threads:
        take_over_from_frozen(threads, sink, hub, a_arbiter, b)
        sink.thaw.set()  # a's load goes on, and fails fatally, while a still believes
        time.sleep(0.05)  # it holds the lock (its renewer has not run yet)
        a_arbiter.unfreeze_renewer()
        wait_for(committed_at_end(b_arbiter, txns), 30)
        wait_for(lambda: a.role == "standby")
        state = b_arbiter.get_state()
        assert not state.paused, state.error
        assert b.role == "active"
    assert sink.refused == 1  # the frozen load; a tried nothing more
    assert_ordered_at_least_once([seq_of(c) for c in sink.changes], sum(map(len, txns)))
