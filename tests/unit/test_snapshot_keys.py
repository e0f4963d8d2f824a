"""The snapshot's resume key: the last key read, kept in the committed position as JSON
text; a restart must page on from exactly that key, so every key type round-trips."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from selector.snapshot import decode_key, encode_key

KEY_VALUES = st.one_of(
    st.integers(-(2**63), 2**64 - 1),  # BIGINT and BIGINT UNSIGNED
    st.text(),  # any collation's text, emoji included
    st.binary(),  # BINARY/VARBINARY keys, NUL bytes included
    st.decimals(allow_nan=False, allow_infinity=False, places=30),
    st.datetimes(),
    st.dates(),
    st.timedeltas(
        min_value=-datetime.timedelta(hours=838, minutes=59, seconds=59),
        max_value=datetime.timedelta(hours=838, minutes=59, seconds=59),
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.lists(KEY_VALUES, min_size=1, max_size=4))
def test_every_key_type_round_trips_exactly(key: list[Any]) -> None:
    text = encode_key(key)
    json.loads(text)  # plain JSON: it lives in the committed position
    back = decode_key(text)
    assert back == key
    assert [type(v) for v in back] == [type(v) for v in key]


def test_a_composite_key_of_mixed_types() -> None:
    key = ["r1", 7, Decimal("-0.000000000000000000000000000001"), b"\x00\xff"]
    assert decode_key(encode_key(key)) == key
