"""Comparing the compiled row decoder (selector._rowimage) with the pure-Python reference.

``same(a, b)`` is strict: the same types all the way down (``ZeroDate`` is not a
plain ``str``, ``bool`` is not ``int``), the same dict keys in the same order, floats
with the same bits (``-0.0`` is not ``0.0``), Decimals with the same exponent
(``1.10`` is not ``1.1``), datetimes with the same tzinfo.
"""

from __future__ import annotations

import datetime
import math
from decimal import Decimal
from typing import Any

from selector import values as vals


def compiled() -> Any:
    """The compiled ``decode_rows``; fails (not skips) when the extension was not built."""
    import selector._rowimage as rowimage  # noqa: F401  (the ImportError is the message)

    assert vals._compiled is not None, vals._compiled_error
    return vals._compiled


def difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where ``a`` and ``b`` differ (None: identical)."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            found = difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, float):
        same_bits = (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
        return None if same_bits else f"{where}: {a!r} != {b!r}"
    if isinstance(a, Decimal):
        return None if a.as_tuple() == b.as_tuple() else f"{where}: {a!r} != {b!r}"
    if isinstance(a, datetime.datetime):
        same = a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.tzinfo == b.tzinfo
        return None if same else f"{where}: {a!r} != {b!r}"
    return None if a == b else f"{where}: {a!r} != {b!r}"


def outcome(decode: Any, *args: Any) -> Any:
    """What ``decode(*args)`` gives: its rows, or the type of the exception it raised."""
    try:
        return decode(*args)
    except Exception as exc:
        return ("raised", type(exc).__name__)


def both(plan: Any, body: bytes, present: bytes, after: bytes | None = None) -> Any:
    """Decode both ways; fail on any difference; return the rows (or the raised error)."""
    fast = outcome(compiled(), plan, body, present, after)
    slow = outcome(vals.decode_rows_py, plan, body, present, after)
    found = difference(fast, slow, "rows")
    assert found is None, f"compiled != pure Python at {found}"
    return fast
