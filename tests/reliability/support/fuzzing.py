"""Hypothesis strategies for hostile input: images mutated from valid files of every format, headers
forged to claim any size, odd-sized real images, and whole HTTP requests of any shape.

The same strategies drive the short suite (``tests/reliability``) and the full runner; a failure is
shrunk by Hypothesis to a minimal example.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st
from PIL import Image

from tests.reliability.support import specimens as sp
from tests.reliability.support.rawhttp import RawRequest, multipart

Mutation = tuple[str, float, int, bytes]


def mutate(data: bytes, mutation: Mutation) -> bytes:
    kind, where, amount, blob = mutation
    at = int(where * len(data))
    if kind == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ (1 << (amount % 8))]) + data[at + 1 :]
    if kind == "set" and at < len(data):
        return data[:at] + bytes([amount % 256]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + blob + data[at:]
    if kind == "delete":
        return data[:at] + data[at + 1 + amount :]
    if kind == "truncate":
        return data[:at]
    if kind == "repeat":  # a run of the file copied in place: duplicated chunks, markers, frames
        return data[: at + amount] + data[at : at + amount] + data[at + amount :]
    return data


def mutations() -> st.SearchStrategy[Mutation]:
    return st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "repeat"]),
        st.floats(0, 1, exclude_max=True),
        st.integers(0, 300),
        st.binary(max_size=32),
    )


def mutated_images() -> st.SearchStrategy[bytes]:
    """A valid file of some format and mode, then up to eight byte-level mutations."""
    seeds = sp.seeds()

    def apply(seed: str, changes: list[Mutation]) -> bytes:
        data = seeds[seed]
        for change in changes:
            data = mutate(data, change)
        return data

    return st.builds(apply, st.sampled_from(sorted(seeds)), st.lists(mutations(), max_size=8))


def forged_headers() -> st.SearchStrategy[bytes]:
    """Headers that claim any size over a little real data: bombs, zero sizes, sizes past the limit."""
    side = st.one_of(st.integers(0, 70_000), st.sampled_from([0, 1, 6325, 6326, 65535]))
    return st.one_of(
        st.builds(sp.png_claiming, side, side),
        st.builds(sp.png_claiming, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
        st.builds(sp.jpeg_claiming, st.integers(0, 65535), st.integers(0, 65535)),
        st.builds(sp.gif_claiming, st.integers(0, 65535), st.integers(0, 65535)),
    )


def odd_images() -> st.SearchStrategy[bytes]:
    """Real, decodable images of odd sizes and modes, extreme aspect ratios included."""
    formats = st.sampled_from(["PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG"])
    modes = st.sampled_from(["RGB", "L", "1", "P", "RGBA", "CMYK", "I;16"])
    small = st.integers(1, 700)
    strip = st.integers(1, 300_000)

    def build(fmt: str, mode: str, width: int, height: int) -> bytes:
        img = Image.new(mode, (width, height))
        try:
            return sp.encode(img, fmt)
        except Exception:  # a mode or size this format cannot store: send it as PNG
            return sp.encode(img.convert("RGB"), "PNG")

    return st.one_of(
        st.builds(build, formats, modes, small, small),
        st.builds(build, st.sampled_from(["PNG", "GIF", "BMP"]), modes, st.integers(1, 3), strip),
        st.builds(build, st.sampled_from(["PNG", "GIF", "BMP"]), modes, strip, st.integers(1, 3)),
    )


def hostile_images() -> st.SearchStrategy[bytes]:
    """Everything above, plus bytes that are not an image at all."""
    return st.one_of(mutated_images(), forged_headers(), odd_images(), st.binary(max_size=2048))


_TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_."), min_size=1, max_size=24)
_HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
# Framing headers are left to the named cases: a fuzzed Content-Length longer than the body would only
# make the server wait, correctly, for bytes that never come.
_FRAMING = {"content-length", "transfer-encoding", "host", "connection"}
_ODD_PATHS = [
    "/",
    "/predict/",
    "/PREDICT",
    "/predict/batch/x",
    "/model",
    "/metrics",
    "/%00",
    "/..%2f..%2fetc",
    "//predict",
]


def _parts() -> st.SearchStrategy[list[tuple[str, str | None, str | None, bytes]]]:
    name = st.one_of(st.sampled_from(["file", "files", "image", ""]), _TOKEN)
    filename = st.one_of(st.none(), _TOKEN, st.text(max_size=40).filter(lambda s: '"' not in s and "\r" not in s))
    content_type = st.one_of(st.none(), st.sampled_from(["image/jpeg", "image/png", "text/plain"]), _TOKEN)
    data = st.one_of(hostile_images(), st.sampled_from(list(sp.seeds().values())))
    return st.lists(st.tuples(name, filename, content_type, data), max_size=12)


def _multipart_request() -> st.SearchStrategy[RawRequest]:
    def build(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str, cut: int) -> RawRequest:
        request = multipart(parts, boundary)
        return RawRequest(headers=request.headers, body=request.body[: len(request.body) - cut])

    return st.builds(build, _parts(), _TOKEN, st.one_of(st.just(0), st.integers(0, 64)))


def _body_request() -> st.SearchStrategy[RawRequest]:
    images = ["image/jpeg"] * 3 + ["image/png", "image/webp", "application/octet-stream"]
    content_type = st.one_of(
        st.sampled_from([*images, "image/svg+xml", "text/html"]),
        st.builds(lambda a, b: f"{a}/{b}", _TOKEN, _TOKEN),
        _HEADER_VALUE,
    )
    return st.builds(
        lambda ct, body: RawRequest(headers=[("Content-Type", ct)], body=body), content_type, hostile_images()
    )


def http_requests(auth: Sequence[tuple[str, str]] = ()) -> st.SearchStrategy[RawRequest]:
    """Requests of any method, target, content type, body and extra headers; chunked or not."""
    method = st.sampled_from(["POST"] * 12 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    query = st.one_of(st.just(""), st.builds(lambda v: f"?top_k={v}", st.one_of(st.integers(-5, 200), _TOKEN)))
    path = st.sampled_from(["/predict"] * 12 + ["/predict/batch"] * 6 + _ODD_PATHS)
    extra = st.lists(st.tuples(_TOKEN, _HEADER_VALUE).filter(lambda h: h[0].lower() not in _FRAMING), max_size=6)

    def build(
        base: RawRequest, method: str, path: str, query: str, extra: list, chunked: bool, split: int
    ) -> RawRequest:
        body = base.body
        chunks = [body[i : i + split] for i in range(0, len(body), split)] if chunked else []
        return RawRequest(method, path + query, [*base.headers, *extra, *auth], body, chunked, chunks)

    base = st.one_of(_body_request(), _multipart_request())
    return st.builds(build, base, method, path, query, extra, st.booleans(), st.integers(1, 4096))
