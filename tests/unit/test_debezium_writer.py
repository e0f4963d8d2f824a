"""debezium-json's fast paths give the reference's bytes: the generated row writers
(``sinks.formats.debezium.writer.row_writer``), the cached source block, the key fast paths and the
converters' fast cases, for random rows of every column type and every option set."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.model import Column, JsonText, Position, RowChange, SourceEvent, TableSchema, ZeroDate
from sinks.formats.debezium.converters import (
    DECIMALS,
    Encoder,
    Unrepresentable,
    datetime_ms,
    datetime_us,
    decimal_bytes_at,
    epoch_micros,
    latin1_text,
    scaled,
    twos_complement,
)
from sinks.formats.debezium.envelope import DebeziumJson
from sinks.formats.debezium.options import DebeziumOptions
from sinks.formats.debezium.writer import TableCodec, row_writer
from sinks.formats.encoder import b64, dumps_str, dumps_value
from tests.unit.test_format_debezium import definition

# every column type, NULL and NOT NULL, with and without defaults, three charsets
ZOO = definition(
    """CREATE TABLE shop.zoo (
    id INT PRIMARY KEY, ti TINYINT NOT NULL, b BOOLEAN, si SMALLINT UNSIGNED,
    iu INT UNSIGNED, mi MEDIUMINT, bi BIGINT NOT NULL, bu BIGINT UNSIGNED,
    m DECIMAL(20,6), m0 DECIMAL(10,0) NOT NULL, m65 DECIMAL(65,30),
    dd DECIMAL(5,2) NOT NULL DEFAULT 1.5, f FLOAT, f2 FLOAT(10,2), r REAL,
    dbl DOUBLE NOT NULL DEFAULT 2.5, d DATE, dn DATE NOT NULL, dt0 DATETIME,
    dt3 DATETIME(3) NOT NULL, dt6 DATETIME(6), ddt DATETIME(6) DEFAULT '2020-01-02 03:04:05.6',
    ts3 TIMESTAMP(3) NULL, ts0 TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    tm3 TIME(3), tm0 TIME NOT NULL, y YEAR, s SET('a','b','c,d'), e ENUM('x','a,b'),
    b1 BIT(1), b10 BIT(10), j JSON, v VARCHAR(10), vn VARCHAR(10) NOT NULL DEFAULT 'q',
    l1 VARCHAR(10) CHARACTER SET latin1, l1n TEXT CHARACTER SET latin1 NOT NULL,
    vb VARCHAR(4) CHARACTER SET binary, bin BINARY(3), vbin VARBINARY(8), bl BLOB,
    tx TEXT, g GEOMETRY, p POINT, di INT DEFAULT 7, `we"ird%d` INT
)"""
)
# keys of other kinds: composite, text (latin1), none
COMPOSITE = definition(
    "CREATE TABLE shop.c (k1 VARCHAR(10) CHARACTER SET latin1, k2 DECIMAL(6,2),"
    " k3 DATETIME(6), v INT, PRIMARY KEY (k1, k2, k3))"
)
NO_KEY = definition("CREATE TABLE shop.n (a INT, b VARCHAR(5))")
TABLES = (ZOO, COMPOSITE, NO_KEY)

OPTIONS = st.fixed_dictionaries(
    {
        "decimal.handling.mode": st.sampled_from(["precise", "string", "double"]),
        "time.precision.mode": st.sampled_from(["adaptive_time_microseconds", "connect"]),
        "bigint.unsigned.handling.mode": st.sampled_from(["long", "precise"]),
        "binary.handling.mode": st.sampled_from(["bytes", "base64", "base64-url-safe", "hex"]),
        "tombstones.on.delete": st.booleans(),
        "schemas.enable": st.booleans(),
        "replace.null.with.default": st.booleans(),
        "event.processing.failure.handling.mode": st.sampled_from(["fail", "skip"]),
    }
)

TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "plain", 'q"uo\\te\n', "\x81\x8d\x8f\x90\x9d", "é€日", "\ud800x"]),
)
DATETIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
WRONG = st.one_of(  # what a transform may put in any column
    st.integers(-(2**70), 2**70),
    TEXT,
    st.booleans(),
    st.decimals(allow_nan=False, places=3, max_value=10**8, min_value=-(10**8)),
    st.binary(max_size=6),
    st.dates(),
    DATETIMES,
    st.just({"k": [1, "x"]}),
    st.just(ZeroDate("0000-00-00")),
    st.just(JsonText("[1]")),
)
GEOMETRY = (4326).to_bytes(4, "little") + bytes.fromhex(
    "0101000000000000000000f03f000000000000f03f"
)
POINT = bytes(4) + bytes.fromhex("0101000000000000000000f03f0000000000000040")


def decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    """As the decoder makes them: exactly ``scale`` fraction digits; sometimes not."""
    unscaled = st.integers(-(10**precision) + 1, 10**precision - 1)
    exact = unscaled.map(lambda n: Decimal(n).scaleb(-scale))
    other = st.tuples(unscaled, st.integers(-scale - 3, 3)).map(
        lambda t: Decimal(t[0]).scaleb(t[1])
    )
    return st.one_of(exact, exact, other, st.just(Decimal("-0").scaleb(-scale)))


def typed(column: Column) -> st.SearchStrategy[Any]:
    """Values of ``column``'s type, as the row decoder gives them."""
    base = column.type_name.split()[0]
    unsigned = "UNSIGNED" in column.type_name
    if base in ("TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT"):
        bits = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "BIGINT": 64}[base]
        if unsigned:
            return st.integers(0, 2**bits - 1)
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if base in ("BOOLEAN", "BOOL"):
        return st.integers(-128, 127)
    if base == "DECIMAL":
        return decimals(column.length or 10, column.scale or 0)
    if base in ("FLOAT", "REAL", "DOUBLE"):
        return st.floats(width=32 if base == "FLOAT" else 64)
    if base == "DATE":
        return st.one_of(st.dates(), st.just(ZeroDate("0000-00-00")))
    if base == "DATETIME":
        aware = st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=2))))
        return st.one_of(DATETIMES, DATETIMES, aware, st.just(ZeroDate("0000-00-00 00:00:00")))
    if base == "TIMESTAMP":
        return st.one_of(st.datetimes(timezones=st.just(dt.UTC)), DATETIMES)
    if base == "TIME":
        return st.timedeltas(-dt.timedelta(hours=838), dt.timedelta(hours=838))
    if base == "YEAR":
        return st.integers(0, 2155)
    if base == "SET":
        return st.one_of(st.frozensets(st.sampled_from(["a", "b", "c,d"])).map(set), TEXT)
    if base == "ENUM":
        return st.sampled_from(["x", "a,b", ""])
    if base == "BIT":
        return st.integers(0, 2 ** (column.length or 1) - 1)
    if base == "JSON":
        return st.one_of(TEXT.map(JsonText), st.just({"a": [1, 2.5, None]}))
    if base in ("VARCHAR", "TEXT") and column.charset != "binary":
        return TEXT
    if base in ("VARCHAR", "BINARY", "VARBINARY", "BLOB"):
        return st.binary(max_size=6)
    if base == "GEOMETRY":
        return st.just(GEOMETRY)
    if base == "POINT":
        return st.just(POINT)
    raise AssertionError(f"no values for {column.type_name}")


@st.composite
def rows(
    draw: st.DrawFn, table: TableSchema, shapes: bool = True, wrong: bool = True
) -> dict[str, Any]:
    """A row image of ``table``: mostly its type's values, some NULL, with ``wrong`` some of
    another type; with ``shapes``, sometimes with a column left out, one more, or in
    another order."""
    row = {}
    for column in table.columns:
        choice = draw(st.integers(0, 9))
        value: Any = None
        if choice >= 2:
            value = draw(typed(column))
        elif choice == 1 and wrong:
            value = draw(WRONG)
        row[column.name] = value
    shape = draw(st.integers(0, 9)) if shapes else 0
    if shape == 1 and row:
        del row[draw(st.sampled_from(list(row)))]
    elif shape == 2:
        row["extra"] = draw(st.one_of(st.none(), WRONG))
    elif shape == 3:
        row = dict(draw(st.permutations(list(row.items()))))
    return row


def outcome(call: Any, *args: Any) -> Any:
    """What ``call(*args)`` gives, or the type and text of what it raises."""
    try:
        return call(*args)
    except Exception as exc:
        return (type(exc), str(exc))


class ReferenceJson(DebeziumJson):
    """debezium-json with every row and key written by the reference (``_row``)."""

    def _row_json(self, codec: TableCodec, row: dict[str, Any], read: bool = False) -> str:
        return dumps_str(self._row(codec, row, read))

    def _key_json(self, codec: TableCodec, row: dict[str, Any], read: bool) -> str | None:
        if not codec.key_fields:
            return None
        return self._row_json(codec, {f.name: row.get(f.name) for f in codec.key_fields}, read)


POS = Position("mysql-bin.000003", 1000)


@st.composite
def changes(draw: st.DrawFn) -> list[RowChange]:
    """Row changes as the selector makes them, one row per rows event (each its own
    SourceEvent): tables, ops, seconds and GTIDs changing between them."""
    out = []
    for index in range(draw(st.integers(1, 6))):
        table = draw(st.sampled_from(TABLES))
        op = draw(st.sampled_from(["insert", "update", "delete", "read"]))
        image = draw(rows(table))
        before = after = None
        if op in ("update", "delete"):
            before = image
        if op in ("insert", "read"):
            after = image
        if op == "update":
            after = draw(rows(table, shapes=False)) if draw(st.booleans()) else dict(image)
        event = draw(st.sampled_from([SourceEvent(2000 + index, 11, index), None]))
        out.append(
            RowChange(
                "shop",
                draw(st.sampled_from([table.table, "renamed"])),
                op,  # type: ignore[arg-type]
                before,
                after,
                table.primary_key,
                draw(st.sampled_from([1_714_571_100.0, 1_714_571_101.0])),
                POS,
                draw(st.sampled_from([None, "0-1-7", "0-1-8"])),
                index,
                table if draw(st.integers(0, 9)) else None,
                event,
            )
        )
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPTIONS, changes())
def test_messages_are_the_reference_messages(
    options: dict[str, Any], made: list[RowChange]
) -> None:
    """Every message, its key and its source block, as the reference writes it with no
    cache (a new format per change)."""
    validated = DebeziumOptions.model_validate(options)
    fast = DebeziumJson("pipe", 7, validated)
    now = 1_700_000_000_123_456_789
    for change in made:
        reference = ReferenceJson("pipe", 7, validated)
        assert outcome(fast.messages, change, now) == outcome(reference.messages, change, now)
        assert outcome(fast.key, change) == outcome(reference.key, change)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPTIONS, st.sampled_from(TABLES).flatmap(lambda t: st.tuples(st.just(t), rows(t))))
def test_row_writer_is_the_reference(options: dict[str, Any], drawn: Any) -> None:
    table, row = drawn
    fmt = DebeziumJson("pipe", options=DebeziumOptions.model_validate(options))
    codec = TableCodec(table, fmt._encoder)
    for read in (False, True):
        reference = outcome(reference_row, fmt, codec, row, read)
        assert outcome(fmt._row_json, codec, row, read) == reference
        key = {f.name: row.get(f.name) for f in codec.key_fields}
        expected = outcome(reference_row, fmt, codec, key, read) if key else None
        assert outcome(fmt._key_json, codec, row, read) == expected


def reference_row(fmt: DebeziumJson, codec: TableCodec, row: dict[str, Any], read: bool) -> str:
    return dumps_str(fmt._row(codec, row, read))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPTIONS, rows(ZOO, shapes=False, wrong=False))
def test_rows_of_their_own_types_take_the_writer(options: dict[str, Any], row: Any) -> None:
    """The decoder's values are written by the generated writer itself, not the reference:
    all but a value the options cannot write (a connect TIME outside a day), and NaN or
    infinity (no JSON for them: the reference raises too)."""
    fmt = DebeziumJson("pipe", options=DebeziumOptions.model_validate(options))
    codec = TableCodec(ZOO, fmt._encoder)
    for read in (False, True):
        reference = outcome(reference_row, fmt, codec, row, read)
        written = outcome(codec.writer(read), row.values())
        if written != reference:
            assert isinstance(written, tuple) and written[0] in (Unrepresentable, ValueError)
            assert outcome(fmt._row_json, codec, row, read) == reference


def test_narrow_rows_take_the_writer_and_source_cache() -> None:
    table = definition(
        "CREATE TABLE shop.t (id BIGINT PRIMARY KEY, a INT NOT NULL, b VARCHAR(32) NOT NULL,"
        " c DECIMAL(12,2) NOT NULL, written_at DATETIME(6) NOT NULL)"
    )
    fmt = DebeziumJson("pipe", 1)
    row = {
        "id": 7,
        "a": -3,
        "b": 'na"me',
        "c": Decimal("-1234.50"),
        "written_at": dt.datetime(2024, 5, 1, 13, 45, 0, 123456),
    }
    first = RowChange("shop", "t", "insert", None, row, ("id",), 1.0, POS, "g", 0, table, None)
    codec = fmt._codec(first)
    assert codec.writer(False)(row.values()) == (
        '{"id":7,"a":-3,"b":"na\\"me","c":"/h3G","written_at":1714571100123456}'
    )
    for index in range(3):  # one row per rows event: the source head is made once
        event = SourceEvent(100 + index, 1, index)
        change = RowChange(
            "shop", "t", "insert", None, row, ("id",), 1.0, POS, "g", index, table, event
        )
        source = json.loads(fmt.messages(change, 1)[0][1] or b"")["source"]
        assert (source["pos"], source["row"]) == (100 + index, 0)
    assert len(fmt._source_heads) == 1


def test_a_table_without_columns_and_an_integer_key_named_with_a_percent() -> None:
    encoder = Encoder(DebeziumOptions.model_validate({}))
    assert row_writer([], False, encoder)(()) == "{}"
    table = definition("CREATE TABLE shop.p (`%d%s` INT PRIMARY KEY)")
    key = ("%d%s",)
    change = RowChange("shop", "p", "insert", None, {"%d%s": 5}, key, 1.0, POS, None, 0, table)
    assert DebeziumJson("pipe").key(change) == b'{"%d%s":5}'


# -- the converters' fast cases are their general ones --------------------------------


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 30), st.data())
def test_decimal_fast_case_is_the_general_one(scale: int, data: st.DataObject) -> None:
    finite = st.decimals(allow_nan=False, allow_infinity=False)
    value = data.draw(st.one_of(decimals(65 - scale, scale), finite))
    assert outcome(decimal_bytes_at(scale), value) == outcome(general_decimal, value, scale)


def general_decimal(value: Decimal, scale: int) -> str:
    return b64(twos_complement(int(scaled(value, scale).scaleb(scale, context=DECIMALS))))


@given(st.integers(-(2**600), 2**600))
def test_twos_complement_is_javas_to_byte_array(value: int) -> None:
    data = twos_complement(value)
    assert int.from_bytes(data, "big", signed=True) == value
    # the shortest: no leading byte that only repeats the sign of the next
    assert len(data) == 1 or (data[0], data[1] >> 7) not in ((0, 0), (255, 1))


@given(st.one_of(DATETIMES, st.datetimes(timezones=st.just(dt.UTC))))
def test_datetime_fast_case_is_micros(value: dt.datetime) -> None:
    adjusted = value
    if value.year < 100:
        adjusted = value.replace(year=value.year + (2000 if value.year < 70 else 1900))
    assert datetime_us(value) == epoch_micros(adjusted)
    assert datetime_ms(value) == epoch_micros(adjusted) // 1000


@given(TEXT)
def test_latin1_ascii_case(text: str) -> None:
    holes = str.maketrans(dict.fromkeys((0x81, 0x8D, 0x8F, 0x90, 0x9D), 0xFFFD))
    assert latin1_text(text) == text.translate(holes)


@given(
    st.one_of(
        st.integers(-(2**80), 2**80),
        TEXT,
        st.floats(),
        st.booleans(),
        st.none(),
        st.decimals(allow_nan=False),
        st.lists(st.integers(), max_size=3),
        st.just(JsonText('{"a": 1}')),
    )
)
def test_dumps_value_is_dumps(value: Any) -> None:
    assert outcome(dumps_value, value) == outcome(dumps_str, value)


def test_schema_names_follow_a_table_a_transform_renamed() -> None:
    """With schemas.enable the cached schemas are per table name too, not only per
    definition: a transform may file rows of one definition under another table."""
    fmt = DebeziumJson("pipe", options=DebeziumOptions.model_validate({"schemas.enable": True}))
    names = []
    for table in ("n", "renamed", "n"):
        change = RowChange("shop", table, "insert", None, {"a": 1, "b": "x"}, (), 1.0, POS)
        change.definition = NO_KEY
        value = json.loads(fmt.messages(change, 1)[0][1] or b"")
        names.append((value["schema"]["name"], value["schema"]["fields"][1]["name"]))
    assert names == [
        ("pipe.shop.n.Envelope", "pipe.shop.n.Value"),
        ("pipe.shop.renamed.Envelope", "pipe.shop.renamed.Value"),
        ("pipe.shop.n.Envelope", "pipe.shop.n.Value"),
    ]
