"""DESIGN.md's arrows between the four packages, read from every module's imports.

* ``pipeline`` uses ``selector``, ``arbitrate`` and ``sinks``;
* ``selector``, ``arbitrate`` and ``sinks`` import from ``pipeline`` only the shared
  vocabulary: ``pipeline.model``, ``pipeline.errors`` and ``pipeline.dialect``;
* ``selector`` and ``sinks`` never import each other (the decoder gets encode-ahead from
  the node as an opaque callable), and neither imports ``arbitrate``, nor it them;
* the shared vocabulary imports nothing else from the project.

Every import counts: at the top, inside a function, under ``TYPE_CHECKING``. The compiled
modules (``*.pyx``) are read line by line (their Python-level imports only).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("pipeline", "selector", "arbitrate", "sinks")
SHARED = ("pipeline.model", "pipeline.errors", "pipeline.dialect")
#: which other packages each package may import (its own is always allowed)
MAY_IMPORT = {
    "pipeline": {"selector", "arbitrate", "sinks"},
    "selector": set(),
    "arbitrate": set(),
    "sinks": set(),
}
_PYX_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s|import\s+([\w.]+))", re.MULTILINE)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pyx":
        for match in _PYX_IMPORT.finditer(text):
            yield text.count("\n", 0, match.start()) + 1, match[1] or match[2]
        return
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *filter(None, [node.module])])
            else:
                target = node.module or ""
            # `from pipeline import model` imports pipeline.model
            yield from ((node.lineno, f"{target}.{alias.name}") for alias in node.names)


def shared(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SHARED)


def crossing(importer: str, imported: str) -> str | None:
    """Why importing ``imported`` from module ``importer`` crosses an arrow, else None."""
    source, target = importer.split(".")[0], imported.split(".")[0]
    if target not in PACKAGES:
        return None  # the standard library or a third party
    if shared(importer):
        if shared(imported) or imported in ("pipeline", "pipeline.dialect"):
            return None
        return "the shared vocabulary imports nothing else from the project"
    if target == source:
        return None
    if target == "pipeline":
        if shared(imported) or imported == "pipeline":
            return None
        return f"{source} may import from pipeline only {', '.join(SHARED)}"
    if target not in MAY_IMPORT[source]:
        return f"{source} must not import {target}"
    return None


def violations() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix not in (".py", ".pyx"):
                continue
            importer = module_name(path)
            for line, imported in imports(path):
                why = crossing(importer, imported)
                if why:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {why}")
    return found


def test_no_import_crosses_the_design_arrows() -> None:
    found = violations()
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("importer", "imported", "crosses"),
    [
        ("pipeline.node", "sinks.base.Sink", False),
        ("pipeline.node", "selector.process.open_selector", False),
        ("sinks.kafka", "pipeline.model.Batch", False),
        ("sinks.mysql", "pipeline.dialect.TlsConfig", False),
        ("selector.ddl", "pipeline.dialect.statements.tokenize", False),
        ("sinks.formats", "selector.statements.classify", True),
        ("selector.process", "sinks.formats.encode_ahead", True),
        ("sinks.registry", "pipeline.config.FerryConfig", True),
        ("arbitrate.redis", "selector.base.PositionStore", True),
        ("pipeline.dialect.types", "pipeline.model.Column", False),
        ("pipeline.dialect.tls", "pipeline.config.FerryConfig", True),
        ("pipeline.model", "selector.ddl.TEXT_TYPES", True),
        ("selector.events", "json.dumps", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, crosses: bool) -> None:
    assert (crossing(importer, imported) is not None) is crosses
