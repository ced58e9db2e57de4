"""Every kind of bad input of docs/design.md §3, and the exotic-but-valid images, as named cases with the answers
they must get. Each is sent to the real server over a fresh connection."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.reliability.support import specimens as sp
from tests.reliability.support.rawhttp import RawRequest, RawResponse, exchange, multipart

OK = "200 ok"
INVALID = "400 invalid_image"
MISSING = "400 missing_file"
UNSUPPORTED = "415 unsupported_media_type"
TOO_LARGE = "413 image_too_large"
PAYLOAD = "413 payload_too_large"
PROTOCOL = "400 (no envelope)"  # refused by the HTTP parser itself, before the app


@dataclass(frozen=True)
class Case:
    name: str
    request: RawRequest
    expect: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    case: str
    answer: str
    elapsed_ms: float
    passed: bool


def outcome_label(response: RawResponse) -> str:
    """``"200 ok"``, ``"<status> <error code>"``, or ``"<status> (no envelope)"``."""
    if response.status == 200:
        return OK
    try:
        return f"{response.status} {json.loads(response.body)['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status} (no envelope)"


def _image(name: str, data: bytes, *expect: str, content_type: str = "image/jpeg") -> Case:
    return Case(name, RawRequest(headers=[("Content-Type", content_type)], body=data), frozenset(expect))


def _form(name: str, parts: list[tuple[str, str | None, str | None, bytes]], *expect: str, target: str) -> Case:
    return Case(name, dataclasses.replace(multipart(parts), target=target), frozenset(expect))


def image_cases() -> list[Case]:
    """Truncated, corrupt, forged, disguised and exotic images, sent as raw bodies."""
    seeds = sp.seeds()
    cases = [_image("empty body", b"", INVALID)]
    for fmt in ("jpeg", "png", "webp", "gif", "bmp", "tiff"):
        data = seeds[fmt]
        cases.append(_image(f"{fmt} truncated at half", data[: len(data) // 2], INVALID))
        cases.append(_image(f"{fmt} header only (32 bytes)", data[:32], INVALID))
        garbled = data[:16] + bytes(b ^ 0x5A for b in data[16:64]) + data[64:]
        cases.append(_image(f"{fmt} with garbled header bytes", garbled, INVALID, OK))
    cases += [
        _image("png claiming 40000x40000", sp.png_claiming(40000, 40000), TOO_LARGE),
        _image("jpeg claiming 65500x65500", sp.jpeg_claiming(65500, 65500), TOO_LARGE),
        _image("gif claiming 65535x65535", sp.gif_claiming(65535, 65535), TOO_LARGE),
        _image("36-megapixel png (real pixels, tiny file)", sp.solid_png(6000, 6000), OK),
        _image("1x200000 strip (extreme aspect ratio)", sp.solid_png(1, 200_000), OK),
        _image("200000x1 strip (extreme aspect ratio)", sp.solid_png(200_000, 1), OK),
        _image("svg disguised as png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', UNSUPPORTED),
        _image("html disguised as jpeg", b"<!DOCTYPE html><html><body><img src=x></body></html>", INVALID),
        _image("pdf disguised as jpeg", b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", UNSUPPORTED),
        _image("ico (a format outside the allowed ones)", sp.encode(sp.photo((32, 32)), "ICO"), UNSUPPORTED),
        _image("json as application/json", b'{"image": "cat.jpg"}', UNSUPPORTED, content_type="application/json"),
        _image("jpeg as text/plain", seeds["jpeg"], UNSUPPORTED, content_type="text/plain"),
        _image("jpeg as application/octet-stream", seeds["jpeg"], OK, content_type="application/octet-stream"),
        _image("jpeg with a charset parameter", seeds["jpeg"], OK, content_type="image/jpeg; charset=utf-8"),
    ]
    cases += [_image(f"valid {name}", data, OK) for name, data in seeds.items()]
    return cases


def multipart_cases(max_batch_size: int) -> list[Case]:
    """Multipart bodies without the file, with a thousand parts, cut short, or otherwise malformed."""
    jpeg = sp.seeds()["jpeg"]
    files = [("file", f"{i}.jpg", "image/jpeg", jpeg) for i in range(1000)]
    batch_files = [("files", f"{i}.jpg", "image/jpeg", jpeg) for i in range(1000)]
    fields = [(f"note{i}", None, None, b"x") for i in range(999)]
    truncated = multipart([("file", "cat.jpg", "image/jpeg", jpeg)])
    no_boundary = RawRequest(headers=[("Content-Type", "multipart/form-data")], body=truncated.body)
    return [
        _form("multipart with no file", [("note", None, None, b"hello")], MISSING, target="/predict"),
        _form("multipart with 1000 file parts", files, OK, target="/predict"),
        _form("batch of 1000 files", batch_files, "422 invalid_parameter", target="/predict/batch"),
        _form("multipart with 1001 file parts", [*files, files[0]], MISSING, target="/predict"),
        _form("999 text fields and a file", [*fields, files[0]], OK, target="/predict"),
        _form(f"batch of {max_batch_size} files", batch_files[:max_batch_size], OK, target="/predict/batch"),
        _form("batch with bad files among good ones", _mixed_batch(jpeg), OK, target="/predict/batch"),
        _form(
            "file part holding base64 text", [("file", "c.jpg", None, b"/9j/4AAQSkZJRg==")], INVALID, target="/predict"
        ),
        Case("multipart cut short", dataclasses.replace(truncated, body=truncated.body[:-30]), frozenset([MISSING])),
        Case("multipart without a boundary", no_boundary, frozenset([MISSING])),
    ]


def _mixed_batch(jpeg: bytes) -> list[tuple[str, str | None, str | None, bytes]]:
    return [
        ("files", "good.jpg", "image/jpeg", jpeg),
        ("files", "cut.jpg", "image/jpeg", jpeg[:100]),
        ("files", "logo.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("files", "good.png", "image/png", sp.seeds()["png"]),
    ]


def _raw(name: str, expect: Sequence[str], target: str = "/predict", **fields: Any) -> Case:
    return Case(name, RawRequest(target=target, **fields), frozenset(expect))


def protocol_cases(max_upload_bytes: int) -> list[Case]:
    """Oversized bodies (declared or chunked), bad parameters, paths and methods, broken framing."""
    jpeg = sp.seeds()["jpeg"]
    big = b"\xff" * (max_upload_bytes + 1)
    chunks = [big[i : i + 65536] for i in range(0, len(big), 65536)]
    image = [("Content-Type", "image/jpeg")]
    # Transfer-Encoding wins over Content-Length (RFC 9112): the body is the empty chunked one, and the
    # request hidden after it must never be answered as a second, smuggled request.
    smuggled = b"0\r\n\r\nGET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    # Over 256 KiB in all (about 530 KB), so the head can never arrive in one read: see the 64 KiB case.
    many_headers = [(f"X-H{i}", "v") for i in range(40000)]
    chunked = ("Transfer-Encoding", "chunked")
    return [
        _raw("body over the limit, chunked, no Content-Length", [PAYLOAD], headers=image, chunked=True, chunks=chunks),
        _raw("body over the limit, declared", [PAYLOAD], headers=image, body=big),
        _raw("top_k=0", ["422 invalid_parameter"], "/predict?top_k=0", headers=image, body=jpeg),
        _raw("top_k=10**30", ["422 invalid_parameter"], "/predict?top_k=" + "9" * 30, headers=image, body=jpeg),
        _raw("unknown path", ["404 not_found"], "/predict/../admin", headers=image, body=jpeg),
        _raw("GET /predict", ["405 method_not_allowed"], method="GET"),
        _raw(
            "Content-Length and Transfer-Encoding both", [INVALID, PROTOCOL], headers=[*image, chunked], body=smuggled
        ),
        _raw("two different Content-Lengths", [PROTOCOL], headers=[*image, ("Content-Length", "3")], body=jpeg),
        # h11 refuses a request head past 16 KiB only while the head is still incomplete, so a 64 KiB one
        # passes when it arrives in one read and is refused when it arrives in pieces: either is an answer.
        _raw("a 64 KiB header", [OK, PROTOCOL], headers=[*image, ("X-Padding", "a" * 65536)], body=jpeg),
        _raw("a 1 MiB header", [PROTOCOL], headers=[*image, ("X-Padding", "a" * (1 << 20))], body=jpeg),
        _raw("40000 headers", [PROTOCOL], headers=[*image, *many_headers], body=jpeg),
        _raw("an overlong X-Request-ID", [OK], headers=[*image, ("X-Request-ID", "r" * 500)], body=jpeg),
    ]


def all_cases(max_upload_bytes: int, max_batch_size: int) -> list[Case]:
    return image_cases() + multipart_cases(max_batch_size) + protocol_cases(max_upload_bytes)


def run_cases(url: str, cases: Sequence[Case], auth: Sequence[tuple[str, str]] = ()) -> list[Outcome]:
    """Send every case (with the ``auth`` headers) and compare each answer with what it must be."""
    outcomes = []
    for case in cases:
        request = dataclasses.replace(case.request, headers=[*case.request.headers, *auth])
        response = exchange(url, request)
        label = outcome_label(response)
        outcomes.append(Outcome(case.name, label, response.elapsed_s * 1000, label in case.expect))
    return outcomes
