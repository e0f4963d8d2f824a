"""tests/debezium_compat.py's comparison without a JVM: what it lets differ, and what not."""

from __future__ import annotations

from typing import Any

from tests.debezium import Record
from tests.debezium_compat import compare

CREATE = {
    "source": {"db": "d", "table": None, "file": "b.1", "pos": 100, "row": 0},
    "databaseName": "d",
    "ddl": "CREATE TABLE t (...)",
    "tableChanges": [
        {
            "type": "CREATE",
            "id": '"d"."t"',
            "table": {
                "columns": [
                    {"name": "id", "typeName": "INT", "length": None, "scale": None},
                    {"name": "f", "typeName": "FLOAT", "length": None, "scale": None},
                    {"name": "r", "typeName": "REAL", "length": None, "scale": None},
                    {"name": "dbl", "typeName": "DOUBLE", "length": None, "scale": None},
                    {"name": "fp", "typeName": "FLOAT", "length": 30, "scale": None},
                    {"name": "fmd", "typeName": "FLOAT", "length": 10, "scale": 2},
                ]
            },
        }
    ],
}


def insert(defaults: dict[str, float] | None = None, **values: Any) -> Record:
    """An insert into d.t, with the schema envelope when ``defaults`` (its fields' defaults)."""
    payload = {
        "before": None,
        "after": {"id": 1, **values},
        "source": {"db": "d", "table": "t", "file": "b.1", "pos": 200, "row": 0},
        "op": "c",
    }
    if defaults is None:
        return Record("dbz.d.t", {"id": 1}, payload)
    fields = [
        {"type": "int32", "optional": False, "field": "id"},
        {"type": "float", "optional": True, "default": defaults["dflt"], "field": "dflt"},
        {"type": "double", "optional": True, "default": defaults["ddflt"], "field": "ddflt"},
    ]
    schema = {"type": "struct", "fields": [{"type": "struct", "fields": fields, "field": "after"}]}
    return Record("dbz.d.t", {"id": 1}, {"schema": schema, "payload": payload})


def differences(ferry: Record, debezium: Record) -> list[str]:
    ddl = Record("dbz", None, CREATE)
    return compare([ddl, debezium], [ddl, ferry]).differences


def test_java17_float_text_is_tolerated_for_float_and_real_columns_only() -> None:
    # Java 17 writes the float32 1.7961377E9 as 1.79613773E9: the same float32
    assert differences(insert(f=1.7961377e9), insert(f=1.79613773e9)) == []
    assert differences(insert(r=1.7961377e9), insert(r=1.79613773e9)) == []
    # a DOUBLE narrowed to float precision is a difference, and so are FLOAT(p>24) and
    # FLOAT(M,D), which Debezium writes as doubles
    for column in ("dbl", "fp", "fmd"):
        [problem] = differences(
            insert(**{column: 3.1415927}), insert(**{column: 3.141592653589793})
        )
        assert f"value.after.{column}: ferry 3.1415927 Debezium 3.141592653589793" in problem
    # a float32 that is not the same one is a difference even in a FLOAT column
    assert differences(insert(f=3.14), insert(f=3.1400003))


def test_schema_defaults_of_float_fields_only() -> None:
    ours = insert({"dflt": 1.7961377e9, "ddflt": 3.1415927})
    theirs = insert({"dflt": 1.79613773e9, "ddflt": 3.141592653589793})
    [problem] = differences(ours, theirs)
    assert problem.endswith(
        "value.schema.fields[0].fields[2].default: ferry 3.1415927 Debezium 3.141592653589793"
    )
