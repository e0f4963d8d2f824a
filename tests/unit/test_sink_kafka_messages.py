"""The Kafka sink sends every message of a change: tombstones and key changes (debezium-json)."""

from __future__ import annotations

import json

from pipeline.model import Batch, RowChange
from sinks.kafka import KafkaSink, KafkaSinkConfig
from tests.unit.test_sink_kafka import POS, Factory


def test_deletes_and_key_changes_send_several_messages_in_order() -> None:
    factory = Factory()
    sink = KafkaSink(
        KafkaSinkConfig(type="kafka", bootstrap_servers="127.0.0.1:1"), "pipe", factory
    )
    changes = [
        RowChange("shop", "t", "delete", {"id": 1, "v": "a"}, None, ("id",), 1.0, POS),
        RowChange(
            "shop", "t", "update", {"id": 2, "v": "b"}, {"id": 3, "v": "b"}, ("id",), 1.0, POS
        ),
    ]
    sink.load(Batch(1, changes, POS), epoch=1)
    sent = factory.last.sent
    assert [(json.loads(k), v and json.loads(v)["op"]) for _, k, v in sent] == [
        ({"id": 1}, "d"),
        ({"id": 1}, None),  # the tombstone
        ({"id": 2}, "d"),
        ({"id": 2}, None),
        ({"id": 3}, "c"),
    ]
    assert factory.last.confirms == [5]


def test_tombstones_can_be_turned_off() -> None:
    factory = Factory()
    config = KafkaSinkConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": "127.0.0.1:1",
            "debezium": {"tombstones.on.delete": False},
        }
    )
    sink = KafkaSink(config, "pipe", factory)
    delete = RowChange("shop", "t", "delete", {"id": 1}, None, ("id",), 1.0, POS)
    sink.load(Batch(1, [delete], POS), epoch=1)
    assert len(factory.last.sent) == 1
