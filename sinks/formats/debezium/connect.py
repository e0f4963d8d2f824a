"""What debezium-json shares with Kafka Connect's JsonConverter and between its row and
schema-change events: ``source.version``, the source block's schema, the helpers of
Connect schemas, and the ``{"schema":…,"payload":…}`` message of ``schemas.enable``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any

from sinks.formats.encoder import utf8

try:
    VERSION = f"ferry-{_dist_version('ferry-cdc')}"  # source.version
except PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "ferry"


def with_schema(schema: str, payload: str) -> bytes:
    """JsonConverter's message with schemas.enable, of JSON texts."""
    return utf8(f'{{"schema":{schema},"payload":{payload}}}')


def opt(kind: str, name: str, optional: bool = True) -> dict[str, Any]:
    return {"type": kind, "optional": optional, "field": name}


def array(items: str, name: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": items, "optional": False},
        "optional": True,
        "field": name,
    }


SOURCE_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        opt("string", "version", False),
        opt("string", "connector", False),
        opt("string", "name", False),
        opt("int64", "ts_ms", False),
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Enum",
            "version": 1,
            "parameters": {
                "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,"
                "false,incremental"
            },
            "default": "false",
            "field": "snapshot",
        },
        opt("string", "db", False),
        opt("string", "sequence"),
        opt("int64", "ts_us"),
        opt("int64", "ts_ns"),
        opt("string", "table"),
        opt("int64", "server_id", False),
        opt("string", "gtid"),
        opt("string", "file", False),
        opt("int64", "pos", False),
        opt("int32", "row", False),
        opt("int64", "thread"),
        opt("string", "query"),
    ],
    "optional": False,
    "name": "io.debezium.connector.mysql.Source",
    "version": 1,
    "field": "source",
}
