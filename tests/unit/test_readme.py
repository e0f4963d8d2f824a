"""README.md's promises that code can check."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.reference import render_readme

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_config_reference_matches_the_models() -> None:
    assert render_readme(README) == README, "run: python -m pipeline.reference --write"


def test_quick_start_is_two_commands_that_exist() -> None:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for command in commands:
        script = ROOT / command
        assert script.exists() and script.stat().st_mode & 0o111, f"{command} is not executable"


def test_every_cli_command_is_documented() -> None:
    for command in ("run", "status", "pause", "resume", "position", "check"):
        assert re.search(rf"`ferry {command} -c FILE", README), command


# Debezium 3.x's snapshot.mode values (never and schema_only are gone since 3.0)
DEBEZIUM_SNAPSHOT_MODES = {
    "always",
    "initial",
    "initial_only",
    "no_data",
    "when_needed",
    "configuration_based",
    "custom",
    "recovery",
}


def test_coming_from_debezium_names_debezium_3_snapshot_modes() -> None:
    section = README.split("### Coming from Debezium", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `snapshot.mode`")]
    named = {w for row in rows for w in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == DEBEZIUM_SNAPSHOT_MODES
