"""The schema history: table definitions from the DDL read, as Debezium's parser keeps them.

Every expectation here was checked against Debezium 3.6.3's tableChanges over the
real-world corpus (tests/integration/test_debezium_compat.py runs the whole comparison).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from pipeline.model import Position, SchemaState, TableSchema
from selector.ddl import charset_of_collation, from_table_map
from selector.schemas import SchemaHistory


def history(**charsets: str | None) -> SchemaHistory:
    h = SchemaHistory()
    h._server_charset = "utf8mb4"
    h._charsets.update(charsets)
    return h


def created(sql: str, schema: str = "shop", h: SchemaHistory | None = None) -> TableSchema:
    h = h or history(shop="utf8mb4")
    [change] = h.apply(sql, schema)
    assert change.kind == "CREATE" and change.definition is not None
    return change.definition


def columns(table: TableSchema) -> dict[str, dict[str, Any]]:
    return {
        c.name: {
            "type": c.type_name,
            "jdbc": c.jdbc_type,
            "length": c.length,
            "scale": c.scale,
            "optional": c.optional,
            "charset": c.charset,
            "default": c.default,
        }
        for c in table.columns
    }


def test_types_are_spelled_as_written() -> None:
    table = created(
        "CREATE TABLE t (a INTEGER(11), b INT UNSIGNED ZEROFILL, c BOOL, d BOOLEAN,"
        " e TINYINT(1), f VARCHAR(40) BINARY, g DOUBLE PRECISION, h SERIAL, i DEC,"
        " j NCHAR, k BIT, l DATETIME(6), m FLOAT(10,2), n int(10) unsigned)"
    )
    got = {
        name: (c["type"], c["jdbc"], c["length"], c["scale"]) for name, c in columns(table).items()
    }
    assert got == {
        "a": ("INTEGER", 4, 11, None),
        "b": ("INT UNSIGNED ZEROFILL", 4, None, None),
        "c": ("BOOL", 16, None, None),
        "d": ("BOOLEAN", 16, None, None),
        "e": ("TINYINT", 5, 1, None),
        "f": ("VARCHAR BINARY", 12, 40, None),
        "g": ("DOUBLE PRECISION", 8, None, None),
        "h": ("BIGINT UNSIGNED", -5, None, None),
        "i": ("DEC", 3, 10, 0),
        "j": ("NCHAR", -15, 1, None),
        "k": ("BIT", -7, 1, None),
        "l": ("DATETIME", 93, 6, None),
        "m": ("FLOAT", 6, 10, 2),
        "n": ("INT UNSIGNED", 4, 10, None),
    }
    assert table.primary_key == ("h",)  # SERIAL is UNIQUE: the key when there is no other


def test_defaults_keys_and_charsets() -> None:
    table = created(
        "CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT, s VARCHAR(5) DEFAULT 'it''s',"
        " n NUMERIC(3,2) NOT NULL DEFAULT 1.23, b BIT(4) DEFAULT b'101',"
        " ts TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,"
        " e ENUM('a','b,c') CHARACTER SET latin1 DEFAULT 'a', x TEXT COLLATE utf8mb3_bin,"
        " j JSON, PRIMARY KEY (id)) DEFAULT CHARSET=utf8"
    )
    got = columns(table)
    assert table.primary_key == ("id",) and table.charset == "utf8"
    assert got["id"]["optional"] is False
    assert got["s"]["default"] == "it''s"  # as written, like Debezium
    assert got["n"]["default"] == "1.23"
    assert got["b"]["default"] == "101"
    assert got["ts"]["default"] == "1970-01-01 00:00:00"
    assert (got["s"]["charset"], got["e"]["charset"], got["x"]["charset"]) == (
        "utf8",
        "latin1",
        "utf8mb3",
    )
    assert got["j"]["charset"] is None and got["j"]["type"] == "JSON"
    enum = next(c for c in table.columns if c.name == "e")
    assert enum.enum_values == ("'a'", "'b,c'") and enum.length == 1
    ts = next(c for c in table.columns if c.name == "ts")
    assert ts.auto_increment and ts.generated  # Debezium marks ON UPDATE columns so


def test_first_unique_key_is_the_key_without_a_primary_key() -> None:
    table = created("CREATE TABLE t (a INT, b INT NOT NULL, UNIQUE KEY u (b, a))")
    assert table.primary_key == ("b", "a")
    assert [c.optional for c in table.columns] == [False, False]
    assert created("CREATE TABLE t (a INT, b INT UNIQUE, PRIMARY KEY (a))").primary_key == ("a",)


def test_alter_table() -> None:
    h = history(shop="latin1")
    created("CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10) DEFAULT 'x', b INT)", h=h)
    [change] = h.apply(
        "ALTER TABLE t ADD COLUMN c TEXT AFTER id, MODIFY b BIGINT NOT NULL FIRST,"
        " CHANGE a aa VARCHAR(20), DROP COLUMN IF EXISTS nope",
        "shop",
    )
    assert change.kind == "ALTER" and change.definition is not None
    got = columns(change.definition)
    assert list(got) == ["b", "id", "c", "aa"]
    assert got["b"]["type"] == "BIGINT" and got["b"]["optional"] is False
    assert got["aa"]["length"] == 20 and got["aa"]["default"] is None  # CHANGE drops it
    assert got["c"]["charset"] == "latin1"  # a new text column takes the table's charset
    assert [c.position for c in change.definition.columns] == [1, 2, 3, 4]
    [renamed] = h.apply("ALTER TABLE t RENAME TO other.t2", "shop")
    assert (renamed.schema, renamed.table) == ("other", "t2")
    assert h.get("shop", "t") is None and h.get("other", "t2") is not None


def test_modify_builds_a_new_column_change_edits_it() -> None:
    # as Debezium 3.6.3's parser: MODIFY keeps nothing the definition does not say; CHANGE
    # keeps auto-increment, and takes default, dimensions, NULL and charset from it
    table_sql = (
        "CREATE TABLE {} (id INT AUTO_INCREMENT PRIMARY KEY, a INT DEFAULT 1, d DECIMAL(10,2),"
        " v VARCHAR(5) CHARACTER SET latin1, n INT NOT NULL DEFAULT 5, f FLOAT(10,2)) CHARSET ascii"
    )
    h = history(shop="utf8mb4")
    created(table_sql.format("m"), h=h)
    created(table_sql.format("c"), h=h)
    [modify] = h.apply(
        "ALTER TABLE m MODIFY id INT, MODIFY a BIGINT, MODIFY d DECIMAL,"
        " MODIFY COLUMN v VARCHAR(6) AFTER id, MODIFY n INT NOT NULL, MODIFY f FLOAT",
        "shop",
    )
    [change] = h.apply(
        "ALTER TABLE c CHANGE id id INT, CHANGE a a BIGINT, CHANGE d d DECIMAL,"
        " CHANGE COLUMN v v VARCHAR(6) AFTER id, CHANGE n n INT NOT NULL, CHANGE f f FLOAT",
        "shop",
    )
    for result in (modify, change):
        assert result.definition is not None
        got = columns(result.definition)
        assert list(got) == ["id", "v", "a", "d", "n", "f"]
        assert (got["a"]["type"], got["a"]["default"]) == ("BIGINT", None)
        assert (got["d"]["length"], got["d"]["scale"]) == (10, 0)
        assert (got["v"]["length"], got["v"]["charset"]) == (6, "ascii")  # the table's
        assert (got["n"]["optional"], got["n"]["default"]) == (False, None)
        assert (got["f"]["length"], got["f"]["scale"]) == (None, None)  # now single-precision
        assert got["id"]["optional"] is True  # Debezium's, though MySQL keeps a key NOT NULL
        id_column = result.definition.columns[0]
        assert id_column.auto_increment is (result is change)


def test_alter_column_set_and_drop_default() -> None:
    # each expectation is what Debezium 3.6.3's parser (MySqlAntlrDdlParser) records
    h = history(shop="utf8mb4")
    created(
        "CREATE TABLE t (id INT PRIMARY KEY, a INT DEFAULT 1, b INT NOT NULL DEFAULT 2,"
        " c VARCHAR(5) DEFAULT 'q', d INT DEFAULT 4, e INT DEFAULT 5, f BIT(3),"
        " g DATE, h INT DEFAULT 8, i VARCHAR(4), j DOUBLE, k BOOL, l INT, n VARBINARY(4))",
        h=h,
    )
    [change] = h.apply(
        "ALTER TABLE t ALTER COLUMN a SET DEFAULT 9, ALTER b DROP DEFAULT,"
        " ALTER COLUMN c SET DEFAULT 'hello', ALTER d SET DEFAULT -5, ALTER e SET DEFAULT NULL,"
        " ALTER f SET DEFAULT b'101', ALTER g SET DEFAULT DATE '2020-02-02',"
        " ALTER h SET DEFAULT (1+2), ALTER i SET DEFAULT _utf8mb4'x', ALTER j SET DEFAULT 1.5e3,"
        " ALTER k SET DEFAULT TRUE, ALTER l SET DEFAULT +7, ALTER n SET DEFAULT 0x0a,"
        " ALTER COLUMN nope SET DEFAULT 1",
        "shop",
    )
    assert change.definition is not None
    got = {name: c["default"] for name, c in columns(change.definition).items()}
    assert got == {
        "id": None,
        "a": "9",
        "b": None,
        "c": "hello",
        "d": "-5",
        "e": "null",  # Debezium's text of NULL, bit and hex literals here: not a default
        "f": "null",
        "g": "DATE'2020-02-02'",
        "h": None,  # an expression
        "i": "_utf8mb4'x'",
        "j": "1.5e3",
        "k": "TRUE",
        "l": "+7",
        "n": "null",
    }
    assert columns(change.definition)["b"]["optional"] is False
    # not in Debezium's grammar: the server's definition is asked for (none here)
    assert h.apply("ALTER TABLE t ALTER a SET DEFAULT CURRENT_TIMESTAMP", "shop") == ()


def test_convert_to_charset_and_table_charset_options() -> None:
    h = history(shop="utf8mb4")
    created(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(5), a VARCHAR(5) CHARACTER SET ascii,"
        " e ENUM('x','y'), nc NCHAR(3), b BLOB, j JSON, vb VARBINARY(3))",
        h=h,
    )
    [change] = h.apply("ALTER TABLE t CONVERT TO CHARACTER SET latin1 COLLATE latin1_bin", "shop")
    assert change.definition is not None and change.definition.charset == "latin1"
    charsets = {name: c["charset"] for name, c in columns(change.definition).items()}
    # every column with a charset takes the new one (NCHAR's utf8 too, as in Debezium)
    assert charsets == {
        "id": None,
        "v": "latin1",
        "a": "latin1",
        "e": "latin1",
        "nc": "latin1",
        "b": None,
        "j": None,
        "vb": None,
    }
    [added] = h.apply("ALTER TABLE t ADD COLUMN w VARCHAR(2), CONVERT TO CHARSET utf8mb4", "shop")
    assert added.definition is not None
    assert columns(added.definition)["w"]["charset"] == "utf8mb4"
    [same] = h.apply("ALTER TABLE t CONVERT TO CHARACTER SET DEFAULT", "shop")
    assert same.definition is not None and same.definition.charset == "utf8mb4"
    # Debezium 3.6.3 ignores the table options of ALTER TABLE: neither the table's charset
    # nor that of the columns added later changes (MySQL would give those latin1)
    for sql in (
        "ALTER TABLE t DEFAULT CHARSET=latin1",
        "ALTER TABLE t CHARACTER SET latin1, COLLATE latin1_bin",
        "ALTER TABLE t ADD COLUMN z VARCHAR(3), DEFAULT CHARACTER SET = latin2",
    ):
        [option] = h.apply(sql, "shop")
        assert option.definition is not None and option.definition.charset == "utf8mb4"
    table = h.get("shop", "t")
    assert table is not None and columns(table)["z"]["charset"] == "utf8mb4"


def test_create_like_rename_drop_and_database_charsets() -> None:
    h = history()
    assert h.apply("CREATE DATABASE d1 CHARACTER SET latin2", "") == ()
    h.apply("CREATE DATABASE d2", "")  # no charset: none in Debezium's history either
    assert created("CREATE TABLE d1.t (a CHAR(3))", h=h).charset == "latin2"
    assert created("CREATE TABLE d2.t (a CHAR(3))", h=h).charset is None
    like = created("CREATE TABLE d2.copy LIKE d1.t", h=h)
    assert (like.schema, like.table, like.charset) == ("d2", "copy", "latin2")
    [a, b] = h.apply("RENAME TABLE d1.t TO d1.u, d2.copy TO d2.c2", "")
    assert (a.kind, a.table, b.table) == ("ALTER", "u", "c2")
    drops = h.apply("DROP TABLE IF EXISTS d1.u, d2.c2", "")
    assert [(c.kind, c.table, c.definition) for c in drops] == [
        ("DROP", "u", None),
        ("DROP", "c2", None),
    ]
    h.apply("CREATE TABLE d1.x (a INT)", "")
    h.apply("DROP DATABASE d1", "")
    assert h.get("d1", "x") is None


def test_rewind_takes_back_ddl_read_again() -> None:
    h = history(shop="utf8mb4")
    h.apply("CREATE TABLE t (a INT)", "shop", Position("b.1", 100))
    h.apply("ALTER TABLE t ADD b INT", "shop", Position("b.1", 200))
    h.apply("DROP TABLE t", "shop", Position("b.1", 300))
    h.rewind(Position("b.1", 200))
    table = h.get("shop", "t")
    assert table is not None and [c.name for c in table.columns] == ["a"]


def test_unreadable_statement_asks_the_server() -> None:
    asked = []

    def query(sql: str, args: Any) -> list[tuple[Any, ...]]:
        asked.append(sql)
        if sql.startswith("SHOW CREATE TABLE"):
            return [("t", "CREATE TABLE `t` (`a` int(11) DEFAULT NULL) DEFAULT CHARSET=latin1")]
        return []

    h = SchemaHistory(query)
    [change] = h.apply("CREATE TABLE t SELECT 1 AS a", "shop")
    assert change.definition is not None and change.definition.columns[0].type_name == "INT"
    assert asked == ["SHOW CREATE TABLE `shop`.`t`"]


def test_a_definition_that_does_not_fit_the_row_images_is_not_used() -> None:
    h = history(shop="utf8mb4")
    created("CREATE TABLE t (a INT, b INT)", h=h)
    assert h.definition("shop", "t", ["a", "b"]) is not None
    assert h.definition("shop", "t", ["a", "b", "c"]) is None  # no server to ask


def test_definitions_pickle_to_one_object_per_table() -> None:
    table = created("CREATE TABLE t (a INT, b VARCHAR(3))")
    first, second = pickle.loads(pickle.dumps(table)), pickle.loads(pickle.dumps(table))
    assert first == table and first is second


@pytest.mark.parametrize(
    "collation,charset",
    [
        ("utf8mb4_bin", "utf8mb4"),
        ("utf8_unicode_ci", "utf8"),
        ("latin1_swedish_ci", "latin1"),
        ("binary", "binary"),
    ],
)
def test_charset_of_collation(collation: str, charset: str) -> None:
    assert charset_of_collation(collation) == charset


def test_from_table_map() -> None:
    from pymysqlreplication.column import Column as MapColumn
    from pymysqlreplication.constants import FIELD_TYPE

    cols = [
        MapColumn(type=FIELD_TYPE.LONG, name="id", unsigned=True),
        MapColumn(type=FIELD_TYPE.NEWDECIMAL, name="d", precision=12, decimals=2),
        MapColumn(type=FIELD_TYPE.VARCHAR, name="s", max_length=40, character_set_name="utf8mb4"),
        MapColumn(type=FIELD_TYPE.SET, name="x", set_values=["a", "b"]),
    ]
    table = from_table_map("shop", "t", cols, ("id",))
    got = columns(table)
    assert got["id"]["type"] == "INT UNSIGNED" and got["id"]["optional"] is False
    assert (got["d"]["length"], got["d"]["scale"]) == (12, 2)
    assert got["s"]["charset"] == "utf8mb4"
    assert table.columns[3].enum_values == ("'a'", "'b'")


def test_the_server_is_asked_once_per_misfit_until_the_next_ddl() -> None:
    asked = []

    def query(sql: str, args: Any) -> list[tuple[Any, ...]]:
        asked.append(sql)
        return [("t", "CREATE TABLE `t` (`a` int(11) DEFAULT NULL)")] if "SHOW" in sql else []

    h = SchemaHistory(query)
    h._server_charset = "utf8mb4"
    created("CREATE TABLE t (a INT, b INT)", h=h)
    assert h.definition("shop", "t", ["a", "b", "c"]) is None
    assert h.definition("shop", "t", ["a", "b", "c"]) is None
    assert asked.count("SHOW CREATE TABLE `shop`.`t`") == 1
    assert [c.name for c in h.get("shop", "t").columns] == ["a", "b"]  # the history's, kept
    h.apply("ALTER TABLE t ADD c INT", "shop")
    assert h.definition("shop", "t", ["a", "b", "c"]) is not None


def test_unique_keys_are_kept_with_their_names_through_ddl() -> None:
    h = history(shop="utf8mb4")
    t = created(
        "CREATE TABLE u (id INT PRIMARY KEY, e VARCHAR(9) UNIQUE, a INT, b INT, s SERIAL,"
        " UNIQUE KEY ab (a, b), CONSTRAINT c1 UNIQUE (b), UNIQUE INDEX (a))",
        h=h,
    )
    assert t.primary_key == ("id",)
    assert t.unique_keys == (
        ("e", ("e",)),
        ("s", ("s",)),
        ("ab", ("a", "b")),
        ("c1", ("b",)),
        ("a", ("a",)),
    )

    def alter(sql: str) -> TableSchema:
        [change] = h.apply(sql, "shop")
        assert change.definition is not None
        return change.definition

    t = alter("ALTER TABLE u DROP INDEX ab, ADD UNIQUE KEY (a, b), RENAME INDEX c1 TO c2")
    assert [n for n, _ in t.unique_keys] == ["e", "s", "c2", "a", "a_2"]
    t = alter("ALTER TABLE u CHANGE e ee VARCHAR(9), DROP COLUMN a, DROP KEY s")
    assert t.unique_keys == (("e", ("ee",)), ("c2", ("b",)), ("a_2", ("b",)))
    t = alter("ALTER TABLE u ADD COLUMN z INT UNIQUE, MODIFY b INT UNIQUE")  # b has one
    assert t.unique_keys[2:] == (("a_2", ("b",)), ("z", ("z",)))
    t = alter("CREATE UNIQUE INDEX iz ON u (z, ee)")
    assert t.unique_keys[-1] == ("iz", ("z", "ee")) and t.primary_key == ("id",)
    t = alter("DROP INDEX iz ON u")
    assert "iz" not in [n for n, _ in t.unique_keys]
    state = SchemaState(None, {("shop", "u"): t})
    assert SchemaState.from_json(state.to_json()).tables[("shop", "u")] == t
    again = pickle.loads(pickle.dumps(t))
    assert again == t and pickle.loads(pickle.dumps(t)) is again  # interned


def test_generated_columns_say_virtual_or_stored() -> None:
    t = created(
        "CREATE TABLE g (a INT, v INT AS (a + 1), w INT GENERATED ALWAYS AS (a * 2) VIRTUAL,"
        " s INT AS (a - 1) STORED, p INT AS (a) PERSISTENT NOT NULL COMMENT 'x')"
    )
    assert [c.computed for c in t.columns] == [None, "VIRTUAL", "VIRTUAL", "STORED", "STORED"]
    assert t.columns[4].comment == "x" and not t.columns[4].optional
    h = history(shop="utf8mb4")
    created("CREATE TABLE g (a INT, v INT AS (a + 1))", h=h)
    [change] = h.apply("ALTER TABLE g MODIFY v INT, ADD s INT AS (a) STORED", "shop")
    assert change.definition is not None
    assert [c.computed for c in change.definition.columns] == [None, None, "STORED"]
