"""Every bad request over both transports: REST answers the API's status with the protocol's
``{"error": "message"}``, gRPC the matching status code with the same message, and the service goes on."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from PIL import Image
from tritonclient.grpc import service_pb2 as triton_pb

from tests.app.v2.conftest import MakeV2, Tensor, V2App, element
from tests.conftest import encode, photo

pytestmark = pytest.mark.anyio
MAX_PIXELS = 50_000
SMALL = encode(photo("chelsea").resize((100, 80)), quality=90)  # 8,000 pixels
LARGE = encode(photo("chelsea"), quality=90)  # 451 x 300 = 135,300 pixels, over MAX_PIXELS
ICO = encode(Image.new("RGB", (16, 16), "red"), "ICO")
INVALID = grpc.StatusCode.INVALID_ARGUMENT  # every refusal of the request's content, 413s and 415s included


@pytest.fixture
async def v2(make_v2: MakeV2) -> AsyncIterator[V2App]:
    async with make_v2(
        api_key="secret", max_batch_size=2, max_queue_size=4, max_image_pixels=MAX_PIXELS, max_upload_bytes=300_000
    ) as app:
        yield app


def assert_v2_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": response.json()["error"]}  # the protocol's shape: one string
    assert message in response.json()["error"]


CASES = {
    "unknown input": (Tensor(element(SMALL), name="pixels"), 400, INVALID, 'unknown input "pixels"'),
    "wrong datatype": (Tensor(element(SMALL), datatype="FP32"), 400, INVALID, 'input "image" must be BYTES, got FP32'),
    "wrong shape": (
        Tensor(bytes(3 * 8 * 8 * 4), name="input", datatype="FP32", shape=(1, 3, 8, 8)),
        400,
        INVALID,
        "must have shape [N, 3, 64, 64] with N >= 1, got [1, 3, 8, 8]",
    ),
    "bad framing": (Tensor(b"\x10\x00\x00\x00abc"), 400, INVALID, "element 0 declares 16 bytes but 3 remain"),
    "count mismatch": (Tensor(element(SMALL), shape=(2,)), 400, INVALID, "holds 1 elements but its shape [2] says 2"),
    "short fp32": (
        Tensor(bytes(12), name="input", datatype="FP32", shape=(1, 3, 64, 64)),
        400,
        INVALID,
        "has 12 bytes of data; FP32 [1, 3, 64, 64] needs 49152",
    ),
    "non-finite fp32": (
        Tensor(struct.pack("<f", float("inf")) * 3 * 64 * 64, name="input", datatype="FP32", shape=(1, 3, 64, 64)),
        400,
        INVALID,
        "NaN or infinite",
    ),
    "not an image": (Tensor(element(b"junk")), 400, INVALID, "image 0: the bytes are not a readable image"),
    "unsupported format": (Tensor(element(SMALL) + element(ICO), shape=(2,)), 415, INVALID, "image 1: "),
    "image too large": (Tensor(element(LARGE)), 413, INVALID, "image 0: "),
    "batch over the limit": (Tensor(element(SMALL) * 3, shape=(3,)), 422, INVALID, "3 images sent; at most 2"),
}


@pytest.mark.parametrize("case", CASES)
async def test_bad_inputs_are_refused_alike_over_rest_and_grpc(v2: V2App, case: str) -> None:
    tensor, status, code, message = CASES[case]
    assert_v2_error(await v2.rest_infer(tensor), status, message)
    error = await v2.grpc_error(v2.stub.ModelInfer, tensor.grpc_request())
    assert (error.code(), message in (error.details() or "")) == (code, True), error.details()
    good = Tensor(element(SMALL))
    assert (await v2.rest_infer(good)).status_code == 200  # nothing was lost
    assert (await v2.stub.ModelInfer(good.grpc_request(), metadata=v2.metadata)).model_name == "resnet50"


async def test_unknown_models_and_versions_are_404_and_not_found(v2: V2App) -> None:
    tensor = Tensor(element(SMALL))
    assert_v2_error(await v2.rest_infer(tensor, "/v2/models/vgg16/infer"), 404, 'unknown model "vgg16"')
    stale = "/v2/models/resnet50/versions/000000000000/infer"
    assert_v2_error(await v2.rest_infer(tensor, stale), 404, 'has no version "000000000000"')
    for path in ("/v2/models/vgg16", "/v2/models/vgg16/ready", "/v2/models/resnet50/versions/0/ready"):
        assert_v2_error(await v2.rest.get(path), 404, "")
    error = await v2.grpc_error(v2.stub.ModelInfer, tensor.grpc_request(model="vgg16"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        'unknown model "vgg16": this server serves "resnet50"',
    )
    error = await v2.grpc_error(v2.stub.ModelInfer, tensor.grpc_request(version="000000000000"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and 'has no version "000000000000"' in (error.details() or "")
    for call, request in (
        (v2.stub.ModelMetadata, triton_pb.ModelMetadataRequest(name="vgg16")),
        (v2.stub.ModelReady, triton_pb.ModelReadyRequest(name="resnet50", version="0")),
    ):
        assert (await v2.grpc_error(call, request)).code() == grpc.StatusCode.NOT_FOUND


async def test_requests_without_the_api_key_are_refused(v2: V2App) -> None:
    tensor = Tensor(element(SMALL))
    body, headers = tensor.rest_body()
    for auth in ({}, {"Authorization": "Bearer wrong"}):
        response = await v2.rest.post("/v2/models/resnet50/infer", content=body, headers=headers | auth)
        assert_v2_error(response, 401, "Authorization: Bearer <key>")
        assert response.headers["www-authenticate"] == "Bearer"
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await v2.stub.ModelInfer(tensor.grpc_request(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer <key>" in (caught.value.details() or "")
    assert (await v2.rest.get("/v2/models/resnet50")).status_code == 200  # metadata stays open, as /model does
    metrics = (await v2.rest.get("/metrics")).text
    assert 'inference_rejections_total{reason="unauthorized"} 4.0' in metrics


async def test_bodies_over_the_upload_limit_are_refused_unread(v2: V2App) -> None:
    oversized = Tensor(element(bytes(400_000)))
    assert_v2_error(await v2.rest_infer(oversized), 413, "the limit is 300000")
    error = await v2.grpc_error(v2.stub.ModelInfer, oversized.grpc_request())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's own limit, from SERVE_MAX_UPLOAD_BYTES


async def test_unreadable_json_and_extra_inputs_are_400(v2: V2App) -> None:
    path = "/v2/models/resnet50/infer"
    assert_v2_error(await v2.rest.post(path, content=b"{nope", headers=v2.headers), 400, "JSON cannot be read")
    bad_length = {"Inference-Header-Content-Length": "12345"} | v2.headers
    assert_v2_error(await v2.rest.post(path, content=b"{}", headers=bad_length), 400, "Inference-Header-Content-Length")
    request = Tensor(element(SMALL)).grpc_request()
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 64, 64])
    error = await v2.grpc_error(v2.stub.ModelInfer, request)
    assert (error.code(), "exactly one input" in (error.details() or "")) == (INVALID, True)
