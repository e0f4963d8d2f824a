"""The configuration reference in README.md, generated from the pydantic models.

`python -m pipeline.reference --write` refreshes README.md; a unit test fails
when README.md and the models disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from arbitrate.config import ArbiterConfig
from pipeline.config import (
    BatchConfig,
    CallableTransform,
    ColumnFilter,
    DropColumnsTransform,
    MaskColumnsTransform,
    PipelineSettings,
    RenameTransform,
)
from pipeline.dialect import TlsConfig
from selector.config import MySQLSourceConfig
from sinks import registry

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"

Section = tuple[str, type[BaseModel] | str]  # (title, model, or a sentence in its place)

BEFORE_SINKS: list[Section] = [
    ("pipeline", PipelineSettings),
    ("pipeline.batch", BatchConfig),
    ("source (type: mysql)", MySQLSourceConfig),
    ("source.tls (the MySQL client's --ssl-mode words)", TlsConfig),
    ("arbiter", ArbiterConfig),
]
AFTER_SINKS: list[Section] = [
    ("columns[] (extract: column filters)", ColumnFilter),
    ("transforms[] (type: rename)", RenameTransform),
    ("transforms[] (type: drop_columns)", DropColumnsTransform),
    ("transforms[] (type: mask_columns)", MaskColumnsTransform),
    ('transforms[] (type: callable, or the string "module:function")', CallableTransform),
]


def sink_sections() -> list[Section]:
    """One section per built-in sink of the registry, in its order, then one per nested
    model of their config models (``sink.debezium``, ``sink.tls``), naming the sink types
    that have it; a model already shown above is pointed to rather than repeated.

    Entry-point sinks are left out: the README describes what ferry ships.
    """
    shown = {model: title.split(" ")[0] for title, model in BEFORE_SINKS}
    sections: list[Section] = []
    nested: dict[tuple[str, type[BaseModel]], list[str]] = {}
    for sink_type in registry.BUILTIN:
        model = registry.sink_class(sink_type).config_model
        sections.append((f"sink (type: {sink_type})", model))
        for name, field in model.model_fields.items():
            inner = field.annotation
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                nested.setdefault((field.alias or name, inner), []).append(sink_type)
    for (name, inner), types in nested.items():
        title = f"sink.{name} (type: {', '.join(types)})"
        if inner in shown:
            sections.append((title, f"The same fields as `{shown[inner]}`."))
        else:
            sections.append((title, inner))
    return sections


_NAMES = {"FilePosStart": "{file, pos}", "GtidStart": "{gtid}", "SecretStr": "str (secret)"}


def _type(field: FieldInfo) -> str:
    text = repr(field.annotation) if field.annotation is not None else "any"
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # drop module paths
    text = text.replace("NoneType", "null")
    text = re.sub(r"Literal\[([^\]]*)\]", lambda m: m.group(1).replace(", ", " / "), text)
    if text.startswith("Union[") and text.endswith("]"):
        text = " | ".join(part.strip() for part in text[6:-1].split(", "))
    for name, shown in _NAMES.items():
        text = text.replace(name, shown)
    return text.replace("|", "\\|")


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value: Any = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "see below"
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()  # defaults are never real secrets
        return f"`{value}`" if value else "(empty)"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def reference() -> str:
    out: list[str] = []
    for title, model in [*BEFORE_SINKS, *sink_sections(), *AFTER_SINKS]:
        out += [f"#### `{title}`", ""]
        if isinstance(model, str):
            out += [model, ""]
            continue
        out += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if name == "type" and title.startswith(("sink", "transforms", "source")):
                continue
            description = (field.description or "").replace("|", "\\|")
            shown = field.alias or name  # Debezium's dotted option names are aliases
            out.append(f"| `{shown}` | {_type(field)} | {_default(field)} | {description} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_readme(text: str) -> str:
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    return f"{before}{START}\n{reference()}{END}{after}"


def main() -> int:
    readme = Path(__file__).parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text:
        print("README.md has no config-reference markers", file=sys.stderr)
        return 1
    if "--write" in sys.argv:
        readme.write_text(render_readme(text), encoding="utf-8")
    else:
        print(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
