"""The Quick start's first command, end to end: the demo's own check must say OK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import track_process, untrack_process

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.slow


def test_the_demo_replicates_a_live_workload_and_its_check_passes() -> None:
    # scripts/demo is `scripts/test --setup-only` then this; the suite is set up already
    process = subprocess.Popen(
        [sys.executable, "scripts/demo.py", "--duration", "8"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    track_process(process)
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        process.kill()
        untrack_process(process)
    assert process.returncode == 0, output[-3000:]
    assert "replaying the file gives exactly the source's rows" in output, output[-3000:]
    assert ": OK" in output, output[-3000:]
