"""The pipeline file: every example loads, every kind of mistake is named by its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import FerryConfig, load_config, parse_config
from pipeline.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))

MINIMAL = """
pipeline: {id: shop}
source:
  user: repl
  password: s3cret-pw
  server_id: 7
sink: {type: jsonl, path: /tmp/out.jsonl}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml", env or {})
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("test.yaml: ")
    return [line.strip() for line in lines[1:]]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_loads(path: Path) -> None:
    config = load_config(path, env={})
    assert isinstance(config, FerryConfig)
    assert config.summary().startswith(f"pipeline  {config.pipeline.id}")


def test_there_are_examples_for_each_main_sink() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "mysql-to-kafka.yaml",
        "mysql-to-mysql.yaml",
        "mysql-to-jsonl.yaml",
        "mysql-to-postgresql.yaml",
    } <= names


def test_example_kafka_producer_options_are_the_clients_own_names() -> None:
    """`producer:` goes to the client as is: a misspelt option would only fail at run time."""
    from kafka.producer.kafka import KafkaProducer

    for path in CONFIGS:
        sink = load_config(path, env={}).sink
        if sink.type == "kafka" and sink.client == "kafka-python":
            assert set(sink.producer) <= set(KafkaProducer.DEFAULT_CONFIG), path.name


def test_tls_examples_load_from_the_environment() -> None:
    path = Path(__file__).parents[2] / "configs" / "mysql-to-mysql.yaml"
    assert load_config(path, env={}).source.tls.mode == "preferred"
    env = {"MYSQL_TLS_MODE": "verify_identity", "MYSQL_CA": "/run/ca.pem"}
    env |= {"TARGET_TLS_MODE": "required"}
    config = load_config(path, env=env)
    assert (config.source.tls.mode, config.source.tls.ca) == ("verify_identity", "/run/ca.pem")
    assert config.sink.tls.mode == "required"
    secure = load_config(path.with_name("mysql-to-kafka-sasl-ssl.yaml"), env={})
    assert secure.source.tls.mode == "verify_identity"
    assert secure.arbiter.url.get_secret_value().startswith("rediss://")
    assert secure.sink.producer["security_protocol"] == "SASL_SSL"


def test_minimal_file_gets_defaults() -> None:
    config = parse_config(MINIMAL, env={})
    assert config.pipeline.parallelism == 3
    assert config.pipeline.batch.max_rows == 1000
    assert config.source.port == 3306 and config.source.start == "latest"
    assert config.arbiter.lock_ttl_ms == 5000


def test_exactly_once_kafka_batches_default_to_5000_rows_unless_set() -> None:
    kafka = "sink: {type: kafka, bootstrap_servers: 'k:9092', client: confluent-kafka"
    eos = MINIMAL.replace(
        "sink: {type: jsonl, path: /tmp/out.jsonl}", kafka + ", exactly_once: true}"
    )
    assert parse_config(eos, env={}).pipeline.batch.max_rows == 5000
    at_least_once = eos.replace(", exactly_once: true", "")
    assert parse_config(at_least_once, env={}).pipeline.batch.max_rows == 1000
    chosen = eos.replace("pipeline: {id: shop}", "pipeline: {id: shop, batch: {max_rows: 800}}")
    assert parse_config(chosen, env={}).pipeline.batch.max_rows == 800


def test_env_expansion_with_defaults() -> None:
    text = MINIMAL.replace("s3cret-pw", "${PW}").replace("server_id: 7", "server_id: ${SID:-9}")
    config = parse_config(text, env={"PW": "from-env"})
    assert config.source.password.get_secret_value() == "from-env"
    assert config.source.server_id == 9
    assert parse_config(text, env={"PW": "x", "SID": "12"}).source.server_id == 12


def test_unquoted_variable_in_flow_mapping_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match=r'quote variables: password: "\$\{PW\}"'):
        parse_config("source: {password: ${PW}, user: x}\n", "t.yaml", {"PW": "x"})


def test_unset_variable_without_default_is_named() -> None:
    text = MINIMAL.replace("s3cret-pw", "${MYSQL_PASSWORD}")
    assert problems(text) == [
        "source.password: environment variable MYSQL_PASSWORD is not set (and has no default)"
    ]


def test_every_offending_field_is_listed_by_path() -> None:
    text = """
pipeline: {id: Bad Id, parallelism: 0, batch: {max_rows: many}}
source: {user: repl, port: abc, server_id: 7, include: ["noschema"], colour: blue}
arbiter: {url: "http://x", lock_ttl_ms: 10}
sink: {type: kafka}
transforms: [{type: mask_columns, columns: []}]
"""
    found = problems(text)
    paths = [line.split(":")[0] for line in found]
    assert paths == [
        "pipeline.id",
        "pipeline.parallelism",
        "pipeline.batch.max_rows",
        "source.port",
        "source.include",
        "source.colour",
        "arbiter.url",
        "arbiter.lock_ttl_ms",
        "sink.bootstrap_servers",
        "transforms[0].columns",
    ]
    assert "source.port: input should be a valid integer" in found[3]
    assert "source.colour: extra inputs are not permitted" in found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipeline: [unclosed", "not valid YAML"),
        ("- a list", "expected a mapping"),
        (MINIMAL + "sink: {type: stdout}\n", "duplicate key 'sink'"),
        (MINIMAL.replace("jsonl", "s3"), "sink: unknown sink type; expected one of kafka"),
        (MINIMAL.replace("type: jsonl, ", ""), "sink: 'type' is required"),
        (MINIMAL.replace("server_id: 7", "server_id: 0"), "source.server_id: input should be"),
        ("pipeline: {id: x}\n", "source: field required"),
    ],
)
def test_bad_files_are_config_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml", {})
    assert expected in str(caught.value)


def test_secrets_never_appear_in_errors_or_summary() -> None:
    text = MINIMAL.replace("server_id: 7", "server_id: nope") + (
        "arbiter: {url: 'redis://:hunter2@10.0.0.1:6379/0', lock_ttl_ms: 1}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml", {})
    assert "s3cret-pw" not in str(caught.value) and "hunter2" not in str(caught.value)
    config = parse_config(MINIMAL + "arbiter: {url: 'redis://:hunter2@h:1/0'}\n", env={})
    summary = config.summary()
    assert "hunter2" not in summary and "s3cret-pw" not in summary
    assert "redis://:***@h:1/0" in summary
    assert "s3cret-pw" not in repr(config)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_transform_shorthand_and_callables() -> None:
    config = parse_config(
        MINIMAL + "transforms: ['json:dumps', {type: rename, schemas: {a: b}}]\n", env={}
    )
    assert config.transforms[0].type == "callable"
    assert config.transforms[1].type == "rename"
    with pytest.raises(ConfigError, match=r"transforms\[0\]\.function"):
        parse_config(MINIMAL + "transforms: ['not a function']\n", env={})
