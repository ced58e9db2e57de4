"""Reading image uploads from a request body, never more than ``max_bytes`` of it.

The limit is enforced on the byte stream itself (``app.front.web.limit_body``), so an oversized upload is
refused as soon as it crosses the limit, whether it declared a Content-Length or arrived chunked without one.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from app.errors import MissingFile, UnsupportedMediaType
from app.front.web import limit_body, media_type

# Enough for any sane batch; past it the multipart parser stops instead of counting forever.
_MAX_PARTS = 1000


@dataclass(frozen=True)
class Upload:
    """One uploaded image: its bytes and, for multipart, the client's file name."""

    data: bytes
    filename: str | None = None


async def read_single_upload(request: Request, max_bytes: int) -> Upload:
    """The image of ``POST /predict``: multipart field ``file``, or the raw body with an image type."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        files = await read_multipart_files(request, "file", max_bytes)
        if not files:
            raise MissingFile("the multipart body has no `file` field")
        return files[0]
    if kind.startswith("image/") or kind == "application/octet-stream":
        return Upload(await limit_body(request, max_bytes).body())
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'} is not accepted: send multipart/form-data with a `file` field, "
        "or the image bytes with an image/* content type"
    )


async def read_multipart_files(request: Request, field: str, max_bytes: int) -> list[Upload]:
    """Every file sent under ``field`` in a multipart body, in order."""
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType(f"send multipart/form-data with one or more `{field}` fields")
    limited = limit_body(request, max_bytes)
    try:
        async with aclosing(limited.stream()) as stream:
            parser = MultiPartParser(limited.headers, stream, max_files=_MAX_PARTS, max_fields=_MAX_PARTS)
            # Starlette spills a file part past 1 MB to a temporary file, writing every later chunk (and
            # seeking, reading and closing it) through a worker thread: about ten thread hops and 3.2 ms of
            # CPU for a 2.5 MB phone photo. The body is bounded by ``max_bytes`` and its bytes end up in
            # memory anyway, so the part stays in memory (docs/benchmarks.md, "Phone-photo uploads").
            parser.spool_max_size = max_bytes
            form = await parser.parse()
    except MultiPartException as exc:
        raise MissingFile(f"the multipart body could not be read: {exc.message}") from None
    try:
        parts = [part for part in form.getlist(field) if isinstance(part, UploadFile)]
        return [Upload(await part.read(), part.filename) for part in parts]
    finally:
        await form.close()
