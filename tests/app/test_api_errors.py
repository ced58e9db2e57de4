"""Every client error of docs/design.md §3: its status, its code, the JSON envelope and its headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from tests.app.conftest import MakeClient
from tests.conftest import encode

pytestmark = pytest.mark.anyio


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    return error


async def post_image(client: httpx.AsyncClient, data: bytes, content_type: str = "image/jpeg") -> httpx.Response:
    return await client.post("/predict", content=data, headers={"content-type": content_type})


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"\xff\xd8\xff\xe0 truncated jpeg"])
async def test_bytes_that_are_not_an_image_are_invalid(client: httpx.AsyncClient, data: bytes) -> None:
    assert_error(await post_image(client, data), 400, "invalid_image")


async def test_a_truncated_photo_is_invalid(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    assert_error(await post_image(client, cat_jpeg[: len(cat_jpeg) // 3]), 400, "invalid_image")


async def test_multipart_without_the_field_is_missing_file(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    response = await client.post("/predict", files={"image": ("cat.jpg", cat_jpeg, "image/jpeg")})
    assert_error(response, 400, "missing_file")
    response = await client.post("/predict/batch", files={"file": ("cat.jpg", cat_jpeg, "image/jpeg")})
    assert_error(response, 400, "missing_file")


async def test_a_text_field_named_file_is_missing_file(client: httpx.AsyncClient) -> None:
    response = await client.post("/predict", data={"file": "cat.jpg"}, files={"other": ("x", b"x", "text/plain")})
    assert_error(response, 400, "missing_file")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", ""])
async def test_a_non_image_content_type_is_unsupported(
    client: httpx.AsyncClient, cat_jpeg: bytes, content_type: str
) -> None:
    response = await client.post("/predict", content=cat_jpeg, headers={"content-type": content_type})
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("fmt", ["ICO", "PPM"])
async def test_a_format_outside_the_allowed_ones_is_unsupported(client: httpx.AsyncClient, fmt: str) -> None:
    data = encode(Image.new("RGB", (32, 32), "green"), fmt)
    assert_error(await post_image(client, data, "application/octet-stream"), 415, "unsupported_media_type")


async def test_batch_needs_multipart(client: httpx.AsyncClient, cat_jpeg: bytes) -> None:
    response = await client.post("/predict/batch", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("query", ["top_k=0", "top_k=101", "top_k=five"])
async def test_top_k_out_of_range_is_an_invalid_parameter(
    client: httpx.AsyncClient, cat_jpeg: bytes, query: str
) -> None:
    response = await client.post(f"/predict?{query}", content=cat_jpeg, headers={"content-type": "image/jpeg"})
    assert "top_k" in assert_error(response, 422, "invalid_parameter")["message"]


async def test_more_files_than_the_batch_size_is_an_invalid_parameter(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(max_batch_size=2) as (client, _):
        files = [("files", (f"{i}.jpg", cat_jpeg, "image/jpeg")) for i in range(3)]
        error = assert_error(await client.post("/predict/batch", files=files), 422, "invalid_parameter")
    assert "at most 2" in error["message"]


async def test_a_declared_oversized_body_is_refused(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(max_upload_bytes=len(cat_jpeg) - 1) as (client, _):
        assert_error(await post_image(client, cat_jpeg), 413, "payload_too_large")
        multipart = await client.post("/predict", files={"file": ("cat.jpg", cat_jpeg, "image/jpeg")})
        assert_error(multipart, 413, "payload_too_large")


async def test_a_chunked_oversized_body_is_refused_without_reading_it_all(make_client: MakeClient) -> None:
    chunk, chunks_sent = b"\xff" * 65536, 0

    async def endless_upload() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        for _ in range(1000):  # 64 MiB if it were all read
            chunks_sent += 1
            yield chunk

    async with make_client(max_upload_bytes=1_000_000) as (client, _):
        response = await client.post("/predict", content=endless_upload(), headers={"content-type": "image/jpeg"})
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")
    assert chunks_sent <= 17  # stopped right after crossing 1 MB


async def test_an_image_over_the_pixel_limit_is_refused(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(max_image_pixels=451 * 300 - 1) as (client, _):
        error = assert_error(await post_image(client, cat_jpeg), 413, "image_too_large")
    assert "451x300" in error["message"]


async def test_the_api_key_guards_predictions_only(make_client: MakeClient, cat_jpeg: bytes) -> None:
    async with make_client(api_key="s3cret") as (client, _):
        missing = await post_image(client, cat_jpeg)
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.post("/predict", content=cat_jpeg, headers={"authorization": "Bearer nope"})
        assert_error(wrong, 401, "unauthorized")
        batch = await client.post("/predict/batch", files={"files": ("c.jpg", cat_jpeg, "image/jpeg")})
        assert_error(batch, 401, "unauthorized")
        headers = {"authorization": "Bearer s3cret", "content-type": "image/jpeg"}
        assert (await client.post("/predict", content=cat_jpeg, headers=headers)).status_code == 200
        for path in ("/health/live", "/health/ready", "/metrics", "/model", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200, path
        metrics = (await client.get("/metrics")).text
    assert 'inference_rejections_total{reason="unauthorized"} 3.0' in metrics


async def test_unknown_routes_and_methods_use_the_error_envelope(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "not_found")
    assert_error(await client.get("/predict"), 405, "method_not_allowed")
