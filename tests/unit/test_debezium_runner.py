"""tests/debezium.py without a JVM: the properties file, the output lines, the rates."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.debezium import Debezium, Record, Run, _escape, read_records


def _load_properties(text: str) -> dict[str, str]:
    """java.util.Properties' reading rules, for the escapes _escape writes."""
    out = {}
    for line in io.StringIO(text):
        line = line.rstrip("\n")
        key, i = [], 0
        while i < len(line) and line[i] != "=":
            if line[i] == "\\":
                i += 1
            key.append(line[i])
            i += 1
        value, i = [], i + 1
        while i < len(line):
            if line[i] == "\\":
                i += 1
                value.append({"n": "\n", "r": "\r"}.get(line[i], line[i]))
            else:
                value.append(line[i])
            i += 1
        out["".join(key)] = "".join(value)
    return out


def test_properties_survive_escaping() -> None:
    props = {"a.b": "x=y:z#1!", "path": "C:\\tmp\\f", "lead": " spaced", "multi": "1\n2"}
    text = "".join(f"{_escape(k)}={_escape(v)}\n" for k, v in props.items())
    assert _load_properties(text) == props


def test_config_defaults_and_overrides(tmp_path: Path) -> None:
    server = SimpleNamespace(host="127.0.0.1", port=3307, user="root", password="")
    dbz = Debezium(
        server,
        tmp_path,
        databases=["a", "b"],
        tables=["a.t"],
        schemas=True,
        properties={"tombstones.on.delete": False, "snapshot.mode": "initial"},
    )
    config = dbz.config()
    assert config["database.include.list"] == "a,b"
    assert config["table.include.list"] == "a.t"
    assert config["key.converter.schemas.enable"] == "true"
    assert config["value.converter.schemas.enable"] == "true"
    assert config["tombstones.on.delete"] == "false"
    assert config["snapshot.mode"] == "initial"  # properties win over the defaults
    assert config["offset.storage.file.filename"] == str(tmp_path / "offsets.dat")
    plain = Debezium(server, tmp_path).config()
    assert plain["value.converter.schemas.enable"] == "false"
    assert "database.include.list" not in plain


def test_records_from_lines(tmp_path: Path) -> None:
    row = {"before": None, "after": {"id": 1}, "op": "c", "source": {}}
    schema_wrapped: dict[str, Any] = {"schema": {"type": "struct"}, "payload": row}
    lines = tmp_path / "events.lines"
    lines.write_text(
        f"dbz.s.t\t{json.dumps({'id': 1})}\t{json.dumps(row)}\n"
        f"dbz.s.t\t{json.dumps({'schema': {}, 'payload': {'id': 1}})}\t"
        f"{json.dumps(schema_wrapped)}\n"
        'dbz.s.t\t{"id":1}\tnull\n'
        f"dbz\t{json.dumps({'databaseName': 's'})}\t"
        f"{json.dumps({'ddl': 'CREATE TABLE t (id INT)', 'tableChanges': []})}\n",
        encoding="utf-8",
    )
    plain, wrapped, tombstone, ddl = read_records(lines)
    assert plain == Record("dbz.s.t", {"id": 1}, row)
    assert plain.op == "c" and plain.after == {"id": 1} and plain.before is None
    assert wrapped.op == "c" and wrapped.key_payload == {"id": 1}
    assert tombstone.tombstone and tombstone.op is None
    assert ddl.op is None and not ddl.tombstone


def test_rates(tmp_path: Path) -> None:
    run = Run(
        lines_path=tmp_path / "x",
        count=1000,
        stopped="max",
        started_at=100.0,
        wall_s=5.0,
        cpu_s=3.0,
        peak_rss_mb=200.0,
        summary={
            "first_ms": 102_000,
            "first_batch": 100,
            "half_ms": 103_000,
            "half_count": 500,
            "last_ms": 104_000,
        },
    )
    assert run.first_record_s == 2.0
    assert run.rows_per_s == 250.0  # 1000 records, 4 s from spawn
    assert run.steady_rows_per_s == 450.0  # 900 after the first batch, in 2 s
    assert run.warm_rows_per_s == 500.0  # 500 in the last second
