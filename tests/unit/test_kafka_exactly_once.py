"""``sink.exactly_once``: its config, how the transactional sink reads librdkafka's errors
(with a fake producer), and the node never replaying a batch an exactly-once sink committed.

The real thing, on Apache Kafka: tests/integration/test_kafka_exactly_once.py and the
exactly-once chaos soak.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.errors import FatalError, FencedError, NotActiveError, ResumableError
from pipeline.model import Batch, Position, RowChange
from sinks.kafka import KafkaSink, KafkaSinkConfig
from sinks.kafka_eos import ExactlyOnce, OffsetsRecord
from sinks.memory import MemorySink
from sinks.producers import Failure
from tests.unit.test_node import build, committed_at_end, run_node, seq_of, workload

ck = pytest.importorskip("confluent_kafka")


def cfg(**kw: Any) -> KafkaSinkConfig:
    kw.setdefault("client", "confluent-kafka")
    kw.setdefault("exactly_once", True)
    return KafkaSinkConfig(type="kafka", bootstrap_servers="127.0.0.1:1", **kw)


def kafka_error(
    name: str, *, fatal: bool = False, retriable: bool = False, abort: bool = False
) -> Any:
    error = ck.KafkaError(
        getattr(ck.KafkaError, name),
        name,
        fatal=fatal,
        retriable=retriable,
        txn_requires_abort=abort,
    )
    return ck.KafkaException(error)


# ------------------------------------------------------------------------- config


def test_exactly_once_needs_confluent_kafka() -> None:
    with pytest.raises(ValidationError) as info:
        cfg(client="kafka-python")
    assert "exactly_once needs client: confluent-kafka" in str(info.value)


def test_the_transaction_timeout_covers_the_delivery_timeout() -> None:
    with pytest.raises(ValidationError) as info:
        cfg(delivery_timeout_ms=30000, transaction_timeout_ms=10000)
    assert "transaction_timeout_ms (10000) must be at least delivery_timeout_ms" in str(info.value)


def test_names_follow_the_pipeline() -> None:
    eos = ExactlyOnce(cfg(), "orders")
    assert (eos.transactional_id, eos.offsets_topic) == ("ferry-orders", "ferry.orders.offsets")
    with pytest.raises(ValidationError, match="unknown placeholder"):
        cfg(offsets_topic="offsets.{schema}")


def test_only_an_exactly_once_sink_says_so() -> None:
    assert KafkaSink(cfg(), "p").exactly_once
    assert not KafkaSink(cfg(exactly_once=False), "p").exactly_once
    assert not MemorySink().exactly_once


# -------------------------------------------------------------- librdkafka's errors


class FakeTransactional:
    """A stand-in for ConfluentTransactionalProducer: records calls, raises on demand."""

    def __init__(self, *args: Any) -> None:
        self.calls: list[str] = []
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.raise_on: dict[str, list[BaseException]] = {}
        self.refused: list[Failure] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        errors = self.raise_on.get(name)
        if errors:
            raise errors.pop(0)

    def init(self, timeout: float) -> None:
        self._call("init")

    def begin(self) -> None:
        self._call("begin")

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.sent.append((topic, key, value))

    def send_to(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def commit(self, timeout: float) -> None:
        self._call("commit")

    def abort(self, timeout: float) -> None:
        self._call("abort")

    def failures(self) -> list[Failure]:
        return self.refused

    def close(self, timeout: float) -> None:
        self.calls.append("close")


class Harness:
    """An ExactlyOnce over fake producers (one per open), with a scripted offsets topic."""

    def __init__(self) -> None:
        self.producers: list[FakeTransactional] = []
        self.script: list[list[BaseException]] = []  # raise_on["init"] etc. per new producer
        self.commit_errors: list[list[BaseException]] = []
        self.last: OffsetsRecord | None = None  # what the offsets topic's end holds
        self.eos = ExactlyOnce(cfg(), "p", factory=self._new)
        self.eos._checked = True  # no cluster to look at
        self.eos._read_last = lambda producer: self.last  # type: ignore[method-assign]

    def _new(self, *args: Any) -> FakeTransactional:
        producer = FakeTransactional()
        if self.script:
            producer.raise_on["init"] = self.script.pop(0)
        if self.commit_errors:
            producer.raise_on["commit"] = self.commit_errors.pop(0)
        self.producers.append(producer)
        return producer

    def load(self, batch: Batch, epoch: int = 1) -> None:
        def send_all(producer: Any) -> None:
            for change in batch.changes:
                producer.send("t", b"k", repr(change).encode())

        def describe(failures: list[Failure]) -> Any:
            return FatalError(f"refused: {failures[0].error}")

        self.eos.load(batch, epoch, send_all, describe)


def one_batch(batch_id: int = 1, pos: int = 100) -> Batch:
    change = RowChange("s", "t", "insert", None, {"id": 1}, ("id",), 0.0, Position("f.1", pos))
    return Batch(batch_id, [change], Position("f.1", pos))


def test_a_broker_without_transactions_is_a_clear_fatal_error() -> None:
    h = Harness()
    h.script = [[kafka_error("_UNSUPPORTED_FEATURE")]]
    with pytest.raises(FatalError) as info:
        h.eos.open()
    assert "does not support transactions" in str(info.value)
    assert "sink.exactly_once" in str(info.value)


def test_a_fenced_commit_steps_down_and_aborts_nothing_by_hand() -> None:
    h = Harness()
    h.commit_errors = [[kafka_error("_FENCED", fatal=True)]]
    with pytest.raises(FencedError) as info:
        h.load(one_batch())
    assert "nothing of it is visible to read_committed" in str(info.value)
    assert h.producers[0].calls == ["init", "begin", "commit", "close"]
    assert h.eos.producer is None  # the next activation takes the id again


def test_an_abortable_commit_aborts_and_the_batch_is_retried() -> None:
    h = Harness()
    h.commit_errors = [[kafka_error("_MSG_TIMED_OUT", abort=True)]]
    with pytest.raises(ResumableError):
        h.load(one_batch())
    assert h.producers[0].calls == ["init", "begin", "commit", "abort"]
    h.load(one_batch())  # the same producer goes on
    assert h.producers[0].calls[-2:] == ["begin", "commit"]


def test_a_refused_send_names_the_failure() -> None:
    h = Harness()
    h.commit_errors = [[kafka_error("_MSG_TIMED_OUT", abort=True)]]
    producer_refusal = Failure("t", b"k", kafka_error("MSG_SIZE_TOO_LARGE"))
    h.eos.open()
    h.producers[0].refused = [producer_refusal]
    with pytest.raises(FatalError, match="refused"):
        h.load(one_batch())


def test_a_commit_with_an_unknown_outcome_is_settled_committed() -> None:
    """The broker went away during commit_transaction: a new producer's init ends the
    transaction, and the offsets topic says it was committed: the load succeeds."""
    h = Harness()
    h.commit_errors = [[kafka_error("_TRANSPORT", fatal=True)]]
    h.eos.open()
    session = h.eos._session
    h.last = OffsetsRecord(Position("f.1", 100), 1, 1, session)
    h.load(one_batch())
    assert len(h.producers) == 2 and h.producers[1].calls == ["init"]


def test_a_commit_with_an_unknown_outcome_is_settled_aborted() -> None:
    h = Harness()
    h.commit_errors = [[kafka_error("_TRANSPORT", fatal=True)]]
    h.last = OffsetsRecord(Position("f.1", 50), 1, 0, "an earlier session")
    with pytest.raises(ResumableError):
        h.load(one_batch())
    h.load(one_batch())  # the retry after the rollback
    assert h.producers[1].calls == ["init", "begin", "commit"]


def test_an_unsettled_commit_found_committed_later_restarts_from_the_checkpoint() -> None:
    """The outcome could not be read at once (broker away); the node rolled the batch back.
    The next load learns it was committed: writing it again would duplicate it."""
    h = Harness()
    h.commit_errors = [[kafka_error("_TRANSPORT", fatal=True)]]
    h.script = [[], [kafka_error("_TRANSPORT", retriable=True)]]  # the settling init fails
    h.eos.open()
    session = h.eos._session
    with pytest.raises(ResumableError, match="settled before anything else"):
        h.load(one_batch())
    h.last = OffsetsRecord(Position("f.1", 100), 1, 1, session)
    with pytest.raises(NotActiveError, match="committed after all"):
        h.load(one_batch())


def test_an_older_epoch_than_the_checkpoint_is_refused() -> None:
    h = Harness()
    h.last = OffsetsRecord(Position("f.1", 100), 7, 1, "s")
    assert h.eos.read_checkpoint() is not None
    with pytest.raises(FencedError):
        h.load(one_batch(), epoch=6)


# ------------------------------------------------------------- the node's part


class CommittedSink(MemorySink):
    """A memory sink that claims exactly-once: a loaded batch is final."""

    @property
    def exactly_once(self) -> bool:
        return True


@pytest.mark.parametrize("exactly_once", [False, True])
def test_a_failed_position_commit_after_a_committed_load_is_retried_not_replayed(
    exactly_once: bool,
) -> None:
    txns = workload(60, seed=3)
    sink = CommittedSink() if exactly_once else MemorySink()
    node, arbiter, _ = build(txns, sink)
    original = arbiter.commit_position
    failures = {"left": 3}

    def flaky(position: Position, epoch: int) -> None:
        if position.pos >= 20 and failures["left"]:
            failures["left"] -= 1
            raise ResumableError("Redis is restarting")
        original(position, epoch)

    arbiter.commit_position = flaky  # type: ignore[method-assign]
    run_node(node, committed_at_end(arbiter, txns))
    seqs = [seq_of(c) for c in sink.changes]
    expected = [seq_of(c) for txn in txns for c in txn]
    assert failures["left"] == 0
    if exactly_once:
        assert seqs == expected  # every change once: nothing replayed
    else:
        assert len(seqs) > len(expected)  # at-least-once: the rollback replayed batches


def test_a_checkpoint_read_at_activation_settles_an_unsettled_commit() -> None:
    """The node started again from the checkpoint (which holds the batch): no step-down."""
    h = Harness()
    h.commit_errors = [[kafka_error("_TRANSPORT", fatal=True)]]
    h.script = [[], [kafka_error("_TRANSPORT", retriable=True)]]
    h.eos.open()
    session = h.eos._session
    with pytest.raises(ResumableError):
        h.load(one_batch())
    h.last = OffsetsRecord(Position("f.1", 100), 1, 1, session)
    checkpoint = h.eos.read_checkpoint()
    assert checkpoint is not None and checkpoint.position == Position("f.1", 100)
    h.load(one_batch(2, 200), epoch=2)
