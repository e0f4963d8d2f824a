"""Producer adapters: the few things ``KafkaSink`` needs from a Kafka client.

One adapter per client — ``kafka-python`` (pure Python, the default) and
``confluent-kafka`` (librdkafka, about 10x faster; ``pip install
'ferry-cdc[kafka-fast]'``). Everything else (topics, keys, formats, error
mapping, and the rule that a batch counts only when every one of its sends is
confirmed) lives once in ``sinks.kafka``.

An adapter reports, per send, whether the broker confirmed it; it never decides
whether a batch succeeded. Both are configured the same way: ``acks=all``,
idempotence on, compression, linger, batch size, maximum message size and a
delivery timeout after which an unconfirmed send fails. ``sink.producer``
options are passed to the chosen client as is, in that client's own spelling
(``security_protocol`` for kafka-python, ``security.protocol`` for
confluent-kafka).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, register_classifier

if TYPE_CHECKING:
    from sinks.kafka import KafkaSinkConfig

INSTALL_HINT = "pip install 'ferry-cdc[kafka-fast]'"


@dataclass(slots=True)
class Failure:
    """One send the broker did not confirm."""

    topic: str
    key: bytes | None
    error: BaseException


@dataclass(slots=True)
class Outcome:
    """Results of the sends made since the previous ``confirm``."""

    confirmed: int = 0
    failures: list[Failure] = field(default_factory=list)


class ProducerAdapter(ABC):
    """A Kafka producer seen by ``KafkaSink``.

    ``send`` queues one message and may raise at once (message too large,
    unknown topic, queue blocked past the timeout). ``confirm`` pushes out what
    is queued, waits up to ``timeout`` seconds, and reports how many of the
    sends since the previous ``confirm`` were confirmed and which failed; sends
    still pending when it returns are neither.
    """

    @abstractmethod
    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None: ...

    @abstractmethod
    def confirm(self, timeout: float) -> Outcome: ...

    @abstractmethod
    def ping(self, timeout: float) -> None:
        """Raise if no broker answers a metadata request within ``timeout`` seconds."""

    @abstractmethod
    def create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        """Create the topics that do not exist yet (existing ones are fine)."""

    @abstractmethod
    def close(self, timeout: float) -> None:
        """Stop the client; sends still pending after ``timeout`` seconds are dropped."""


def _librdkafka_name(error: BaseException) -> str | None:
    """The librdkafka error name a confluent-kafka exception carries, else None."""
    try:
        import confluent_kafka as ck
    except ImportError:
        return None
    inner = error.args[0] if isinstance(error, ck.KafkaException) and error.args else error
    return inner.name() if isinstance(inner, ck.KafkaError) else None


def too_large(error: BaseException) -> bool:
    """The client (before sending) or the broker refused a message as too large."""
    from kafka.errors import MessageSizeTooLargeError, RecordListTooLargeError

    if isinstance(error, MessageSizeTooLargeError | RecordListTooLargeError):
        return True
    return _librdkafka_name(error) in {"MSG_SIZE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"}


def timed_out(error: BaseException) -> bool:
    """A send (or the metadata it waited for) was not done within the delivery timeout:
    the clients' ``delivery_timeout_ms`` / ``max_block_ms`` / ``message.timeout.ms``, which
    ferry sets from ``sink.delivery_timeout_ms``."""
    from kafka.errors import KafkaTimeoutError

    if isinstance(error, KafkaTimeoutError):
        return True
    return _librdkafka_name(error) in {"_MSG_TIMED_OUT", "_TIMED_OUT"}


def kafka_python_errors(exc: BaseException) -> bool | None:
    """kafka-python's exceptions: resumable, fatal, or None when ``exc`` is not one."""
    try:
        import kafka.errors as kf
    except ImportError:  # pragma: no cover - kafka-python is a runtime dependency
        return None
    if isinstance(exc, kf.KafkaError):
        fatal = (
            kf.MessageSizeTooLargeError,
            kf.RecordListTooLargeError,
            kf.TopicAuthorizationFailedError,
            kf.ClusterAuthorizationFailedError,
            kf.TransactionalIdAuthorizationFailedError,
            kf.InvalidTopicError,
            kf.UnsupportedVersionError,
        )
        if isinstance(exc, fatal):
            return False
        unavailable = (
            kf.BrokerNotAvailableError,
            kf.KafkaTimeoutError,
            kf.KafkaConnectionError,
            kf.NodeNotReadyError,
            kf.RequestTimedOutError,
            # The idempotent producer's state was lost (broker restarted empty);
            # the sink rebuilds its client before the retry.
            kf.OutOfOrderSequenceNumberError,
            kf.UnknownProducerIdError,
            kf.InvalidProducerEpochError,
        )
        return isinstance(exc, unavailable) or bool(getattr(exc, "retriable", False))
    return None


# librdkafka (confluent-kafka) error names, by class. Names, not numbers, so
# that a code missing from an older client is simply skipped.
LIBRDKAFKA_FATAL = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_MSG_SIZE",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "SASL_AUTHENTICATION_FAILED",
        "_AUTHENTICATION",
        "_SSL",
        "TOPIC_EXCEPTION",  # invalid topic name
        "INVALID_CONFIG",
        "_INVALID_ARG",
        "UNSUPPORTED_VERSION",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "POLICY_VIOLATION",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_PARTITIONS",
    }
)
LIBRDKAFKA_RESUMABLE = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_RESOLVE",
        "_QUEUE_FULL",
        "_UNKNOWN_TOPIC",  # not (yet) created; may appear
        "_UNKNOWN_PARTITION",
        "_PURGE_QUEUE",  # dropped while the client was being rebuilt
        "_PURGE_INFLIGHT",
        "_DESTROY",
        "_FATAL",  # the idempotent producer gave up; the sink rebuilds it
        "_ISR_INSUFF",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "UNKNOWN_TOPIC_OR_PART",
        "KAFKA_STORAGE_ERROR",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "UNKNOWN_PRODUCER_ID",
        "INVALID_PRODUCER_EPOCH",
        "THROTTLING_QUOTA_EXCEEDED",
    }
)


def librdkafka_errors(exc: BaseException) -> bool | None:
    """confluent-kafka errors: a ``KafkaException`` carrying a ``KafkaError``.

    Known codes decide (``LIBRDKAFKA_FATAL`` / ``LIBRDKAFKA_RESUMABLE``); other
    codes follow librdkafka's own ``retriable()`` flag. librdkafka's
    ``fatal()`` flag means the client instance is unusable, not that retrying
    the batch cannot work: the sink rebuilds the client, so it does not make
    the error fatal by itself.
    """
    try:
        import confluent_kafka as ck
    except ImportError:  # the optional client (ferry-cdc[kafka-fast]) is not installed
        return None
    error = exc.args[0] if isinstance(exc, ck.KafkaException) and exc.args else exc
    if not isinstance(error, ck.KafkaError):
        return None
    name = error.name()
    if name in LIBRDKAFKA_FATAL:
        return False
    if name in LIBRDKAFKA_RESUMABLE:
        return True
    return bool(error.retriable())


# Both clients' exceptions, registered when the Kafka sink is imported (it imports this).
register_classifier(kafka_python_errors)
register_classifier(librdkafka_errors)


def make_producer(config: KafkaSinkConfig, client_id: str) -> ProducerAdapter:
    """The adapter for ``config.client``; ConfigError if that client is not installed."""
    if config.client == "confluent-kafka":
        try:
            import confluent_kafka  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "sink.client: confluent-kafka is configured but not installed;"
                f" install it with: {INSTALL_HINT} (or set client: kafka-python)"
            ) from exc
        return ConfluentProducer(config, client_id)
    return KafkaPythonProducer(config, client_id)


def _request_timeout_ms(config: KafkaSinkConfig) -> int:
    # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
    return max(500, min(30000, config.delivery_timeout_ms - config.linger_ms))


class KafkaPythonProducer(ProducerAdapter):
    """kafka-python 2.2+/3.x ``KafkaProducer``; each send's future is checked."""

    def __init__(self, config: KafkaSinkConfig, client_id: str) -> None:
        from kafka import KafkaProducer

        self._config = config
        self._options: dict[str, Any] = dict(
            bootstrap_servers=config.bootstrap_servers.split(","),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if config.compression == "none" else config.compression,
            linger_ms=config.linger_ms,
            batch_size=config.batch_size_bytes,
            max_request_size=config.max_message_bytes,
            delivery_timeout_ms=config.delivery_timeout_ms,
            request_timeout_ms=_request_timeout_ms(config),
            max_block_ms=config.delivery_timeout_ms,
            bootstrap_timeout_ms=config.delivery_timeout_ms,
        )
        self._options.update(config.producer)
        self._producer = KafkaProducer(**self._options)
        self._futures: list[tuple[Any, str, bytes | None]] = []

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._futures.append((self._producer.send(topic, value=value, key=key), topic, key))

    def confirm(self, timeout: float) -> Outcome:
        from kafka.errors import KafkaTimeoutError

        futures, self._futures = self._futures, []
        # On timeout, what is still pending is reported as neither confirmed nor failed.
        with contextlib.suppress(KafkaTimeoutError):
            self._producer.flush(timeout=timeout)
        outcome = Outcome()
        for future, topic, key in futures:
            if not future.is_done:
                continue
            if future.exception is not None:
                outcome.failures.append(Failure(topic, key, future.exception))
            else:
                outcome.confirmed += 1
        return outcome

    def ping(self, timeout: float) -> None:
        # KafkaProducer() already bootstrapped (it raises KafkaTimeoutError
        # "Unable to bootstrap" after bootstrap_timeout_ms when nothing answers).
        pass

    def _admin(self) -> Any:
        from kafka import KafkaAdminClient

        allowed = KafkaAdminClient.DEFAULT_CONFIG
        options = {k: v for k, v in self._options.items() if k in allowed}
        options["request_timeout_ms"] = self._config.delivery_timeout_ms
        return KafkaAdminClient(**options)

    def create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            existing = set(admin.list_topics())
            missing = {
                name: {"num_partitions": partitions, "replication_factor": replication}
                for name in names
                if name not in existing
            }
            if not missing:
                return
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently
                admin.create_topics(missing, timeout_ms=self._config.delivery_timeout_ms)
            admin.wait_for_topics(list(missing), timeout_ms=self._config.delivery_timeout_ms)
        finally:
            admin.close()

    def close(self, timeout: float) -> None:
        from kafka.errors import KafkaTimeoutError

        self._futures = []
        try:
            self._producer.close(timeout=timeout)
        except KafkaTimeoutError:
            # Sends still pending (the broker is away): kafka-python's close flushes first
            # and gives up without closing (its __del__ would try again, and raise, later).
            # Fail what is pending, then close without waiting.
            self._producer._accumulator.abort_incomplete_batches()
            self._producer.close(timeout=0)


class ConfluentProducer(ProducerAdapter):
    """confluent-kafka ``Producer``. librdkafka reports failed deliveries only
    (``delivery.report.only.error``): a Python callback per confirmed message cost the
    node about as much as the send itself. A send is confirmed when ``flush`` left it
    neither queued nor in flight and it did not fail."""

    def __init__(self, config: KafkaSinkConfig, client_id: str) -> None:
        self._config = config
        self._options: dict[str, Any] = {
            "bootstrap.servers": config.bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": config.compression,
            "linger.ms": config.linger_ms,
            "batch.size": config.batch_size_bytes,
            "message.max.bytes": max(config.max_message_bytes, 1000),
            "message.timeout.ms": config.delivery_timeout_ms,
            "request.timeout.ms": _request_timeout_ms(config),
            "delivery.report.only.error": True,
        }
        self._options.update(config.producer)
        self._options["on_delivery"] = self._delivered
        self._producer = self._build(self._options)
        self._sent = 0  # since the previous confirm
        self._failures: list[Failure] = []

    def _build(self, options: dict[str, Any]) -> Any:
        from confluent_kafka import Producer

        return Producer(options)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:  # reports of successes (a user's producer option) are not used
            from confluent_kafka import KafkaException

            self._failures.append(Failure(message.topic(), message.key(), KafkaException(error)))

    def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key)
                self._sent += 1
                return
            except BufferError:  # local queue full: serve callbacks, then try again
                self._producer.poll(0.05)

    def confirm(self, timeout: float) -> Outcome:
        left = self._producer.flush(timeout)  # serves the delivery callbacks
        failures, self._failures = self._failures, []
        outcome = Outcome(max(0, self._sent - left - len(failures)), failures)
        self._sent = 0
        return outcome

    def ping(self, timeout: float) -> None:
        self._producer.list_topics(timeout=timeout)

    def create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        options = {k: v for k, v in self._options.items() if not _producer_only(k)}
        admin = AdminClient(options)
        timeout = self._config.delivery_timeout_ms / 1000
        existing = set(admin.list_topics(timeout=timeout).topics)
        missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
        if not missing:
            return
        for future in admin.create_topics(missing, operation_timeout=timeout).values():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def close(self, timeout: float) -> None:
        self._producer.flush(timeout)
        self._producer.purge()  # drop what is left (after a failed batch)
        self._producer.flush(0)
        self._sent, self._failures = 0, []


def _producer_only(option: str) -> bool:
    return option in {
        "acks",
        "enable.idempotence",
        "compression.type",
        "linger.ms",
        "batch.size",
        "message.timeout.ms",
        "request.timeout.ms",
        "delivery.report.only.error",
        "on_delivery",
    }


class ConfluentTransactionalProducer(ConfluentProducer):
    """confluent-kafka ``Producer`` with a ``transactional.id`` (``sink.exactly_once``).

    A thin layer over librdkafka's transaction API: ``init`` (fences every earlier
    producer of the same transactional id and completes or aborts its open transaction),
    ``begin``, ``send`` (also to a fixed partition), ``commit`` and ``abort``. They raise
    librdkafka's ``KafkaException``; ``sinks.kafka_eos`` decides what each error means.
    Its admin and consumer clients share the producer's connection options
    (``sink.producer``: security, SASL).
    """

    def __init__(self, config: KafkaSinkConfig, client_id: str, transactional_id: str) -> None:
        # librdkafka: message.timeout.ms may not exceed transaction.timeout.ms
        extra = {
            "transactional.id": transactional_id,
            "transaction.timeout.ms": config.transaction_timeout_ms,
        }
        self._transactional = extra
        super().__init__(config, client_id)

    def _build(self, options: dict[str, Any]) -> Any:
        from confluent_kafka import Producer

        return Producer({**options, **self._transactional})

    def init(self, timeout: float) -> None:
        self._producer.init_transactions(timeout)

    def begin(self) -> None:
        self._sent, self._failures = 0, []
        self._producer.begin_transaction()

    def send_to(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        self._producer.produce(topic, value, key, partition=partition)

    def commit(self, timeout: float) -> None:
        self._producer.commit_transaction(timeout)

    def abort(self, timeout: float) -> None:
        self._producer.abort_transaction(timeout)

    def failures(self) -> list[Failure]:
        """Sends the broker refused since ``begin`` (their delivery reports)."""
        self._producer.poll(0)
        return list(self._failures)

    def metadata(self, timeout: float) -> Any:
        return self._producer.list_topics(timeout=timeout)

    def client_options(self) -> dict[str, Any]:
        """The connection options, for an admin client or a consumer of the same cluster."""
        return {
            k: v
            for k, v in self._options.items()
            if not _producer_only(k) and k not in ("client.id", "message.max.bytes")
        }

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_options())

    def close(self, timeout: float) -> None:
        # a fenced or failed producer has nothing worth waiting for: drop it, then flush
        self._producer.purge()
        self._producer.flush(min(timeout, 1.0))
        self._sent, self._failures = 0, []
