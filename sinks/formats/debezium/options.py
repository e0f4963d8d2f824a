"""debezium-json's options: Debezium's own names and values (``sink.debezium``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DebeziumOptions(BaseModel):
    """`sink.debezium` — Debezium's options for `format: debezium-json`, by Debezium's names.

    Each field is the connector (or JsonConverter) property of the same name, with the
    same values and default; a Debezium configuration can be copied over as is.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    decimal_handling_mode: Literal["precise", "string", "double"] = Field(
        "precise",
        alias="decimal.handling.mode",
        description="DECIMAL/NUMERIC: precise (base64 of the unscaled value, Connect Decimal),"
        ' string ("12.50") or double',
    )
    time_precision_mode: Literal["adaptive_time_microseconds", "connect"] = Field(
        "adaptive_time_microseconds",
        alias="time.precision.mode",
        description="DATETIME/TIME: adaptive_time_microseconds (ms or µs by the column's"
        " precision, TIME in µs) or connect (Connect's Date/Time/Timestamp, milliseconds)",
    )
    bigint_unsigned_handling_mode: Literal["long", "precise"] = Field(
        "long",
        alias="bigint.unsigned.handling.mode",
        description="BIGINT UNSIGNED: long (signed 64-bit, values above 2^63-1 wrap)"
        " or precise (Connect Decimal)",
    )
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = Field(
        "bytes",
        alias="binary.handling.mode",
        description="BINARY/VARBINARY/BLOB: bytes (base64 in JSON), base64, base64-url-safe"
        " or hex strings",
    )
    tombstones_on_delete: bool = Field(
        True,
        alias="tombstones.on.delete",
        description="a delete is followed by a tombstone (same key, null value; Kafka only)",
    )
    schemas_enable: bool = Field(
        False,
        alias="schemas.enable",
        description="JsonConverter's schemas.enable for key and value: each message is"
        ' {"schema":…,"payload":…} (what the JDBC sink and other schema-aware consumers read)',
    )
    replace_null_with_default: bool = Field(
        True,
        alias="replace.null.with.default",
        description="JsonConverter's replace.null.with.default: a NULL in a column with a"
        " DEFAULT is written as that default",
    )
    include_schema_comments: bool = Field(
        False,
        alias="include.schema.comments",
        description="table and column comments in schema-change events",
    )
    event_processing_failure_handling_mode: Literal["fail", "warn", "skip"] = Field(
        "fail",
        alias="event.processing.failure.handling.mode",
        description="a change these options cannot write (with time.precision.mode=connect: a"
        " TIME outside 0-24 h in a NOT NULL column): fail (the pipeline pauses), warn (left"
        " out, logged) or skip (left out)",
    )
    topic_prefix: str | None = Field(
        None,
        alias="topic.prefix",
        description="source.name and the prefix of schema names (<prefix>.<db>.<table>.Value);"
        " default: the pipeline id",
    )
