"""Reading uploads from the request body: phone-photo sizes in memory, in order, within the byte limit.

The requests are Starlette's own, fed by an ASGI ``receive`` that hands the body over in chunks as a server does.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from PIL import Image
from starlette.requests import Request
from starlette.types import Message

from app.errors import MissingFile, PayloadTooLarge
from app.http.uploads import read_multipart_files, read_single_upload
from benchmarks.loadgen import multipart_upload
from tests.conftest import encode

pytestmark = pytest.mark.anyio
CHUNK = 256_000  # what uvicorn on uvloop hands over per message for a large body on loopback
LIMIT = 10 * 1024 * 1024


def noisy_jpeg(width: int, height: int, seed: int) -> bytes:
    """A JPEG as large as a phone's: noise does not compress (1600x1200 is about 1.7 MB)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


class Body:
    """An ASGI ``receive`` handing out ``body`` in chunks, counting how many were taken."""

    def __init__(self, body: bytes, chunk: int = CHUNK) -> None:
        self.chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        self.taken = 0

    async def __call__(self) -> Message:
        index, self.taken = self.taken, self.taken + 1
        return {"type": "http.request", "body": self.chunks[index], "more_body": index < len(self.chunks) - 1}


def request(content_type: str, body: Body, length: int | None) -> Request:
    headers = [(b"content-type", content_type.encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers}, body)


def batch_body(files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A multipart body with every file under ``files``, as ``curl -F files=@a -F files=@b`` sends it."""
    boundary = "----phone-photos"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.fixture(autouse=True)
def no_temporary_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test whose upload would spill to a temporary file (Starlette's way past 1 MB)."""

    def refuse(self: object) -> None:
        raise AssertionError("an upload was spilled to a temporary file")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", refuse)


async def test_a_phone_sized_multipart_upload_arrives_whole_and_in_memory() -> None:
    photo = noisy_jpeg(1600, 1200, seed=0)
    assert len(photo) > 1536 * 1024  # well past the 1 MB where Starlette would have spilled it
    content_type, body = multipart_upload(photo, "IMG_0001.jpg")
    upload = await read_single_upload(request(content_type, Body(body), len(body)), LIMIT)
    assert upload.data == photo and upload.filename == "IMG_0001.jpg"


async def test_a_raw_body_arrives_whole() -> None:
    photo = noisy_jpeg(1600, 1200, seed=1)
    upload = await read_single_upload(request("image/jpeg", Body(photo), len(photo)), LIMIT)
    assert upload.data == photo and upload.filename is None


async def test_several_large_files_keep_their_order_and_names() -> None:
    files = [(f"IMG_{i}.jpg", noisy_jpeg(900 + 100 * i, 700, seed=i)) for i in range(3)]
    content_type, body = batch_body(files)
    uploads = await read_multipart_files(request(content_type, Body(body, chunk=65536), len(body)), "files", LIMIT)
    assert [(u.filename, u.data) for u in uploads] == files


async def test_a_chunked_multipart_body_over_the_limit_is_refused_once_it_crosses_it() -> None:
    content_type, body = multipart_upload(noisy_jpeg(1600, 1200, seed=2), "big.jpg")
    limit = 1_000_000
    receive = Body(body)
    with pytest.raises(PayloadTooLarge):
        await read_single_upload(request(content_type, receive, None), limit)
    assert receive.taken == limit // CHUNK + 1  # the chunk that crossed it was the last one read


async def test_a_declared_oversized_multipart_body_is_refused_before_reading() -> None:
    content_type, body = multipart_upload(noisy_jpeg(400, 300, seed=3), "a.jpg")
    receive = Body(body)
    with pytest.raises(PayloadTooLarge):
        await read_single_upload(request(content_type, receive, len(body)), len(body) - 1)
    assert receive.taken == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--x--\r\n"),
    ],
)
async def test_unreadable_multipart_is_a_missing_file(content_type: str, body: bytes) -> None:
    with pytest.raises(MissingFile, match="the multipart body could not be read"):
        await read_single_upload(request(content_type, Body(body), len(body)), LIMIT)
