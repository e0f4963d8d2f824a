"""Text values reach the sinks as the server returns them, in every charset (issue 20).

* ferry's codecs (``selector.charsets``) against the live server's own tables: every byte
  of the 8-bit charsets, every storable character of the multi-byte ones;
* the binlog path: the workload of ``tests/charset_rows.py`` (a legacy latin1 table with
  every byte and UTF-8 written through a latin1 connection, and tricky values in every
  charset) read by a real selector, each row image equal to what ``SELECT`` returns;
* a latin1 table like the one in the report, through real ``ferry run`` pipelines into
  JSON lines and into a second MariaDB: the same values, the same stored bytes, and the
  pipelines never pause;
* a value that cannot be decoded stops with an error that names the table, the column,
  the row's key (masked) and the binlog position, and never shows the value.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import FatalError
from pipeline.model import RowChange
from selector import charsets
from tests import charset_rows
from tests import charset_tables as ct
from tests.ferryproc import FerryNode, ferry_status, mysql_sink, source_position, wait_until
from tests.ferryproc import write_config as ferry_config
from tests.integration.test_selector_mysql import selector


def end_of_binlog(server: Any) -> tuple[str, int]:
    [(file, pos, *_)] = server.execute("SHOW MASTER STATUS")
    return (str(file), int(pos))


def read_until(sel: Any, end: tuple[str, int], timeout_s: float = 120) -> list[RowChange]:
    """Every row change up to the binlog position ``end``."""
    changes: list[RowChange] = []
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, f"the end {end} was not reached"
        batch = sel.select()
        changes.extend(c for c in batch.changes if isinstance(c, RowChange))
        sel.ack(batch.batch_id)
        at = batch.position
        if at is not None and (at.file, at.pos) >= end:
            return changes


def final_rows(changes: list[RowChange]) -> dict[tuple[str, int], dict[str, Any]]:
    """Replay row changes by id; every before image must be the row as it was."""
    state: dict[tuple[str, int], dict[str, Any]] = {}
    for change in changes:
        before, after = change.before, change.after
        key = (change.table, int((after or before or {})["id"]))
        if before is not None:
            assert state.get(key) == before, (key, before, state.get(key))
            del state[key]
        if after is not None:
            state[key] = after
    return state


def same_as_server(found: dict[str, Any], selected: dict[str, Any]) -> list[str]:
    problems = []
    for column, want in selected.items():
        got = found.get(column)
        if isinstance(got, set | list):  # a SET: the server writes its members joined
            got = ",".join(sorted(got))
            want = None if want is None else ",".join(sorted(want.split(","))) if want else ""
        if got != want:
            problems.append(f"{column}: {got!r} != server's {want!r}")
    return problems


def compare(server: Any, schema: str, rows: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    problems = []
    for table in charset_rows.tables(server, schema):
        selected = charset_rows.server_values(server, schema, table)
        ours = {i: row for (t, i), row in rows.items() if t == table}
        if set(ours) != set(selected):
            problems.append(f"{table}: ids {sorted(set(ours) ^ set(selected))[:10]} differ")
        for i in sorted(set(ours) & set(selected)):
            for problem in same_as_server(ours[i], selected[i]):
                problems.append(f"{table} id={i} {problem}")
    return problems


def test_the_codecs_are_the_servers_own_tables(mariadb: Any, source_db: str) -> None:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS")
            assert {str(name) for (name,) in cur.fetchall()} == set(charsets.SERVER_CHARSETS)
            for charset in charsets.SINGLE_BYTE_CHARSETS:
                codec = charsets.codec_for(charset)
                assert codec is not None
                table = ct.single_byte_table(cur, charset)
                wrong = [f"{b:02X}" for b in range(256) if codec.charmap[b] != table[b]]  # type: ignore[index]
                assert not wrong, f"{charset}: bytes {wrong} decode otherwise than the server's"
            for charset in charsets.MULTI_BYTE_CHARSETS:
                stored = ct.storable_characters(cur, charset, schema=source_db)
                character = re.compile(charsets.CHARACTER[charset])
                readable = {s for s in ct.candidates(charset) if character.fullmatch(s)}
                assert readable == set(stored), f"{charset}: the server stores other characters"
                wrong = [s.hex() for s, v in stored.items() if s.decode(f"mysql_{charset}") != v]
                assert not wrong, f"{charset}: {wrong[:10]} decode otherwise than the server's"
    finally:
        conn.close()


@pytest.mark.parametrize("decoder", ["compiled", "python"])
def test_binlog_values_are_what_the_server_selects(
    mariadb: Any, source_db: str, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selector import values as vals

    if decoder == "python":
        monkeypatch.setattr(vals, "_compiled", None)
        monkeypatch.setattr(vals, "_warned", True)
    sel = selector(mariadb, source_db, decoder="thread")
    try:
        charset_rows.load(mariadb, source_db)
        changes = read_until(sel, end_of_binlog(mariadb))
    finally:
        sel.stop()
    assert {c.op for c in changes} == {"insert", "update", "delete"}
    problems = compare(mariadb, source_db, final_rows(changes))
    assert problems == [], "\n".join(problems[:40])
    legacy = {int(c.after["id"]): c.after for c in changes if c.table == "legacy" and c.after}
    assert legacy[0x81]["v"] == "\x81" and legacy[0x9D]["t"] == "\x9d"
    assert legacy[300]["c"] == "Ã\x81"  # 'Á' in UTF-8 (C3 81), written through latin1
    assert legacy[1]["e"] == "\x81x" and legacy[7]["s"] == {"é", "\x90"}  # updated
    # uca1400 collations (ids from 2048, unknown to mysql-replication): named by the server
    uca = {int(c.after["id"]): c.after for c in changes if c.table == "uca1400" and c.after}
    assert uca[1]["u16"] == uca[1]["u32"] == "é😀" and uca[1]["u2"] == "é"


def test_legacy_latin1_text_replicates_into_jsonl_and_mysql(
    mariadb: Any,
    mariadb_target: Any,
    source_db: str,
    target_db: str,
    redis_server: Any,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    start = source_position(mariadb)
    out = tmp_path / "changes.jsonl"
    common = {"mariadb": mariadb, "schema": source_db, "redis_url": redis_server.url}
    to_jsonl = ferry_config(
        tmp_path / "jsonl.yaml",
        pipeline_id="cs-jsonl",
        prefix=key_prefix,
        sink={"type": "jsonl", "path": str(out), "format": "ferry-json"},
        start=start,
        server_id=4611,
        **common,
    )
    to_mysql = ferry_config(
        tmp_path / "mysql.yaml",
        pipeline_id="cs-mysql",
        prefix=key_prefix,
        sink=mysql_sink(mariadb_target, source_db, target_db),
        start=start,
        server_id=4612,
        **common,
    )
    # what a copy through a utf8mb4 connection can store back byte for byte: all of latin1
    charset_rows.load(mariadb, source_db, round_trip_only=True)
    end = end_of_binlog(mariadb)
    nodes = [FerryNode(to_jsonl, "cs-jsonl-1").start(), FerryNode(to_mysql, "cs-mysql-1").start()]
    try:
        for config in (to_jsonl, to_mysql):

            def caught_up(config: Path = config) -> bool:
                status = ferry_status(config)
                assert status["state"] == "running", status  # never paused
                position = status.get("position") or {}
                return (position.get("file", ""), int(position.get("pos", 0))) >= end

            wait_until(caught_up, 120, f"{config.stem} at the end of the binlog", 0.5)
    finally:
        for node in nodes:
            assert node.stop() == 0, node.log()
    log = "\n".join(node.log(200_000) for node in nodes)
    assert " paused" not in log and "ERROR" not in log, log[-5000:]

    tables = charset_rows.tables(mariadb, source_db)
    expected = {f"cs_{c}" for c in charsets.SERVER_CHARSETS if c != "binary"} | {"legacy"}
    assert set(tables) - {"uca1400"} == expected
    for table in tables:
        assert charset_rows.stored_hex(mariadb_target, target_db, table) == (
            charset_rows.stored_hex(mariadb, source_db, table)
        ), table

    rows: dict[tuple[str, int], dict[str, Any]] = {}
    # lines end with "\n" only: splitlines() would also cut at U+0085 or U+2028 in a value
    for line in filter(None, out.read_text(encoding="utf-8").split("\n")):
        message = json.loads(line)
        if "op" not in message:
            continue
        table, before, after = message["source"]["table"], message["before"], message["after"]
        key = (table, int((after or before)["id"]))
        if before is not None:
            assert rows.pop(key) == before, key
        if after is not None:
            rows[key] = after
    problems = compare(mariadb, source_db, rows)
    assert problems == [], "\n".join(problems[:40])
    assert rows[("legacy", 300)]["c"] == "Ã\x81"


def test_an_undecodable_value_names_table_column_key_and_position(
    mariadb: Any, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a codec that cannot read what the server stores: as ferry was, with latin1 = cp1252
    monkeypatch.setitem(charsets.CODECS, "latin1", charsets.Codec("latin1", "cp1252"))
    mariadb.execute(
        f"CREATE TABLE `{source_db}`.accounts (id INT, api_key VARCHAR(20),"
        " note VARCHAR(20) CHARACTER SET latin1, PRIMARY KEY (id, api_key))"
    )
    sel = selector(mariadb, source_db, decoder="thread")
    try:
        mariadb.execute(
            f"INSERT INTO `{source_db}`.accounts VALUES (7, 's3cret', %s)", ("ok \x81 here",)
        )
        with pytest.raises(FatalError) as caught:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                batch = sel.select()
                sel.ack(batch.batch_id)
    finally:
        sel.stop()
    error = caught.value
    text = str(error)
    assert f"{source_db}.accounts" in text and "'note'" in text and "latin1" in text, text
    assert "(id=7, api_key=***)" in text, text  # the key, a secret-like column masked
    assert re.search(r"rows event at mysql-bin\.\d+:\d+", text), text
    assert "s3cret" not in text and "here" not in text and "UnicodeDecodeError" not in text
    assert error.position is not None and error.position.file.startswith("mysql-bin.")
    assert f"{error.position.file}:{error.position.pos}" in text
