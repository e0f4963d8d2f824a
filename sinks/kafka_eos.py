"""Exactly-once into Kafka (``sink.exactly_once: true``): a batch and its position in one
Kafka transaction.

Per batch (``ExactlyOnce.load``, called by ``KafkaSink.load``)::

    begin_transaction → every message of the batch → one record of the batch's position
    (key: the pipeline id; value: position, epoch, batch id, producer session) to the
    offsets topic, partition 0 → commit_transaction

A consumer reading with ``isolation.level=read_committed`` sees a batch's messages
exactly when its position record is visible too; an aborted transaction leaves nothing
it can see. The position in the offsets topic is therefore the sink's checkpoint
(``checkpoint()``), and ``pipeline.recovery.choose_start`` resumes from the later of it
and Redis's position: no batch is written twice, whatever happened between the commit
and the position reaching Redis.

Fencing, twice:

* Kafka's: the transactional id is stable per pipeline (``sink.transactional_id``).
  ``open()`` calls ``init_transactions``, which bumps the producer epoch at the
  transaction coordinator: the predecessor's producer (a node that froze and woke up
  after a takeover) is fenced: its next send or commit fails with ``_FENCED``, which is
  raised as ``FencedError`` (step down, never pause), and its open transaction is
  aborted, so none of it becomes visible. ``init_transactions`` also waits until a
  predecessor's transaction that was already committing has finished, so the
  checkpoint read after it includes that batch.
* ferry's: the position record carries the mainstem epoch that wrote it. Recovery
  lifts the epoch counter above it (``choose_start``), and ``load`` refuses a batch of
  an epoch older than the checkpoint it read (``sinks.base.fence``).

A failed transaction is aborted and the batch raises ``ResumableError``: the node rolls
back and loads it again. A commit whose outcome is unknown (the broker went away during
``commit_transaction``, or the producer failed fatally) is settled before anything else
is written: a new producer's ``init_transactions`` completes or aborts it, and the last
position record says which. Committed: ``load`` returns as if the commit had answered.
Not settled yet (the broker is still away): the next load settles it first, and if the
batch turned out committed after the node rolled it back, the node restarts from the
checkpoint (``NotActiveError``: it steps down and takes the mainstem again) instead of
writing it twice.

Reading the checkpoint (``read_checkpoint``): a ``read_committed`` consumer on partition
0 of the offsets topic, from a little before its end (further back until it finds a
record of this pipeline), up to the high watermark taken when it started: it waits
until the last stable offset reaches it, that is, until no transaction below it is
open any more (bounded by ``sink.transaction_timeout_ms``, after which the broker aborts
any transaction itself). The topic is compacted (created so when missing): it keeps the
last record per pipeline.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger

from pipeline.errors import (
    FatalError,
    FencedError,
    FerryError,
    NotActiveError,
    ResumableError,
    classify,
)
from pipeline.model import Batch, Position
from sinks.base import SinkCheckpoint, fence
from sinks.producers import ConfluentTransactionalProducer, Failure

if TYPE_CHECKING:
    from sinks.kafka import KafkaSinkConfig

#: librdkafka errors that mean "a newer producer with this transactional id exists"
FENCED = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})
#: librdkafka errors that mean "this broker (or cluster) cannot run transactions"
UNSUPPORTED = frozenset(
    {"_UNSUPPORTED_FEATURE", "UNSUPPORTED_VERSION", "UNSUPPORTED_FOR_MESSAGE_FORMAT"}
)
TRANSACTION_STATE_TOPIC = "__transaction_state"
_WINDOW = 64  # offsets read back from the end first when looking for the last record


def error_name(exc: BaseException) -> str | None:
    """librdkafka's name of a confluent-kafka error, else None."""
    try:
        import confluent_kafka as ck
    except ImportError:  # pragma: no cover - exactly_once requires it
        return None
    inner = exc.args[0] if isinstance(exc, ck.KafkaException) and exc.args else exc
    return inner.name() if isinstance(inner, ck.KafkaError) else None


def _flag(exc: BaseException, flag: str) -> bool:
    inner = exc.args[0] if exc.args else None
    method = getattr(inner, flag, None)
    return bool(method()) if callable(method) else False


@dataclass(frozen=True, slots=True)
class OffsetsRecord:
    """One position record of the offsets topic."""

    position: Position
    epoch: int
    batch_id: int
    session: str
    offset: int = -1

    def to_json(self, pipeline: str) -> bytes:
        return json.dumps(
            {
                "pipeline": pipeline,
                "position": self.position.to_dict(),
                "epoch": self.epoch,
                "batch_id": self.batch_id,
                "session": self.session,
                "written_at": time.time(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, value: bytes, offset: int) -> OffsetsRecord:
        data = json.loads(value)
        return cls(
            Position.from_dict(data["position"]),
            int(data["epoch"]),
            int(data.get("batch_id") or 0),
            str(data.get("session") or ""),
            offset,
        )


Factory = Callable[["KafkaSinkConfig", str, str], ConfluentTransactionalProducer]


class ExactlyOnce:
    """The transactional half of ``KafkaSink`` (see the module docstring)."""

    def __init__(
        self,
        config: KafkaSinkConfig,
        pipeline_id: str,
        factory: Factory = ConfluentTransactionalProducer,
    ) -> None:
        self.config = config
        self.pipeline_id = pipeline_id
        self.transactional_id = config.transactional_id.format(pipeline=pipeline_id)
        self.offsets_topic = config.offsets_topic.format(pipeline=pipeline_id)
        self._key = pipeline_id.encode()
        self._factory = factory
        self.producer: ConfluentTransactionalProducer | None = None
        self._session = ""
        self._checked = False  # the cluster can run transactions; the offsets topic exists
        self._stored_epoch: int | None = None  # of the last checkpoint read or written
        # (session, batch id) of a commit whose outcome is not known yet
        self._unsettled: tuple[str, int] | None = None
        self._timeout_s = config.delivery_timeout_ms / 1000 + 5.0
        self._last_empty_commit = 0.0

    # ------------------------------------------------------------------ producer

    def _what(self) -> str:
        return f"kafka sink (exactly_once, transactional id {self.transactional_id!r})"

    def open(self) -> ConfluentTransactionalProducer:
        """A producer that holds the transactional id: every earlier one is fenced."""
        if self.producer is not None:
            return self.producer
        producer = self._factory(self.config, f"ferry-{self.pipeline_id}", self.transactional_id)
        try:
            if not self._checked:
                self._check_cluster(producer)
            producer.init(self._timeout_s)
        except FerryError:
            self._drop(producer)
            raise
        except Exception as exc:
            self._drop(producer)
            raise self._init_error(exc) from exc
        self.producer = producer
        self._session = uuid.uuid4().hex
        return producer

    def check(self) -> list[tuple[str, bool, str]]:
        """`ferry check`'s lines, without taking the transactional id (``init_transactions``
        would fence the active node's producer) and without creating anything."""
        where = f"sink kafka reachable at {self.config.bootstrap_servers}"
        txn = "sink kafka can run transactions (exactly_once)"
        offsets = f"sink kafka offsets topic {self.offsets_topic}"
        try:
            producer = self._factory(
                self.config, f"ferry-{self.pipeline_id}-check", self.transactional_id
            )
        except Exception as exc:
            return [(where, False, str(exc))]
        try:
            metadata = producer.metadata(self._timeout_s)
        except Exception as exc:
            self._drop(producer)
            return [(where, False, str(exc)), (txn, False, "needs a broker first")]
        try:
            results = [(where, True, "")]
            brokers = len(metadata.brokers)
            setting = "transaction.state.log.replication.factor"
            factor = (
                None
                if TRANSACTION_STATE_TOPIC in metadata.topics
                else self._broker_setting(producer, metadata, setting)
            )
            if factor is not None and factor > brokers:
                results.append(
                    (
                        txn,
                        False,
                        f"the brokers' {setting} is {factor}, the cluster has {brokers}"
                        " broker(s): lower it or add brokers",
                    )
                )
            else:
                results.append((txn, True, ""))
            if self.offsets_topic in metadata.topics:
                results.append((offsets + " exists", True, ""))
            else:
                results.append((offsets + " (created, compacted, at the first start)", True, ""))
            return results
        finally:
            self._drop(producer)

    def _init_error(self, exc: BaseException) -> FerryError:
        name = error_name(exc)
        if name in UNSUPPORTED:
            return FatalError(
                f"{self._what()}: the broker at {self.config.bootstrap_servers} does not"
                " support transactions (they need Apache Kafka 0.11 or later, or a"
                " compatible broker with transactions enabled); set sink.exactly_once: false"
                f" or use such a broker; the client said: {exc}"
            )
        if name == "INVALID_TRANSACTION_TIMEOUT":
            return FatalError(
                f"{self._what()}: sink.transaction_timeout_ms"
                f" ({self.config.transaction_timeout_ms} ms) is above the broker's"
                f" transaction.max.timeout.ms; lower it; the client said: {exc}"
            )
        if name in FENCED:  # another node initialised meanwhile: it is the active one
            return FencedError(f"{self._what()}: fenced while initialising: {exc}")
        return classify(exc, f"{self._what()}: init_transactions failed: {exc}")

    def _check_cluster(self, producer: ConfluentTransactionalProducer) -> None:
        """Fatal errors for a cluster that cannot hold the transaction log; the offsets
        topic created (compacted) when missing."""
        try:
            metadata = producer.metadata(self._timeout_s)
        except Exception as exc:
            raise classify(
                exc, f"{self._what()}: no broker at {self.config.bootstrap_servers} answered"
            ) from exc
        brokers = len(metadata.brokers)
        if TRANSACTION_STATE_TOPIC not in metadata.topics:
            setting = "transaction.state.log.replication.factor"
            factor = self._broker_setting(producer, metadata, setting)
            if factor is not None and factor > brokers:
                raise FatalError(
                    f"{self._what()}: the broker's transaction.state.log.replication.factor"
                    f" is {factor}, but the cluster has {brokers} broker(s): the transaction"
                    f" log ({TRANSACTION_STATE_TOPIC}) cannot be created, so no transaction"
                    " can start; lower that setting on the brokers (or add brokers), or set"
                    " sink.exactly_once: false"
                )
        if self.offsets_topic not in metadata.topics:
            self._create_offsets_topic(producer)
        self._checked = True

    def _broker_setting(self, producer: Any, metadata: Any, name: str) -> int | None:
        """A broker's numeric setting; None when it cannot be read (ACLs): not checked."""
        from confluent_kafka.admin import ConfigResource

        try:
            broker = next(iter(metadata.brokers))
            resource = ConfigResource(ConfigResource.Type.BROKER, str(broker))
            admin = producer.admin()  # kept until the answer: a dropped client cancels it
            entries = admin.describe_configs([resource])[resource].result(self._timeout_s)
            return int(entries[name].value)
        except Exception as exc:  # not allowed to look, or an old broker: init will tell
            logger.debug("cannot read the broker's {}: {}", name, exc)
            return None

    def _create_offsets_topic(self, producer: ConfluentTransactionalProducer) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        topic = NewTopic(
            self.offsets_topic,
            1,
            self.config.replication_factor,
            config={"cleanup.policy": "compact", "segment.ms": "3600000"},
        )
        admin = producer.admin()  # kept until the answer: a dropped client cancels it
        futures = admin.create_topics([topic], operation_timeout=self._timeout_s)
        try:
            futures[self.offsets_topic].result(self._timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise classify(
                    exc,
                    f"{self._what()}: cannot create the offsets topic {self.offsets_topic!r}"
                    f" (sink.offsets_topic): {exc}",
                ) from exc
        logger.info("created the offsets topic {} (compacted)", self.offsets_topic)

    def _drop(self, producer: ConfluentTransactionalProducer | None) -> None:
        if producer is not None:
            with contextlib.suppress(Exception):  # a broken client must not hide the error
                producer.close(1.0)

    def reset(self) -> None:
        """Drop the producer; the next ``open`` takes the transactional id again (which
        aborts whatever transaction the dropped one left open)."""
        producer, self.producer = self.producer, None
        self._drop(producer)

    def close(self) -> None:
        self.reset()

    # ---------------------------------------------------------------- checkpoint

    def read_checkpoint(self) -> SinkCheckpoint | None:
        """The last position record of this pipeline that a ``read_committed`` reader sees.

        Opens the producer first: that fences a predecessor and ends its transaction, so
        what is read here is final.
        """
        producer = self.open()
        record = self._read_last(producer)
        # The node starts from the later of this and Redis's position: a commit left
        # unsettled before is settled by this read (it is in it, or it never happened).
        self._unsettled = None
        if record is None:
            return None
        self._stored_epoch = record.epoch
        return SinkCheckpoint(record.position, record.epoch)

    def _read_last(self, producer: ConfluentTransactionalProducer) -> OffsetsRecord | None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        options = {
            **producer.client_options(),
            "group.id": f"ferry-{self.pipeline_id}-offsets-reader",  # never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
        consumer = Consumer(options)
        try:
            part = TopicPartition(self.offsets_topic, 0)
            try:
                low, high = consumer.get_watermark_offsets(
                    part, timeout=self._timeout_s, cached=False
                )
            except KafkaException as exc:
                raise classify(
                    exc, f"{self._what()}: cannot read the offsets topic {self.offsets_topic!r}"
                ) from exc
            stop, window = high, _WINDOW
            deadline = time.monotonic() + self.config.transaction_timeout_ms / 1000 + 10
            while stop > low:
                start = max(low, stop - window)
                found = self._scan(consumer, start, stop, deadline)
                if found is not None:
                    return found
                stop, window = start, window * 8
            return None
        finally:
            consumer.close()

    def _scan(self, consumer: Any, start: int, stop: int, deadline: float) -> OffsetsRecord | None:
        """The last record of this pipeline in [start, stop), once every transaction below
        ``stop`` has ended."""
        from confluent_kafka import KafkaError, TopicPartition

        part = TopicPartition(self.offsets_topic, 0, start)
        consumer.assign([part])
        found: OffsetsRecord | None = None
        while True:
            for message in consumer.consume(500, 0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise classify(
                            ResumableError(str(error)),
                            f"{self._what()}: reading the offsets topic failed: {error}",
                        )
                    continue
                offset = message.offset()
                if offset >= stop:
                    return found
                if message.key() == self._key and message.value() is not None:
                    try:
                        found = OffsetsRecord.from_json(message.value(), offset)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise FatalError(
                            f"{self._what()}: the record at offset {offset} of the offsets"
                            f" topic {self.offsets_topic!r} is not ferry's: {exc}"
                        ) from exc
            [position] = consumer.position([TopicPartition(self.offsets_topic, 0)])
            if position.offset >= stop:
                return found
            if time.monotonic() > deadline:
                raise ResumableError(
                    f"{self._what()}: the offsets topic {self.offsets_topic!r} did not become"
                    f" readable up to offset {stop} (read_committed stops at {position.offset}):"
                    " a transaction there stayed open longer than"
                    f" sink.transaction_timeout_ms ({self.config.transaction_timeout_ms} ms)"
                )

    # ---------------------------------------------------------------------- load

    def load(
        self,
        batch: Batch,
        epoch: int,
        send_all: Callable[[Any], Any],
        describe: Callable[[list[Failure]], FerryError],
    ) -> None:
        """One transaction: the messages ``send_all(producer)`` sends, then the position.
        ``describe`` turns the sends the broker refused into the batch's error."""
        fence("kafka sink", self._stored_epoch, epoch, batch, self.pipeline_id)
        if self._unsettled is not None:
            self._settle_earlier()
        if batch.is_empty:
            # Redis holds the position of batches without changes; the offsets topic
            # follows it at most once a second, so a lost Redis replays little.
            now = time.monotonic()
            if batch.position is None or now - self._last_empty_commit < 1.0:
                return
            self._last_empty_commit = now
        producer = self.open()
        session = self._session
        try:
            producer.begin()
        except Exception as exc:
            self.reset()
            raise self._transaction_error(exc, "begin_transaction") from exc
        try:
            send_all(producer)
            if batch.position is not None:
                record = OffsetsRecord(batch.position, epoch, batch.batch_id, session)
                producer.send_to(self.offsets_topic, 0, self._key, record.to_json(self.pipeline_id))
        except BaseException as exc:
            self._abort(producer)
            if isinstance(exc, FerryError):
                raise
            raise self._transaction_error(exc, "send") from exc
        self.commit(producer, batch, epoch, session, describe)

    def commit(
        self,
        producer: ConfluentTransactionalProducer,
        batch: Batch,
        epoch: int,
        session: str,
        describe: Callable[[list[Failure]], FerryError],
    ) -> None:
        """Commit the open transaction; settle an unknown outcome (module docstring)."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                producer.commit(max(1.0, deadline - time.monotonic()))
                self._stored_epoch = epoch
                return
            except Exception as exc:
                name = error_name(exc)
                if name in FENCED:
                    self.reset()
                    raise self._fenced(exc, batch) from exc
                if _flag(exc, "txn_requires_abort"):  # not committed, and never will be
                    failures = producer.failures()
                    self._abort(producer)
                    if failures:
                        raise describe(failures) from exc
                    raise ResumableError(
                        f"{self._what()}: the transaction was aborted ({exc}); the batch is retried"
                    ) from exc
                if _flag(exc, "retriable") and time.monotonic() < deadline:
                    logger.warning("{}: commit_transaction: {}; trying again", self._what(), exc)
                    time.sleep(0.1)
                    continue
                # Unknown outcome: a new producer settles it.
                logger.warning(
                    "{}: the commit of batch {} ended with {}: settling its outcome",
                    self._what(),
                    batch.batch_id,
                    exc,
                )
                self._unsettled = (session, batch.batch_id)
                self.reset()
                try:
                    committed = self._settle()
                except FerryError as settle_error:
                    raise ResumableError(
                        f"{self._what()}: the commit of this batch ended with {exc}, and its"
                        f" outcome cannot be read yet ({settle_error.message}); it is settled"
                        " before anything else is written"
                    ) from exc
                if committed:
                    logger.info("{}: batch {} committed after all", self._what(), batch.batch_id)
                    self._stored_epoch = epoch
                    return
                raise classify(exc, f"{self._what()}: commit_transaction failed: {exc}") from exc

    def _settle(self) -> bool:
        """Whether the unsettled commit happened: open a producer (init_transactions ends
        it), read the last position record. Clears the unsettled mark."""
        assert self._unsettled is not None
        producer = self.open()
        record = self._read_last(producer)
        session, batch_id = self._unsettled
        self._unsettled = None
        return record is not None and (record.session, record.batch_id) == (session, batch_id)

    def _settle_earlier(self) -> None:
        """A commit left unsettled by an earlier load: if it happened, the node already
        rolled that batch back and is about to write it again: restart from the
        checkpoint instead."""
        if self._settle():
            raise NotActiveError(
                f"{self._what()}: a batch whose commit looked failed was committed after all;"
                " restarting from the sink's checkpoint so that it is not written twice"
            )

    def _abort(self, producer: ConfluentTransactionalProducer) -> None:
        try:
            producer.abort(self._timeout_s)
        except Exception as exc:  # the next open's init_transactions aborts it
            logger.debug("{}: abort_transaction: {}; dropping the producer", self._what(), exc)
            self.reset()

    def _fenced(self, exc: BaseException, batch: Batch) -> FencedError:
        return FencedError(
            f"{self._what()}: fenced by a newer producer of the same transactional id (another"
            f" node took over): this batch's transaction is aborted, nothing of it is visible"
            f" to read_committed consumers ({exc})",
            pipeline=self.pipeline_id,
            batch_id=batch.batch_id,
            position=batch.position,
        )

    def _transaction_error(self, exc: BaseException, what: str) -> FerryError:
        if error_name(exc) in FENCED:
            return FencedError(f"{self._what()}: fenced (another node took over): {exc}")
        return classify(exc, f"{self._what()}: {what} failed: {exc}")
