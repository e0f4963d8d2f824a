"""KafkaSink against a real Apache Kafka broker, with both clients."""

from __future__ import annotations

import gc
import json
import re
import uuid
import warnings
from collections import defaultdict
from typing import Any

import pytest

from pipeline.errors import FatalError, ResumableError
from pipeline.model import Batch, DdlChange, Position, RowChange
from sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.conftest import require_controllable
from tests.unit.test_formats import EXPECTED, ROW

POS = Position("mysql-bin.000009", 4)


def _confluent() -> Any:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return pytest.mark.skip(reason="confluent-kafka not installed (extra kafka-fast)")
    return []


CLIENTS = [
    pytest.param("kafka-python", id="kafka-python"),
    pytest.param("confluent-kafka", id="confluent-kafka", marks=_confluent()),
]


@pytest.fixture(autouse=True)
def _finalize_refused_sockets() -> Any:
    """kafka-python 3.0 drops the socket of a refused connection attempt without closing
    it (kafka/net/inet.py ``connect``); finalize those quietly here rather than let the
    ResourceWarnings fire at interpreter exit."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_sink(bootstrap: str, client: str, **kw: Any) -> KafkaSink:
    kw.setdefault("format", "ferry-json")  # keys as arrays, values that read back exactly
    config = KafkaSinkConfig(type="kafka", bootstrap_servers=bootstrap, client=client, **kw)
    sink = KafkaSink(config, "itest")
    sink.open()
    return sink


def change(i: int, op: str = "insert", row: dict[str, Any] | None = None) -> RowChange:
    image = row if row is not None else {"id": i, "v": f"value {i}"}
    return RowChange(
        schema="shop",
        table="orders",
        op=op,  # type: ignore[arg-type]
        before=None if op == "insert" else image,
        after=None if op == "delete" else image,
        primary_key=("id",),
        ts=1_700_000_000.0,
        position=POS,
    )


def batch(changes: list[Any], batch_id: int = 1) -> Batch:
    return Batch(batch_id=batch_id, changes=changes, position=POS)


def test_every_value_type_round_trips(kafka_broker: Any, kafka_topic: str, client: str) -> None:
    sink = make_sink(kafka_broker.bootstrap, client, topic=kafka_topic)
    try:
        sink.load(batch([change(1, row={**ROW, "id": 1})]), epoch=1)
    finally:
        sink.close()
    records = kafka_broker.read_all(kafka_topic, min_count=1)
    assert len(records) == 1
    key, value, _, _ = records[0]
    assert key == b"[1]"
    assert json.loads(value)["after"] == {**EXPECTED, "id": 1}


def test_debezium_json_delete_and_its_tombstone(
    kafka_broker: Any, kafka_topic: str, client: str
) -> None:
    sink = make_sink(kafka_broker.bootstrap, client, topic=kafka_topic, format="debezium-json")
    try:
        sink.load(batch([change(1), change(1, "delete")]), epoch=1)
    finally:
        sink.close()
    records = kafka_broker.read_all(kafka_topic, min_count=3)
    assert [(key, value and json.loads(value)["op"]) for key, value, _, _ in records] == [
        (b'{"id":1}', "c"),
        (b'{"id":1}', "d"),
        (b'{"id":1}', None),  # a real tombstone: null value
    ]


def test_same_key_same_partition_in_order(kafka_broker: Any, client: str) -> None:
    topic = kafka_broker.create_topic(f"ferrytest_keys_{uuid.uuid4().hex[:8]}", partitions=4)
    sink = make_sink(kafka_broker.bootstrap, client, topic=topic)
    keys = 24
    try:
        for round_ in range(5):  # five updates of every key, over several batches
            changes = [change(k, "update", {"id": k, "seq": round_}) for k in range(keys)]
            sink.load(batch(changes, batch_id=round_ + 1), epoch=1)
    finally:
        sink.close()
    records = kafka_broker.read_all(topic, min_count=keys * 5)
    assert len(records) == keys * 5
    partitions: dict[bytes, set[int]] = defaultdict(set)
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for key, value, partition, _ in records:  # sorted by (partition, offset)
        partitions[key].add(partition)
        sequences[key].append(json.loads(value)["after"]["seq"])
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys really spread
    assert all(seq == [0, 1, 2, 3, 4] for seq in sequences.values())


def test_created_topics_and_ddl_topic(kafka_broker: Any, client: str) -> None:
    prefix = f"ferrytest_{uuid.uuid4().hex[:8]}"
    sink = make_sink(
        kafka_broker.bootstrap,
        client,
        topic=prefix + ".{schema}.{table}",
        ddl_topic=prefix + ".ddl",
        format="canal-json",
        create_topics=True,
        partitions=3,
    )
    ddl = DdlChange("shop", "ALTER TABLE orders ADD note TEXT", 1_700_000_001.0, POS)
    try:
        sink.load(batch([change(1)]), epoch=1)
        sink.load(batch([ddl], batch_id=2), epoch=1)
    finally:
        sink.close()
    assert kafka_broker.partitions(f"{prefix}.shop.orders") == {0, 1, 2}
    rows = kafka_broker.read_all(f"{prefix}.shop.orders", min_count=1)
    assert json.loads(rows[0][1])["data"] == [{"id": "1", "v": "value 1"}]
    ddls = kafka_broker.read_all(f"{prefix}.ddl", min_count=1)
    assert len(ddls) == 1
    message = json.loads(ddls[0][1])
    assert message["isDdl"] is True and message["sql"] == ddl.statement
    assert ddls[0][0] == b'["shop"]'


def test_message_too_large_is_fatal(kafka_broker: Any, kafka_topic: str, client: str) -> None:
    sink = make_sink(kafka_broker.bootstrap, client, topic=kafka_topic, max_message_bytes=64_000)
    big = change(42, row={"id": 42, "blob": "x" * 100_000})
    try:
        with pytest.raises(FatalError) as info:
            sink.load(batch([change(1), big, change(2)], batch_id=5), epoch=1)
    finally:
        sink.close()
    text = str(info.value)
    assert kafka_topic in text and "shop.orders (id=42)" in text
    assert info.value.batch_id == 5
    # ferry's setting and its value, the message's size; not the client's option names
    assert "sink.max_message_bytes (64000 bytes)" in text, text
    size = re.search(r" is (\d+) bytes \(key and value\)", text)
    assert size and 100_000 < int(size.group(1)) < 101_000, text
    assert "max_request_size" not in text and "message.max.bytes" not in text, text


def test_broker_stopped_mid_batch_fails_then_retry_delivers(make_kafka: Any, client: str) -> None:
    broker = make_kafka()
    require_controllable(broker)
    topic = "ferrytest_restart"
    sink = make_sink(
        broker.bootstrap, client, topic=topic, create_topics=True, delivery_timeout_ms=3000
    )
    try:
        sink.load(batch([change(i) for i in range(100)]), epoch=1)
        assert len(broker.read_all(topic, min_count=100)) == 100

        second = batch([change(i) for i in range(100, 600)], batch_id=2)
        producer = sink._producer
        assert producer is not None
        real_send = producer.send
        sends = 0

        def send_then_stop(topic: str, key: bytes | None, value: bytes) -> None:
            nonlocal sends
            sends += 1
            if sends == 250:
                broker.stop()
            real_send(topic, key, value)

        producer.send = send_then_stop  # type: ignore[method-assign]
        with pytest.raises(ResumableError) as info:
            sink.load(second, epoch=1)
        assert info.value.batch_id == 2

        broker.start()  # Apache Kafka: the same data, the topic still there
        sink.load(second, epoch=1)  # the node's retry after rollback
    finally:
        sink.close()
    records = broker.read_all(topic, min_count=600)
    keys = [json.loads(key)[0] for key, _, _, _ in records]
    assert keys[:100] == list(range(100))  # the first batch, once
    assert set(keys[100:]) == set(range(100, 600))  # the retried one: at least once
