"""Arbiter scenarios, run here on the memory twin and in
``tests/integration/test_arbitrate_redis.py`` on a real Redis.

A scenario is a plain function of a *world*: something that makes arbiters of
one pipeline and can let time pass, stall a node, or take "Redis" away. The
memory world moves the hub clock; the Redis world sleeps and kills redis-server.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from arbitrate.base import Arbiter
from arbitrate.config import ArbiterConfig
from arbitrate.memory import MemoryArbiter, MemoryArbiterHub
from pipeline.errors import FatalError, FencedError, ResumableError
from pipeline.model import Column, Position, SchemaRecord, SchemaState, TableSchema

P1 = Position("binlog.000001", 4)
P2 = Position("binlog.000001", 1200, gtid_set="0-1-7", row_offset=3, ts=1.5)
P3 = Position("binlog.000002", 4)


class World(Protocol):
    name: str
    ttl_ms: int

    def arbiter(self, node_id: str, **config: Any) -> Arbiter: ...

    def elapse(self, ms: float) -> None:
        """Let time pass for locks and status (the memory hub clock, or real sleep)."""

    def freeze(self, arbiter: Arbiter) -> None:
        """Stall a node: it stops renewing and does not notice it lost the lock."""

    def thaw(self, arbiter: Arbiter) -> None: ...

    def redis_down(self) -> None: ...

    def redis_up(self) -> None:
        """Redis is back, empty (no persistence)."""

    def close(self) -> None: ...


def eventually(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def background(fn: Callable[[], Any]) -> tuple[threading.Thread, queue.Queue[tuple[Any, float]]]:
    """Run ``fn`` in a thread; its result arrives with the monotonic time it returned."""
    results: queue.Queue[tuple[Any, float]] = queue.Queue()
    thread = threading.Thread(target=lambda: results.put((fn(), time.monotonic())), daemon=True)
    thread.start()
    return thread, results


def timed_stop(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


# -- scenarios -----------------------------------------------------------------------------


def scenario_race_one_winner_epochs_increase(world: World) -> None:
    arbiters = [world.arbiter(f"node{i}") for i in range(4)]
    stop = threading.Event()
    barrier = threading.Barrier(len(arbiters))
    wins: queue.Queue[tuple[Arbiter, int]] = queue.Queue()

    def contend(arbiter: Arbiter) -> None:
        barrier.wait()
        epoch = arbiter.await_active(stop.is_set)
        if epoch is not None:
            wins.put((arbiter, epoch))

    threads = [threading.Thread(target=contend, args=(a,), daemon=True) for a in arbiters]
    for thread in threads:
        thread.start()
    epochs = []
    for _ in arbiters:
        winner, epoch = wins.get(timeout=10)
        time.sleep(0.2)  # room for a second (wrong) winner to show up
        assert wins.empty(), "two nodes won the mainstem at once"
        assert [a.node_id for a in arbiters if a.check()] == [winner.node_id]
        assert winner.epoch == epoch
        status = winner.status()
        assert (status.active_node, status.epoch) == (winner.node_id, epoch)
        epochs.append(epoch)
        winner.release()
        assert not winner.check() and winner.epoch is None
    stop.set()
    for thread in threads:
        thread.join(5)
    assert epochs == sorted(set(epochs)), f"epochs must strictly increase: {epochs}"


def scenario_stalled_holder_is_fenced(world: World) -> None:
    old, new = world.arbiter("old"), world.arbiter("new")
    lost = threading.Event()
    old.on_lost(lost.set)
    old_epoch = old.await_active()
    assert old_epoch is not None
    old.commit_position(P1, old_epoch)
    # A standby does not get in while the holder renews.
    world.elapse(world.ttl_ms * 2)
    assert new.await_active(stop=timed_stop(0.3)) is None
    assert old.check()

    world.freeze(old)
    world.elapse(world.ttl_ms + 100)
    new_epoch = new.await_active(stop=timed_stop(5))
    assert new_epoch is not None and new_epoch > old_epoch
    # The stalled node still believes it is active, but cannot commit.
    assert old.check() and old.epoch == old_epoch and not lost.is_set()
    with pytest.raises(FencedError):
        old.commit_position(P2, old_epoch)
    new.commit_position(P3, new_epoch)
    assert new.load_position() == P3

    world.thaw(old)
    assert eventually(lost.is_set, 2), "a resumed node must find out it lost the lock"
    assert not old.check() and old.epoch is None
    assert new.check()
    with pytest.raises(FencedError):
        old.commit_position(P2, old_epoch)


def scenario_release_wakes_standby(world: World) -> None:
    # A long TTL and poll bound: only the wake-up can make the hand-over fast.
    config = {"lock_ttl_ms": 10000, "poll_ms": 3000}
    holder, standby = world.arbiter("holder", **config), world.arbiter("standby", **config)
    first = holder.await_active()
    assert first is not None
    _thread, results = background(lambda: standby.await_active(stop=timed_stop(20)))
    time.sleep(0.3)
    assert results.empty()
    released_at = time.monotonic()
    holder.release()
    epoch, active_at = results.get(timeout=15)
    took_ms = (active_at - released_at) * 1000
    print(f"\n[{world.name}] release -> standby active: {took_ms:.1f} ms")
    assert epoch is not None and epoch > first
    assert took_ms < 500
    holder.release()  # no-op when not held
    assert standby.check()


def scenario_pause_resume_wakes_waiter(world: World) -> None:
    node, operator = world.arbiter("node", poll_ms=3000), world.arbiter("cli")
    assert node.get_state().state == "running"  # a fresh pipeline runs without `resume`
    assert node.wait_for_permit(0.01) is True
    operator.pause("maintenance", error="Deadlock found")
    state = node.get_state()
    assert (state.paused, state.reason, state.error) == (True, "maintenance", "Deadlock found")
    started = time.monotonic()
    assert node.wait_for_permit(0.2) is False
    assert time.monotonic() - started >= 0.19
    _thread, results = background(lambda: node.wait_for_permit(10))
    time.sleep(0.3)
    assert results.empty(), "wait_for_permit must block while paused"
    resumed_at = time.monotonic()
    operator.resume()
    permitted, woke_at = results.get(timeout=10)
    took_ms = (woke_at - resumed_at) * 1000
    print(f"\n[{world.name}] resume -> permit waiter woke: {took_ms:.1f} ms")
    assert permitted is True and took_ms < 500
    state = node.get_state()
    assert (state.paused, state.reason, state.error) == (False, "", "")


def scenario_only_the_holder_pauses_on_error(world: World) -> None:
    """A node that was replaced (a zombie) cannot pause the pipeline its successor runs;
    the holder can; the operator's pause needs no lock."""
    old, new, cli = world.arbiter("old"), world.arbiter("new"), world.arbiter("cli")
    old_epoch = old.await_active()
    assert old_epoch is not None
    world.freeze(old)
    world.elapse(world.ttl_ms + 100)
    new_epoch = new.await_active(stop=timed_stop(5))
    assert new_epoch is not None and new_epoch > old_epoch
    assert old.check(), "the stalled node still believes it is active"
    with pytest.raises(FencedError):
        old.pause_on_error(old_epoch, "FencedError: the sink's checkpoint is newer")
    with pytest.raises(FencedError):
        cli.pause_on_error(new_epoch, "not the holder")  # the epoch alone is not enough
    assert not new.get_state().paused

    new.pause_on_error(new_epoch, "Data too long for column 'note'")
    state = new.get_state()
    assert (state.paused, state.reason, state.error) == (
        True,
        "error",
        "Data too long for column 'note'",
    )
    assert cli.wait_for_permit(0.05) is False
    cli.resume()
    cli.pause("maintenance")  # the operator's pause needs no lock
    assert cli.get_state().paused
    world.thaw(old)


def scenario_status_and_staleness(world: World) -> None:
    active, standby = world.arbiter("a", status_stale_ms=300), world.arbiter("b")
    epoch = active.await_active()
    assert epoch is not None
    active.commit_position(P2, epoch)
    active.publish_status({"position": P2, "lag_ms": 12, "rows_total": 100, "rows_per_s": 5.5})
    standby.publish_status({"last_error": "ResumableError: lost connection"})
    status = standby.status()
    assert (status.active_node, status.epoch) == ("a", epoch)
    assert (status.position, status.position_epoch) == (P2, epoch)
    nodes = {n["node_id"]: n for n in status.nodes}
    assert nodes["a"]["role"] == "active" and nodes["a"]["epoch"] == epoch
    assert (nodes["a"]["lag_ms"], nodes["a"]["rows_total"], nodes["a"]["rows_per_s"]) == (
        12,
        100,
        5.5,
    )
    assert Position.from_dict(nodes["a"]["position"]) == P2
    assert nodes["b"]["role"] == "standby" and nodes["b"]["epoch"] is None
    assert "lost connection" in nodes["b"]["last_error"]
    assert not nodes["a"]["stale"] and not nodes["b"]["stale"]

    world.elapse(400)
    active.publish_status({"lag_ms": 3})
    nodes = {n["node_id"]: n for n in active.status().nodes}
    assert not nodes["a"]["stale"] and nodes["a"]["lag_ms"] == 3
    assert "rows_total" not in nodes["a"]  # a report replaces the previous one
    assert nodes["b"]["stale"], "a node that stopped reporting must show as stale"


def scenario_operator_position_only_while_paused(world: World) -> None:
    node = world.arbiter("node")
    assert node.load_position() is None
    epoch = node.await_active()
    assert epoch is not None
    node.commit_position(P1, epoch)
    with pytest.raises(FatalError):
        node.set_position(P3)
    assert node.load_position() == P1
    node.pause("reset position")
    node.set_position(P3)
    assert node.load_position() == P3
    assert node.status().position_epoch is None  # written by an operator, not an epoch
    node.set_position(None)
    assert node.load_position() is None


def scenario_operator_position_fences_the_holder(world: World) -> None:
    """A batch the holder was still draining when the operator set the position cannot
    commit over it; the holder learns it lost the lock and is re-elected with a new epoch."""
    holder, cli = world.arbiter("holder"), world.arbiter("cli")
    lost = threading.Event()
    holder.on_lost(lost.set)
    epoch = holder.await_active()
    assert epoch is not None
    holder.commit_position(P1, epoch)
    cli.pause("reset position")
    cli.set_position(P3)
    with pytest.raises(FencedError):
        holder.commit_position(P2, epoch)  # the late ack of a drained batch
    assert cli.load_position() == P3 and cli.status().position_epoch is None
    world.elapse(world.ttl_ms / 2)  # the renewer notices at its next renewal
    assert eventually(lost.is_set, world.ttl_ms / 1000 + 1), "the holder must see it is fenced"
    assert not holder.check()
    again = holder.await_active(stop=timed_stop(world.ttl_ms / 1000 + 1))
    assert again is not None and again > epoch


def scenario_redis_restarts_empty_under_holder(world: World) -> None:
    holder = world.arbiter("holder")
    losses: list[float] = []
    holder.on_lost(lambda: losses.append(time.monotonic()))
    epoch = holder.await_active()
    assert epoch is not None
    holder.commit_position(P1, epoch)

    world.redis_down()
    world.redis_up()
    world.elapse(world.ttl_ms / 2)
    assert eventually(lambda: bool(losses), world.ttl_ms / 1000 + 1), "holder must see the loss"
    assert len(losses) == 1 and not holder.check()
    with pytest.raises(FencedError):
        holder.commit_position(P2, epoch)
    # Redis forgot the position; the node must not guess (DESIGN: the sink decides).
    assert holder.load_position() is None

    # A node that knows nothing would start over at epoch 1 ...
    fresh = world.arbiter("fresh")
    fresh.raise_epoch_floor(epoch)  # ... so it lifts the counter from the sink's checkpoint.
    fresh_epoch = fresh.await_active(stop=timed_stop(5))
    assert fresh_epoch is not None and fresh_epoch > epoch
    fresh.commit_position(P2, fresh_epoch)
    fresh.release()
    again = holder.await_active(stop=timed_stop(5))
    assert again is not None and again > fresh_epoch
    assert holder.check() and holder.load_position() == P2
    assert len(losses) == 1


def scenario_redis_outage_holder_gives_up_standby_takes_over(world: World) -> None:
    holder, standby = world.arbiter("holder"), world.arbiter("standby")
    lost = threading.Event()
    holder.on_lost(lost.set)
    epoch = holder.await_active()
    assert epoch is not None
    thread, results = background(lambda: standby.await_active(stop=timed_stop(30)))

    world.redis_down()
    assert holder.check()  # within the TTL the lock is still provable
    world.elapse(world.ttl_ms)
    assert eventually(lost.is_set, 0.5), "lost no later than lock_ttl_ms after the last renewal"
    assert not holder.check()
    with pytest.raises(ResumableError):
        holder.commit_position(P1, epoch)
    assert results.empty() and thread.is_alive()  # the standby keeps waiting

    world.redis_up()
    standby_epoch, _ = results.get(timeout=10)
    assert standby_epoch is not None and standby.check()
    assert holder.await_active(stop=timed_stop(0.3)) is None


def scenario_close_releases(world: World) -> None:
    holder, standby = world.arbiter("holder"), world.arbiter("standby")
    assert holder.await_active() is not None
    holder.close()
    holder.close()  # idempotent
    assert not holder.check()
    assert standby.await_active(stop=timed_stop(2)) is not None


def scenario_snapshot_requests(world: World) -> None:
    """`ferry snapshot` requests are kept for whichever node is active; their state moves."""
    cli, node = world.arbiter("cli"), world.arbiter("node")
    assert node.snapshot_requests() == []
    first = cli.request_snapshot(["shop.orders", "shop.items"])
    second = cli.request_snapshot(["shop.users"])
    assert first.request != second.request and first.request.startswith("snap-")
    stored = {r.request: (r.tables, r.state) for r in node.snapshot_requests()}
    assert stored == {
        first.request: (("shop.orders", "shop.items"), "pending"),
        second.request: (("shop.users",), "pending"),
    }
    node.set_snapshot_state(first.request, "running")
    node.set_snapshot_state("snap-unknown", "done")  # ignored
    states = {r.request: r.state for r in cli.snapshot_requests()}
    assert states == {first.request: "running", second.request: "pending"}


def _table(*columns: str) -> TableSchema:
    cols = tuple(Column(name, "INT", 4, k + 1) for k, name in enumerate(columns))
    return TableSchema("shop", "t", cols, (columns[0],), "utf8mb4")


def scenario_schema_history(world: World) -> None:
    """The history is appended with the commit of its position, snapshotted, recovered at a
    committed position by a node that takes over (records past it dropped), and a stale
    epoch cannot append."""
    from pipeline.node import FencedPositionStore

    at = [Position("binlog.000001", pos) for pos in (100, 200, 300, 400)]
    v1, v2, v3 = _table("id"), _table("id", "a"), _table("id", "a", "b")
    first = world.arbiter("first")
    epoch = first.await_active()
    assert epoch is not None
    store = FencedPositionStore(first, epoch, None, None, snapshot_every=2)
    assert store.load_history() is None  # nothing committed: a first start
    store.start_history(SchemaState(P1, {("shop", "t"): v1}, {"shop": "utf8mb4"}))

    def alter(position: Position, table: TableSchema | None) -> SchemaRecord:
        return SchemaRecord(position, "shop", "ALTER TABLE t …", tables=(("shop", "t", table),))

    store.save(at[0], [alter(at[0], v2)])
    store.save(Position("binlog.000001", 150))  # rows: no record
    store.save(at[1], [alter(at[1], v3)])  # record 2: a snapshot (every 2)
    store.save(at[2], [alter(at[2], None)])  # record 3: DROP
    stored = first.load_history()
    assert stored.seq == 3 and set(stored.snapshots) == {0, 2}
    assert [SchemaRecord.from_json(r).seq for r in stored.records] == [1, 2, 3]
    assert Position.from_json(stored.coverage or "") == at[2]
    assert stored.snapshots[2] and SchemaState.from_json(stored.snapshots[2]).tables == {
        ("shop", "t"): v3
    }
    first.release()

    # a takeover at an earlier position (say an operator moved it back): the history there
    second = world.arbiter("second")
    epoch2 = second.await_active()
    assert epoch2 is not None
    store2 = FencedPositionStore(second, epoch2, Position("binlog.000001", 250), None)
    state = store2.load_history()
    assert state is not None and state.tables == {("shop", "t"): v3} and state.seq == 2
    stored = second.load_history()
    assert stored.seq == 2 and len(stored.records) <= 2  # record 3 was past it: dropped
    store2.save(at[3], [alter(at[3], v1)])  # numbered 3 again
    assert SchemaRecord.from_json(second.load_history().records[-1]).seq == 3

    with pytest.raises(FencedError):  # the old holder cannot append
        store.save(at[3], [alter(at[3], v2)])

    # a start ahead of the history's end: it recovers what it has, up to its end
    store3 = FencedPositionStore(second, epoch2, Position("binlog.000002", 4), None)
    state3 = store3.load_history()
    assert state3 is not None and state3.position == at[3] and state3.tables == {("shop", "t"): v1}


SCENARIOS = [
    scenario_schema_history,
    scenario_snapshot_requests,
    scenario_race_one_winner_epochs_increase,
    scenario_stalled_holder_is_fenced,
    scenario_release_wakes_standby,
    scenario_pause_resume_wakes_waiter,
    scenario_only_the_holder_pauses_on_error,
    scenario_status_and_staleness,
    scenario_operator_position_only_while_paused,
    scenario_operator_position_fences_the_holder,
    scenario_close_releases,
]
RESTART_SCENARIOS = [
    scenario_redis_restarts_empty_under_holder,
    scenario_redis_outage_holder_gives_up_standby_takes_over,
]


def scenario_id(scenario: Callable[..., None]) -> str:
    return scenario.__name__.removeprefix("scenario_")


# -- the memory world ------------------------------------------------------------------------


class MemoryWorld:
    name = "memory"
    ttl_ms = 2000

    def __init__(self) -> None:
        self.hub = MemoryArbiterHub()
        self.arbiters: list[MemoryArbiter] = []

    def arbiter(self, node_id: str, **config: Any) -> MemoryArbiter:
        settings = {"lock_ttl_ms": self.ttl_ms, **config}
        arbiter = self.hub.arbiter("orders", node_id, ArbiterConfig.model_validate(settings))
        self.arbiters.append(arbiter)
        return arbiter

    def elapse(self, ms: float) -> None:
        self.hub.advance(ms)

    def freeze(self, arbiter: Arbiter) -> None:
        assert isinstance(arbiter, MemoryArbiter)
        arbiter.freeze_renewer()

    def thaw(self, arbiter: Arbiter) -> None:
        assert isinstance(arbiter, MemoryArbiter)
        arbiter.unfreeze_renewer()

    def redis_down(self) -> None:
        self.hub.set_reachable(False)

    def redis_up(self) -> None:
        self.hub.wipe()
        self.hub.set_reachable(True)

    def close(self) -> None:
        for arbiter in self.arbiters:
            arbiter.close()


@pytest.fixture
def memory_world() -> Any:
    world = MemoryWorld()
    yield world
    world.close()


@pytest.mark.parametrize("scenario", SCENARIOS + RESTART_SCENARIOS, ids=scenario_id)
def test_memory_arbiter(memory_world: MemoryWorld, scenario: Callable[[World], None]) -> None:
    scenario(memory_world)


# -- memory-twin specifics ---------------------------------------------------------------------


def test_ttl_is_driven_by_the_hub_clock_only(memory_world: MemoryWorld) -> None:
    holder = memory_world.arbiter("holder")
    standby = memory_world.arbiter("standby")
    epoch = holder.await_active()
    memory_world.freeze(holder)
    memory_world.elapse(memory_world.ttl_ms - 1)
    assert standby.await_active(stop=timed_stop(0.1)) is None  # 1 ms before expiry
    memory_world.elapse(1)
    assert standby.await_active(stop=timed_stop(1)) == (epoch or 0) + 1


def test_waiting_standby_wakes_on_advance(memory_world: MemoryWorld) -> None:
    holder = memory_world.arbiter("holder")
    standby = memory_world.arbiter("standby")
    holder.await_active()
    memory_world.freeze(holder)
    _thread, results = background(lambda: standby.await_active(stop=timed_stop(10)))
    time.sleep(0.1)
    assert results.empty()
    memory_world.elapse(memory_world.ttl_ms)
    epoch, _ = results.get(timeout=2)
    assert epoch == 2


def test_failing_callback_does_not_stop_the_others(memory_world: MemoryWorld) -> None:
    holder = memory_world.arbiter("holder")
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("bug in a callback")

    holder.on_lost(broken)
    holder.on_lost(lambda: calls.append("second"))
    holder.await_active()
    memory_world.hub.wipe()
    assert calls == ["broken", "second"]
    assert not holder.check()


def test_raising_the_floor_fences_a_lower_holder(memory_world: MemoryWorld) -> None:
    holder, other = memory_world.arbiter("holder"), memory_world.arbiter("other")
    lost = threading.Event()
    holder.on_lost(lost.set)
    epoch = holder.await_active()
    assert epoch is not None
    other.raise_epoch_floor(epoch + 10)  # a sink checkpoint says someone wrote with epoch+10
    assert lost.is_set() and not holder.check()
    with pytest.raises(FencedError):
        holder.commit_position(P1, epoch)
    assert other.await_active(stop=timed_stop(1)) == epoch + 11


def test_hub_unreachable_is_resumable_for_callers(memory_world: MemoryWorld) -> None:
    node = memory_world.arbiter("node")
    memory_world.redis_down()
    with pytest.raises(ResumableError):
        node.get_state()
    with pytest.raises(ResumableError):
        node.status()
    assert node.await_active(stop=timed_stop(0.1)) is None  # a standby just waits


def test_sentinel_with_rediss_keeps_the_urls_tls_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Sentinel the address comes from Sentinel, but TLS is the URL's, options too."""
    import arbitrate.redis as module

    seen: dict[str, Any] = {}

    class FakeSentinel:
        def __init__(self, sentinels: Any, **kwargs: Any) -> None:
            pass

        def master_for(self, name: str, **options: Any) -> Any:
            seen.update(options, name=name)
            return None

    monkeypatch.setattr(module, "Sentinel", FakeSentinel)
    config = ArbiterConfig(
        url="rediss://:pw@ignored:6380/2?ssl_ca_certs=/run/ca.pem&ssl_cert_reqs=required"  # type: ignore[arg-type]
        "&ssl_check_hostname=true",
        sentinels=[{"host": "s1"}],  # type: ignore[list-item]
        master_name="main",
    )
    module.connect(config)
    assert seen["ssl"] is True and seen["name"] == "main"
    assert (seen["ssl_ca_certs"], seen["ssl_cert_reqs"]) == ("/run/ca.pem", "required")
    assert seen["ssl_check_hostname"] is True and (seen["password"], seen["db"]) == ("pw", 2)
