"""Where an activation starts, and the position order it relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbitrate.memory import MemoryArbiterHub
from pipeline.model import Position
from pipeline.recovery import StateFile, choose_start
from sinks.base import SinkCheckpoint
from sinks.memory import MemorySink


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        (Position("mysql-bin.999999", 9000), Position("mysql-bin.1000000", 4)),
        (Position("mysql-bin.000009", 120), Position("mysql-bin.000010", 4)),
        (Position("mysql-bin.000010", 4), Position("mysql-bin.000010", 5)),
        (
            Position("mysql-bin.000010", 4, row_offset=2),
            Position("mysql-bin.000010", 4, row_offset=3),
        ),
        (Position("binlog.9", 4), Position("binlog.10", 4)),
    ],
)
def test_binlog_files_order_by_their_number(older: Position, newer: Position) -> None:
    assert older.sort_key() < newer.sort_key()
    assert max([newer, older], key=Position.sort_key) == newer


def test_recovery_takes_the_sink_checkpoint_in_a_file_past_a_digit_boundary() -> None:
    """The counter gained a digit: mysql-bin.1000000 is newer than Redis's mysql-bin.999999."""
    hub = MemoryArbiterHub()
    arbiter = hub.arbiter("p", "n1")
    epoch = arbiter.await_active()
    assert epoch is not None
    arbiter.commit_position(Position("mysql-bin.999999", 9000), epoch)
    checkpoint = SinkCheckpoint(Position("mysql-bin.1000000", 4), epoch=0)
    start = choose_start(arbiter, MemorySink(checkpoint=checkpoint), None, epoch)
    assert (start.position, start.origin) == (checkpoint.position, "sink checkpoint")


def test_the_state_file_takes_a_new_epoch_at_once_and_positions_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("pipeline.recovery.time.monotonic", lambda: clock[0])
    state = StateFile(tmp_path, "p")
    at = [Position("mysql-bin.000001", pos) for pos in (4, 8, 12, 16)]
    state.write(at[0], 1)
    state.write(at[1], 1)  # within the second: Redis has it, the marker waits
    assert state.read() == (at[0], 1)
    state.write(at[2], 2)  # a new epoch: choose_start reads it, written at once
    assert state.read() == (at[2], 2)
    clock[0] += 1.0
    state.write(at[3], 2)
    assert state.read() == (at[3], 2)
