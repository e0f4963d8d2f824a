"""pipeline.errors keeps only the hook and the generic rules; each plugin registers how its
client library's exceptions classify (issue 22, the seam)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline import errors
from pipeline.errors import FatalError, ResumableError, classify, register_classifier

DRIVERS = {"pymysql", "pymysqlreplication", "redis", "kafka", "confluent_kafka"}


class DriverLost(Exception):
    """A third-party sink's client: the connection dropped."""


class DriverDenied(Exception):
    """... and a refused login."""


def driver_errors(exc: BaseException) -> bool | None:
    if isinstance(exc, DriverLost):
        return True
    if isinstance(exc, DriverDenied):
        return False
    return None


def test_a_plugin_registers_its_client_libraries_exceptions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(errors, "_CLASSIFIERS", list(errors._CLASSIFIERS))
    assert isinstance(classify(DriverLost()), FatalError)  # unknown: the default
    assert register_classifier(driver_errors) is driver_errors
    register_classifier(driver_errors)  # the selector and the MySQL sink share one
    assert errors._CLASSIFIERS.count(driver_errors) == 1
    assert isinstance(classify(DriverLost()), ResumableError)
    assert isinstance(classify(DriverDenied()), FatalError)


def test_an_exception_no_classifier_claims_keeps_the_generic_rules() -> None:
    assert isinstance(classify(ValueError("a bug in a sink")), FatalError)
    assert isinstance(classify(ConnectionResetError(104, "reset")), ResumableError)
    assert isinstance(classify(BrokenPipeError()), ResumableError)
    assert isinstance(classify(TimeoutError()), ResumableError)


def test_pipeline_errors_imports_no_client_library() -> None:
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & DRIVERS
