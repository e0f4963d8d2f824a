"""Kafka sink (configuration; the sink itself follows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class KafkaSinkConfig(BaseModel):
    """`sink: {type: kafka}` — one message per row change, keyed by primary key."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["kafka"]
    bootstrap_servers: str = Field(description="comma-separated host:port list")
    topic: str = Field(
        "ferry.{schema}.{table}",
        description="topic name or template with {schema}, {table}, {pipeline}",
    )
    format: Literal["debezium-json", "canal-json"] = Field(
        "debezium-json", description="message format"
    )
    client: Literal["kafka-python", "confluent-kafka"] = Field(
        "kafka-python",
        description="producer client: kafka-python (pure Python) or confluent-kafka (librdkafka,"
        " `pip install ferry-cdc[kafka-fast]`, ~10x faster)",
    )
    ddl_topic: str = Field(
        "ferry.{pipeline}.schema-changes", description="topic for DDL statements"
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", description="producer compression"
    )
    linger_ms: int = Field(20, ge=0, le=10000, description="producer linger")
    batch_size_bytes: int = Field(1 << 20, ge=1024, description="producer batch size")
    delivery_timeout_ms: int = Field(
        30000, ge=1000, description="a send not confirmed within this fails the batch"
    )
    create_topics: bool = Field(False, description="create missing topics")
    partitions: int = Field(1, ge=1, description="partitions of created topics")
    replication_factor: int = Field(1, ge=1, description="replication of created topics")
    producer: dict[str, Any] = Field(
        default_factory=dict,
        description="extra client options (security, SASL, ...) passed to the producer as is",
    )
