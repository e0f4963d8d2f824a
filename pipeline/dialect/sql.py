"""MySQL's SQL text as the selector and the sinks both write and read it: identifier
quoting and string literals."""

from __future__ import annotations


def ident(name: str) -> str:
    """A backquoted identifier (a backquote inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"


def strip_quotes(text: str) -> str:
    """A quoted literal's or identifier's text between its quotes, as written (escapes and
    doubled quotes kept, as Debezium records defaults and comments); other text as is."""
    if len(text) >= 2 and text[0] in "'\"`" and text[-1] == text[0]:
        return text[1:-1]
    return text


#: MySQL's backslash escapes in string literals; any other ``\c`` is ``c``
ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def string_value(text: str) -> str:
    """The value the server stores for a quoted string literal (``'it''s'`` -> ``it's``,
    ``'a\\nb'`` -> a newline): quotes, doubled quotes and backslash escapes undone.
    Text that is not quoted is returned as is."""
    if len(text) < 2 or text[0] not in "'\"" or text[-1] != text[0]:
        return text
    quote, inner = text[0], text[1:-1]
    out = []
    i = 0
    while i < len(inner):
        char = inner[i]
        if char == "\\" and i + 1 < len(inner):
            following = inner[i + 1]
            out.append(ESCAPES.get(following, following))
            i += 2
        elif char == quote and inner[i + 1 : i + 2] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)
