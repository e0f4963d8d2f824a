"""``ferry-json``: ferry's readable encoding in Debezium's envelope (``docs/formats.md``).

ISO dates, exact decimals as strings, JSON columns as text, keys as JSON arrays: every
value reads back to exactly what the source stored.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import FatalError
from pipeline.model import Change, DdlChange, Message, RowChange
from sinks.formats.base import Format, ddl_tables, now_ms, now_ns, register
from sinks.formats.encoder import dumps, dumps_str, encode_key, json_doc, utf8
from sinks.formats.values import DEBEZIUM_OP, ms


def _image(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The row image ready for json.dumps (JSON documents normalised)."""
    if row is None:
        return None
    for value in row.values():
        kind = type(value)
        if kind is dict or kind is list:
            return {k: json_doc(v) if type(v) in (dict, list) else v for k, v in row.items()}
    return row


@register
class FerryJson(Format):
    """ferry's readable encoding in Debezium's envelope (see the module docstring)."""

    name = "ferry-json"

    def __init__(self, pipeline: str, server_id: int | None = None) -> None:
        super().__init__(pipeline, server_id)
        head = f'{{"connector":"mysql","name":{dumps_str(pipeline)},'
        if server_id is not None:
            head += f'"server_id":{int(server_id)},'
        self._head = head + '"ts_ms":'
        self._tables: dict[tuple[str, str], str] = {}  # ',"db":..,"table":..,"file":'
        self._files: dict[str, str] = {}

    def messages(self, change: Change, now: int | None = None, batch_id: int = 0) -> list[Message]:
        ns = now_ns() if now is None else now
        return [(encode_key(change), self.encode(change, ns))]

    def encode(self, change: Change, now: int | None = None) -> bytes:
        """Row changes: the same bytes as ``dumps(row_message(...))``, built from cached parts.

        Only the row images go through the JSON encoder; the envelope's fixed parts
        (connector, name, db, table, file) are encoded once per table or file.
        """
        if type(change) is not RowChange:
            ns = now_ns() if now is None else now
            if isinstance(change, RowChange):
                return dumps(self.row_message(change, ns // 1_000_000))
            return dumps(self.ddl_message(change, ns // 1_000_000))
        ts = now_ms() if now is None else now // 1_000_000
        table_key = (change.schema, change.table)
        table = self._tables.get(table_key)
        if table is None:
            table = f',"db":{dumps_str(change.schema)},"table":{dumps_str(change.table)},"file":'
            self._tables[table_key] = table
        position = change.position
        file = self._files.get(position.file)
        if file is None:
            file = self._files[position.file] = dumps_str(position.file)
        before, after, gtid = change.before, change.after, change.gtid
        try:
            text = (
                f'{{"before":{"null" if before is None else dumps_str(_image(before))},'
                f'"after":{"null" if after is None else dumps_str(_image(after))},'
                f'"op":"{DEBEZIUM_OP[change.op]}","ts_ms":{int(ts)},"source":'
                f"{self._head}{int(change.ts * 1000)}{table}{file}"
                f',"pos":{int(position.pos)},"row":{int(change.index)},'
                f'"gtid":{"null" if gtid is None else dumps_str(gtid)},'
                f'"snapshot":"{"true" if change.op == "read" else "false"}"}},'
                '"transaction":null}'
            )
        except (TypeError, ValueError) as exc:
            raise FatalError(f"cannot encode message: {exc}") from exc
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: see utf8()
            return utf8(text)

    def _source(self, change: Change, table: str | None, row: int) -> dict[str, Any]:
        source: dict[str, Any] = {"connector": "mysql", "name": self.pipeline}
        if self.server_id is not None:
            source["server_id"] = self.server_id
        source["ts_ms"] = ms(change.ts)
        source["db"] = change.schema
        source["table"] = table
        source["file"] = change.position.file
        source["pos"] = change.position.pos
        source["row"] = row
        source["gtid"] = change.gtid
        source["snapshot"] = "true" if getattr(change, "op", "") == "read" else "false"
        return source

    def row_message(self, change: RowChange, now: int) -> dict[str, Any]:
        return {
            "before": _image(change.before),
            "after": _image(change.after),
            "op": DEBEZIUM_OP[change.op],
            "ts_ms": now,
            "source": self._source(change, change.table, change.index),
            "transaction": None,
        }

    def ddl_message(self, change: DdlChange, now: int) -> dict[str, Any]:
        database, table = ddl_tables(change)[0]
        return {
            "source": self._source(change, table or None, 0),
            "ts_ms": now,
            "databaseName": database,
            "ddl": change.statement,
            "tableChanges": [],
        }
