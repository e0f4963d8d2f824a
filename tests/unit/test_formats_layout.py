"""sinks/formats/ imports in one direction: each module only from those below it (base,
then the value helpers and the JSON encoder, then one module per format, debezium-json's
in the order of its package docstring), a format never from another format, and no module
another's private (``_name``) names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "sinks" / "formats"

# bottom first: a module may import only modules before it
ORDER = [
    "sinks.formats.base",
    "sinks.formats.values",
    "sinks.formats.encoder",
    "sinks.formats.ferry_json",
    "sinks.formats.canal",
    "sinks.formats.debezium.options",
    "sinks.formats.debezium.connect",
    "sinks.formats.debezium.converters",
    "sinks.formats.debezium.writer",
    "sinks.formats.debezium.schema_changes",
    "sinks.formats.debezium.envelope",
]
SHARED = {"sinks.formats.base", "sinks.formats.values", "sinks.formats.encoder"}


def _format_of(module: str) -> str:
    return module if module.count(".") == 2 else module.rsplit(".", 1)[0]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each ``from sinks… import`` and ``import sinks…`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sinks"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("sinks")]
    return found


def test_every_module_is_in_the_order() -> None:
    modules = {
        ".".join(p.relative_to(PACKAGE.parents[1]).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules == set(ORDER)


def test_imports_go_down_and_never_between_formats() -> None:
    for k, module in enumerate(ORDER):
        path = PACKAGE.parents[1] / (module.replace(".", "/") + ".py")
        for imported, _ in _imports(path):
            assert imported in ORDER[:k], f"{module} imports {imported}"
            if module not in SHARED and imported not in SHARED:
                assert _format_of(imported) == _format_of(module), f"{module} imports {imported}"


def test_no_module_imports_private_names() -> None:
    root = PACKAGE.parents[1]
    for path in [*root.glob("*/**/*.py"), *root.glob("bench/*.py")]:
        if ".venv" in path.parts:
            continue
        for imported, names in _imports(path):
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{path.relative_to(root)} imports {private} from {imported}"
