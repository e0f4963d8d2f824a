"""The arbiter scenarios of ``tests/unit/test_arbitrate.py`` on a real Redis, plus what
only a real Redis can show: takeover after a SIGKILLed holder, credentials, Sentinel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from arbitrate.base import Arbiter
from arbitrate.config import ArbiterConfig
from arbitrate.redis import RedisArbiter
from pipeline.errors import FatalError
from tests import services
from tests.unit.test_arbitrate import (
    P1,
    RESTART_SCENARIOS,
    SCENARIOS,
    World,
    background,
    scenario_id,
    timed_stop,
)

REPO = Path(__file__).resolve().parents[2]


class StallableClock:
    """Monotonic time that can stand still, like the clock of a stopped process."""

    def __init__(self) -> None:
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        return self.frozen_at if self.frozen_at is not None else time.monotonic()


class RedisWorld:
    name = "redis"
    ttl_ms = 1000

    def __init__(self, server: Any, key_prefix: str) -> None:
        self.server = server
        self.key_prefix = key_prefix
        self.arbiters: list[RedisArbiter] = []
        self.clocks: dict[int, StallableClock] = {}

    def config(self, **config: Any) -> ArbiterConfig:
        settings = {
            "url": self.server.url,
            "key_prefix": self.key_prefix,
            "lock_ttl_ms": self.ttl_ms,
            "socket_timeout_ms": 500,
            **config,
        }
        return ArbiterConfig.model_validate(settings)

    def arbiter(self, node_id: str, **config: Any) -> RedisArbiter:
        clock = StallableClock()
        arbiter = RedisArbiter(self.config(**config), "orders", node_id, clock=clock)
        self.arbiters.append(arbiter)
        self.clocks[id(arbiter)] = clock
        return arbiter

    def elapse(self, ms: float) -> None:
        time.sleep(ms / 1000)

    def freeze(self, arbiter: Arbiter) -> None:
        assert isinstance(arbiter, RedisArbiter)
        arbiter.freeze_renewer()
        clock = self.clocks[id(arbiter)]
        clock.frozen_at = clock()

    def thaw(self, arbiter: Arbiter) -> None:
        assert isinstance(arbiter, RedisArbiter)
        self.clocks[id(arbiter)].frozen_at = None
        arbiter.unfreeze_renewer()

    def redis_down(self) -> None:
        self.server.kill()

    def redis_up(self) -> None:
        self.server.start()  # no persistence: it comes back empty

    def close(self) -> None:
        for arbiter in self.arbiters:
            arbiter.close()


@pytest.fixture
def redis_world(redis_server: Any, key_prefix: str) -> Iterator[RedisWorld]:
    world = RedisWorld(redis_server, key_prefix)
    yield world
    world.close()


@pytest.fixture
def private_redis_world(make_redis: Callable[..., Any], key_prefix: str) -> Iterator[RedisWorld]:
    world = RedisWorld(make_redis(), key_prefix)
    yield world
    world.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_redis_arbiter(redis_world: RedisWorld, scenario: Callable[[World], None]) -> None:
    scenario(redis_world)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", RESTART_SCENARIOS, ids=scenario_id)
def test_redis_arbiter_restarts(
    private_redis_world: RedisWorld, scenario: Callable[[World], None]
) -> None:
    scenario(private_redis_world)


def test_key_layout(redis_world: RedisWorld, redis_server: Any, key_prefix: str) -> None:
    node = redis_world.arbiter("n1")
    epoch = node.await_active()
    assert epoch is not None
    node.commit_position(P1, epoch)
    node.pause("look")
    node.publish_status({"lag_ms": 1})
    client = redis_server.client(decode_responses=True)
    try:
        base = key_prefix.rstrip(":") + ":orders"
        assert client.get(f"{base}:mainstem") == f"{epoch}:n1"
        assert 0 < client.pttl(f"{base}:mainstem") <= redis_world.ttl_ms
        assert client.get(f"{base}:epoch") == str(epoch)
        assert f'"epoch": {epoch}' in client.get(f"{base}:position")
        assert client.hget(f"{base}:state", "state") == "paused"
        assert client.hget(f"{base}:status:n1", "lag_ms") == "1"
        assert client.pttl(f"{base}:status:n1") > 0  # dead nodes age out
    finally:
        client.close()


@pytest.mark.slow
def test_takeover_after_holder_is_killed(redis_server: Any, key_prefix: str) -> None:
    """A holder process dies by SIGKILL; a waiting standby takes over after the TTL."""
    ttl_ms = 2000
    config = ArbiterConfig.model_validate(
        {"url": redis_server.url, "key_prefix": key_prefix, "lock_ttl_ms": ttl_ms}
    )
    holder_code = (
        "import sys, time\n"
        "from arbitrate.config import ArbiterConfig\n"
        "from arbitrate.redis import RedisArbiter\n"
        "url, prefix, ttl, node = sys.argv[1:]\n"
        "config = ArbiterConfig.model_validate(\n"
        "    {'url': url, 'key_prefix': prefix, 'lock_ttl_ms': int(ttl)})\n"
        "arbiter = RedisArbiter(config, 'orders', node)\n"
        "print('ACTIVE', arbiter.await_active(), flush=True)\n"
        "time.sleep(300)\n"
    )
    standby = RedisArbiter(config, "orders", "standby")
    figures = []
    try:
        for round_ in range(3):
            node = f"doomed{round_}"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    holder_code,
                    redis_server.url,
                    key_prefix,
                    str(ttl_ms),
                    node,
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            services.track_process(proc)  # type: ignore[arg-type]
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.startswith("ACTIVE"), line
                holder_epoch = int(line.split()[1])
                _thread, results = background(lambda: standby.await_active(stop=timed_stop(15)))
                # At least one renewal by the holder in between; the kill lands at a
                # different point of the renewal cycle in each round.
                time.sleep(0.8 + 0.25 * round_)
                assert results.empty(), "the standby must not get in while the holder renews"
                killed_at = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                epoch, active_at = results.get(timeout=15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                services.untrack_process(proc)  # type: ignore[arg-type]
                if proc.stdout is not None:
                    proc.stdout.close()
            takeover_s = active_at - killed_at
            figures.append(takeover_s)
            print(f"\nSIGKILL -> standby active (lock_ttl_ms={ttl_ms}): {takeover_s * 1000:.0f} ms")
            assert epoch is not None and epoch > holder_epoch
            # Not before the dead holder's lock could have expired (last renewal is at most
            # ttl/3 before the kill), and no later than the TTL plus a second.
            assert ttl_ms / 3 * 2 / 1000 - 0.05 <= takeover_s < ttl_ms / 1000 + 1.0
            standby.release()
    finally:
        standby.close()
    print(f"takeover figures (s): {[round(f, 3) for f in figures]}")


def test_url_password_and_db(make_redis: Callable[..., Any], key_prefix: str) -> None:
    server = make_redis()
    # Set after start: the harness's readiness check pings without a password.
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "s3cret-pw")
    admin.close()
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/3"
    config = ArbiterConfig.model_validate({"url": url, "key_prefix": key_prefix})
    node = RedisArbiter(config, "orders", "n1")
    try:
        epoch = node.await_active(stop=timed_stop(5))
        assert epoch == 1
        client = redis.Redis(port=server.port, password="s3cret-pw", db=3, decode_responses=True)
        try:
            assert client.get(key_prefix.rstrip(":") + ":orders:mainstem") == "1:n1"
        finally:
            client.close()
    finally:
        node.close()

    wrong = ArbiterConfig.model_validate(
        {"url": f"redis://:nope@127.0.0.1:{server.port}/3", "key_prefix": key_prefix}
    )
    intruder = RedisArbiter(wrong, "orders", "n2")
    try:
        with pytest.raises(FatalError) as error:  # auth errors are not waited out
            intruder.await_active(stop=timed_stop(5))
        assert "nope" not in str(error.value) and "s3cret" not in str(error.value)
    finally:
        intruder.close()


@pytest.mark.slow
def test_sentinel(make_redis: Callable[..., Any], key_prefix: str, tmp_path: Path) -> None:
    master = make_redis()
    port = services.free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor ferrymaster 127.0.0.1 {master.port} 1\n"
    )
    proc = subprocess.Popen(
        [master.binary, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    services.track_process(proc)
    node = None
    try:
        config = ArbiterConfig.model_validate(
            {
                "url": "redis://ignored-by-sentinel/2",
                "key_prefix": key_prefix,
                "sentinels": [{"host": "127.0.0.1", "port": port}],
                "master_name": "ferrymaster",
            }
        )
        node = RedisArbiter(config, "orders", "n1")
        epoch = node.await_active(stop=timed_stop(10))  # resumable until sentinel is up
        assert epoch == 1
        client = redis.Redis(port=master.port, db=2, decode_responses=True)
        try:
            assert client.get(key_prefix.rstrip(":") + ":orders:mainstem") == "1:n1"
        finally:
            client.close()
    finally:
        if node is not None:
            node.close()
        proc.kill()
        proc.wait(10)
        services.untrack_process(proc)


def test_renewer_keeps_the_lock_for_many_ttls(redis_world: RedisWorld) -> None:
    holder, standby = redis_world.arbiter("holder"), redis_world.arbiter("standby")
    lost = threading.Event()
    holder.on_lost(lost.set)
    assert holder.await_active() is not None
    assert standby.await_active(stop=timed_stop(redis_world.ttl_ms * 3 / 1000)) is None
    assert holder.check() and not lost.is_set()


CLOSABLE_WAITS: dict[str, tuple[Callable[[RedisArbiter], Any], Any]] = {
    "mainstem": (lambda node: node.await_active(), None),
    "permit": (lambda node: node.wait_for_permit(30), False),
}


@pytest.mark.parametrize("waiting_for", sorted(CLOSABLE_WAITS))
def test_closing_a_waiting_node_ends_its_wait_without_an_error(
    redis_world: RedisWorld, waiting_for: str
) -> None:
    """``ferry run`` closes the arbiter on SIGTERM while a node waits on another thread (a
    standby for the mainstem, a node of a paused pipeline for the permit): closing cuts the
    connections the wait reads from, and what redis-py raises then is the close, not a fault
    of Redis — the wait ends as a stopped wait does, never with an error."""
    wait, stopped = CLOSABLE_WAITS[waiting_for]
    holder = redis_world.arbiter("holder")
    assert holder.await_active() is not None
    holder.pause("operator")
    for attempt in range(400):
        node = redis_world.arbiter(f"node{attempt}", poll_ms=50)
        outcome: list[Any] = []

        def run(node: RedisArbiter = node, outcome: list[Any] = outcome) -> None:
            try:
                outcome.append(wait(node))
            except Exception as exc:  # the defect: the close surfaced as a FatalError
                outcome.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(0.001 * (attempt % 4))  # closes while subscribing, trying, or reading
        node.close()
        thread.join(10)
        assert outcome == [stopped], f"attempt {attempt}: {outcome}"
