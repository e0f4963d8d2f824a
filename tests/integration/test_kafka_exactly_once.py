"""``sink.exactly_once`` on a real Apache Kafka: transactions, the offsets topic, fencing.

What a ``read_committed`` consumer sees is checked with kafka-python's consumer (another
client than the sink's librdkafka). The node-level tests (a frozen node fenced by Kafka,
recovery from the offsets topic) run real nodes in this process.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from arbitrate.redis import RedisArbiter
from pipeline.config import load_config
from pipeline.errors import FatalError, FencedError, ResumableError
from pipeline.model import Batch, Position, RowChange
from pipeline.node import Node
from selector.process import open_selector
from sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.delivery import Workload, assert_every_change_in_order_per_key, event_of
from tests.ferryproc import source_position, wait_until, write_config
from tests.frozen import running
from tests.integration.test_arbitrate_redis import StallableClock

pytest.importorskip("confluent_kafka")


def position(pos: int) -> Position:
    return Position("mysql-bin.000001", pos)


def change(i: int, pos: int, row: dict[str, Any] | None = None) -> RowChange:
    return RowChange(
        schema="shop",
        table="orders",
        op="insert",
        before=None,
        after=row or {"id": i, "v": f"value {i}"},
        primary_key=("id",),
        ts=1_700_000_000.0,
        position=position(pos),
    )


def batch(batch_id: int, ids: range, pos: int) -> Batch:
    return Batch(batch_id=batch_id, changes=[change(i, pos) for i in ids], position=position(pos))


def make_sink(bootstrap: str, topic: str, pipeline: str, **kw: Any) -> KafkaSink:
    kw.setdefault("delivery_timeout_ms", 5000)
    kw.setdefault("transaction_timeout_ms", 10000)
    config = KafkaSinkConfig(
        type="kafka",
        bootstrap_servers=bootstrap,
        client="confluent-kafka",
        topic=topic,
        format="ferry-json",
        exactly_once=True,
        **kw,
    )
    return KafkaSink(config, pipeline)


def ids_of(records: list[Any]) -> list[int]:
    return [json.loads(value)["after"]["id"] for _, value, _, _ in records]


def test_batches_and_positions_commit_together_and_a_new_producer_fences_the_old(
    kafka_broker: Any, kafka_topic: str
) -> None:
    pipeline = f"eos-{uuid.uuid4().hex[:6]}"
    first = make_sink(kafka_broker.bootstrap, kafka_topic, pipeline)
    first.open()
    assert first.checkpoint() is None  # a new pipeline: no position record yet
    first.load(batch(1, range(0, 10), 100), epoch=1)
    first.load(batch(2, range(10, 20), 200), epoch=1)
    # the offsets topic was created compacted, and holds the last position
    second = make_sink(kafka_broker.bootstrap, kafka_topic, pipeline)
    try:
        second.open()  # init_transactions: the first producer is fenced now
        checkpoint = second.checkpoint()
        assert checkpoint is not None
        assert (checkpoint.position, checkpoint.epoch) == (position(200), 1)
        with pytest.raises(FencedError) as info:
            first.load(batch(3, range(20, 30), 300), epoch=1)
        assert "fenced" in str(info.value) and info.value.batch_id == 3
        second.load(batch(3, range(20, 30), 300), epoch=2)
    finally:
        first.close()
        second.close()
    committed = kafka_broker.read_all(kafka_topic, min_count=30, isolation="read_committed")
    assert ids_of(committed) == list(range(30))
    offsets = kafka_broker.read_all(f"ferry.{pipeline}.offsets", isolation="read_committed")
    assert [json.loads(v)["position"]["pos"] for _, v, _, _ in offsets] == [100, 200, 300]


def test_an_aborted_transaction_is_invisible_and_the_batch_can_be_retried(
    kafka_broker: Any, kafka_topic: str
) -> None:
    pipeline = f"eos-{uuid.uuid4().hex[:6]}"
    sink = make_sink(kafka_broker.bootstrap, kafka_topic, pipeline, max_message_bytes=64_000)
    big = change(99, 200, {"id": 99, "blob": "x" * 100_000})
    try:
        sink.load(batch(1, range(0, 5), 100), epoch=1)
        bad = Batch(batch_id=2, changes=[change(5, 200), big], position=position(200))
        with pytest.raises(FatalError):  # too large: the transaction is aborted
            sink.load(bad, epoch=1)
        sink.load(batch(2, range(5, 10), 200), epoch=1)  # the same producer goes on
        checkpoint = sink.checkpoint()
        assert checkpoint is not None and checkpoint.position == position(200)
    finally:
        sink.close()
    committed = kafka_broker.read_all(kafka_topic, min_count=10, isolation="read_committed")
    assert ids_of(committed) == list(range(10))


def test_a_transaction_log_that_cannot_be_replicated_is_a_clear_fatal_error(
    make_kafka: Any,
) -> None:
    broker = make_kafka({"transaction.state.log.replication.factor": "3"})
    sink = make_sink(broker.bootstrap, "t", "rf")
    try:
        with pytest.raises(FatalError) as info:
            sink.open()
    finally:
        sink.close()
    text = str(info.value)
    assert "transaction.state.log.replication.factor is 3" in text, text
    assert "1 broker(s)" in text, text


class FreezingBeforeCommit(KafkaSink):
    """The real exactly-once sink, frozen between its sends and its commit (the ``freeze_at``
    -th load of epoch 1): its transaction is open, its messages are in the log."""

    def __init__(self, *args: Any, freeze_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_at = freeze_at
        self.loads = 0
        self.frozen = threading.Event()
        self.thaw = threading.Event()
        self.errors: list[BaseException] = []
        assert self.eos is not None
        commit = self.eos.commit

        def frozen_commit(*args: Any) -> None:
            if args[2] == 1:  # epoch
                self.loads += 1
                if self.loads == self.freeze_at:
                    self.frozen.set()
                    self.thaw.wait(120)
            try:
                commit(*args)
            except BaseException as exc:
                self.errors.append(exc)
                raise

        self.eos.commit = frozen_commit  # type: ignore[method-assign]


def test_a_frozen_node_that_wakes_after_a_takeover_is_fenced_by_kafka(
    tmp_path: Path,
    mariadb: Any,
    source_db: str,
    redis_server: Any,
    key_prefix: str,
    kafka_broker: Any,
) -> None:
    """``a`` freezes inside a transaction (its messages sent, not committed); ``b`` takes
    over: its init_transactions fences ``a``'s producer and aborts that transaction. ``a``
    wakes and commits: Kafka refuses (``_FENCED``), ``a`` steps down (never pauses), and a
    read_committed consumer sees every change exactly once."""
    workload = Workload(mariadb, source_db, seed=24)
    topics = [kafka_broker.create_topic(f"ferry.{source_db}.{t}") for t in Workload.TABLES]
    sink = {
        "type": "kafka",
        "bootstrap_servers": kafka_broker.bootstrap,
        "client": "confluent-kafka",
        "format": "ferry-json",
        "exactly_once": True,
        "offsets_topic": f"ferry.{source_db}.offsets",
        "delivery_timeout_ms": 5000,
        "transaction_timeout_ms": 20000,
    }
    path = write_config(
        tmp_path / "pipeline.yaml",
        pipeline_id="eos-zombie",
        mariadb=mariadb,
        schema=source_db,
        redis_url=redis_server.url,
        prefix=key_prefix,
        sink=sink,
        start=source_position(mariadb),
        server_id=4424,
        batch={"max_rows": 20, "max_wait_ms": 50},
    )
    config = load_config(path)
    clock = StallableClock()
    a_arbiter = RedisArbiter(config.arbiter, "eos-zombie", "a", clock=clock)
    b_arbiter = RedisArbiter(config.arbiter, "eos-zombie", "b")
    a_sink = FreezingBeforeCommit(config.sink, "eos-zombie", freeze_at=3)

    def node(node_id: str, arbiter: RedisArbiter, sink: KafkaSink) -> Node:
        def selector(store: Any) -> Any:
            batch = config.pipeline.batch
            return open_selector(
                config.source, batch.max_rows, batch.max_wait_ms, store, "eos-zombie"
            )

        return Node(config, node_id, arbiter=arbiter, sink=sink, selector_factory=selector)

    a = node("a", a_arbiter, a_sink)
    b = node("b", b_arbiter, KafkaSink(config.sink, "eos-zombie"))

    def delivered() -> list[Any]:
        events = []
        for topic in topics:
            for _, value, _, _ in kafka_broker.read_all(topic, isolation="read_committed"):
                event = event_of(json.loads(value)) if value else None
                if event is not None:
                    events.append(event)
        return events

    with running(a, b) as threads:
        threads[0].start()
        wait_until(lambda: a.role == "active", 30, "a active")
        workload.run(120)
        wait_until(a_sink.frozen.is_set, 30, "a frozen before its third commit")
        a_arbiter.freeze_renewer()  # a stop-the-world pause: no renewal, time stands still
        clock.frozen_at = clock()
        threads[1].start()
        wait_until(lambda: b.role == "active", 30, "b to take over")
        workload.run(40)
        wait_until(lambda: b_arbiter.load_position_record()[1] == b_arbiter.epoch, 30, "b acks")
        a_sink.thaw.set()  # a commits its transaction, still believing it is active
        wait_until(lambda: a.role == "standby", 30, "a to step down")
        clock.frozen_at = None
        a_arbiter.unfreeze_renewer()
        assert a_sink.errors and isinstance(a_sink.errors[0], FencedError), a_sink.errors
        workload.run(40)
        wait_until(lambda: set(workload.expected) <= set(delivered()), 60, "every change delivered")
        state = b_arbiter.get_state()
        assert not state.paused, state.error
        assert b.role == "active" and a.role == "standby"
    events = delivered()
    repeats = assert_every_change_in_order_per_key(events, workload.expected)
    assert repeats == 0, f"{repeats} duplicates seen by read_committed"
    assert len(events) == len(workload.expected)
    # the zombie's transaction is in the log, aborted: a read_uncommitted reader sees it
    uncommitted = sum(len(kafka_broker.read_all(topic)) for topic in topics)
    assert uncommitted > len(events), "the frozen node's sends never reached the broker"


def test_no_broker_yet_is_resumable() -> None:
    """A broker that is not there (yet) is retried, not paused for."""
    sink = make_sink("127.0.0.1:1", "t", "nobroker", delivery_timeout_ms=1000)
    try:
        with pytest.raises(ResumableError):
            sink.open()
    finally:
        sink.close()


def test_ferry_check_does_not_fence_the_active_producer(
    kafka_broker: Any, kafka_topic: str
) -> None:
    pipeline = f"eos-{uuid.uuid4().hex[:6]}"
    active = make_sink(kafka_broker.bootstrap, kafka_topic, pipeline)
    try:
        active.load(batch(1, range(0, 5), 100), epoch=1)
        lines = make_sink(kafka_broker.bootstrap, kafka_topic, pipeline).check()
        assert all(ok for _, ok, _ in lines), lines
        assert any("offsets topic" in what and "exists" in what for what, _, _ in lines), lines
        active.load(batch(2, range(5, 10), 200), epoch=1)  # not fenced by the check
    finally:
        active.close()
    committed = kafka_broker.read_all(kafka_topic, min_count=10, isolation="read_committed")
    assert ids_of(committed) == list(range(10))
