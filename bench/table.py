"""Render bench/results/*.json as the README's performance table.

python bench/table.py            print the table
python bench/table.py --write    replace it in README.md (between the bench-table markers)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/select.py would shadow the standard library's ``select``: the project root, not bench/
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from sinks.kafka import EXACTLY_ONCE_BATCH_ROWS  # noqa: E402

RESULTS = ROOT / "bench" / "results"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def _int(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _row(result: dict[str, Any]) -> str:
    options, summary, workload = result["options"], result["summary"], result["workload"]
    sink = options["sink"]
    if sink == "kafka":
        sink += f" ({options['client']})"
        if options.get("broker") == "kafka":  # older rows: Tansu
            eos = any(o.startswith("exactly_once=true") for o in options.get("sink_option") or [])
            sink += ", Apache Kafka, " + ("exactly-once" if eos else "at-least-once")
    if options.get("decoder") == "thread":
        sink += ", decoder: thread"
    if options.get("rate"):
        what = f"steady {options['rate']:,.0f} rows/s for {options['seconds']:.0f} s"
    elif options.get("big_txn"):
        what = f"one {workload['rows']:,}-row transaction"
    elif options.get("inserts_only"):
        what = f"{workload['rows']:,} inserts"
    else:
        what = f"{workload['rows']:,} changes (70/20/10)"
    if options.get("statement_rows") and not options.get("rate"):
        rows = options["statement_rows"]
        what += ", one row per statement" if rows == 1 else f", {rows} rows per statement"
    batch_rows = options.get("batch_rows")
    exactly_once = "exactly_once=true" in (options.get("sink_option") or [])
    if batch_rows not in (None, 1000) or (exactly_once and batch_rows):
        what += f", batch.max_rows {batch_rows:,}"
    elif exactly_once:  # unset: the exactly-once sink's own choice
        what += f", batch.max_rows {EXACTLY_ONCE_BATCH_ROWS:,} (its default)"
    runs = options.get("runs") or 1
    what += f"; {'median of ' + str(runs) if runs > 1 else '1 run'} at {result['git']}"
    ratio = summary.get("ratio")
    lag = (
        f"{summary['lag_p50_ms']:.0f} / {summary['lag_p99_ms']:.0f} ms"
        if summary.get("lag_p99_ms") is not None
        else "-"
    )
    cells = [
        sink,
        options["shape"],
        what,
        _int(summary.get("raw_rows_per_s")),
        _int(summary.get("ferry_rows_per_s")),
        "-" if ratio is None else f"**{ratio:.0%}**",
        _int(summary.get("producer_msgs_per_s")),
        lag,
        f"{summary['peak_rss_mb']:.0f} MB"
        + (
            f" + {summary['decoder_peak_rss_mb']:.0f} MB"
            if summary.get("decoder_peak_rss_mb")
            else ""
        ),
        f"{summary.get('rollbacks', 0)}/{summary.get('retries', 0)}",
        _peers(summary),
    ]
    return "| " + " | ".join(cells) + " |"


def _peers(summary: dict[str, Any]) -> str:
    cells = [
        cell
        for cell in (_debezium(summary), _chameleon(summary), _mysql_sink(summary))
        if cell != "-"
    ]
    return "; ".join(cells) or "-"


def _chameleon(summary: dict[str, Any]) -> str:
    """pg_chameleon beside ferry, both from process spawn to the target's last row."""
    if not summary.get("pg_chameleon_rows_per_s"):
        return "-"
    return (
        f"pg_chameleon 2.0.21 {_int(summary['pg_chameleon_rows_per_s'])} from spawn vs ferry"
        f" {_int(summary.get('ferry_rows_per_s_from_start'))}, **ferry"
        f" {summary['vs_pg_chameleon']:.2f}x**"
    )


def _mysql_sink(summary: dict[str, Any]) -> str:
    """ferry's MySQL sink over the same binlog in the same runs (``--compare-sink mysql``)."""
    if not summary.get("ferry_mysql_rows_per_s"):
        return "-"
    return (
        f"ferry's MySQL sink {_int(summary['ferry_mysql_rows_per_s'])}, this sink"
        f" **{summary['vs_mysql_sink']:.0%}** of it"
    )


def _debezium(summary: dict[str, Any]) -> str:
    """Debezium beside ferry, both from process spawn and over the second half of the rows:
    rows/s and ferry's ratio each, CPU s, peak RSS."""
    if not summary.get("debezium_rows_per_s"):
        return "-"
    ferry = summary.get("ferry_rows_per_s_from_start")
    vs = f", ferry {ferry / summary['debezium_rows_per_s']:.2f}x" if ferry else ""
    warm, ferry_warm = summary.get("debezium_warm_rows_per_s"), summary.get("ferry_warm_rows_per_s")
    half = ""
    if warm:
        half = f"; 2nd half {_int(warm)}"
        if ferry_warm:
            half += f" vs ferry {_int(ferry_warm)}, {ferry_warm / warm:.2f}x"
    return (
        f"{_int(summary['debezium_rows_per_s'])} from spawn{vs}{half};"
        f" {summary['debezium_cpu_s']:.0f} CPU s vs {summary.get('ferry_cpu_total_s') or 0:.0f};"
        f" {summary['debezium_peak_rss_mb']:.0f} MB"
    )


def _order(result: dict[str, Any]) -> tuple[Any, ...]:
    options = result["options"]
    sinks = ["jsonl", "kafka", "mysql", "postgresql"]
    return (
        bool(options.get("rate")) or bool(options.get("big_txn")),
        sinks.index(options["sink"]),
        options.get("client") != "confluent-kafka",
        options.get("decoder") == "thread",
        options["shape"],
    )


def table() -> str:
    loaded = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    results = [r for r in loaded if "options" in r]  # not bench/snapshot.py's (its own table)
    if not results:
        return "(no results yet: run bench/run.py)\n"
    results.sort(key=_order)
    head = (
        "| sink | table | workload | raw decode rows/s | ferry rows/s | ferry/raw"
        " | raw producer msg/s | lag p50 / p99 | peak RSS (node + decoder) | rollbacks/retries"
        " | beside it in the same runs: Debezium 3.6.3 rows/s from spawn and over the 2nd half,"
        " beside ferry's; CPU s vs ferry; peak RSS / pg_chameleon rows/s from spawn / ferry's"
        " MySQL sink |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    machines = sorted({r["machine"] for r in results})
    commits = sorted({r["git"] for r in results})
    notes = (
        f"\nMeasured on {', '.join(machines)}, at commits {', '.join(commits)} (each row says"
        " which, and how many runs). Peak RSS: the node process + the decoder process."
        " Lag is the commit time minus the time the writer wrote the row. Debezium (`--peer"
        " debezium`): its embedded engine with a Java handler writing JSON lines (fsync per"
        " batch), rows/s from JVM spawn to the last line and over the second half of the rows"
        " (the JIT warm), beside ferry's rows/s from its process spawn and over its second"
        " half; CPU of the whole processes. pg_chameleon (`--peer pg_chameleon`): 2.0.21 from"
        " PyPI into its own database on the same PostgreSQL, rows/s from the spawn of"
        " `chameleon start_replica` until its table holds the source's final rows, beside"
        " ferry's PostgreSQL sink from its process spawn; ferry's MySQL sink (`--compare-sink"
        " mysql`) over the same binlog in the same runs, both from the dump connection.\n"
    )
    return head + "\n".join(_row(r) for r in results) + "\n" + notes


def main() -> int:
    if "--write" not in sys.argv:
        print(table())
        return 0
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    readme.write_text(f"{before}{START}\n{table()}{END}{after}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
