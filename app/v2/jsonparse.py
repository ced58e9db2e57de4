"""JSON bodies parsed without holding the interpreter lock for long, and refused unparsed when no request
for this model could be that large.

The C parser behind ``json.loads`` builds a whole document in one call and holds the interpreter lock
throughout, so running it on a thread does not help: 10 MiB of ``[],`` take it about a second, and every
other request of the process waits that long (health probes included). So a document's cost is bounded
before it is parsed, by counting the bytes that open a value (C-speed scans, a few milliseconds for 10 MiB):
past what any request can need (``max_values``) it is refused unread; past what the C parser builds in
about 30 ms (``C_PARSER_VALUES``) it is parsed by the standard library's own pure-Python scanner, which gives
the lock up every few milliseconds, with arrays of plain values handed to the C parser in slices (so real
FP32 input parses at nearly C speed). Strings are scanned by C either way (fast per byte).
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from typing import Any

from app.v2.tensors import InvalidRequest

# One image's FP32 input in JSON (150,528 numbers at 224 x 224) still takes the fast parser.
C_PARSER_VALUES = 160_000


_NOT_FLAT = re.compile(r'[\[{"]')
_SLICE_BYTES = 256 * 1024  # of a flat array, parsed per call of the C parser: a few milliseconds


class _YieldingDecoder(json.JSONDecoder):
    """The standard library's pure-Python scanner (its fallback where the C one is missing), except that an
    array of plain values (numbers, ``true``, ``null``: an FP32 input's rows) goes to the C parser a slice at a
    time, so a real request of a million numbers costs about what ``json.loads`` costs, in short calls."""

    def __init__(self) -> None:
        super().__init__()
        # Public in the standard library's modules, absent from their type stubs.
        self.parse_object = json.decoder.JSONObject  # type: ignore[attr-defined]
        self.parse_array = _parse_array
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]


def _parse_array(state: tuple[str, int], scan_once: Any, **kwargs: Any) -> tuple[list[Any], int]:
    text, start = state  # start: just past the opening bracket
    close = text.find("]", start)
    if close == -1 or _NOT_FLAT.search(text, start, close):  # nested, or holding strings: the general path
        return json.decoder.JSONArray(state, scan_once, **kwargs)  # type: ignore[attr-defined]
    values: list[Any] = []
    while start < close:
        cut = text.find(",", start + _SLICE_BYTES, close)
        end = close if cut == -1 else cut
        values += json.loads(f"[{text[start:end]}]")
        start = end + 1
    return values, close + 1


_YIELDING = _YieldingDecoder()


def value_count(data: bytes) -> int:
    """At most how many values ``data`` holds: each after a comma, or opening a container, or the first."""
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def parse_bounded(data: bytes, max_values: int) -> object:
    """``data`` parsed as JSON, or ``InvalidRequest``: unreadable JSON, or more than ``max_values`` values."""
    values = value_count(data)
    if values > max_values:
        raise InvalidRequest(
            f"the request's JSON holds up to {values} values; a request to this model needs at most {max_values}"
        )
    try:
        if values <= C_PARSER_VALUES:
            return json.loads(data)
        return _YIELDING.decode(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and integers past Python's digit limit
        raise InvalidRequest(f"the request's JSON cannot be read: {_first_line(exc)}") from None
    except RecursionError:
        raise InvalidRequest("the request's JSON is nested too deeply") from None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
