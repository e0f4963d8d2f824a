"""The command line: help, exit codes, config errors, status rendering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main, parse_position_spec, render_status
from pipeline.config import load_config
from pipeline.errors import ConfigError

ROOT = Path(__file__).parents[2]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "status", "pause", "resume", "position", "check"):
        assert f"    {command} " in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run"])  # -c missing
    assert exited.value.code == 2
    assert "-c/--config" in capsys.readouterr().err


def test_bad_config_exits_2_listing_every_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "configs" / "mysql-to-kafka.yaml").read_text()
    bad.write_text(text.replace("server_id: 4201", "server_id: -1\n  colour: blue"))
    assert main(["check", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "source.server_id: input should be greater than or equal to 1" in err
    assert "source.colour: extra inputs are not permitted" in err


def test_python_dash_m_pipeline_is_ferry(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "status", "-c", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("mysql-bin.000042:4", ("mysql-bin.000042", 4, None)), ("gtid:0-1-77", ("", 4, "0-1-77"))],
)
def test_position_specs(spec: str, expected: tuple[str, int, str | None]) -> None:
    config = load_config(ROOT / "configs" / "mysql-to-kafka.yaml", env={})
    position = parse_position_spec(spec, config)
    assert (position.file, position.pos, position.gtid_set) == expected


@pytest.mark.parametrize("spec", ["mysql-bin.000042", "f:2", ":5", "gtid:"])
def test_bad_position_specs(spec: str) -> None:
    config = load_config(ROOT / "configs" / "mysql-to-kafka.yaml", env={})
    with pytest.raises(ConfigError):
        parse_position_spec(spec, config)


def test_status_rendering_shows_error_and_nodes() -> None:
    text = render_status(
        {
            "pipeline": "p",
            "state": "paused",
            "reason": "error",
            "error": "Data too long",
            "since": 0,
            "active_node": "a",
            "epoch": 3,
            "position": {"file": "mysql-bin.000001", "pos": 120},
            "position_epoch": 3,
            "nodes": [
                {"node_id": "a", "role": "active", "epoch": 3, "lag_ms": 1500, "rows_total": 9},
                {"node_id": "b", "role": "standby", "stale": True},
            ],
        }
    )
    assert "error: paused on Data too long" in text
    assert "a (epoch 3)" in text
    assert "mysql-bin.000001:120" in text
    assert "standby (stale)" in text
    assert "1.5s" in text
