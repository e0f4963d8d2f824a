"""Record real Debezium's output over the real-world SQL corpus (``../shared/realworld-sql``).

    python -m tests.debezium_corpus OUT_DIR                      # both configurations
    python -m tests.debezium_corpus OUT_DIR --config default -p binary.handling.mode=hex

Starts a private MariaDB that Debezium accepts (``tests.debezium.MARIADB_ARGS``), loads
every corpus file with the ``mariadb`` client in the README's order, then runs Debezium
from the first binlog once per configuration and writes ``OUT_DIR/<config>.lines``
(``topic TAB key TAB value``) beside a summary: events per kind, and Debezium's WARN and
ERROR log lines (where a DDL statement its parser could not read shows up). The output is
large and reproducible: it is not committed; ``tests/debezium_notes.md`` says what it showed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.debezium import MARIADB_ARGS, Debezium, DebeziumFailed, read_records
from tests.services import MariaDB

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("FERRY_REALWORLD_SQL", ROOT.parent / "shared" / "realworld-sql"))

# Without these Debezium stops at the corpus's one statement its DDL parser cannot read
# (MariaDB's UUID column type: dbz_uuid_column_test.test_uuid); with them it logs a WARN,
# leaves that table out of its schema and skips the table's row events (also with a WARN).
CONTINUE = {
    "schema.history.internal.skip.unparseable.ddl": "true",
    "inconsistent.schema.handling.mode": "warn",
}

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {"schemas": False, "properties": {}},
    # the same values as "default", with the schema of every field beside them
    "default-schemas": {"schemas": True, "properties": {}},
    "string-connect-schemas": {
        "schemas": True,
        "properties": {
            "decimal.handling.mode": "string",
            "time.precision.mode": "connect",
            # connect's TIME (ms since midnight) cannot hold a negative TIME or one of 24 h
            # or more: the value becomes null with a WARN, and in a NOT NULL column the
            # whole event fails the connector; "warn" skips that event instead
            "event.processing.failure.handling.mode": "warn",
        },
    },
}


def corpus_files(corpus: Path = CORPUS) -> list[Path]:
    """The README's load order: pmr, then debezium, then sakila."""
    files = sorted((corpus / "pmr").glob("*.sql")) + sorted((corpus / "debezium").glob("*.sql"))
    return [*files, corpus / "sakila" / "sakila.sql"]


def corpus_databases(corpus: Path = CORPUS) -> list[str]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    return sorted({db for f in manifest["files"] for db in f["databases"]})


def load(db: Any, files: list[Path]) -> None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        raise SystemExit("the mariadb client is needed to load the corpus")
    for path in files:
        with open(path, "rb") as f:
            proc = subprocess.run(
                [client, "-h", db.host, "-P", str(db.port), "-u", db.user, "--binary-mode"],
                stdin=f,
                capture_output=True,
                timeout=600,
            )
        if proc.returncode != 0:
            raise SystemExit(f"loading {path.name} failed: {proc.stderr.decode()[-2000:]}")


def summarise(lines: Path, log: Path) -> dict[str, Any]:
    kinds: collections.Counter[str] = collections.Counter()
    for r in read_records(lines):
        if r.tombstone:
            kinds["tombstone"] += 1
        elif r.op is not None:
            kinds[f"op {r.op}"] += 1
        else:
            kinds["schema change"] += 1
    problems = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if " WARN " in line or " ERROR " in line
    ]
    return {"events": sum(kinds.values()), "kinds": dict(kinds), "warnings": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS))
    parser.add_argument(
        "-p", "--property", action="append", default=[], help="KEY=VALUE for every run"
    )
    parser.add_argument("--idle-s", type=float, default=15.0, help="stop after this long idle")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.property)
    args.out.mkdir(parents=True, exist_ok=True)
    db = MariaDB(args.out / "mariadb", MARIADB_ARGS)
    db.remove_data()
    db.start()
    try:
        t0 = time.monotonic()
        load(db, corpus_files())
        print(f"loaded the corpus in {time.monotonic() - t0:.0f} s", flush=True)
        for name in args.config or list(CONFIGS):
            config = CONFIGS[name]
            dbz = Debezium(
                db,
                args.out / f"run-{name}",
                databases=corpus_databases(),
                schemas=config["schemas"],
                properties={**CONTINUE, **config["properties"], **extra},
            )
            try:
                run = dbz.run(idle_s=args.idle_s, timeout_s=args.timeout_s)
            except DebeziumFailed as e:
                print(f"{name}: FAILED {e}", flush=True)
                continue
            shutil.copy(run.lines_path, args.out / f"{name}.lines")
            summary = summarise(run.lines_path, dbz.log_path)
            summary.update(
                properties=dbz.config(),
                first_record_s=run.first_record_s,
                cpu_s=run.cpu_s,
                peak_rss_mb=run.peak_rss_mb,
            )
            (args.out / f"{name}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(
                f"{name}: {summary['events']} events {summary['kinds']},"
                f" {len(summary['warnings'])} WARN/ERROR log lines",
                flush=True,
            )
    finally:
        db.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
