"""What the selector and the sinks both know of MySQL: the shared dialect.

With :mod:`pipeline.model` and :mod:`pipeline.errors` this package is all that
``selector``, ``arbitrate`` and ``sinks`` may import from ``pipeline``; it imports
nothing else from the project (``tests/unit/test_layering.py`` holds both rules).

* :mod:`.types`: JDBC type codes (:class:`Jdbc`), the type families, the type names
  MySQL's grammar knows;
* :mod:`.sql`: identifier quoting and string literals;
* :mod:`.statements`: the statement lexer and classifier (what kind a query event or a
  DDL is, which tables it names);
* :mod:`.tls`: TLS for every MySQL connection ferry opens;
* :mod:`.errors`: PyMySQL's exceptions, resumable or fatal.

Import the names below from ``pipeline.dialect``; the statement classifier from
``pipeline.dialect.statements``.
"""

from pipeline.dialect.errors import RESUMABLE_MYSQL_CODES, pymysql_errors
from pipeline.dialect.sql import ident, string_value, strip_quotes
from pipeline.dialect.tls import (
    Connection,
    TlsConfig,
    TlsError,
    TlsMode,
    connect,
    connect_kwargs,
    describe,
    session_tls,
    ssl_context,
)
from pipeline.dialect.types import (
    BINARY_TYPES,
    DATA_TYPES,
    INTEGER_TYPES,
    NATIONAL_TYPES,
    NUMBER_TYPES,
    SPATIAL_TYPES,
    TEMPORAL_TYPES,
    TEXT_TYPES,
    Jdbc,
    base_type,
)

__all__ = [
    "BINARY_TYPES",
    "DATA_TYPES",
    "INTEGER_TYPES",
    "NATIONAL_TYPES",
    "NUMBER_TYPES",
    "RESUMABLE_MYSQL_CODES",
    "SPATIAL_TYPES",
    "TEMPORAL_TYPES",
    "TEXT_TYPES",
    "Connection",
    "Jdbc",
    "TlsConfig",
    "TlsError",
    "TlsMode",
    "base_type",
    "connect",
    "connect_kwargs",
    "describe",
    "ident",
    "pymysql_errors",
    "session_tls",
    "ssl_context",
    "string_value",
    "strip_quotes",
]
