"""selector.identity: derived server ids, the report host, kicks and what answers them."""

from __future__ import annotations

import random

import pymysql
import pytest

from pipeline.config import FerryConfig
from pipeline.errors import ServerIdClash
from selector.identity import (
    DERIVED_MIN,
    DERIVED_SPAN,
    KICKS_PER_MINUTE,
    KickPolicy,
    derived_server_id,
    kicked,
    report_host,
)


def test_derived_ids_are_stable_distinct_and_in_the_documented_range() -> None:
    ids = {name: derived_server_id(name) for name in ("orders", "orders-2", "shop", "a" * 64)}
    # pinned: a new release must not move a pipeline to another id (CRC-32 of the id)
    assert ids["orders"] == derived_server_id("orders") == 1_845_127_662
    assert len(set(ids.values())) == len(ids)
    assert all(DERIVED_MIN <= i < DERIVED_MIN + DERIVED_SPAN for i in ids.values())


def test_the_source_uses_the_configured_id_else_the_derived_one() -> None:
    base = {
        "pipeline": {"id": "orders"},
        "source": {"user": "repl"},
        "sink": {"type": "stdout"},
    }
    derived = FerryConfig.model_validate(base)
    assert derived.source.dump_server_id("orders") == derived_server_id("orders")
    assert "server_id=" + str(derived_server_id("orders")) + " (derived" in derived.summary()
    given = FerryConfig.model_validate({**base, "source": {"user": "repl", "server_id": 7}})
    assert given.source.dump_server_id("orders") == 7


def test_report_host_names_the_pipeline_within_60_bytes() -> None:
    assert report_host("orders") == "ferry:orders"
    long = report_host("p" * 64)
    assert len(long) == 60 and long.startswith("ferry:ppp") and "~" in long
    assert long != report_host("p" * 63 + "q")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pymysql.err.OperationalError(4052, "A slave with the same server_uuid/server_id"), True),
        (
            pymysql.err.OperationalError(
                1236, "A slave with the same server_uuid/server_id as this slave has connected"
            ),
            True,
        ),
        (
            pymysql.err.OperationalError(
                1236,
                "A replica with the same server_uuid/server_id as this replica has connected to"
                " the source; the first event 'binlog.000002' at 4, …",
            ),
            True,
        ),
        (pymysql.err.OperationalError(1236, "Could not find first log file name"), False),
        (pymysql.err.OperationalError(2013, "Lost connection"), False),
        (OSError("reset"), False),
    ],
)
def test_kicks_are_told_from_other_dump_failures(exc: BaseException, expected: bool) -> None:
    assert kicked(exc) is expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock | None = None) -> KickPolicy:
    return KickPolicy(5151, False, "orders", clock=clock or Clock(), rng=random.Random(1))


def test_a_registered_foreign_replica_is_a_clash_at_the_first_kick() -> None:
    with pytest.raises(ServerIdClash, match=r"server id 5151 \(source.server_id\).*10.0.0.7:3306"):
        policy().after_kick([("10.0.0.7", 3306)])
    with pytest.raises(ServerIdClash, match="ferry pipeline 'billing'"):
        policy().after_kick([("ferry:billing", 0)])


def test_a_client_that_does_not_register_is_a_clash_at_the_first_kick() -> None:
    with pytest.raises(ServerIdClash, match="a client that does not register"):
        policy().after_kick([])


def test_a_node_of_this_pipeline_is_answered_with_a_quick_reconnect() -> None:
    delay = policy().after_kick([("ferry:orders", 0)])
    assert 0.2 <= delay <= 1.0


def test_unknown_kickers_get_a_slow_jittered_reconnect_and_the_third_within_a_minute_pauses() -> (
    None
):
    clock = Clock()
    kicks = policy(clock)
    delays = []
    for _ in range(KICKS_PER_MINUTE - 1):
        delays.append(kicks.after_kick(None))
        clock.now += 20
    assert all(2.0 <= d <= 5.0 for d in delays) and len(set(delays)) > 1
    with pytest.raises(ServerIdClash, match=r"3 times within a minute.*REPLICATION MASTER ADMIN"):
        kicks.after_kick(None)


def test_kicks_older_than_a_minute_are_forgotten() -> None:
    clock = Clock()
    kicks = policy(clock)
    for _ in range(5):
        kicks.after_kick(None)
        clock.now += 31  # never three within 60 s
