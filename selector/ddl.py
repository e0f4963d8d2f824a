"""The DDL reader: ``CREATE TABLE``, ``ALTER TABLE`` and friends into table definitions.

Row events say little about a table (the table map has binlog types, names, signedness,
charsets, the key); consumers of ``debezium-json`` need what the DDL said: the type as
spelled (``BOOL`` is boolean, ``TINYINT(1)`` a number; ``INTEGER`` stays ``INTEGER``),
``FLOAT(10,2)`` against ``FLOAT``, MariaDB's ``JSON``, defaults, comments, lengths. This
module reads what a statement does to a table's definition; the schema history
(``selector.schemas``) applies it, statement after statement.

What is read: ``CREATE TABLE`` (also ``… LIKE``), ``ALTER TABLE`` (ADD / DROP / MODIFY /
CHANGE / RENAME COLUMN, ALTER COLUMN … SET / DROP DEFAULT, CONVERT TO CHARACTER SET,
primary and unique keys, RENAME TO; its table options, such as ``DEFAULT CHARSET``, change
nothing, as in Debezium), ``CREATE UNIQUE INDEX`` and ``CREATE/ALTER DATABASE`` charsets,
by :func:`parse_create`, :func:`alter_table`, :func:`unique_index` and
:func:`database_charset`, with the query-event classifier's lexer
(:func:`pipeline.dialect.statements.tokenize`). Not sqlglot: it spells types its own way
(``INTEGER`` becomes ``INT``, ``BOOL`` becomes ``BOOLEAN``), which is exactly what must be
kept, and it reads several MariaDB forms as an opaque command (``ALTER TABLE … CONVERT
TO``, ``uuid``/``inet6`` columns). The semantics follow Debezium's MySQL DDL parser, checked
against Debezium 3.6.3 by ``tests/integration/test_debezium_compat.py`` (details there and
in ``tests/debezium_notes.md``). A statement it cannot follow raises
:class:`DdlUnreadable`.

:func:`from_table_map` builds a definition from a binlog table map alone (the last resort:
names and binlog types, no defaults or spellings).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pipeline.dialect import (
    DATA_TYPES,
    NATIONAL_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    Jdbc,
    strip_quotes,
)
from pipeline.dialect.statements import Token, tokenize, unwrap_set_statement
from pipeline.model import Column, TableSchema

#: words that follow a number type's name (not part of it)
_NUMBER_SUFFIXES = ("SIGNED", "UNSIGNED", "ZEROFILL")
# second words that belong to the type name
_SECOND_WORDS = {
    "CHAR": {"VARYING"},
    "CHARACTER": {"VARYING"},
    "NCHAR": {"VARYING", "VARCHAR"},
    "NATIONAL": {"VARCHAR", "CHAR", "CHARACTER"},
    "DOUBLE": {"PRECISION"},
    "FLOAT8": {"PRECISION"},
    "LONG": {"VARBINARY", "VARCHAR"},
}
_STRING_TYPES = {name for name, jdbc in DATA_TYPES.items() if jdbc in TEXT_TYPES} - {
    "ENUM",
    "SET",
}
_DEFAULT_DIMENSIONS = {
    "DECIMAL": (10, 0),
    "DEC": (10, 0),
    "FIXED": (10, 0),
    "NUMERIC": (10, 0),
    "NCHAR": (1, None),
    "BIT": (1, None),
}
_CURRENT_TIMESTAMP = frozenset({"CURRENT_TIMESTAMP", "NOW", "LOCALTIME", "LOCALTIMESTAMP"})
# column attributes that end a data type's own clauses
_ATTRIBUTES = frozenset(
    {
        "NOT",
        "NULL",
        "DEFAULT",
        "AUTO_INCREMENT",
        "PRIMARY",
        "KEY",
        "UNIQUE",
        "COMMENT",
        "GENERATED",
        "AS",
        "ON",
        "INVISIBLE",
        "VISIBLE",
        "CHECK",
        "REFERENCES",
        "CONSTRAINT",
        "COLUMN_FORMAT",
        "STORAGE",
        "SERIAL",
        "WITH",
        "WITHOUT",
        "COMPRESSED",
    }
)
_CONSTRAINT_WORDS = frozenset(
    {"PRIMARY", "KEY", "INDEX", "UNIQUE", "FULLTEXT", "SPATIAL", "FOREIGN", "CONSTRAINT", "CHECK"}
)
_COLLATION_CHARSETS = ("utf8mb4", "utf8mb3", "utf16le", "utf16", "utf32", "ucs2")


class DdlUnreadable(ValueError):
    """The statement is not one this reader follows (the history then asks the server)."""


def charset_of_collation(collation: str) -> str:
    """The charset a collation belongs to: ``utf8mb4_bin`` -> ``utf8mb4``."""
    name = collation.lower()
    if name == "binary":
        return "binary"
    for charset in _COLLATION_CHARSETS:
        if name.startswith(charset + "_"):
            return charset
    return name.split("_", 1)[0]


def _closing(tokens: list[Token], i: int) -> int:
    """Index of the ``)`` that closes the ``(`` at ``i``."""
    depth = 0
    for k in range(i, len(tokens)):
        text = tokens[k].text
        if tokens[k].kind == "punct":
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth == 0:
                    return k
    raise DdlUnreadable("unbalanced parentheses")


def _split(tokens: list[Token]) -> list[list[Token]]:
    """Top-level comma-separated parts."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text == "(":
            depth += 1
        elif token.kind == "punct" and token.text == ")":
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _is_name(token: Token) -> bool:
    return token.kind in ("word", "quoted", "string")


def _name(token: Token) -> str:
    return strip_quotes(token.text) if token.kind == "string" else token.name


def _table_name(tokens: list[Token], i: int, default_schema: str) -> tuple[tuple[str, str], int]:
    if i >= len(tokens) or not _is_name(tokens[i]):
        raise DdlUnreadable("a table name was expected")
    first = _name(tokens[i])
    if i + 2 < len(tokens) and tokens[i + 1].text == "." and _is_name(tokens[i + 2]):
        return (first, _name(tokens[i + 2])), i + 3
    return (default_schema, first), i + 1


def _index_columns(tokens: list[Token]) -> list[str]:
    """The column names of ``(a, b(10) DESC, …)`` (tokens from the ``(``)."""
    start = next((k for k, t in enumerate(tokens) if t.text == "("), None)
    if start is None:
        return []
    inner = tokens[start + 1 : _closing(tokens, start)]
    return [_name(part[0]) for part in _split(inner) if _is_name(part[0])]


# -- one column definition -----------------------------------------------------------------


@dataclass
class _ColumnDraft:
    """A column being built (Debezium's ColumnEditor): ``None`` means not said."""

    name: str
    type_name: str = ""
    jdbc_type: int = int(Jdbc.OTHER)
    length: int | None = None
    scale: int | None = None
    optional: bool = True
    charset: str | None = None
    auto_increment: bool = False
    generated: bool = False
    comment: str | None = None
    default: str | None = None
    enum_values: tuple[str, ...] = ()
    column_type: str = ""
    computed: str | None = None

    @classmethod
    def of(cls, column: Column) -> _ColumnDraft:
        return cls(**{f.name: getattr(column, f.name) for f in fields(cls)})

    def build(self, position: int) -> Column:
        return Column(position=position, **{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class _Definition:
    """What one column definition says besides the column: key roles."""

    primary: bool = False
    unique: bool = False


def _read_column(tokens: list[Token], draft: _ColumnDraft) -> tuple[_Definition, int]:
    """Read ``data_type attributes…`` into ``draft``; returns key roles and where it stopped
    (``FIRST``/``AFTER`` of an ALTER are left for the caller)."""
    role = _Definition()
    i, serial = _read_type(tokens, 0, draft)
    optional: bool | None = False if serial else None
    if serial:
        draft.auto_increment = draft.generated = True
        role.unique = True
    n = len(tokens)
    while i < n:
        token = tokens[i]
        word = token.upper
        if word == "NOT" and i + 1 < n and tokens[i + 1].upper == "NULL":
            optional = False
            i += 2
        elif word == "NULL":
            optional = True
            i += 1
        elif word == "DEFAULT":
            i = _read_default(tokens, i + 1, draft)
        elif word == "AUTO_INCREMENT":
            draft.auto_increment = draft.generated = True
            i += 1
        elif word == "SERIAL" and i + 2 < n and tokens[i + 1].upper == "DEFAULT":
            draft.auto_increment = draft.generated = True
            role.unique = True
            if optional is None:
                optional = False
            i += 3  # SERIAL DEFAULT VALUE
        elif word == "PRIMARY" or (word == "KEY" and not role.unique):
            role.primary = True
            optional = False
            i += 2 if word == "PRIMARY" and i + 1 < n and tokens[i + 1].upper == "KEY" else 1
        elif word == "UNIQUE":
            role.unique = True
            i += 2 if i + 1 < n and tokens[i + 1].upper == "KEY" else 1
        elif word == "ON" and i + 1 < n and tokens[i + 1].upper == "UPDATE":
            # Debezium's parser marks ON UPDATE CURRENT_TIMESTAMP columns auto-incremented
            draft.auto_increment = draft.generated = True
            i += 2
        elif word == "COMMENT" and i + 1 < n and tokens[i + 1].kind == "string":
            draft.comment = strip_quotes(tokens[i + 1].text)
            i += 2
        elif word == "AS" and i + 1 < n and tokens[i + 1].text == "(":
            # [GENERATED ALWAYS] AS (expr) [VIRTUAL | STORED | PERSISTENT]: VIRTUAL by default
            i = _closing(tokens, i + 1) + 1
            stored = i < n and tokens[i].upper in ("STORED", "PERSISTENT")
            draft.computed = "STORED" if stored else "VIRTUAL"
        elif word in ("FIRST", "AFTER"):
            break
        elif token.text == "(":
            i = _closing(tokens, i) + 1
        else:
            i += 1
    if optional is not None:
        draft.optional = optional
    return role, i


def _read_type(tokens: list[Token], i: int, draft: _ColumnDraft) -> tuple[int, bool]:
    """The data type at ``i`` (with its dimensions, sign, charset and collation); whether
    it is ``SERIAL``."""
    if i >= len(tokens) or tokens[i].kind != "word":
        raise DdlUnreadable("a data type was expected")
    words = [tokens[i].text.upper()]
    i += 1
    if i < len(tokens) and tokens[i].upper in _SECOND_WORDS.get(words[0], ()):
        words.append(tokens[i].text.upper())
        i += 1
        national = words in (["NATIONAL", "CHAR"], ["NATIONAL", "CHARACTER"])
        if national and i < len(tokens) and tokens[i].upper == "VARYING":
            words.append("VARYING")
            i += 1
    base = " ".join(words)
    # a plain int, not the enum member: definitions cross to the node pickled with batches
    draft.jdbc_type = int(DATA_TYPES.get(base, Jdbc.OTHER))
    length: int | None = None
    scale: int | None = None
    options: list[str] = []
    dimensions = ""
    if i < len(tokens) and tokens[i].text == "(":
        end = _closing(tokens, i)
        inner = tokens[i + 1 : end]
        if base in ("ENUM", "SET"):
            options = [t.text for t in inner if t.kind == "string"]
        else:
            numbers = [t.text for t in inner if t.kind == "number"]
            dimensions = ",".join(numbers)
            if numbers:
                whole = numbers[0].split(".")[0]
                length = int(whole)
                if "." in numbers[0] and not length:  # FLOAT(.5): MySQL's default, 10
                    length = 10
                if len(numbers) > 1:
                    scale = int(numbers[1])
        i = end + 1
    suffixes: set[str] = set()
    charset: str | None = None
    collation: str | None = None
    n = len(tokens)
    while i < n:
        word = tokens[i].upper
        if word in _NUMBER_SUFFIXES or word == "BINARY" or word in ("ASCII", "UNICODE", "BYTE"):
            suffixes.add(word)
            i += 1
        elif word in ("CHARACTER", "CHARSET") and word not in _ATTRIBUTES:
            i += 2 if word == "CHARACTER" else 1  # CHARACTER SET | CHARSET
            if i < n and tokens[i].text == "=":
                i += 1
            if i < n:
                # ENUM and SET keep the name as written, quotes and all (as Debezium does)
                raw = base in ("ENUM", "SET")
                charset = tokens[i].text if raw else _name(tokens[i]).lower()
                i += 1
        elif word == "COLLATE":
            i += 1
            if i < n and tokens[i].text == "=":
                i += 1
            if i < n:
                collation = _name(tokens[i]).lower()
                i += 1
        else:
            break
    name = base
    if base in _NUMBER_TYPES or base == "DOUBLE PRECISION":
        name += "".join(f" {s}" for s in _NUMBER_SUFFIXES if s in suffixes)
    elif (base in _STRING_TYPES or base in ("ENUM", "SET")) and "BINARY" in suffixes:
        name += " BINARY"
    if base == "SERIAL":  # BIGINT UNSIGNED NOT NULL AUTO_INCREMENT UNIQUE
        name = "BIGINT UNSIGNED"
        suffixes.add("UNSIGNED")
    draft.type_name = name
    draft.enum_values = ()
    if base in ("ENUM", "SET"):
        draft.enum_values = tuple(options)
        length = max(0, len(options) * 2 - 1) if base == "SET" else 1
    # dimensions not written: the type's defaults (a draft's own, if any, stay)
    if length is not None:
        draft.length = length
    elif draft.length is None and base in _DEFAULT_DIMENSIONS:
        draft.length = _DEFAULT_DIMENSIONS[base][0]
    if scale is not None:
        draft.scale = scale
    elif draft.scale is None and base in _DEFAULT_DIMENSIONS:
        draft.scale = _DEFAULT_DIMENSIONS[base][1]
    if draft.jdbc_type in NATIONAL_TYPES:
        draft.charset = "utf8"
    elif draft.jdbc_type in TEXT_TYPES:
        if charset is None and collation is not None:
            charset = charset_of_collation(collation)
        draft.charset = charset
    else:
        draft.charset = None
    draft.column_type = _column_type(name, dimensions, options)
    return i, base == "SERIAL"


_NUMBER_TYPES = frozenset(
    name
    for name, jdbc in DATA_TYPES.items()
    if jdbc in NUMBER_TYPES
    and name not in ("YEAR", "SERIAL", "DOUBLE PRECISION", "FLOAT8 PRECISION")
)


def _column_type(name: str, dimensions: str, options: list[str]) -> str:
    """The type as the DDL wrote it, with its dimensions (what Canal's table-meta store
    keeps as ``mysqlType``): ``INTEGER``, ``INT(10) UNSIGNED``, ``VARCHAR(255)``,
    ``ENUM('a','b')``, ``DECIMAL(10,2)``."""
    words = name.split(" ")
    modifiers = [w for w in words[1:] if w in _NUMBER_SUFFIXES or w == "BINARY"]
    head = " ".join(w for w in words if w not in modifiers)  # DOUBLE PRECISION, CHAR VARYING
    if options:
        dimensions = ",".join(options)
    return " ".join([f"{head}({dimensions})" if dimensions else head, *modifiers])


def _read_default(tokens: list[Token], i: int, draft: _ColumnDraft) -> int:
    """``DEFAULT …`` at ``i`` (after the keyword), as Debezium records it."""
    n = len(tokens)
    if i >= n:
        return i
    token = tokens[i]
    word = token.upper
    if word == "NULL":
        draft.default = None
        return i + 1
    sign = ""
    if token.text in ("-", "+") and i + 1 < n:
        sign = token.text if token.text == "-" else ""
        i += 1
        token = tokens[i]
        word = token.upper
    introducer = token.kind == "word" and word.startswith("_")
    if introducer and i + 1 < n and tokens[i + 1].kind == "string":
        i += 1  # a charset introducer: _utf8mb4'text'
        token = tokens[i]
    if token.kind == "string":
        draft.default = sign + strip_quotes(token.text)
        return i + 1
    if token.kind == "number":
        draft.default = sign + token.text
        return i + 1
    if token.kind == "hexstr":
        if token.text[0] in "bB":
            draft.default = token.text[2:-1]
        return i + 1
    if word in ("TRUE", "FALSE"):
        draft.default = token.text
        return i + 1
    if word in _CURRENT_TIMESTAMP:
        start = i
        i += 1
        if i < n and tokens[i].text == "(":
            i = _closing(tokens, i) + 1
        if word in ("CURRENT_TIMESTAMP", "NOW"):
            draft.default = "1970-01-01 00:00:00"
        else:
            draft.default = "".join(t.text for t in tokens[start:i])
        return i
    if token.text == "(":
        draft.default = None
        return _closing(tokens, i) + 1
    # a function call or other expression without parentheses (MariaDB)
    draft.default = None
    i += 1
    if i < n and tokens[i].text == "(":
        i = _closing(tokens, i) + 1
    return i


def _literal_default(tokens: list[Token]) -> str | None:
    """The default of ``ALTER … SET DEFAULT``, as Debezium 3.6.3 records it there (not as in a
    column definition): the literal's text as written (a sign and an introducer kept, one
    pair of quotes taken off), ``null`` for NULL and for bit and hex literals, None for
    ``(expr)``. Anything else is not in its grammar."""
    if not tokens:
        raise DdlUnreadable("SET DEFAULT without a value")
    if tokens[0].text == "(":
        return None
    sign = ""
    if tokens[0].text in ("+", "-"):
        sign, tokens = tokens[0].text, tokens[1:]
    if not tokens:
        raise DdlUnreadable("SET DEFAULT without a value")
    token, word = tokens[0], tokens[0].upper if tokens[0].kind == "word" else ""
    strings = "".join(t.text for t in _leading_strings(tokens[1:]))
    if token.kind == "number":
        after = tokens[1].text if len(tokens) > 1 else ""
        if token.text == "0" and re.fullmatch(r"[xX][0-9a-fA-F]+|[bB][01]+", after):
            return sign + "null"  # 0x0A, 0b101
        return sign + token.text
    if token.text == "." and len(tokens) > 1 and tokens[1].kind == "number":
        return sign + "." + tokens[1].text
    if token.kind == "string":
        text = token.text + strings
        quoted = len(text) > 1 and text[0] in "'\"" and text[-1] == text[0]
        return sign + (text[1:-1] if quoted else text)
    if word in ("TRUE", "FALSE"):
        return sign + token.text
    if strings and (word.startswith("_") or word in ("N", "DATE", "TIME", "TIMESTAMP")):
        return sign + token.text + strings  # an introducer or a temporal literal, unquoted
    if token.kind == "hexstr" or word == "NULL" or (word.startswith("_") and len(tokens) > 1):
        return sign + "null"
    raise DdlUnreadable("SET DEFAULT of an expression without parentheses")


def _leading_strings(tokens: list[Token]) -> list[Token]:
    count = 0
    while count < len(tokens) and tokens[count].kind == "string":
        count += 1
    return tokens[:count]


# -- tables ----------------------------------------------------------------------------------


@dataclass
class _TableDraft:
    """A table being built (Debezium's TableEditor)."""

    schema: str
    table: str
    columns: list[_ColumnDraft] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    charset: str | None = None
    comment: str | None = None
    unique_keys: list[tuple[str, list[str]]] = field(default_factory=list)

    @classmethod
    def of(cls, table: TableSchema) -> _TableDraft:
        return cls(
            table.schema,
            table.table,
            [_ColumnDraft.of(c) for c in table.columns],
            list(table.primary_key),
            table.charset,
            table.comment,
            [(name, list(columns)) for name, columns in table.unique_keys],
        )

    def index(self, name: str) -> int | None:
        lowered = name.lower()
        for k, column in enumerate(self.columns):
            if column.name.lower() == lowered:
                return k
        return None

    def put(self, draft: _ColumnDraft) -> None:
        """Add a column, or replace the one of that name in place."""
        k = self.index(draft.name)
        if k is None:
            self.columns.append(draft)
        else:
            self.columns[k] = draft

    def move(self, name: str, after: str | None) -> None:
        """Move a column first (``after`` None) or after another one."""
        k = self.index(name)
        if k is None:
            return
        column = self.columns.pop(k)
        if after is None:
            self.columns.insert(0, column)
            return
        j = self.index(after)
        self.columns.insert(len(self.columns) if j is None else j + 1, column)

    def set_key(self, names: list[str]) -> None:
        """The primary key; its columns become NOT NULL (MySQL makes them so)."""
        key = []
        for name in names:
            k = self.index(name)
            if k is not None:
                self.columns[k].optional = False
                key.append(self.columns[k].name)
            else:
                key.append(name)
        self.primary_key = key

    def add_unique(self, name: str | None, columns: list[str]) -> None:
        """A UNIQUE key; unnamed, it is named as MySQL names it: after its first column,
        with ``_2``, ``_3``… when that name is taken."""
        if not columns:
            return
        taken = {n.lower() for n, _ in self.unique_keys}
        if name is None:
            name = base = columns[0]
            k = 2
            while name.lower() in taken:
                name, k = f"{base}_{k}", k + 1
        elif name.lower() in taken:
            return  # MySQL refuses a second index of that name
        self.unique_keys.append((name, list(columns)))

    def drop_unique(self, name: str) -> bool:
        """Drop the UNIQUE key named ``name``; False when there is none."""
        kept = [(n, c) for n, c in self.unique_keys if n.lower() != name.lower()]
        found = len(kept) < len(self.unique_keys)
        self.unique_keys = kept
        return found

    def build(self) -> TableSchema:
        columns = tuple(c.build(k + 1) for k, c in enumerate(self.columns))
        uniques = tuple((n, tuple(c)) for n, c in self.unique_keys)
        return TableSchema(
            self.schema,
            self.table,
            columns,
            tuple(self.primary_key),
            self.charset,
            self.comment,
            uniques,
        )


def _unique_spec(part: list[Token]) -> tuple[str | None, list[str]]:
    """``UNIQUE [KEY | INDEX] [name] [USING …] (cols) …``: the index name, if given, and
    its columns."""
    k = 1
    if k < len(part) and part[k].upper in ("KEY", "INDEX"):
        k += 1
    named = k < len(part) and _is_name(part[k]) and part[k].upper != "USING"
    return (_name(part[k]) if named else None), _index_columns(part)


def _skip_if_exists(tokens: list[Token]) -> list[Token]:
    """Tokens after an optional ``IF [NOT] EXISTS``."""
    if tokens and tokens[0].upper == "IF":
        k = 1
        while k < len(tokens) and tokens[k].upper in ("NOT", "EXISTS"):
            k += 1
        return tokens[k:]
    return tokens


def _constraint_name(part: list[Token]) -> tuple[str | None, list[Token]]:
    """``CONSTRAINT [name] rest``: the constraint's name, and the rest."""
    k = 1
    name = None
    if k < len(part) and part[k].upper not in ("PRIMARY", "UNIQUE", "FOREIGN", "CHECK"):
        name = _name(part[k])
        k += 1
    return name, part[k:]


def parse_create(
    sql: str, default_schema: str, charset_of: Callable[[str], str | None] = lambda _: None
) -> tuple[tuple[str, str], _TableDraft | tuple[str, str]]:
    """Read ``CREATE TABLE``: ((schema, table), the new table's draft, or the ``(schema,
    table)`` it is ``LIKE``). ``charset_of(schema)`` gives a database's default charset."""
    tokens = unwrap_set_statement(tokenize(sql))
    i = 1
    while i < len(tokens) and tokens[i].upper != "TABLE":
        i += 1
    i += 1
    if i + 2 < len(tokens) and tokens[i].upper == "IF":
        i += 3  # IF NOT EXISTS
    name, i = _table_name(tokens, i, default_schema)
    rest = tokens[i:]
    if rest and rest[0].upper == "LIKE":
        return name, _table_name(rest, 1, default_schema)[0]
    if len(rest) > 1 and rest[0].text == "(" and rest[1].upper == "LIKE":
        return name, _table_name(rest, 2, default_schema)[0]
    if not rest or rest[0].text != "(":
        raise DdlUnreadable("CREATE TABLE without a column list")
    end = _closing(rest, 0)
    draft = _TableDraft(*name)
    for part in _split(rest[1:end]):
        _create_element(part, draft)
    _table_options(rest[end + 1 :], draft)
    if draft.charset is None:
        draft.charset = charset_of(name[0])
    for column in draft.columns:
        if column.charset is None and (
            column.jdbc_type in TEXT_TYPES or column.type_name.startswith(("ENUM", "SET"))
        ):
            column.charset = draft.charset
    return name, draft


def _create_element(part: list[Token], draft: _TableDraft) -> None:
    head = part[0]
    word = head.upper if head.kind == "word" else ""
    constraint = None
    if word == "CONSTRAINT":
        constraint, part = _constraint_name(part)
        word = part[0].upper if part else ""
    if word == "PRIMARY" and len(part) > 1 and part[1].upper == "KEY":
        draft.set_key(_index_columns(part))
        return
    if word == "UNIQUE":
        name, columns = _unique_spec(part)
        draft.add_unique(name or constraint, columns)
        if not draft.primary_key:
            draft.set_key(columns)
        return
    if word in _CONSTRAINT_WORDS or word == "PERIOD":
        return
    column = _ColumnDraft(_name(head))
    role, _ = _read_column(part[1:], column)
    draft.put(column)
    if role.unique:
        draft.add_unique(None, [column.name])
    if role.primary or (role.unique and not draft.primary_key):
        draft.set_key([column.name])


def _table_options(tokens: list[Token], draft: _TableDraft) -> None:
    i, n = 0, len(tokens)
    while i < n:
        word = tokens[i].upper
        if word in ("AS", "SELECT", "IGNORE", "REPLACE", "PARTITION"):
            return
        if word in ("CHARSET", "CHARACTER"):
            i += 2 if word == "CHARACTER" else 1
            if i < n and tokens[i].text == "=":
                i += 1
            if i < n and tokens[i].upper != "DEFAULT":
                draft.charset = _name(tokens[i]).lower()
        elif word == "COMMENT":
            i += 1
            if i < n and tokens[i].text == "=":
                i += 1
            if i < n and tokens[i].kind == "string":
                draft.comment = strip_quotes(tokens[i].text)
        i += 1


class _Alter:
    """Applies ``ALTER TABLE`` specifications to a table draft, as Debezium does."""

    def __init__(self, draft: _TableDraft, default_schema: str) -> None:
        self.draft = draft
        self.default_schema = default_schema
        self.renamed_to: tuple[str, str] | None = None

    def apply(self, spec: list[Token]) -> None:
        word = spec[0].upper
        rest = spec[1:]
        if word == "ADD":
            self._add(rest)
        elif word == "DROP":
            self._drop(rest)
        elif word == "MODIFY":
            # Debezium 3.6.3 builds a new column: what the definition does not say is gone
            # (default, dimensions, charset, NOT NULL, auto-increment, comment)
            rest, old = self._existing(rest)
            column = _ColumnDraft(old.name)
            role, stop = _read_column(rest[1:], column)
            self._put(column)
            self._unique_column(role, column.name)
            self._place(column.name, rest[1 + stop :])
        elif word == "CHANGE":
            # Debezium edits the column: auto-increment and comment stay; default,
            # dimensions, nullability and charset are what the new definition says
            rest, column = self._existing(rest)
            column.default = column.length = column.scale = column.computed = None
            column.optional = True
            role, stop = _read_column(rest[2:], column)
            self._put(column)
            new_name = _name(rest[1])
            column.name = new_name
            self._rename_key(_name(rest[0]), new_name)
            self._unique_column(role, new_name)
            self._place(new_name, rest[2 + stop :])
        elif word == "RENAME":
            self._rename(rest)
        elif word == "ALTER":
            self._change_default(rest)
        elif word == "CONVERT":
            self._convert(rest)

    def _existing(self, rest: list[Token]) -> tuple[list[Token], _ColumnDraft]:
        """``[COLUMN] [IF EXISTS] name …`` of MODIFY/CHANGE: the rest from the name, and the
        column."""
        rest = _skip_if_exists(self._skip(rest, "COLUMN"))
        k = self.draft.index(_name(rest[0]))
        if k is None:
            raise DdlUnreadable("MODIFY/CHANGE of an unknown column")
        return rest, self.draft.columns[k]

    @staticmethod
    def _skip(tokens: list[Token], word: str) -> list[Token]:
        return tokens[1:] if tokens and tokens[0].upper == word else tokens

    def _place(self, name: str, tail: list[Token]) -> None:
        if tail and tail[0].upper == "FIRST":
            self.draft.move(name, None)
        elif len(tail) > 1 and tail[0].upper == "AFTER":
            self.draft.move(name, _name(tail[1]))

    def _rename_key(self, old: str, new: str) -> None:
        self.draft.primary_key = [new if k == old else k for k in self.draft.primary_key]
        self.draft.unique_keys = [
            (n, [new if k == old else k for k in columns]) for n, columns in self.draft.unique_keys
        ]

    def _unique_column(self, role: _Definition, name: str) -> None:
        """A column definition that says UNIQUE adds a unique key on it (one is enough)."""
        if role.unique and [name] not in (c for _, c in self.draft.unique_keys):
            self.draft.add_unique(None, [name])

    def _put(self, column: _ColumnDraft) -> None:
        if column.charset is None and column.jdbc_type in TEXT_TYPES:
            column.charset = self.draft.charset
        self.draft.put(column)

    def _add(self, rest: list[Token]) -> None:
        if not rest:
            return
        word = rest[0].upper if rest[0].kind == "word" else ""
        constraint = None
        if word == "CONSTRAINT":
            constraint, rest = _constraint_name(rest)
            word = rest[0].upper if rest else ""
        if word == "PRIMARY":
            self.draft.set_key(_index_columns(rest))
            return
        if word == "UNIQUE":
            name, columns = _unique_spec(rest)
            self.draft.add_unique(name or constraint, columns)
            if not self.draft.primary_key:
                self.draft.set_key(columns)
            return
        if word in _CONSTRAINT_WORDS or word == "PERIOD":
            return
        rest = self._skip(rest, "COLUMN")
        rest = _skip_if_exists(rest)
        if rest and rest[0].text == "(":
            inner = rest[1 : _closing(rest, 0)]
            for part in _split(inner):
                column = _ColumnDraft(_name(part[0]))
                role, _ = _read_column(part[1:], column)
                self._put(column)
                self._unique_column(role, column.name)
            return
        column = _ColumnDraft(_name(rest[0]))
        role, stop = _read_column(rest[1:], column)
        self._put(column)
        self._unique_column(role, column.name)
        if role.primary:
            self.draft.set_key([column.name])
        self._place(column.name, rest[1 + stop :])

    def _drop(self, rest: list[Token]) -> None:
        if not rest:
            return
        word = rest[0].upper if rest[0].kind == "word" else ""
        if word == "PRIMARY":
            self.draft.primary_key = []
            return
        if word in ("INDEX", "KEY", "CONSTRAINT"):  # [IF EXISTS] name: a unique key's too
            named = _skip_if_exists(rest[1:])
            if named:
                self.draft.drop_unique(_name(named[0]))
            return
        if word in ("FOREIGN", "CHECK", "PARTITION", "PERIOD"):
            return
        rest = self._skip(rest, "COLUMN")
        rest = _skip_if_exists(rest)
        if not rest:
            return
        k = self.draft.index(_name(rest[0]))
        if k is not None:
            name = self.draft.columns.pop(k).name
            self.draft.primary_key = [c for c in self.draft.primary_key if c != name]
            # MySQL takes a dropped column out of its indexes; an index left empty is gone
            narrowed = [(n, [c for c in cols if c != name]) for n, cols in self.draft.unique_keys]
            self.draft.unique_keys = [(n, cols) for n, cols in narrowed if cols]

    def _change_default(self, rest: list[Token]) -> None:
        """``ALTER [COLUMN] c SET DEFAULT literal | (expr)`` / ``DROP DEFAULT`` (Debezium's
        ALTER_DEFAULT: an unknown column, or another ``ALTER c …``, changes nothing)."""
        named = bool(rest) and rest[0].upper == "COLUMN"
        rest = self._skip(rest, "COLUMN")
        if len(rest) < 3 or (not named and rest[0].upper in ("INDEX", "KEY", "CHECK")):
            return
        k = self.draft.index(_name(rest[0]))
        if k is None or rest[2].upper != "DEFAULT":
            return
        if rest[1].upper == "DROP":
            self.draft.columns[k].default = None
        elif rest[1].upper == "SET":
            self.draft.columns[k].default = _literal_default(rest[3:])

    def _convert(self, rest: list[Token]) -> None:
        """``CONVERT TO CHARACTER SET cs [COLLATE c]``: the table's charset and that of
        every column that has one become ``cs`` (as Debezium's CONVERT_CHARSET; ``DEFAULT``
        changes nothing there)."""
        k = 1 if rest and rest[0].upper == "TO" else 0
        if k < len(rest) and rest[k].upper in ("CHARACTER", "CHARSET"):
            k += 2 if rest[k].upper == "CHARACTER" else 1
        if k < len(rest) and rest[k].text == "=":
            k += 1
        if k >= len(rest) or rest[k].upper == "DEFAULT":
            return
        charset = _name(rest[k]).lower()
        self.draft.charset = charset
        for column in self.draft.columns:
            if column.charset is not None:
                column.charset = charset

    def _rename(self, rest: list[Token]) -> None:
        if not rest:
            return
        word = rest[0].upper
        if word in ("INDEX", "KEY"):  # RENAME INDEX old TO new
            if len(rest) > 3:
                old, new = _name(rest[1]), _name(rest[3])
                self.draft.unique_keys = [
                    (new if n.lower() == old.lower() else n, c) for n, c in self.draft.unique_keys
                ]
            return
        if word == "COLUMN":
            k = self.draft.index(_name(rest[1]))
            if k is not None and len(rest) > 3:
                old = self.draft.columns[k].name
                self.draft.columns[k].name = _name(rest[3])
                self._rename_key(old, _name(rest[3]))
            return
        rest = rest[1:] if word in ("TO", "AS") else rest
        self.renamed_to = _table_name(rest, 0, self.default_schema)[0]


# -- what the history calls ------------------------------------------------------------------


def alter_table(
    table: TableSchema, sql: str, default_schema: str
) -> tuple[TableSchema, tuple[str, str] | None]:
    """``ALTER TABLE`` applied to ``table``: the definition after it, and the new name when
    it renames the table (``RENAME TO``; the definition already carries it)."""
    tokens = unwrap_set_statement(tokenize(sql))
    i = next(k for k, t in enumerate(tokens) if t.upper == "TABLE") + 1
    if tokens[i].upper == "IF":
        i += 2
    _, i = _table_name(tokens, i, default_schema)
    draft = _TableDraft.of(table)
    alter = _Alter(draft, default_schema)
    for spec in _split(tokens[i:]):
        alter.apply(spec)
    result = draft.build()
    if alter.renamed_to is not None:
        schema, name = alter.renamed_to
        return replace(result, schema=schema, table=name), alter.renamed_to
    return result, None


def unique_index(table: TableSchema, sql: str) -> TableSchema | None:
    """``CREATE UNIQUE INDEX name … ON t (cols)``: the table with that unique key, which is
    also its key when it has no primary key (Debezium's choice); None when the statement
    changes no key."""
    tokens = tokenize(sql)
    at = next((k for k, t in enumerate(tokens[:3]) if t.upper == "UNIQUE"), None)
    if at is None:
        return None
    on = next(k for k, t in enumerate(tokens) if t.upper == "ON")
    named = _skip_if_exists(tokens[at + 2 : on])  # after UNIQUE INDEX
    columns = _index_columns(tokens[on:])
    draft = _TableDraft.of(table)
    draft.add_unique(_name(named[0]) if named else None, columns)
    if not table.primary_key:
        draft.set_key(columns)
    return draft.build()


def dropped_index(table: TableSchema, sql: str) -> TableSchema | None:
    """``DROP INDEX name ON t``: the table without that unique key; None when it is not
    one of its unique keys."""
    tokens = tokenize(sql)
    named = _skip_if_exists(tokens[2:])  # after DROP INDEX
    if not named:
        return None
    draft = _TableDraft.of(table)
    return draft.build() if draft.drop_unique(_name(named[0])) else None


def database_charset(sql: str) -> str | None:
    """``[DEFAULT] CHARACTER SET [=] x`` of CREATE/ALTER DATABASE (else its COLLATE's)."""
    tokens = tokenize(sql)
    found = None
    for k, token in enumerate(tokens):
        word = token.upper
        if word in ("CHARSET", "CHARACTER", "COLLATE"):
            j = k + (2 if word == "CHARACTER" else 1)
            if j < len(tokens) and tokens[j].text == "=":
                j += 1
            if j < len(tokens):
                name = _name(tokens[j]).lower()
                if word != "COLLATE":
                    return name
                found = found or charset_of_collation(name)
    return found


# -- a definition from the table map alone (the last resort) ---------------------------------

_BLOB_NAMES = {1: "TINY", 2: "", 3: "MEDIUM", 4: "LONG"}


def from_table_map(
    schema: str,
    table: str,
    columns: list[Any],
    primary_key: tuple[str, ...],
    json_columns: frozenset[str] = frozenset(),
    nullable: Callable[[int], bool] = lambda _: True,
    plan: Any = None,
) -> TableSchema:
    """A definition from a table map's columns (mysql-replication's): binlog types, names,
    signedness, ENUM/SET members; no defaults, comments or DDL spellings. ``plan`` (the
    table's ``selector.values.TablePlan``) gives the charsets and the decoded members."""
    from pymysqlreplication.constants import FIELD_TYPE as F

    integers = {F.TINY: "TINYINT", F.SHORT: "SMALLINT", F.INT24: "MEDIUMINT", F.LONG: "INT"}
    integers[F.LONGLONG] = "BIGINT"
    built = []
    for k, c in enumerate(columns):
        kind, charset = c.type, getattr(c, "character_set_name", None)
        read = plan.columns[k] if plan is not None else None
        if read is not None:
            charset = read.charset
        text = charset not in (None, "binary")
        draft = _ColumnDraft(c.name, optional=nullable(k) and c.name not in primary_key)
        if kind in integers:
            words = integers[kind] + (" UNSIGNED" if getattr(c, "unsigned", False) else "")
        elif kind == F.NEWDECIMAL:
            words = f"DECIMAL({c.precision},{c.decimals})"
        elif kind in (F.DATETIME2, F.TIMESTAMP2, F.TIME2):
            name = {F.DATETIME2: "DATETIME", F.TIMESTAMP2: "TIMESTAMP", F.TIME2: "TIME"}[kind]
            words = f"{name}({c.fsp})" if c.fsp else name
        elif kind in (F.ENUM, F.SET):
            members = (c.enum_values if kind == F.ENUM else c.set_values) or ()
            if read is not None:
                members = read.members
            quoted = ",".join("'" + m.replace("'", "''") + "'" for m in members)
            words = f"{'ENUM' if kind == F.ENUM else 'SET'}({quoted})"
        elif kind in (F.VARCHAR, F.VAR_STRING):
            words = "VARCHAR" if text else f"VARBINARY({c.max_length})"
        elif kind == F.STRING:
            words = "CHAR" if text else f"BINARY({c.max_length})"
        elif kind == F.BLOB:
            size = _BLOB_NAMES.get(getattr(c, "length_size", 2), "")
            words = "JSON" if c.name in json_columns else size + ("TEXT" if text else "BLOB")
        elif kind == F.BIT:
            words = f"BIT({c.bits})"
        else:
            words = {
                F.FLOAT: "FLOAT",
                F.DOUBLE: "DOUBLE",
                F.DATE: "DATE",
                F.NEWDATE: "DATE",
                F.YEAR: "YEAR",
                F.JSON: "JSON",
                F.GEOMETRY: "GEOMETRY",
                F.DATETIME: "DATETIME",
                F.TIMESTAMP: "TIMESTAMP",
                F.TIME: "TIME",
            }.get(kind, "BLOB")
        _read_type(tokenize(words), 0, draft)
        if text and draft.jdbc_type in TEXT_TYPES:
            draft.charset = charset
        built.append(draft)
    draft_table = _TableDraft(schema, table, built, list(primary_key))
    return draft_table.build()
