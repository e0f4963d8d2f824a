"""KafkaSink logic with a fake producer adapter, and the adapters' per-send accounting."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RequestTimedOutError
from kafka.future import Future
from pydantic import ValidationError

from pipeline.errors import ConfigError, FatalError, ResumableError, classify
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.kafka import KafkaSink, KafkaSinkConfig, topic_name
from sinks.producers import (
    ConfluentProducer,
    Failure,
    KafkaPythonProducer,
    Outcome,
    ProducerAdapter,
    make_producer,
)
from tests.unit.test_formats import FILED_DDL, selected

POS = Position("mysql-bin.000002", 77)


class FakeProducer(ProducerAdapter):
    """Records sends; outcome controlled per send index."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.unconfirmed: list[int] = []
        self.fail: dict[int, BaseException] = {}  # index -> error reported by confirm
        self.pending: set[int] = set()  # neither confirmed nor failed
        self.raise_on_send: dict[int, BaseException] = {}  # index -> raised by send
        self.refused: list[tuple[str, bytes | None, bytes]] = []  # sends raise_on_send hit
        self.confirms: list[int] = []  # len(unconfirmed) at each confirm
        self.created: list[list[str]] = []
        self.closed = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        index = len(self.sent)
        if index in self.raise_on_send:
            self.refused.append((topic, key, value))
            raise self.raise_on_send.pop(index)
        self.sent.append((topic, key, value))
        self.unconfirmed.append(index)

    def confirm(self, timeout: float) -> Outcome:
        outcome = Outcome()
        for index in self.unconfirmed:
            topic, key, _ = self.sent[index]
            if index in self.fail:
                outcome.failures.append(Failure(topic, key, self.fail[index]))
            elif index not in self.pending:
                outcome.confirmed += 1
        self.confirms.append(len(self.unconfirmed))
        self.unconfirmed = []
        return outcome

    def ping(self, timeout: float) -> None:
        pass

    def create_topics(self, names: list[str], partitions: int, replication: int) -> None:
        self.created.append(names)

    def close(self, timeout: float) -> None:
        self.closed = True


def cfg(**kw: Any) -> KafkaSinkConfig:
    # delivery is the subject here: ferry-json (one message per change, keys as arrays);
    # debezium-json's tombstones and key changes: test_sink_kafka_messages.py
    kw.setdefault("format", "ferry-json")
    return KafkaSinkConfig(type="kafka", bootstrap_servers="127.0.0.1:1", **kw)


class Factory:
    def __init__(self) -> None:
        self.made: list[FakeProducer] = []

    def __call__(self, config: KafkaSinkConfig, client_id: str) -> FakeProducer:
        producer = FakeProducer()
        self.made.append(producer)
        return producer

    @property
    def last(self) -> FakeProducer:
        return self.made[-1]


def sink(**kw: Any) -> tuple[KafkaSink, Factory]:
    factory = Factory()
    s = KafkaSink(cfg(**kw), "pipe", producer_factory=factory)
    s.open()
    return s, factory


def row(i: int, table: str = "orders") -> RowChange:
    return RowChange("shop", table, "insert", None, {"id": i, "v": "x"}, ("id",), 1.0, POS)


def batch(*changes: Any, batch_id: int = 1) -> Batch:
    return Batch(batch_id=batch_id, changes=list(changes), position=POS)


def test_all_confirmed_returns_and_sends_topic_key_value() -> None:
    s, f = sink()
    ddl = DdlChange("shop", "ALTER TABLE orders ADD c INT", 2.0, POS)
    s.load(batch(row(1), row(2, "items"), ddl), epoch=1)
    topics = [t for t, _, _ in f.last.sent]
    assert topics == ["ferry.shop.orders", "ferry.shop.items", "ferry.pipe.schema-changes"]
    assert [k for _, k, _ in f.last.sent] == [b"[1]", b"[2]", b'["shop"]']
    assert json.loads(f.last.sent[0][2])["after"] == {"id": 1, "v": "x"}
    assert json.loads(f.last.sent[2][2])["ddl"] == "ALTER TABLE orders ADD c INT"
    assert f.last.confirms == [3]


def test_canal_format_and_fixed_topic() -> None:
    s, f = sink(format="canal-json", topic="all-changes")
    s.load(batch(row(1)), epoch=1)
    topic, _, value = f.last.sent[0]
    assert topic == "all-changes"
    assert json.loads(value)["type"] == "INSERT"


def test_a_ddl_goes_to_the_topic_of_each_table_it_changes() -> None:
    """{schema} and {table} of ddl_topic are the classifier's, not the session's."""
    s, f = sink(ddl_topic="ddl.{schema}.{table}")
    statements = [*FILED_DDL, "CREATE DATABASE d"]
    for number, sql in enumerate(statements, start=1):
        s.load(batch(selected(sql), batch_id=number), epoch=1)
        s.load(batch(DdlChange("shop", sql, 2.0, POS), batch_id=number), epoch=1)  # by hand
    sent = [(topic, key) for producer in f.made for topic, key, _ in producer.sent]
    assert sent == [
        ("ddl.shop.staff", b'["shop"]'),
        ("ddl.shop.staff", b'["shop"]'),
        ("ddl.shop.t", b'["shop"]'),
        ("ddl.shop.t", b'["shop"]'),
        ("ddl.shop.t", b'["shop"]'),
        ("ddl.shop.t", b'["shop"]'),
        ("ddl.shop.a", b'["shop"]'),
        ("ddl.shop.b", b'["shop"]'),
        ("ddl.shop.a", b'["shop"]'),
        ("ddl.shop.b", b'["shop"]'),
        ("ddl.other.t", b'["other"]'),
        ("ddl.other.t", b'["other"]'),
        ("ddl.d._ddl", b'["d"]'),
        ("ddl.d._ddl", b'["d"]'),
    ]


def test_empty_ddl_topic_skips_ddl() -> None:
    s, f = sink(ddl_topic="")
    s.load(batch(DdlChange("shop", "DROP TABLE t", 2.0, POS)), epoch=1)
    assert f.last.sent == []


def test_empty_batch_sends_nothing() -> None:
    s, f = sink()
    s.load(Batch(batch_id=3, position=POS), epoch=1)
    assert f.last.sent == [] and f.last.confirms == []


def test_one_failed_send_fails_the_batch_naming_topic_and_key() -> None:
    s, f = sink()
    f.last.fail[1] = RequestTimedOutError("broker gone")
    with pytest.raises(ResumableError) as info:
        s.load(batch(row(1), row(2), row(3), batch_id=7), epoch=1)
    text = str(info.value)
    assert "ferry.shop.orders" in text and "insert of shop.orders (id=2)" in text
    assert info.value.batch_id == 7 and info.value.position == POS
    assert isinstance(info.value.__cause__, RequestTimedOutError)


def test_a_failed_send_never_shows_a_secret_key() -> None:
    s, f = sink()
    f.last.fail[0] = MessageSizeTooLargeError("too big")
    token = "tok-9f8e7d6c5b4a"
    change = RowChange(
        "shop", "sessions", "insert", None, {"api_token": token}, ("api_token",), 1.0, POS
    )
    with pytest.raises(FatalError) as info:
        s.load(batch(change), epoch=1)
    assert "shop.sessions (api_token=***)" in str(info.value)
    assert token not in str(info.value) and token not in repr(info.value.__cause__)


def test_unconfirmed_send_without_error_fails_the_batch() -> None:
    """A flush that returns while a send is still pending is not a confirmation."""
    s, f = sink()
    f.last.pending.add(0)
    with pytest.raises(ResumableError, match="1 of 2 sends not confirmed"):
        s.load(batch(row(1), row(2)), epoch=1)


def test_fatal_failure_wins_over_resumable_ones() -> None:
    s, f = sink()
    f.last.fail[0] = RequestTimedOutError("slow")
    f.last.fail[2] = MessageSizeTooLargeError("too big")
    with pytest.raises(FatalError, match=r"\(id=3\).*\(2 sends failed\)"):
        s.load(batch(row(1), row(2), row(3)), epoch=1)


def test_send_refused_at_once_still_waits_for_earlier_sends() -> None:
    s, f = sink()
    producer = f.last
    producer.raise_on_send[2] = MessageSizeTooLargeError("record too large")
    with pytest.raises(FatalError, match=r"shop.orders \(id=3\) for topic 'ferry.shop.orders'"):
        s.load(batch(row(1), row(2), row(3), row(4)), epoch=1)
    assert producer.confirms == [2]  # the two earlier sends were waited for
    assert len(producer.sent) == 2  # nothing sent after the refusal


def big_row(i: int, size: int) -> RowChange:
    return RowChange(
        "shop", "docs", "insert", None, {"id": i, "body": "x" * size}, ("id",), 1.0, POS
    )


def client_too_large(client: str) -> BaseException:
    """What each client raises from send() for a message over its size option."""
    if client == "kafka-python":
        return MessageSizeTooLargeError(
            "The message is 100354 bytes when serialized which is larger than the maximum"
            " request size you have configured with the max_request_size configuration"
        )
    ck = pytest.importorskip("confluent_kafka")
    return ck.KafkaException(ck.KafkaError(ck.KafkaError.MSG_SIZE_TOO_LARGE))


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_a_message_over_the_limit_names_ferrys_setting_not_the_clients(client: str) -> None:
    s, f = sink(client=client, max_message_bytes=64_000)
    f.last.raise_on_send[1] = client_too_large(client)
    big = big_row(42, 100_000)
    with pytest.raises(FatalError) as info:
        s.load(batch(row(1), big, row(2), batch_id=4), epoch=1)
    text = str(info.value)
    [(_, key, value)] = f.last.refused
    size = len(key or b"") + len(value)
    assert "sink.max_message_bytes (64000 bytes)" in text, text
    assert f"is {size} bytes (key and value)" in text, text
    assert "the insert of shop.docs (id=42)" in text and "'ferry.shop.docs'" in text, text
    assert "max_request_size" not in text and "message.max.bytes" not in text, text
    assert info.value.batch_id == 4
    assert f.last.confirms == [1]  # the send before it was waited for


def test_a_message_too_large_for_the_limit_shows_no_secret_key() -> None:
    s, f = sink(max_message_bytes=2048)
    f.last.raise_on_send[0] = client_too_large("kafka-python")
    token = "tok-9f8e7d6c5b4a"
    change = RowChange(
        "shop",
        "sessions",
        "insert",
        None,
        {"api_token": token, "blob": "y" * 5000},
        ("api_token",),
        1.0,
        POS,
    )
    with pytest.raises(FatalError) as info:
        s.load(batch(change), epoch=1)
    text = str(info.value)
    assert "shop.sessions (api_token=***)" in text and "sink.max_message_bytes" in text
    assert token not in text


def test_a_message_the_broker_refused_names_the_topics_limit() -> None:
    """Sent within sink.max_message_bytes, refused by the broker: the topic's (or the
    broker's) limit is lower than ferry's setting."""
    s, f = sink(max_message_bytes=1 << 20)
    f.last.fail[0] = MessageSizeTooLargeError("The message is larger than the broker accepts")
    with pytest.raises(FatalError) as info:
        s.load(batch(big_row(7, 300_000)), epoch=1)
    text = str(info.value)
    assert "the broker refused the message of the insert of shop.docs (id=7)" in text, text
    assert "max.message.bytes" in text and "sink.max_message_bytes is 1048576 bytes" in text


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_a_send_that_timed_out_names_sink_delivery_timeout_ms(client: str) -> None:
    if client == "kafka-python":
        error: BaseException = KafkaTimeoutError(
            "Expiring 1 record(s) for t-0: 30000 ms has passed since batch creation"
        )
    else:
        ck = pytest.importorskip("confluent_kafka")
        error = ck.KafkaException(ck.KafkaError(ck.KafkaError._MSG_TIMED_OUT))
    s, f = sink(client=client, delivery_timeout_ms=7000)
    f.last.fail[0] = error
    with pytest.raises(ResumableError) as info:
        s.load(batch(row(1)), epoch=1)
    text = str(info.value)
    assert "not confirmed within sink.delivery_timeout_ms (7000 ms)" in text, text
    assert "shop.orders (id=1)" in text


def test_unconfirmed_sends_name_sink_delivery_timeout_ms() -> None:
    s, f = sink(delivery_timeout_ms=4000)
    f.last.pending.add(0)
    with pytest.raises(ResumableError, match=r"sink.delivery_timeout_ms \(4000 ms\)"):
        s.load(batch(row(1)), epoch=1)


def test_failed_batch_rebuilds_the_client_and_retry_succeeds() -> None:
    s, f = sink()
    first = f.last
    first.fail[0] = KafkaTimeoutError("expired")
    b = batch(row(1), row(2))
    with pytest.raises(ResumableError):
        s.load(b, epoch=1)
    assert first.closed
    s.load(b, epoch=1)  # the node's retry
    assert len(f.made) == 2
    assert [k for _, k, _ in f.last.sent] == [b"[1]", b"[2]"]


def test_create_topics_once_per_topic() -> None:
    s, f = sink(create_topics=True, partitions=3)
    s.load(batch(row(1), row(2, "items")), epoch=1)
    s.load(batch(row(3), row(4, "lines")), epoch=1)
    assert f.last.created == [["ferry.shop.items", "ferry.shop.orders"], ["ferry.shop.lines"]]


def test_topic_names_are_sanitised() -> None:
    assert topic_name("cdc.{schema}.{table}", "my db", "tä$b", "p") == "cdc.my_db.t__b"
    assert topic_name("{pipeline}-x", "s", "t", "orders-1") == "orders-1-x"


def test_unknown_topic_placeholder_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="database"):
        cfg(topic="x.{database}")


def test_missing_confluent_kafka_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(ConfigError, match=r"pip install 'ferry-cdc\[kafka-fast\]'"):
        make_producer(cfg(client="confluent-kafka"), "c")


def test_unencodable_value_is_fatal_and_nothing_left_in_flight() -> None:
    s, f = sink()
    bad = row(2)
    assert bad.after is not None
    bad.after["v"] = object()
    with pytest.raises(FatalError, match="cannot encode"):
        s.load(batch(row(1), bad), epoch=1)
    assert f.made[0].confirms == [1]


# --- the adapters' accounting, with fake clients --------------------------


class FakeKafkaPython:
    def __init__(self) -> None:
        self.futures: list[Future] = []

    def send(self, topic: str, value: bytes, key: bytes | None) -> Future:
        future = Future()
        self.futures.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        raise KafkaTimeoutError("flush timed out")


def test_kafka_python_adapter_checks_every_future() -> None:
    adapter = KafkaPythonProducer.__new__(KafkaPythonProducer)
    fake = FakeKafkaPython()
    adapter._producer = fake
    adapter._futures = []
    for i in range(4):
        adapter.send("t", str(i).encode(), b"v")
    fake.futures[0].success("ok")
    fake.futures[1].failure(RequestTimedOutError("x"))
    fake.futures[3].success("ok")  # 2 stays pending although flush returned
    outcome = adapter.confirm(0.1)
    assert outcome.confirmed == 2
    assert [(x.topic, x.key) for x in outcome.failures] == [("t", b"1")]
    assert adapter.confirm(0.1).confirmed == 0  # the next confirm starts afresh


class FakeMessage:
    def __init__(self, topic: str, key: bytes | None) -> None:
        self._topic, self._key = topic, key

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key


class FakeConfluent:
    """librdkafka as the adapter sees it: ``delivery.report.only.error`` decides whether a
    delivered message is reported to a callback at all."""

    made: list[FakeConfluent] = []

    def __init__(self, options: dict[str, Any], errors: dict[int, Any] | None = None) -> None:
        self.options = options
        self.queue: list[tuple[str, bytes | None, Any]] = []
        self.errors = errors if errors is not None else {}
        self.full_once = True
        self.success_reports = 0
        FakeConfluent.made.append(self)

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any = None) -> None:
        if self.full_once and len(self.queue) == 1:
            self.full_once = False
            raise BufferError("queue full")
        self.queue.append((topic, key, on_delivery or self.options.get("on_delivery")))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        only_errors = self.options.get("delivery.report.only.error", False)
        for index, (topic, key, callback) in enumerate(self.queue):
            if index == 2:
                continue  # never delivered within the timeout
            error = self.errors.get(index)
            if error is None and only_errors:
                continue
            self.success_reports += error is None
            callback(error, FakeMessage(topic, key))
        left = 1 if len(self.queue) > 2 else 0
        self.queue = []
        return left


def test_confluent_adapter_counts_deliveries_with_a_report_per_failure_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ck = pytest.importorskip("confluent_kafka")
    monkeypatch.setattr(ck, "Producer", FakeConfluent)
    adapter = ConfluentProducer(cfg(client="confluent-kafka"), "c")
    fake = FakeConfluent.made[-1]
    fake.errors = {1: ck.KafkaError(ck.KafkaError._MSG_TIMED_OUT)}
    for i in range(4):
        adapter.send("t", str(i).encode(), b"v")  # the 2nd hits BufferError once
    outcome = adapter.confirm(0.1)
    assert outcome.confirmed == 2  # of 4: one failed, one still in flight
    assert len(outcome.failures) == 1
    failure = outcome.failures[0]
    assert (failure.topic, failure.key) == ("t", b"1")
    assert isinstance(failure.error, ck.KafkaException)
    assert fake.success_reports == 0, "a Python callback per delivered message"
    adapter.send("t", b"9", b"v")
    assert adapter.confirm(0.1).confirmed == 1  # the next confirm starts afresh


# --- error classes -----------------------------------------------------------

KAFKA_PYTHON_CASES = [
    (KafkaTimeoutError("expired"), ResumableError),
    (RequestTimedOutError(), ResumableError),
    (MessageSizeTooLargeError(), FatalError),
]


@pytest.mark.parametrize("exc,kind", KAFKA_PYTHON_CASES)
def test_classify_kafka_python(exc: BaseException, kind: type) -> None:
    assert type(classify(exc)) is kind


def test_classify_kafka_python_producer_state_lost_is_resumable() -> None:
    from kafka.errors import OutOfOrderSequenceNumberError, UnknownProducerIdError

    assert isinstance(classify(UnknownProducerIdError()), ResumableError)
    assert isinstance(classify(OutOfOrderSequenceNumberError()), ResumableError)


@pytest.mark.parametrize(
    "code,kind",
    [
        ("_MSG_TIMED_OUT", ResumableError),
        ("_TRANSPORT", ResumableError),
        ("_ALL_BROKERS_DOWN", ResumableError),
        ("NOT_ENOUGH_REPLICAS", ResumableError),
        ("_FATAL", ResumableError),
        ("MSG_SIZE_TOO_LARGE", FatalError),
        ("TOPIC_AUTHORIZATION_FAILED", FatalError),
        ("SASL_AUTHENTICATION_FAILED", FatalError),
        ("UNKNOWN", FatalError),  # unknown and not retriable
    ],
)
def test_classify_librdkafka(code: str, kind: type) -> None:
    ck = pytest.importorskip("confluent_kafka")
    error = ck.KafkaError(getattr(ck.KafkaError, code))
    assert type(classify(ck.KafkaException(error))) is kind


def test_classify_librdkafka_follows_retriable_flag_for_other_codes() -> None:
    ck = pytest.importorskip("confluent_kafka")
    code = ck.KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    assert isinstance(classify(ck.KafkaException(ck.KafkaError(code))), FatalError)
    retriable = ck.KafkaError(code, "loading", retriable=True)
    assert isinstance(classify(ck.KafkaException(retriable)), ResumableError)
