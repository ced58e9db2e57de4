"""JSON bodies bounded before they are parsed, and parsed in short calls: the same documents as ``json.loads``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.v2 import jsonparse
from app.v2.jsonparse import C_PARSER_VALUES, parse_bounded, value_count
from app.v2.tensors import InvalidRequest

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), st.text())
DOCUMENTS = st.recursive(LEAVES, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=60)


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS)
def test_both_parsers_read_what_json_loads_reads(document: object) -> None:
    text = json.dumps(document).encode()
    assert value_count(text) >= _values(document)  # the bound never undercounts
    assert jsonparse._YIELDING.decode(text.decode()) == json.loads(text)
    assert parse_bounded(text, max_values=10**9) == json.loads(text)


def _values(document: object) -> int:
    if isinstance(document, list):
        return 1 + sum(_values(item) for item in document)
    if isinstance(document, dict):
        return 1 + sum(_values(item) for item in document.values())
    return 1


def test_a_long_flat_array_is_read_in_slices_that_split_only_at_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonparse, "_SLICE_BYTES", 64)  # many slices, boundaries everywhere
    values = [i / 7 for i in range(C_PARSER_VALUES + 10)]
    document = {"inputs": [{"data": values, "nested": [[1, 2.5, None, True], [-3e-5, 4]]}]}
    assert parse_bounded(json.dumps(document).encode(), max_values=10**7) == document


def test_a_document_with_more_values_than_any_request_needs_is_refused_unparsed() -> None:
    body = b"[" + b"[]," * 1000 + b"[]]"
    with pytest.raises(InvalidRequest, match="holds up to 2003 values; a request to this model needs at most 1000"):
        parse_bounded(body, max_values=1000)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 3000 + b"]" * 3000, "nested too deeply"),
        (b"[" + b"0," * C_PARSER_VALUES + b"[" * 3000 + b"]" * 3001, "nested too deeply"),  # the yielding parser
        (b"[" + b"1," * C_PARSER_VALUES + b",2]", "cannot be read"),  # a hole in a flat array, past a slice
        (b'{"a": ' + b"9" * 5000 + b"}", "cannot be read"),  # past Python's integer digits limit
        (b"\xff\xfe{", "cannot be read"),
    ],
)
def test_unreadable_json_is_a_400_never_an_exception_of_its_own(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_bounded(body, max_values=10**7)
