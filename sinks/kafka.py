"""Kafka sink: one message per row change (plus tombstones), keyed by the key, on either client.

Choosing the client (``sink.client``):

* ``kafka-python`` (default): pure Python, nothing to compile or download;
  about 12-18k messages/s here, which caps a pipeline well below what the
  binlog reader can decode. Fine for modest change rates.
* ``confluent-kafka``: librdkafka through a binary wheel
  (``pip install 'ferry-cdc[kafka-fast]'``), an order of magnitude faster;
  choose it for busy databases.

Both give the same guarantees: acks=all, idempotent producer, one key always on
one partition (so per-key order), and ``load`` returns only when every message
of the batch was confirmed by the broker; any failed or unconfirmed send fails
the whole batch, and the client is rebuilt before the next batch. Delivery is
at-least-once: a retried batch may repeat messages the broker already had.

Topics come from ``topic`` (``{schema}``, ``{table}``, ``{pipeline}``);
characters Kafka does not allow in topic names become ``_``. DDL goes to
``ddl_topic`` (same placeholders: ``{schema}`` and ``{table}`` are what the
statement changes as the selector classified it, so ``CREATE TABLE other.t`` run
in database ``shop`` fills in ``other``/``t``; ``{table}`` is ``_ddl`` for a
database or routine statement, a trigger's is the table it is ON), or nowhere
when ``ddl_topic`` is empty. A statement that changes several tables (``DROP
TABLE a, b``, ``RENAME TABLE``) goes to each of their topics, once per topic.

With ``exactly_once: true`` (confluent-kafka only) each batch is one Kafka transaction
together with a record of its position in the offsets topic, and the sink keeps a
checkpoint there: see :mod:`sinks.kafka_eos`.
"""

from __future__ import annotations

import contextlib
import re
import string
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.errors import FatalError, FerryError, ResumableError, classify
from pipeline.model import Batch, Change, RowChange
from sinks.base import Sink, SinkCheckpoint
from sinks.formats.base import FormatName, FormatSpec, ddl_tables, get_format, now_ns
from sinks.formats.debezium.options import DebeziumOptions
from sinks.producers import Failure, ProducerAdapter, make_producer, timed_out, too_large
from sinks.redact import masked_key

if TYPE_CHECKING:
    from sinks.kafka_eos import ExactlyOnce

_PLACEHOLDERS = {"schema", "table", "pipeline"}


class KafkaSinkConfig(BaseModel):
    """`sink: {type: kafka}` — one message per row change, keyed by primary key."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["kafka"]
    bootstrap_servers: str = Field(description="comma-separated host:port list")
    topic: str = Field(
        "ferry.{schema}.{table}",
        description="topic name or template with {schema}, {table}, {pipeline}",
    )
    format: FormatName = Field(
        "debezium-json",
        description="message format: debezium-json (Debezium 3.x's, options in sink.debezium),"
        " ferry-json (readable values) or canal-json (Canal's FlatMessage)",
    )
    debezium: DebeziumOptions = Field(
        default_factory=DebeziumOptions,  # type: ignore[arg-type]
        description="Debezium's options for format debezium-json, see sink.debezium",
    )
    client: Literal["kafka-python", "confluent-kafka"] = Field(
        "kafka-python",
        description="producer client: kafka-python (pure Python) or confluent-kafka (librdkafka,"
        " `pip install ferry-cdc[kafka-fast]`, ~10x faster)",
    )
    ddl_topic: str = Field(
        "ferry.{pipeline}.schema-changes",
        description="topic for DDL statements; {schema} and {table} are what the statement"
        " changes (each table's topic when several; {table} is _ddl for a database or routine)",
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
    max_message_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="largest message the producer accepts; a larger one fails the batch (fatal)",
    )
    producer: dict[str, Any] = Field(
        default_factory=dict,
        description="extra client options (security, SASL, ...) passed to the producer as is,"
        " in the chosen client's spelling (security_protocol vs security.protocol)",
    )
    exactly_once: bool = Field(
        False,
        description="each batch is one Kafka transaction with a record of its position in"
        " offsets_topic; consumers reading with isolation.level=read_committed see every"
        " change exactly once (needs client: confluent-kafka; see README, Exactly-once into"
        " Kafka)",
    )
    offsets_topic: str = Field(
        "ferry.{pipeline}.offsets",
        description="exactly_once: the compacted topic of the positions written in each"
        " batch's transaction ({pipeline}); created when missing",
    )
    transactional_id: str = Field(
        "ferry-{pipeline}",
        description="exactly_once: the producer's transactional.id ({pipeline}); the same for"
        " every node of a pipeline, so that a node taking over fences its predecessor",
    )
    transaction_timeout_ms: int = Field(
        60000,
        ge=1000,
        description="exactly_once: the broker aborts a transaction open longer than this"
        " (at most the broker's transaction.max.timeout.ms); at least delivery_timeout_ms",
    )

    @field_validator("topic", "ddl_topic")
    @classmethod
    def _template(cls, value: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        unknown = names - _PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}};"
                " use {schema}, {table} or {pipeline}"
            )
        return value

    @field_validator("offsets_topic", "transactional_id")
    @classmethod
    def _pipeline_template(cls, value: str) -> str:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        unknown = sorted(names - {"pipeline"})
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {{pipeline}}")
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _exactly_once(self) -> KafkaSinkConfig:
        if not self.exactly_once:
            return self
        if self.client != "confluent-kafka":
            raise ValueError(
                "exactly_once needs client: confluent-kafka (librdkafka's transactional"
                " producer, `pip install ferry-cdc[kafka-fast]`); kafka-python's is not"
                " supported"
            )
        if self.transaction_timeout_ms < self.delivery_timeout_ms:
            raise ValueError(
                f"transaction_timeout_ms ({self.transaction_timeout_ms}) must be at least"
                f" delivery_timeout_ms ({self.delivery_timeout_ms})"
            )
        return self


_BAD_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]")


def topic_name(template: str, schema: str, table: str, pipeline: str) -> str:
    """The topic for a table: template filled in, illegal characters replaced by ``_``."""
    name = template.format(schema=schema, table=table, pipeline=pipeline)
    return _BAD_TOPIC_CHARS.sub("_", name)[:249]


#: ``pipeline.batch.max_rows`` with ``exactly_once`` when the file does not set it
EXACTLY_ONCE_BATCH_ROWS = 5000


class KafkaSink(Sink):
    """Writes each change as one message (see the module docstring for the guarantees)."""

    config_model = KafkaSinkConfig
    config: KafkaSinkConfig

    @classmethod
    def describe(cls, config: KafkaSinkConfig) -> str:
        return (
            f"kafka {config.bootstrap_servers} topic={config.topic} format={config.format}"
            f" client={config.client}"
        )

    @classmethod
    def batch_rows(cls, config: KafkaSinkConfig) -> int | None:
        # a transaction per batch costs a commit round trip and a marker per partition:
        # at 1,000 rows exactly-once ran at a third of at-least-once, at 5,000 beside it
        return EXACTLY_ONCE_BATCH_ROWS if config.exactly_once else None

    def __init__(
        self,
        config: KafkaSinkConfig,
        pipeline_id: str,
        producer_factory: Any = make_producer,
    ) -> None:
        super().__init__(config, pipeline_id)
        self._factory = producer_factory
        self._producer: ProducerAdapter | None = None
        self._format = get_format(config.format, pipeline_id, debezium=config.debezium)
        self._topics: dict[tuple[str, str], str] = {}
        self._created: set[str] = set()
        # Every send ends (confirmed or failed) within the delivery timeout; the
        # grace covers the client's own bookkeeping after it.
        self._confirm_timeout = config.delivery_timeout_ms / 1000 + 5.0
        self.eos: ExactlyOnce | None = None
        if config.exactly_once:
            from sinks.kafka_eos import ExactlyOnce

            self.eos = ExactlyOnce(config, pipeline_id)

    @property
    def exactly_once(self) -> bool:
        return self.eos is not None

    def encoding(self) -> FormatSpec | None:
        return self._format.spec

    def checkpoint(self) -> SinkCheckpoint | None:
        """exactly_once: the last position committed in a transaction (after fencing every
        earlier producer of this pipeline); else None."""
        if self.eos is None:
            return None
        try:
            return self.eos.read_checkpoint()
        except FerryError as error:
            self.eos.reset()
            raise error.context(pipeline=self.pipeline_id) from error.__cause__

    def check(self) -> list[tuple[str, bool, str]]:
        if self.eos is not None:  # never open(): that would fence the active node
            return self.eos.check()
        return super().check()

    def open(self) -> None:
        if self.eos is not None:
            self.eos.open()
            return
        if self._producer is not None:
            return
        try:
            producer = self._factory(self.config, f"ferry-{self.pipeline_id}")
        except FerryError:
            raise
        except Exception as exc:
            raise self._error(exc, "cannot create the producer") from exc
        try:
            producer.ping(self.config.delivery_timeout_ms / 1000)
        except Exception as exc:
            producer.close(0)
            within = f" within {self._timeout_setting()}" if timed_out(exc) else ""
            raise self._error(
                exc, f"no broker at {self.config.bootstrap_servers} answered{within}"
            ) from exc
        self._producer = producer

    def _error(self, exc: BaseException, what: str) -> FerryError:
        return classify(exc, f"kafka sink ({self.config.client}): {what}: {exc}")

    def _timeout_setting(self) -> str:
        return f"sink.delivery_timeout_ms ({self.config.delivery_timeout_ms} ms)"

    def topics_for(self, change: Change) -> list[str]:
        """The topics of a change: one for a row change; for a DDL the topic of each table
        it changes (see the module docstring), none when ``ddl_topic`` is empty."""
        if isinstance(change, RowChange):
            cache_key = (change.schema, change.table)
            topic = self._topics.get(cache_key)
            if topic is None:
                topic = topic_name(self.config.topic, *cache_key, self.pipeline_id)
                self._topics[cache_key] = topic
            return [topic]
        if not self.config.ddl_topic:
            return []
        topics = (
            topic_name(self.config.ddl_topic, schema, table or "_ddl", self.pipeline_id)
            for schema, table in ddl_tables(change)
        )
        return list(dict.fromkeys(topics))

    def load(self, batch: Batch, epoch: int) -> None:
        if self.eos is not None:
            try:
                self.eos.load(
                    batch,
                    epoch,
                    lambda producer: self._send_all(producer, batch),
                    lambda failures: self._failure(_worst(failures), len(failures), batch),
                )
            except FerryError as error:
                raise error.context(
                    pipeline=self.pipeline_id, batch_id=batch.batch_id, position=batch.position
                ) from error.__cause__
            return
        if batch.is_empty:
            return
        try:
            self._load(batch)
        except FerryError as error:
            self._reset()
            raise error.context(
                pipeline=self.pipeline_id, batch_id=batch.batch_id, position=batch.position
            ) from error.__cause__

    def _send_all(self, producer: ProducerAdapter, batch: Batch) -> int:
        """Send every message of ``batch``; returns how many. A send refused at once (too
        large, closed client) or a value the format cannot encode raises FerryError."""
        if self.config.create_topics:
            self._create_topics(batch, producer)
        topics_for = self.topics_for
        send = producer.send
        now = now_ns()
        sent = 0
        topic: str | None = None
        key: bytes | None = None
        value: bytes | None = None
        try:
            for change, messages in self._format.each(batch, now):
                topics = topics_for(change)
                if not topics:
                    continue
                # one change may be several messages: a delete and its tombstone (value
                # None), an update of the key as delete + tombstone + create
                for key, value in messages:
                    for topic in topics:
                        send(topic, key, value)
                        sent += 1
        except FerryError:  # a value the formats cannot encode
            raise
        except Exception as exc:  # refused at once: too large, queue blocked, closed
            if self.eos is not None and _fenced(exc):
                raise
            size = len(key or b"") + len(value or b"")
            raise self._failure(Failure(topic or "?", key, exc), 1, batch, size) from exc
        return sent

    def _load(self, batch: Batch) -> None:
        self.open()
        producer = self._producer
        assert producer is not None
        sent = 0
        send_error: FerryError | None = None
        try:
            sent = self._send_all(producer, batch)
        except FerryError as exc:
            send_error = exc
        # Wait for every send already made, even after a failure: nothing of this
        # batch may still be in flight when the batch is retried.
        outcome = producer.confirm(self._confirm_timeout)
        if send_error is not None:
            raise send_error
        if outcome.failures:
            raise self._failure(_worst(outcome.failures), len(outcome.failures), batch)
        if outcome.confirmed != sent:
            raise ResumableError(
                f"kafka sink ({self.config.client}): {sent - outcome.confirmed} of {sent}"
                f" sends not confirmed within {self._confirm_timeout:.0f} s"
                f" ({self._timeout_setting()}, and a grace of 5 s)"
            )

    def _failure(
        self, failure: Failure, count: int, batch: Batch, refused_size: int | None = None
    ) -> FerryError:
        """A send failure, naming the row by its table and masked key (never raw key bytes:
        a key column may hold a secret, and errors reach logs and `ferry status`).

        ``refused_size`` (key + value bytes) is given when the client refused the send at
        once, before it reached a broker (kafka-python 3 and confluent-kafka check the
        size there). A failure that a ferry setting is behind (the
        message size limit, the delivery timeout) names that setting, not the client's
        option ferry set from it."""
        more = f" ({count} sends failed)" if count > 1 else ""
        what = ""
        size = refused_size
        for index, shared in enumerate(batch.changes):
            if failure.topic not in self.topics_for(shared):
                continue
            change = batch.exact(index)
            sizes = self._sizes(change)
            if failure.key not in sizes:
                continue
            if isinstance(change, RowChange):
                key = masked_key(change.primary_key, change.key()) if change.primary_key else ""
                what = f"the {change.op} of {change.schema}.{change.table} {key}".rstrip()
            else:
                what = f"the DDL of schema {change.schema}"
            if size is None:
                size = sizes[failure.key]
            break
        error, topic, client = failure.error, failure.topic, self.config.client
        if too_large(error):
            limit = self.config.max_message_bytes
            message = f"the message of {what}" if what else "a message"
            # the client's own check (a message over the limit never reaches a broker)
            if size is not None and (refused_size is not None or size > limit):
                overhead = " with the client's record overhead" if size <= limit else ""
                text = (
                    f"kafka sink ({client}): {message} for topic {topic!r} is {size}"
                    f" bytes (key and value), larger{overhead} than sink.max_message_bytes"
                    f" ({limit} bytes): raise sink.max_message_bytes (and the topic's"
                    " max.message.bytes on the broker, when it is lower), or leave such"
                    " rows or columns out (source.exclude, columns)"
                )
            else:  # sent within ferry's limit: the broker's (or the topic's) is lower
                shown = f"{size} bytes" if size is not None else "size unknown"
                text = (
                    f"kafka sink ({client}): the broker refused {message} for topic {topic!r}"
                    f" as too large ({shown}; sink.max_message_bytes is {limit} bytes,"
                    f" sink.batch_size_bytes {self.config.batch_size_bytes}): the topic's"
                    " max.message.bytes (the broker's message.max.bytes) is lower; raise it,"
                    " or lower sink.max_message_bytes and sink.batch_size_bytes to it"
                    f"{more}; the broker said: {error}"
                )
            return classify(error, text)
        what = what or "a message"
        if timed_out(error):
            return self._error(
                error,
                f"send of {what} to topic {topic!r} not confirmed within"
                f" {self._timeout_setting()}{more}",
            )
        return self._error(error, f"send of {what} to topic {topic!r} failed{more}")

    def _sizes(self, change: Change) -> dict[bytes | None, int]:
        """The keys of a change's messages (a key change has two), to find a failed send's,
        with each message's size (key and value bytes)."""
        try:
            messages = self._format.messages(change, 0)
        except FerryError:
            return {}
        sizes: dict[bytes | None, int] = {}
        for key, value in messages:  # a delete and its tombstone share a key: the larger
            sizes[key] = max(sizes.get(key, 0), len(key or b"") + len(value or b""))
        return sizes

    def _create_topics(self, batch: Batch, producer: ProducerAdapter) -> None:
        wanted = {topic for change in batch.changes for topic in self.topics_for(change)}
        missing = sorted(wanted - self._created)
        if not missing:
            return
        try:
            producer.create_topics(missing, self.config.partitions, self.config.replication_factor)
        except FerryError:
            raise
        except Exception as exc:
            raise self._error(exc, f"cannot create topics {', '.join(missing)}") from exc
        self._created.update(missing)

    def _reset(self) -> None:
        """Drop the client after a failed batch; the next load builds a fresh one."""
        producer, self._producer = self._producer, None
        self._created.clear()  # an in-memory broker may have lost them
        if producer is not None:
            # Closing a broken client must not hide the batch's error.
            with contextlib.suppress(Exception):
                producer.close(1.0)

    def close(self) -> None:
        if self.eos is not None:
            self.eos.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(self.config.delivery_timeout_ms / 1000)


def _fenced(exc: BaseException) -> bool:
    from sinks.kafka_eos import FENCED, error_name

    return error_name(exc) in FENCED


def _worst(failures: list[Failure]) -> Failure:
    """The failure to report: a fatal one if any (retrying cannot help), else the first."""
    for failure in failures:
        if isinstance(classify(failure.error), FatalError):
            return failure
    return failures[0]
