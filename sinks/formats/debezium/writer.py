"""debezium-json's row writers: what a table definition compiles to (:class:`TableCodec`:
its fields, its key, its schema names) and the row writer generated per definition
(:func:`row_writer`), which writes the rows the decoder makes with the bytes of the
reference (``DebeziumJson._row``, through :meth:`Encoder.value`;
``tests/unit/test_debezium_writer.py`` holds the two to the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pipeline.model import TableSchema
from sinks.formats.debezium.converters import Encoder, Field, as_int, as_text
from sinks.formats.encoder import dumps_str, dumps_value, encode_str


def row_writer(fields: list[Field], read: bool, encoder: Encoder) -> Callable[[Iterable[Any]], str]:
    """A function of a row's values, in the order of ``fields``, to the JSON object of what
    ``encoder.value`` makes of them (``dumps_str({f.name: encoder.value(f, value, read)})``)
    for the values it has a case for. A value it has no case for (one a converter refuses:
    a transform's) raises, and the caller writes that row with the reference
    (``DebeziumJson._row``), which also raises whatever the reference raises.

    The function is generated once per table definition and format, as straight-line code:
    a loop with a call per value costs as much as converting the values. Its source, for
    ``(id BIGINT, b VARCHAR(32), c DECIMAL(12,2) NOT NULL)``::

        def write_row(values):
            v0, v1, v2, = values
            return "".join((
                head0, repr(v0) if type(v0) is int else dumps_value(v0),
                head1, encode_str(v1) if type(v1) is str else dumps_value(v1),
                head2, null2 if v2 is None or (x := convert2(v2)) is None
                    else repr(x) if type(x) is int else encode_str(x) if type(x) is str
                    else dumps_value(x),
                "}"))

    ``head0`` is ``{"id":``, ``head1`` ``,"b":`` and so on. A plain column (no converter but
    a type check, no default) writes its value as it is, through ``dumps_value`` with its
    commonest case inline; a converted one writes its converter's result, and NULL (also a
    NULL result: a zero date) as ``null2``: the default, the zero or ``null``.
    """
    if not fields:
        return lambda values: "{}"
    # the source names values, heads and converters by their index only: nothing of the
    # definition (a column name) is ever part of the code
    scope: dict[str, Any] = {"dumps_value": dumps_value, "encode_str": encode_str}
    lines = []
    for k, field in enumerate(fields):
        v = f"v{k}"
        scope[f"head{k}"] = ("," if k else "{") + field.head
        if not field.converts:
            if field.convert is as_int:
                write = f"repr({v}) if type({v}) is int else dumps_value({v})"
            elif field.convert is as_text:
                write = f"encode_str({v}) if type({v}) is str else dumps_value({v})"
            else:
                write = f"dumps_value({v})"
        else:
            scope[f"null{k}"] = dumps_str(encoder.value(field, None, read))
            scope[f"convert{k}"] = field.converter(read)
            write = (
                f"null{k} if {v} is None or (x := convert{k}({v})) is None"
                " else repr(x) if type(x) is int else encode_str(x) if type(x) is str"
                " else dumps_value(x)"
            )
        lines.append(f"        head{k}, {write},")
    values = ", ".join(f"v{k}" for k in range(len(fields)))
    head = ["def write_row(values):", f"    {values}, = values", '    return "".join((']
    source = "\n".join([*head, *lines, '        "}"))'])
    exec(compile(source, "<debezium-json row writer>", "exec"), scope)
    written: Callable[[Iterable[Any]], str] = scope["write_row"]
    return written


class TableCodec:
    """One table definition's fields, key and schema names, for one Debezium format."""

    __slots__ = (
        "convert",
        "encoder",
        "fields",
        "int_key",
        "key_fields",
        "key_of",
        "key_schemas",
        "key_writers",
        "names",
        "schemas",
        "writers",
    )

    def __init__(self, definition: TableSchema, encoder: Encoder) -> None:
        self.encoder = encoder
        self.fields = {c.name: encoder.field(c) for c in definition.columns}
        self.key_fields = [self.fields[n] for n in definition.primary_key if n in self.fields]
        # the columns that are not written as they are: a converter or a default
        self.convert = [f for f in self.fields.values() if f.converts]
        names = [f.name for f in self.key_fields]
        # a row's key values, to tell an update that changed the key (lists: compared
        # element by element, identity first); a one-column key without a comprehension
        self.key_of: Callable[[dict[str, Any]], list[Any]] = (
            (lambda row: [row.get(names[0])])
            if len(names) == 1
            else (lambda row: [row.get(n) for n in names])
        )
        # a row as the decoder makes it has these columns, in this order
        self.names = tuple(self.fields)
        # the row writers of streamed and snapshot rows ([read]), made when first needed
        self.writers: list[Callable[[Iterable[Any]], str] | None] = [None, None]
        self.key_writers: list[Callable[[Iterable[Any]], str] | None] = [None, None]
        # the key is most often one integer column: then (its name, ``b'{"id":%d}'``)
        single = self.key_fields[0] if len(self.key_fields) == 1 else None
        self.int_key: tuple[str, bytes] | None = None
        plain = single is not None and single.convert is as_int and single.default is None
        if plain and not encoder.options.schemas_enable:
            assert single is not None
            template = "{" + single.head.replace("%", "%%") + "%d}"
            self.int_key = (single.name, template.encode())
        # with schemas.enable, the JSON of the value schema by the change's schema, table
        # and columns, and of the key schema by its schema and table
        self.schemas: dict[tuple[str, ...], str] = {}
        self.key_schemas: dict[tuple[str, str], str] = {}

    def writer(self, read: bool) -> Callable[[Iterable[Any]], str]:
        """The writer of a row with the definition's columns (see :func:`row_writer`)."""
        found = self.writers[read]
        if found is None:
            fields = list(self.fields.values())
            found = self.writers[read] = row_writer(fields, read, self.encoder)
        return found

    def key_writer(self, read: bool) -> Callable[[Iterable[Any]], str]:
        """The writer of the key columns' values."""
        found = self.key_writers[read]
        if found is None:
            found = self.key_writers[read] = row_writer(self.key_fields, read, self.encoder)
        return found
