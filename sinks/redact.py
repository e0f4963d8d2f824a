"""What a sink may show of a row in an error or a log line: one rule for every sink.

Row values can be secrets (tokens, password hashes, API keys). Errors reach
logs, ``ferry status`` and the operator's terminal, so values of columns whose
name looks secret (``pass``, ``token``, ``key``, ``salt``, …) are masked, and
every other value is shortened. A server's own message may quote a value (a
duplicate-key error quotes the key): :func:`scrub` removes those. The masking rule
itself (:func:`mask`, :func:`masked_key`, :func:`masked_row`) lives in
``pipeline.errors``, so that the selector's errors mask a row's key the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pipeline.errors import SECRET_COLUMN, mask, masked_key, masked_row

__all__ = ["SECRET_COLUMN", "mask", "masked_key", "masked_row", "scrub", "shown_statement"]

# A credential written into a DDL statement: a FEDERATED/CONNECT/SPIDER table's
# CONNECTION='mysql://user:password@host/…' or a PASSWORD '…' option.
_URL_PASSWORD = re.compile(r"(://[^:/@'\s]*:)[^@'\s]*(@)")
_PASSWORD_OPTION = re.compile(r"(\bPASSWORD\s*=?\s*)'(?:[^'\\]|\\.|'')*'", re.IGNORECASE)


def shown_statement(sql: str, limit: int = 300) -> str:
    """A statement for a log line or an error: credentials masked, shortened."""
    sql = _PASSWORD_OPTION.sub(r"\1'***'", _URL_PASSWORD.sub(r"\1***\2", sql))
    return sql if len(sql) <= limit else sql[: limit - 1] + "…"


def scrub(message: str, rows: Iterable[dict[str, Any]]) -> str:
    """Remove values of secret-like columns that a server quoted in its message."""
    dup = re.search(r"Duplicate entry '.*' for key '([^']*)'", message)
    if dup and SECRET_COLUMN.search(dup.group(1)):
        message = message[: dup.start()] + f"Duplicate entry '***' for key '{dup.group(1)}'"
    for n, row in enumerate(rows):
        if n >= 1000:
            break
        for column, value in row.items():
            if isinstance(value, str) and len(value) >= 3 and SECRET_COLUMN.search(column):
                message = message.replace(value, "***")
    return message
