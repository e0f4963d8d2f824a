"""The pipeline file: YAML, `${VAR}` expansion, pydantic validation, readable errors.

Each plugin owns its config model (`selector.config`, `arbitrate.config`,
`sinks.*`); this module composes them into :class:`FerryConfig` and turns every
problem into one :class:`ConfigError` that lists the path of each offending
field, e.g. ``source.port: input should be a valid integer``. Secrets are
``SecretStr`` and never appear in messages (pydantic's ``input`` is not shown).
"""

from __future__ import annotations

import os
import re
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from arbitrate.config import ArbiterConfig
from pipeline.errors import ConfigError
from selector.config import MySQLSourceConfig
from sinks import registry

_STRICT = ConfigDict(extra="forbid")


class BatchConfig(BaseModel):
    model_config = _STRICT
    max_rows: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="rows per batch at most (unset: the sink's choice, 5000 for kafka with"
        " exactly_once, else 1000)",
    )
    max_wait_ms: int = Field(
        200, ge=1, le=60_000, description="a batch is handed out after this even if not full"
    )


class PipelineSettings(BaseModel):
    """`pipeline:` — identity, batching, parallelism, retries, shutdown."""

    model_config = _STRICT
    id: str = Field(
        pattern=r"^[a-z0-9_-]+$", max_length=64, description="names the Redis keys; [a-z0-9_-]+"
    )
    parallelism: int = Field(3, ge=1, le=64, description="batches in flight at most")
    batch: BatchConfig = Field(
        default_factory=BatchConfig,  # type: ignore[arg-type]
        description="batch size limits, see pipeline.batch",
    )
    max_retries: int = Field(
        10, ge=0, description="resumable failures in a row before the pipeline pauses"
    )
    retry_backoff_ms: int = Field(500, ge=1, description="first retry delay; doubles each time")
    retry_backoff_max_ms: int = Field(30_000, ge=1, description="retry delay at most")
    shutdown_grace_ms: int = Field(
        10_000, ge=0, description="on SIGTERM, how long in-flight batches may finish"
    )
    status_interval_ms: int = Field(2000, ge=100, description="how often status is published")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus metrics on this port"
    )
    state_dir: str | None = Field(
        None,
        description="directory for the local state file that remembers the pipeline ran before"
        " (guards against replay when Redis lost its data); default ~/.local/state/ferry",
    )
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field(
        "INFO", description="log level (the CLI's --log-level wins)"
    )

    def retry_delay_ms(self, attempt: int) -> int:
        """Backoff before retry ``attempt`` (1-based): doubling from retry_backoff_ms, capped."""
        return min(self.retry_backoff_ms * 2 ** (attempt - 1), self.retry_backoff_max_ms)


class ColumnFilter(BaseModel):
    """Extract stage: which columns of matching tables are kept."""

    model_config = _STRICT
    table: str = Field(description="schema.table glob")
    include: list[str] | None = Field(None, description="keep only these columns")
    exclude: list[str] = Field(default_factory=list, description="drop these columns")


class RenameTransform(BaseModel):
    model_config = _STRICT
    type: Literal["rename"]
    schemas: dict[str, str] = Field(default_factory=dict, description="schema -> new schema")
    tables: dict[str, str] = Field(
        default_factory=dict, description="'schema.table' -> 'schema.table' (wins over schemas)"
    )


class DropColumnsTransform(BaseModel):
    model_config = _STRICT
    type: Literal["drop_columns"]
    table: str = Field("*.*", description="schema.table glob")
    columns: list[str] = Field(min_length=1, description="columns to remove")


class MaskColumnsTransform(BaseModel):
    model_config = _STRICT
    type: Literal["mask_columns"]
    table: str = Field("*.*", description="schema.table glob")
    columns: list[str] = Field(min_length=1, description="columns whose values are masked")
    mask: str = Field("***", description="replacement for non-null values")


class CallableTransform(BaseModel):
    model_config = _STRICT
    type: Literal["callable"]
    function: str = Field(
        pattern=r"^[\w.]+:[\w]+$",
        description="module:function taking a change, returning a change, a list or None",
    )


def _callable_shorthand(value: Any) -> Any:
    return {"type": "callable", "function": value} if isinstance(value, str) else value


Transform = Annotated[
    RenameTransform | DropColumnsTransform | MaskColumnsTransform | CallableTransform,
    Field(discriminator="type"),
]


def _sink_config(value: Any) -> BaseModel:
    """``sink:`` through the registered class's own ``config_model``, looked up by ``type``.

    The registry is open (entry points), so this is not a pydantic union: a model's errors
    come back under ``sink.`` with their own field paths (pydantic nests a ValidationError
    raised here), and an unknown or missing type lists the types there are.
    """
    if isinstance(value, BaseModel):
        return value
    sink_type = value.get("type") if isinstance(value, dict) else None
    if sink_type is None:
        raise PydanticCustomError(
            "sink_type_missing",
            "'type' is required; one of {types}",
            {"types": ", ".join(registry.sink_types())},
        )
    try:
        model = registry.sink_class(str(sink_type)).config_model
    except ConfigError as exc:
        raise PydanticCustomError("sink_type", "{reason}", {"reason": exc.message}) from None
    return model.model_validate(value)


class FerryConfig(BaseModel):
    """The whole pipeline file."""

    model_config = _STRICT
    pipeline: PipelineSettings
    source: MySQLSourceConfig
    arbiter: ArbiterConfig = Field(default_factory=ArbiterConfig)  # type: ignore[arg-type]
    #: an instance of the registered sink class's ``config_model`` (see ``_sink_config``)
    sink: SerializeAsAny[BaseModel]
    columns: list[ColumnFilter] = Field(default_factory=list)
    transforms: list[Transform] = Field(default_factory=list)

    @field_validator("sink", mode="before")
    @classmethod
    def _sink(cls, value: Any) -> BaseModel:
        return _sink_config(value)

    @model_validator(mode="after")
    def _sink_batch_rows(self) -> FerryConfig:
        batch = self.pipeline.batch
        rows = registry.batch_rows(self.sink)
        if rows is not None and "max_rows" not in batch.model_fields_set:
            batch.max_rows = rows  # the sink's choice; a value in the file wins
        return self

    @field_validator("transforms", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return [_callable_shorthand(v) for v in value] if isinstance(value, list) else value

    def summary(self) -> str:
        """A short human description with secrets masked (for `ferry check`)."""
        src = self.source
        server_id = f"{src.dump_server_id(self.pipeline.id)}" + (
            "" if src.server_id is not None else " (derived from the pipeline id)"
        )
        lines = [
            f"pipeline  {self.pipeline.id}: parallelism {self.pipeline.parallelism}, "
            f"batches of <= {self.pipeline.batch.max_rows} rows"
            f" / {self.pipeline.batch.max_wait_ms} ms",
            f"source    mysql {src.user}@{src.host}:{src.port} server_id={server_id} "
            f"tls={src.tls.mode} start={_start_text(src.start)} include={','.join(src.include)}"
            + (f" exclude={','.join(src.exclude)}" if src.exclude else ""),
            f"arbiter   {self.arbiter.redacted_url()} lock_ttl={self.arbiter.lock_ttl_ms} ms",
            f"sink      {registry.describe(self.sink)}",
        ]
        if self.columns:
            lines.append(f"columns   {len(self.columns)} column filter(s)")
        if self.transforms:
            names = ", ".join(
                t.function if isinstance(t, CallableTransform) else t.type for t in self.transforms
            )
            lines.append(f"transforms {names}")
        return "\n".join(lines)


def _start_text(start: Any) -> str:
    if isinstance(start, str):
        return start
    return f"gtid:{start.gtid}" if hasattr(start, "gtid") else f"{start.file}:{start.pos}"


# --------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def expand_env(data: Any, env: dict[str, str], path: str = "") -> tuple[Any, list[str]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; returns (data, errors)."""
    errors: list[str] = []
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out[key], errs = expand_env(value, env, f"{path}.{key}" if path else str(key))
            errors += errs
        return out, errors
    if isinstance(data, list):
        items = []
        for i, value in enumerate(data):
            item, errs = expand_env(value, env, f"{path}[{i}]")
            items.append(item)
            errors += errs
        return items, errors
    if isinstance(data, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and (env[name] != "" or default is None):
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path}: environment variable {name} is not set (and has no default)")
            return ""

        return _VAR.sub(substitute, data), errors
    return data, errors


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _loc(loc: tuple[int | str, ...]) -> str:
    """pydantic location → `sink.topic`, `transforms[0].type`; union tags are dropped."""
    out = ""
    skip_tag = False
    for part in loc:
        if skip_tag:
            skip_tag = False
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
        if re.fullmatch(r"transforms\[\d+\]", out):
            skip_tag = True  # the next element is the discriminator tag, not a field
    return out


def format_validation_error(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = _loc(tuple(item["loc"]))
        msg = item["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top level)'}: {msg[0].lower() + msg[1:] if msg else msg}")
    return lines


def parse_config(
    text: str, source: str = "<config>", env: dict[str, str] | None = None
) -> FerryConfig:
    """Parse and validate a pipeline file's text; ConfigError lists every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        hint = ""
        if "${" in text:
            hint = '\n  hint: inside {...} flow mappings, quote variables: password: "${PW}"'
        raise ConfigError(f"{source}: not valid YAML: {exc}{hint}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with pipeline, source, sink, ...")
    data, problems = expand_env(data, dict(os.environ) if env is None else env)
    try:
        config = FerryConfig.model_validate(data)
    except ValidationError as exc:
        problems += format_validation_error(exc)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ConfigError(f"{source}: {count}:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> FerryConfig:
    """Read, expand and validate a pipeline file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(file), env)


def resolve_callable(spec: str) -> Any:
    """Import ``module:function`` for a callable transform; ConfigError if it is not there."""
    module_name, _, name = spec.partition(":")
    try:
        function = getattr(import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"transforms: cannot import {spec}: {exc}") from None
    if not callable(function):
        raise ConfigError(f"transforms: {spec} is not callable")
    return function
