"""Extract and transform stages: per-batch functions run by the stage workers.

Both stages are pure (they build new change objects and never mutate the
selector's batch in place, because a rolled-back batch may be re-delivered by
the selector from its own memory). With no column filter and no transform the
batch is passed through untouched: no per-row cost.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

from pipeline.config import (
    CallableTransform,
    ColumnFilter,
    DropColumnsTransform,
    FerryConfig,
    MaskColumnsTransform,
    RenameTransform,
    resolve_callable,
)
from pipeline.errors import FatalError
from pipeline.model import Batch, Change, DdlChange, Encoded, RowChange
from sinks.base import Sink
from sinks.formats.base import FormatSpec, encode_ahead

ChangeFn = Callable[[Change], Any]


def _table_matcher(glob: str) -> Callable[[str, str], bool]:
    return lambda schema, table: fnmatchcase(f"{schema}.{table}", glob)


def _project(image: dict[str, Any] | None, keep: Callable[[str], bool]) -> dict[str, Any] | None:
    return None if image is None else {k: v for k, v in image.items() if keep(k)}


class Extractor:
    """Column include/exclude per table (`columns:` in the pipeline file)."""

    def __init__(self, filters: list[ColumnFilter]) -> None:
        self._filters = filters
        self._cache: dict[tuple[str, str], Callable[[str], bool] | None] = {}

    def _keep(self, schema: str, table: str) -> Callable[[str], bool] | None:
        key = (schema, table)
        if key not in self._cache:
            rules = [f for f in self._filters if fnmatchcase(f"{schema}.{table}", f.table)]
            if not rules:
                self._cache[key] = None
            else:

                def keep(column: str, rules: list[ColumnFilter] = rules) -> bool:
                    return all(
                        (r.include is None or column in r.include) and column not in r.exclude
                        for r in rules
                    )

                self._cache[key] = keep
        return self._cache[key]

    def __call__(self, change: Change) -> Change:
        if not isinstance(change, RowChange):
            return change
        keep = self._keep(change.schema, change.table)
        if keep is None:
            return change
        return dataclasses.replace(
            change,
            before=_project(change.before, keep),
            after=_project(change.after, keep),
            primary_key=tuple(c for c in change.primary_key if keep(c)) or change.primary_key,
        )


def _rename(spec: RenameTransform) -> ChangeFn:
    def apply(change: Change) -> Change:
        if isinstance(change, DdlChange):
            schema = spec.schemas.get(change.schema, change.schema)
            return dataclasses.replace(change, schema=schema) if schema != change.schema else change
        target = spec.tables.get(f"{change.schema}.{change.table}")
        if target is not None:
            schema, _, table = target.partition(".")
            return dataclasses.replace(change, schema=schema, table=table)
        new_schema = spec.schemas.get(change.schema)
        return dataclasses.replace(change, schema=new_schema) if new_schema else change

    return apply


def _rewrite_columns(
    glob: str, columns: list[str], value: Callable[[str, Any], Any] | None
) -> ChangeFn:
    """Drop (value None) or rewrite the named columns of rows of matching tables."""
    matches = _table_matcher(glob)
    names = frozenset(columns)

    def image(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        if value is None:
            return {k: v for k, v in row.items() if k not in names}
        return {k: (value(k, v) if k in names else v) for k, v in row.items()}

    def apply(change: Change) -> Change:
        if not isinstance(change, RowChange) or not matches(change.schema, change.table):
            return change
        return dataclasses.replace(change, before=image(change.before), after=image(change.after))

    return apply


def _builtin(spec: Any) -> ChangeFn:
    if isinstance(spec, RenameTransform):
        return _rename(spec)
    if isinstance(spec, DropColumnsTransform):
        return _rewrite_columns(spec.table, spec.columns, None)
    if isinstance(spec, MaskColumnsTransform):
        mask = spec.mask
        return _rewrite_columns(spec.table, spec.columns, lambda _k, v: None if v is None else mask)
    if isinstance(spec, CallableTransform):
        return resolve_callable(spec.function)
    raise FatalError(f"unknown transform {spec!r}")


class Transformer:
    """The configured transforms in order; a callable returns a change, a list or None."""

    def __init__(self, specs: list[Any]) -> None:
        self._functions = [_builtin(spec) for spec in specs]

    def __call__(self, changes: Iterable[Change]) -> list[Change]:
        current = list(changes)
        for function in self._functions:
            produced: list[Change] = []
            for change in current:
                result = function(change)
                if result is None:
                    continue
                if isinstance(result, RowChange | DdlChange):
                    produced.append(result)
                elif isinstance(result, list):
                    produced.extend(result)
                else:
                    raise FatalError(
                        f"transform {getattr(function, '__name__', function)} returned"
                        f" {type(result).__name__}; expected a change, a list of changes or None"
                    )
            current = produced
        return current


class Stages:
    """extract → transform for one batch; returns a new Batch with the same id and position."""

    def __init__(self, columns: list[ColumnFilter], transforms: list[Any]) -> None:
        self._extract = Extractor(columns) if columns else None
        self._transform = Transformer(transforms) if transforms else None

    def __call__(self, batch: Batch) -> Batch:
        if self._extract is None and self._transform is None:
            return batch
        changes: Iterable[Change] = batch.changes
        if self._extract is not None:
            changes = [self._extract(change) for change in changes]
        if self._transform is not None:
            changes = self._transform(changes)
        # messages the decoder encoded ahead (Batch.encoded) are of the changes as selected
        return dataclasses.replace(batch, changes=list(changes), encoded=None)


@dataclasses.dataclass(frozen=True)
class EncodeAhead:
    """Encode-ahead handed to the decoder process as an opaque callable
    (``selector.process.EncoderFactory``), so that the selector imports no sink: pickled
    to the decoder process with the sink's ``FormatSpec``, it builds the format there once
    and returns the function that encodes a batch's row changes."""

    spec: FormatSpec

    def __call__(self) -> Callable[[Batch], Encoded]:
        return functools.partial(encode_ahead, self.spec.build())


def encoding_ahead(config: FerryConfig, sink: Sink) -> EncodeAhead | None:
    """Encode-ahead of the sink's format when rows reach the sink as selected (no column
    filter, no transform): the decoder process then encodes them (``pipeline.model.Encoded``);
    None when the sink writes values, not messages (``Sink.encoding``)."""
    if config.columns or config.transforms:
        return None
    spec = sink.encoding()
    return EncodeAhead(spec) if spec is not None else None
