"""``debezium-json``: Debezium 3.x's MySQL connector output, through Kafka Connect's JsonConverter.

What it writes, value by value and message by message: ``docs/formats.md``. This module is
the format and its row events (key, envelope, source block, value schema); a column's
values are ``converters``, the row writer generated per table definition ``writer``, the
schema-change events ``schema_changes``, the options ``options`` (Debezium's names).
``tests/integration/test_debezium_compat.py`` compares it with Debezium 3.6.3 itself.

Two paths write a row image, with the same bytes (``tests/unit/test_debezium_writer.py``):
the reference (``DebeziumJson._row``: every column's value through ``Encoder.value``, then
the JSON encoder), and the row writer generated per table definition
(``sinks.formats.debezium.writer.row_writer``), which writes the rows the decoder makes,
and leaves any other to the reference.
"""

from __future__ import annotations

import re
from typing import Any

from loguru import logger

from pipeline.errors import FatalError
from pipeline.model import (
    Change,
    DdlChange,
    Message,
    RowChange,
    TableSchema,
)
from sinks.formats.base import Format, FormatSpec, now_ns, register
from sinks.formats.debezium.connect import SOURCE_SCHEMA, VERSION, opt, with_schema
from sinks.formats.debezium.converters import Encoder, Refused, loose, loose_schema
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.debezium.schema_changes import SchemaChanges
from sinks.formats.debezium.writer import TableCodec
from sinks.formats.encoder import dumps_str, utf8
from sinks.formats.values import DEBEZIUM_OP, guess_definition

_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9._-]")
_TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        opt("string", "id", False),
        opt("int64", "total_order", False),
        opt("int64", "data_collection_order", False),
    ],
    "optional": True,
    "name": "event.block",
    "version": 1,
    "field": "transaction",
}


@register
class DebeziumJson(Format):
    """Debezium 3.x's MySQL connector output through JsonConverter (module docstring)."""

    name = "debezium-json"

    def __init__(
        self, pipeline: str, server_id: int | None = None, options: DebeziumOptions | None = None
    ) -> None:
        super().__init__(pipeline, server_id)
        self.options = options if options is not None else DebeziumOptions.model_validate({})
        self.prefix = self.options.topic_prefix or pipeline
        self._encoder = Encoder(self.options)
        self._codecs: dict[int, tuple[TableSchema, TableCodec]] = {}
        self._last_codec: tuple[TableSchema, TableCodec] | None = None
        self._name = dumps_str(self.prefix)
        self._schemas = self.options.schemas_enable
        self._tombstones = self.options.tombstones_on_delete
        self._last_row = 0
        # the source blocks up to "pos", by what they are made of (see _source), and the
        # last one used
        self._source_heads: dict[tuple[Any, ...], str] = {}
        self._last_source: tuple[tuple[Any, ...], str] = ((), "")
        # the envelope's processing time, its text: (ns, ``"ts_ms":…,"ts_us":…,"ts_ns":…}``)
        self._stamp = (-1, "")
        self._schema_changes = SchemaChanges(self.options, self.prefix, server_id)

    @classmethod
    def from_spec(cls, spec: FormatSpec) -> Format:
        return cls(spec.pipeline, spec.server_id, spec.debezium)

    # -- the table's codec -----------------------------------------------------------

    def _codec(self, change: RowChange) -> TableCodec:
        definition = change.definition
        found = self._last_codec  # most rows are of the last row's table
        if found is None or found[0] is not definition:
            if definition is None:
                definition = guess_definition(change)
            found = self._codecs.get(id(definition))
            if found is None or found[0] is not definition:
                codec = TableCodec(definition, self._encoder)
                if len(self._codecs) > 10_000:
                    self._codecs.clear()
                found = self._codecs[id(definition)] = (definition, codec)
            self._last_codec = found
        return found[1]

    def _row(self, codec: TableCodec, row: dict[str, Any], read: bool = False) -> dict[str, Any]:
        """A row image in Debezium's values; ``read``: a snapshot row (op ``r``)."""
        out = dict(row)
        fields = codec.fields
        value_of = self._encoder.value
        for field in codec.convert:
            name = field.name
            if name in out:
                out[name] = value_of(field, out[name], read)
        if not out.keys() <= fields.keys():  # columns the definition lacks (a transform's)
            for name, value in out.items():
                if name not in fields and value is not None:
                    out[name] = loose(value, self._encoder)
        return out

    def _row_json(self, codec: TableCodec, row: dict[str, Any], read: bool = False) -> str:
        """``dumps_str(self._row(codec, row, read))``: the JSON of a row image. A row with the
        definition's columns in its order (every row the decoder makes) is written by the
        table's row writer, without the dict of its Debezium values."""
        if tuple(row) == codec.names:
            try:
                return (codec.writers[read] or codec.writer(read))(row.values())
            except Exception:  # a value it has no case for: see row_writer
                pass
        return dumps_str(self._row(codec, row, read))

    def _key_json(self, codec: TableCodec, row: dict[str, Any], read: bool) -> str | None:
        """The JSON of the key columns of ``row``: ``_row_json`` of ``{name: row.get(name)}``."""
        if not codec.key_fields:
            return None
        values = [row.get(f.name) for f in codec.key_fields]
        try:
            return codec.key_writer(read)(values)
        except Exception:  # as in _row_json
            key = {f.name: value for f, value in zip(codec.key_fields, values, strict=True)}
            return dumps_str(self._row(codec, key, read))

    # -- messages --------------------------------------------------------------------

    def key(self, change: Change) -> bytes | None:
        if isinstance(change, DdlChange):
            return self._schema_changes.key(change)
        codec = self._codec(change)
        return self._key_bytes(codec, change.row, change)

    def _key_bytes(self, codec: TableCodec, row: dict[str, Any], change: RowChange) -> bytes | None:
        if codec.int_key is not None:
            value = row.get(codec.int_key[0])
            if type(value) is int:
                return codec.int_key[1] % value
        try:
            key = self._key_json(codec, row, change.op == "read")
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        if key is None:
            return None
        if self._schemas:
            table = (change.schema, change.table)  # a transform may have renamed it
            schema = codec.key_schemas.get(table)
            if schema is None:
                fields = [f.schema for f in codec.key_fields]
                name = f"{self._schema_name(change)}.Key"
                struct = {"type": "struct", "fields": fields, "optional": False, "name": name}
                schema = dumps_str(struct)
                if len(codec.key_schemas) < 64:
                    codec.key_schemas[table] = schema
            return with_schema(schema, key)
        return utf8(key)

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        ns = now_ns() if now is None else now
        if isinstance(change, DdlChange):
            return self._schema_changes.messages(change, ns, self._last_row)
        try:
            codec = self._codec(change)
            op, before, after = change.op, change.before, change.after
            if op == "update" and codec.key_fields:
                assert before is not None and after is not None
                if codec.key_of(before) != codec.key_of(after):
                    return self._key_change(change, codec, ns)
            row = after if after is not None else before
            assert row is not None, "a row change has a before or an after image"
            key = self._key_bytes(codec, row, change)
            value = self._value(change, codec, before, after, DEBEZIUM_OP[op], ns)
        except Refused as exc:
            return self._refused(change, exc)
        if op == "delete" and self._tombstones:
            return [(key, value), (key, None)]
        return [(key, value)]

    def _key_change(self, change: RowChange, codec: TableCodec, ns: int) -> list[Message]:
        """An update that changed the key: a delete of the old row, its tombstone, a create
        of the new one."""
        before, after = change.before, change.after
        assert before is not None and after is not None
        old_key = self._key_bytes(codec, before, change)
        out: list[Message] = [(old_key, self._value(change, codec, before, None, "d", ns))]
        if self._tombstones:
            out.append((old_key, None))
        new_key = self._key_bytes(codec, after, change)
        out.append((new_key, self._value(change, codec, None, after, "c", ns)))
        return out

    def _refused(self, change: RowChange, exc: Refused) -> list[Message]:
        """Debezium's event.processing.failure.handling.mode: fail | warn | skip."""
        where = f"{change.schema}.{change.table} at {change.position}"
        mode = self.options.event_processing_failure_handling_mode
        if mode == "fail":
            raise FatalError(
                f"debezium-json cannot write a change of {where}: {exc}"
                " (time.precision.mode=connect cannot hold it; use"
                " adaptive_time_microseconds, or event.processing.failure.handling.mode"
                " warn or skip to leave such changes out)"
            ) from None
        if mode == "warn":
            logger.warning("debezium-json left out a change of {}: {}", where, exc)
        return []

    def _value(
        self,
        change: RowChange,
        codec: TableCodec,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        op: str,
        ns: int,
    ) -> bytes:
        stamp = self._stamp
        if stamp[0] != ns:  # one processing time per batch
            stamp = self._stamp = (
                ns,
                f'"ts_ms":{ns // 1_000_000},"ts_us":{ns // 1000},"ts_ns":{ns}}}',
            )
        try:
            read = change.op == "read"
            before_json = "null" if before is None else self._row_json(codec, before, read)
            after_json = "null" if after is None else self._row_json(codec, after, read)
            payload = (
                f'{{"before":{before_json},"after":{after_json},"source":{self._source(change)},'
                f'"transaction":null,"op":"{op}",{stamp[1]}'
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        if not self._schemas:
            try:
                return payload.encode()
            except UnicodeEncodeError:  # a lone surrogate: see sinks.formats.encoder.utf8
                return utf8(payload)
        image = after if after is not None else before
        assert image is not None
        names = (change.schema, change.table, *image)  # the schema's name, its fields
        schema = codec.schemas.get(names)
        if schema is None:
            schema = dumps_str(self._value_schema(codec, names[2:], change))
            if len(codec.schemas) < 64:
                codec.schemas[names] = schema
        return with_schema(schema, payload)

    def _source(self, change: RowChange) -> str:
        """The source block. All of it but ``pos`` and ``row`` is the same for the rows of
        one transaction, table, op kind and second: that part is made once."""
        event = change.event
        if event is not None:
            pos, row, server_id = event.pos, change.index - event.first_index, event.server_id
        else:
            pos, row, server_id = change.position.pos, change.index, self.server_id or 0
        self._last_row = row
        made_of = (
            change.position.file,
            change.ts,
            change.gtid,
            change.op == "read",
            change.schema,
            change.table,
            server_id,
        )
        last = self._last_source
        if made_of == last[0]:  # the last row's: most often
            head = last[1]
        else:
            found = self._source_heads.get(made_of)
            if found is None:
                if len(self._source_heads) >= 1024:
                    self._source_heads.clear()
                found = self._source_heads[made_of] = self._source_head(*made_of)
            head = found
            self._last_source = (made_of, head)
        return f'{head}{pos},"row":{row},"thread":null,"query":null}}'

    def _source_head(
        self,
        file: str,
        ts: float,
        gtid: str | None,
        read: bool,
        schema: str,
        table: str,
        server_id: int,
    ) -> str:
        """The source block up to ``"pos":``."""
        # a row a snapshot copied: "true" (Debezium also marks its first and last rows
        # "first"/"last"; ferry's snapshot hands rows out in chunks and does not know them)
        snapshot = "true" if read else "false"
        ms = int(ts * 1000)
        return (
            f'{{"version":"{VERSION}","connector":"mysql","name":{self._name},"ts_ms":{ms}'
            f',"snapshot":"{snapshot}","db":{dumps_str(schema)},"sequence":null,"ts_us":{ms * 1000}'
            f',"ts_ns":{ms * 1_000_000},"table":{dumps_str(table)},"server_id":{server_id}'
            f',"gtid":{dumps_str(gtid)},"file":{dumps_str(file)},"pos":'
        )

    def _schema_name(self, change: RowChange) -> str:
        return _BAD_NAME_CHARS.sub("_", f"{self.prefix}.{change.schema}.{change.table}")

    def _value_schema(
        self, codec: TableCodec, names: tuple[str, ...], change: RowChange
    ) -> dict[str, Any]:
        name = self._schema_name(change)
        fields = [codec.fields[n].schema if n in codec.fields else loose_schema(n) for n in names]
        row = {"type": "struct", "fields": fields, "optional": True, "name": f"{name}.Value"}
        return {
            "type": "struct",
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                SOURCE_SCHEMA,
                _TRANSACTION_SCHEMA,
                opt("string", "op", False),
                opt("int64", "ts_ms"),
                opt("int64", "ts_us"),
                opt("int64", "ts_ns"),
            ],
            "optional": False,
            "name": f"{name}.Envelope",
            "version": 2,
        }
