"""Query events, classified in one place.

Every ``QueryEvent`` of the binlog is one statement of one of these kinds, and
the kind alone decides what the selector does with it:

===========  ============================================  ====================================
kind         statements                                    what the selector does
===========  ============================================  ====================================
transaction  BEGIN, START TRANSACTION, COMMIT, ROLLBACK,   transaction bookkeeping (XA: rows
             SAVEPOINT, RELEASE SAVEPOINT, XA …            are held from PREPARE until COMMIT)
database     CREATE / ALTER / DROP DATABASE|SCHEMA         ``DdlChange`` if the schema is
                                                           included
table        CREATE / ALTER / DROP / RENAME / TRUNCATE     ``DdlChange`` if any table it names
             TABLE, CREATE / DROP INDEX, CREATE / ALTER /  is included
             DROP VIEW|SEQUENCE
routine      CREATE / ALTER / DROP PROCEDURE, FUNCTION,    ``DdlChange`` (kind ``routine``) if
             TRIGGER, EVENT, PACKAGE                       its schema (a trigger: its table) is
                                                           included
account      CREATE / ALTER / DROP / RENAME USER|ROLE,     skipped; only the kind and position
             GRANT, REVOKE, SET PASSWORD, SET [DEFAULT]    are logged or counted, never the
             ROLE                                          text, which can hold a password
dml          INSERT, REPLACE, UPDATE, DELETE, LOAD DATA …  skipped, warned once per table and
             logged as a statement (binlog_format          counted: ferry replicates ROW-format
             STATEMENT or MIXED in that session); WITH …   changes only. ``tables``: every
             UPDATE/DELETE, CALL, DO                       table a multi-table UPDATE names,
                                                           the tables a DELETE deletes from;
                                                           none for WITH, CALL, DO (counted
                                                           as ``<schema>.?``)
other        ANALYZE / OPTIMIZE / REPAIR / CHECK TABLE,    skipped
             FLUSH, CREATE SERVER, INSTALL PLUGIN,
             temporary tables, anything unknown
===========  ============================================  ====================================

Reading a statement needs care that prefix tests do not take: comments
(``/* */``, ``-- ``, ``#``), executable comments (``/*!40000 ALTER TABLE t
DISABLE KEYS */`` is a statement MariaDB runs), ``DEFINER=`u`@`h```,
``ALGORITHM=…``, ``SQL SECURITY …``, ``OR REPLACE``, ``IF [NOT] EXISTS``,
quoted and unquoted (also non-ASCII) identifiers, MariaDB's ``SET STATEMENT …
FOR <statement>``. :func:`tokenize` is a small MySQL lexer for that; the
statement's head decides the kind (the fast path: no parse tree is built for
the thousands of ``BEGIN``/``COMMIT`` of a busy binlog). Only a DDL that is
passed on is parsed, by :func:`references`, for every database and table it
names with positions (so a sink can map names): sqlglot's MySQL parser where
it can read the statement, the lexer where it cannot.

Nothing here logs: an account statement must not reach any log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pipeline.dialect.sql import ident
from pipeline.model import NameRef

Kind = Literal["transaction", "database", "table", "routine", "account", "dml", "other"]
#: What a DdlChange may be: the kinds that are passed on.
DDL_KINDS: frozenset[str] = frozenset({"database", "table", "routine"})

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<exec>/\*M?!\d*)                    # executable comment: its body is statement text
    | (?P<comment>/\*.*?\*/|(?:--[ \t\r]|--$|\#)[^\n]*)
    | (?P<close>\*/)                         # the end of an executable comment
    | (?P<quoted>`(?:[^`]|``)*`)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<hexstr>[xX]'[0-9a-fA-F]*'|[bB]'[01]*')
    | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
    | (?P<word>[^\W\d]\w*|\$\w*|\w+)          # unquoted identifiers may be non-ASCII
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # quoted | string | hexstr | number | word | punct
    text: str
    start: int
    end: int  # exclusive

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The identifier this token spells (backquotes removed)."""
        if self.kind == "quoted":
            return self.text[1:-1].replace("``", "`")
        return self.text


def tokenize(sql: str) -> list[Token]:
    """Tokens of ``sql``; comments dropped, executable comments unwrapped, positions kept."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("space", "comment", "exec", "close"):
            continue
        assert kind is not None
        tokens.append(Token(kind, match.group(), match.start(), match.end()))
    return tokens


@dataclass(frozen=True, slots=True)
class Statement:
    """What one query event is (see the module table)."""

    kind: Kind
    verb: str  # CREATE, ALTER, DROP, RENAME, TRUNCATE, INSERT, GRANT, BEGIN, XA, ...
    object: str = ""  # TABLE, DATABASE, VIEW, INDEX, TRIGGER, USER, ... ('' when none)
    # (schema, name) of what it changes, schemas resolved against the default database;
    # for a database statement (name, ""); a trigger names the table it is ON.
    tables: tuple[tuple[str, str], ...] = field(default=())
    xid: tuple[bytes, bytes, int] | None = None  # XA COMMIT / ROLLBACK: (gtrid, bqual, format)

    @property
    def is_ddl(self) -> bool:
        return self.kind in DDL_KINDS


_TRANSACTION = frozenset({"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA"})
_DML = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD", "WITH", "DO", "CALL"})
_ACCOUNT_VERBS = frozenset({"GRANT", "REVOKE"})
_ACCOUNT_OBJECTS = frozenset({"USER", "ROLE"})
_TABLE_OBJECTS = frozenset({"TABLE", "TABLES", "INDEX", "VIEW", "SEQUENCE"})
_ROUTINE_OBJECTS = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})
_DATABASE_OBJECTS = frozenset({"DATABASE", "SCHEMA"})
# ALTER DATABASE without a name starts with one of these.
_DATABASE_OPTIONS = frozenset(
    {"DEFAULT", "CHARACTER", "CHARSET", "COLLATE", "COMMENT", "UPGRADE", "READ", "ENCRYPTION"}
)
# Words between the verb and the object that only qualify it.
_MODIFIERS = frozenset(
    {
        "OR",
        "REPLACE",
        "TEMPORARY",
        "ONLINE",
        "OFFLINE",
        "IGNORE",
        "UNIQUE",
        "FULLTEXT",
        "SPATIAL",
        "AGGREGATE",
        "NOWAIT",
        "LOW_PRIORITY",
        "DELAYED",
        "HIGH_PRIORITY",
        "QUICK",
        "NO_WRITE_TO_BINLOG",
        "LOCAL",
    }
)


def classify(sql: str, default_schema: str = "") -> Statement:
    """The kind of ``sql`` and what it changes; ``default_schema`` is the session's database."""
    tokens = tokenize(sql)
    tokens = unwrap_set_statement(tokens)
    if not tokens or tokens[0].kind != "word":
        return Statement("other", "")
    verb = tokens[0].upper
    if verb in _TRANSACTION:
        return _transaction(verb, tokens)
    if verb in _DML:
        return _dml(verb, tokens, default_schema)
    if verb in _ACCOUNT_VERBS:
        return Statement("account", verb)
    if verb == "SET":
        second = tokens[1].upper if len(tokens) > 1 else ""
        if second in ("PASSWORD", "ROLE", "DEFAULT"):
            return Statement("account", verb, second)
        return Statement("other", verb)
    if verb not in ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"):
        return Statement("other", verb)
    i = _skip_clauses(tokens, 1)
    what = tokens[i].upper if i < len(tokens) else ""
    if verb == "TRUNCATE" and what not in _TABLE_OBJECTS:  # TRUNCATE [TABLE] name
        return Statement("table", verb, "TABLE", _names(tokens, i, default_schema, one=True))
    if what in _ACCOUNT_OBJECTS:
        return Statement("account", verb, what)
    if any(t.upper == "TEMPORARY" for t in tokens[1:i]):
        return Statement("other", verb, what)  # session-local: never replicated
    i = _skip_if_exists(tokens, i + 1)
    if what in _DATABASE_OBJECTS:
        databases = [t.name for t in tokens[i : i + 1] if _is_database_name(t)]
        if verb == "ALTER" and not databases:  # ALTER DATABASE without a name: the default one
            databases = [default_schema] if default_schema else []
        return Statement("database", verb, "DATABASE", tuple((n, "") for n in databases))
    if what in _TABLE_OBJECTS:
        if what == "INDEX":
            return Statement("table", verb, what, _index_table(tokens, i, default_schema))
        if verb == "RENAME":
            return Statement("table", verb, "TABLE", _rename_tables(tokens, i, default_schema))
        one = verb in ("CREATE", "ALTER") or (what == "SEQUENCE" and verb != "DROP")
        names = _names(tokens, i, default_schema, one=one)
        if verb == "ALTER":  # ALTER TABLE a ..., RENAME [TO|AS] b: b is changed too
            for k in range(i + 1, len(tokens) - 1):
                if tokens[k].upper == "RENAME" and tokens[k + 1].upper not in (
                    "COLUMN",
                    "INDEX",
                    "KEY",
                ):
                    at = k + 2 if tokens[k + 1].upper in ("TO", "AS") else k + 1
                    names += _names(tokens, at, default_schema, one=True)
        return Statement("table", verb, what, names)
    if what in _ROUTINE_OBJECTS:
        if what == "TRIGGER" and verb == "CREATE":
            on = next((k for k in range(i, len(tokens)) if tokens[k].upper == "ON"), None)
            if on is not None:
                table = _names(tokens, on + 1, default_schema, one=True)
                return Statement("routine", verb, what, table)
        names = _names(tokens, i, default_schema, one=True)
        return Statement("routine", verb, what, tuple((s, "") for s, _ in names))
    return Statement("other", verb, what)  # SERVER, TABLESPACE, LOGFILE GROUP, PLUGIN, ...


def _is_database_name(token: Token) -> bool:
    """ALTER DATABASE may omit the name: then an option word follows the keyword."""
    return token.kind == "quoted" or (token.kind == "word" and token.upper not in _DATABASE_OPTIONS)


def unwrap_set_statement(tokens: list[Token]) -> list[Token]:
    """MariaDB's ``SET STATEMENT var=value[, …] FOR <statement>``: the inner statement."""
    if len(tokens) > 2 and tokens[0].upper == "SET" and tokens[1].upper == "STATEMENT":
        depth = 0
        for k, token in enumerate(tokens[2:], start=2):
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
            elif depth == 0 and token.upper == "FOR":
                return tokens[k + 1 :]
    return tokens


def _skip_clauses(tokens: list[Token], i: int) -> int:
    """Skip modifiers, ``DEFINER = user``, ``ALGORITHM = x``, ``SQL SECURITY x`` after the verb."""
    n = len(tokens)
    while i < n:
        word = tokens[i].upper
        if word in _MODIFIERS:
            i += 1
        elif word in ("DEFINER", "ALGORITHM") and i + 1 < n and tokens[i + 1].text == "=":
            i += 3
            if word == "DEFINER":
                # `user`@`host`, 'user'@'host', CURRENT_USER, CURRENT_USER()
                while i < n and tokens[i].text in ("@", "(", ")"):
                    i += 1 if tokens[i].text != "@" else 2
        elif word == "SQL" and i + 1 < n and tokens[i + 1].upper == "SECURITY":
            i += 3
        else:
            break
    return i


def _skip_if_exists(tokens: list[Token], i: int) -> int:
    if i < len(tokens) and tokens[i].upper == "IF":
        i += 1
        if i < len(tokens) and tokens[i].upper == "NOT":
            i += 1
        if i < len(tokens) and tokens[i].upper == "EXISTS":
            i += 1
    return i


def _name_at(
    tokens: list[Token], i: int, default_schema: str
) -> tuple[tuple[str, str], int] | None:
    """A ``name`` or ``schema.name`` at ``i``: ((schema, name), index after it)."""
    if i >= len(tokens) or tokens[i].kind not in ("word", "quoted"):
        return None
    first = tokens[i].name
    if (
        i + 2 < len(tokens)
        and tokens[i + 1].text == "."
        and tokens[i + 2].kind in ("word", "quoted")
    ):
        return (first, tokens[i + 2].name), i + 3
    return (default_schema, first), i + 1


def _names(
    tokens: list[Token], i: int, default_schema: str, one: bool = False
) -> tuple[tuple[str, str], ...]:
    """A comma-separated list of names at ``i`` (or only the first)."""
    found = []
    while True:
        got = _name_at(tokens, i, default_schema)
        if got is None:
            break
        name, i = got
        found.append(name)
        if one or i >= len(tokens) or tokens[i].text != ",":
            break
        i += 1
    return tuple(found)


def _index_table(tokens: list[Token], i: int, default_schema: str) -> tuple[tuple[str, str], ...]:
    """CREATE/DROP INDEX name ON table: the table."""
    for k in range(i, len(tokens)):
        if tokens[k].upper == "ON":
            return _names(tokens, k + 1, default_schema, one=True)
    return ()


def _rename_tables(tokens: list[Token], i: int, default_schema: str) -> tuple[tuple[str, str], ...]:
    """RENAME TABLE a TO b, c TO d: every name, old and new."""
    found: list[tuple[str, str]] = []
    while i < len(tokens):
        if tokens[i].text == "," or tokens[i].upper == "TO":
            i += 1
            continue
        got = _name_at(tokens, i, default_schema)
        if got is None:
            break
        name, i = got
        found.append(name)
    return tuple(found)


def _transaction(verb: str, tokens: list[Token]) -> Statement:
    if verb != "XA":
        if verb == "START" and (len(tokens) < 2 or tokens[1].upper != "TRANSACTION"):
            return Statement("other", verb)  # START SLAVE and the like
        second = tokens[1].upper if len(tokens) > 1 else ""
        return Statement("transaction", verb, "TO" if second == "TO" else "")
    action = tokens[1].upper if len(tokens) > 1 else ""
    return Statement("transaction", "XA", action, xid=_xid(tokens[2:]))


def _xid(tokens: list[Token]) -> tuple[bytes, bytes, int] | None:
    """``gtrid [, bqual [, formatID]]`` as written by the server (X'hex' or 'text')."""
    parts: list[bytes] = []
    format_id = 1
    for token in tokens:
        if token.kind == "hexstr" and token.text[0] in "xX":
            parts.append(bytes.fromhex(token.text[2:-1]))
        elif token.kind == "string":
            parts.append(token.text[1:-1].encode())
        elif token.kind == "number" and len(parts) >= 1:
            format_id = int(token.text)
        elif token.kind == "word":
            break  # ONE PHASE, SUSPEND, ...
    if not parts:
        return None
    return parts[0], parts[1] if len(parts) > 1 else b"", format_id


def _dml(verb: str, tokens: list[Token], default_schema: str) -> Statement:
    """The tables a statement-format DML changes.

    A multi-table UPDATE names every table it may change (``UPDATE a JOIN b … SET``:
    both), a multi-table DELETE the tables before ``FROM`` (or between ``FROM`` and
    ``USING``), aliases resolved. ``WITH …``, ``CALL`` and ``DO`` name none here.
    """
    if verb in ("WITH", "DO", "CALL"):
        return Statement("dml", verb)
    i = 1
    n = len(tokens)
    if verb == "LOAD":  # LOAD DATA|XML ... INTO TABLE name
        while i < n and tokens[i].upper != "TABLE":
            i += 1
        return Statement("dml", verb, "", _names(tokens, i + 1, default_schema, one=True))
    while i < n and tokens[i].upper in _MODIFIERS | {"INTO"}:
        i += 1
    if verb == "UPDATE":
        refs, _ = _table_refs(tokens, i, default_schema, stop="SET")
        return Statement("dml", verb, "", _unique(name for name, _ in refs))
    if verb == "DELETE":
        return Statement("dml", verb, "", _delete_tables(tokens, i, default_schema))
    return Statement("dml", verb, "", _names(tokens, i, default_schema, one=True))


def _unique(names: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(dict.fromkeys(names))


# Words that end a table reference's optional alias, or start its next part.
_REF_WORDS = frozenset(
    {
        "JOIN",
        "STRAIGHT_JOIN",
        "INNER",
        "CROSS",
        "LEFT",
        "RIGHT",
        "OUTER",
        "NATURAL",
        "ON",
        "USING",
        "SET",
        "WHERE",
        "PARTITION",
        "USE",
        "IGNORE",
        "FORCE",
        "ORDER",
        "LIMIT",
        "FROM",
        "RETURNING",
        "FOR",
    }
)


def _table_refs(
    tokens: list[Token], i: int, default_schema: str, stop: str
) -> tuple[list[tuple[tuple[str, str], str]], int]:
    """Table references (``a [AS] x, b JOIN c ON …``) from ``i`` up to the word ``stop``:
    ((schema, table), alias) each (derived tables in parentheses are left out)."""
    refs: list[tuple[tuple[str, str], str]] = []
    n = len(tokens)
    expect = True  # a table comes next: at the start, after a comma or a JOIN
    while i < n:
        token = tokens[i]
        if token.text == "(":
            depth = 0
            while i < n:
                depth += {"(": 1, ")": -1}.get(tokens[i].text, 0)
                i += 1
                if depth == 0:
                    break
            expect = False
            continue
        if token.upper == stop:
            break
        if expect and token.kind in ("word", "quoted") and token.upper not in _REF_WORDS:
            got = _name_at(tokens, i, default_schema)
            assert got is not None
            name, i = got
            alias = name[1]
            if i < n and tokens[i].upper == "AS" and i + 1 < n:
                alias, i = tokens[i + 1].name, i + 2
            elif (
                i < n and tokens[i].kind in ("word", "quoted") and tokens[i].upper not in _REF_WORDS
            ):
                alias, i = tokens[i].name, i + 1
            refs.append((name, alias))
            expect = False
            continue
        expect = token.text == "," or token.upper in ("JOIN", "STRAIGHT_JOIN")
        i += 1
    return refs, i


def _delete_tables(tokens: list[Token], i: int, default_schema: str) -> tuple[tuple[str, str], ...]:
    """DELETE FROM t …, DELETE t1[.*], t2 FROM refs …, DELETE FROM t1, t2 USING refs …"""
    n = len(tokens)
    single = i < n and tokens[i].upper == "FROM"
    if single:
        i += 1
    targets: list[tuple[tuple[str, str], bool]] = []  # (name, qualified)
    while (got := _name_at(tokens, i, default_schema)) is not None:
        name, after = got
        targets.append((name, after - i > 1))
        i = after
        if i + 1 < n and tokens[i].text == "." and tokens[i + 1].text == "*":
            i += 2
        if i >= n or tokens[i].text != ",":
            break
        i += 1
    joined = "USING" if single else "FROM"
    if i >= n or tokens[i].upper != joined:
        return _unique(name for name, _ in targets)  # DELETE FROM t [AS x] WHERE …
    refs, _ = _table_refs(tokens, i + 1, default_schema, stop="WHERE")
    aliases = {alias: name for name, alias in refs}
    return _unique(name if qualified else aliases.get(name[1], name) for name, qualified in targets)


# -- references: every database and table a DDL names, with positions ---------------------

# sqlglot logs "unsupported syntax, falling back…" with the statement text at WARNING.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def drop_tables(tables: tuple[tuple[str, str], ...]) -> str:
    """``DROP TABLE`` of just these tables (what Debezium emits for each table dropped)."""
    return "DROP TABLE IF EXISTS " + ", ".join(f"{ident(s)}.{ident(t)}" for s, t in tables)


def references(sql: str, statement: Statement) -> tuple[NameRef, ...]:
    """Every database and table reference of a DDL statement, with its position.

    sqlglot's MySQL parser finds every table reference of what it can read (the
    created table, ``LIKE`` sources, ``REFERENCES``, the tables a view reads —
    where ``a.b`` may be a table or a column, only a parser knows). What it cannot
    read (MariaDB-only syntax, executable comments, triggers, routines) falls back
    to the lexer: every ``schema.name`` pair, and the statement's own objects.
    """
    if statement.kind == "database":
        return _database_references(tokenize(sql))
    parsed = _parsed_references(sql)
    return parsed if parsed is not None else _token_references(sql, statement)


def _span(token: Token) -> tuple[int, int]:
    return (token.start, token.end)


def _database_references(tokens: list[Token]) -> tuple[NameRef, ...]:
    for k, token in enumerate(tokens):
        if token.upper in _DATABASE_OBJECTS:
            k = _skip_if_exists(tokens, k + 1)
            name = tokens[k] if k < len(tokens) else None
            if name is not None and (
                name.kind == "quoted"
                or (name.kind == "word" and name.upper not in _DATABASE_OPTIONS)
            ):
                return (NameRef(name.name, _span(name), database=True),)
            break
    return ()


def _parsed_references(sql: str) -> tuple[NameRef, ...] | None:
    """From sqlglot's parse tree; None when it cannot read the statement."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="mysql")
    except Exception:  # its message quotes the statement: never shown
        return None
    if tree is None or isinstance(tree, exp.Command):
        return None
    found = []
    for table in tree.find_all(exp.Table):
        name, db = table.this, table.args.get("db")
        if not isinstance(name, exp.Identifier) or "start" not in name.meta:
            return None
        span = (name.meta["start"], name.meta["end"] + 1)
        if isinstance(db, exp.Identifier):
            if "start" not in db.meta:
                return None
            schema_span = (db.meta["start"], db.meta["end"] + 1)
            found.append(NameRef(table.name, span, db.name, schema_span))
        else:
            found.append(NameRef(table.name, span))
    return tuple(found)


def _token_references(sql: str, statement: Statement) -> tuple[NameRef, ...]:
    tokens = tokenize(sql)
    own = {name for _, name in statement.tables}
    found = []
    k = 0
    while k < len(tokens):
        token = tokens[k]
        if token.kind not in ("word", "quoted"):
            k += 1
            continue
        dotted = k + 2 < len(tokens) and tokens[k + 1].text == "."
        if dotted and tokens[k + 2].kind in ("word", "quoted"):
            table = tokens[k + 2]
            found.append(NameRef(table.name, _span(table), token.name, _span(token)))
            k += 3
            continue
        if token.name in own and k and tokens[k - 1].text != "." and token.upper not in _KEYWORDS:
            found.append(NameRef(token.name, _span(token)))
        k += 1
    return tuple(found)


# Words that are never the object of a statement even when a table has that name.
_KEYWORDS = frozenset({"TABLE", "INDEX", "VIEW", "ON", "TO", "AS", "IF", "EXISTS", "NOT"})
