"""REST bodies of the Open Inference Protocol: exact bytes both ways, tritonclient's own bodies, and every
malformed request answered with a clear 400."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import numpy as np
import pytest
import tritonclient.http as triton_http

from app.errors import InvalidParameter
from app.v2.codec import decode_infer_request, encode_infer_response
from app.v2.tensors import InvalidRequest, RequestedOutput, output_tensor
from tests.app.v2.conftest import ModelShape, served


def binary_body(document: dict[str, object], *blobs: bytes) -> tuple[bytes, str]:
    header = json.dumps(document).encode()
    return header + b"".join(blobs), str(len(header))


def image_request(size: int, **extra: object) -> dict[str, object]:
    image = {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": size}}
    return {"inputs": [image], **extra}


def test_binary_bytes_input_is_split_into_its_elements(model: ModelShape) -> None:
    body, length = binary_body(image_request(13, id="req-1"), b"\x02\x00\x00\x00ab", b"\x03\x00\x00\x00cde")
    request = decode_infer_request(body, length, model, max_batch_size=8)
    assert request.id == "req-1"
    assert request.batch == [b"ab", b"cde"]
    assert request.output == RequestedOutput(classification=0, binary=False)


def test_base64_bytes_in_json_nested_or_flat(model: ModelShape) -> None:
    files = [b"\xff\xd8\xff\xe0 jpeg", b"\x89PNG\r\n"]
    encoded = [base64.b64encode(f).decode() for f in files]
    for data in (encoded, [[encoded[0]], [encoded[1]]]):
        document = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": data}]}
        assert decode_infer_request(json.dumps(document).encode(), None, model, 8).batch == files


def test_fp32_input_from_binary_and_from_json(model: ModelShape) -> None:
    values = np.arange(2 * 3 * 4 * 4, dtype=np.float32) / 10
    spec = {"name": "input", "datatype": "FP32", "shape": [2, 3, 4, 4]}
    binary, length = binary_body(
        {"inputs": [{**spec, "parameters": {"binary_data_size": values.nbytes}}]}, values.astype("<f4").tobytes()
    )
    from_binary = decode_infer_request(binary, length, model, 8).batch
    from_json = decode_infer_request(
        json.dumps({"inputs": [{**spec, "data": values.tolist()}]}).encode(), None, model, 8
    ).batch
    assert isinstance(from_binary, np.ndarray) and isinstance(from_json, np.ndarray)
    assert from_binary.dtype == np.float32 and np.array_equal(from_binary, values.reshape(2, 3, 4, 4))
    assert np.array_equal(from_json, from_binary)


def test_requested_output_classification_and_binary_flags(model: ModelShape) -> None:
    def output_of(document: Mapping[str, object]) -> RequestedOutput:
        body, length = binary_body({**image_request(5), **document}, b"\x01\x00\x00\x00a")
        body = body.replace(b'"shape": [2]', b'"shape": [1]')
        return decode_infer_request(body, str(int(length)), model, 8).output

    assert output_of({"parameters": {"binary_data_output": True}}) == RequestedOutput(0, binary=True)
    wanted = {"outputs": [{"name": "probabilities", "parameters": {"classification": 5, "binary_data": True}}]}
    assert output_of(wanted) == RequestedOutput(5, binary=True)
    assert output_of({"outputs": [{"name": "probabilities"}]}) == RequestedOutput(0, binary=False)


def test_tritonclients_own_request_bodies_decode(model: ModelShape) -> None:
    files = np.array([b"first image", b"second"], dtype=np.object_)
    image = triton_http.InferInput("image", [2], "BYTES").set_data_from_numpy(files, binary_data=True)
    output = triton_http.InferRequestedOutput("probabilities", binary_data=False, class_count=3)
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        [image], outputs=[output], request_id="t-7"
    )
    request = decode_infer_request(body, str(json_size), model, 8)
    assert (request.id, request.batch, request.output) == ("t-7", [b"first image", b"second"], RequestedOutput(3))

    pixels = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    tensor = triton_http.InferInput("input", [1, 3, 4, 4], "FP32").set_data_from_numpy(pixels)
    body, json_size = triton_http.InferenceServerClient.generate_request_body([tensor])
    request = decode_infer_request(body, str(json_size), model, 8)
    assert np.array_equal(request.batch, pixels)  # type: ignore[arg-type]
    assert request.output == RequestedOutput(0, binary=True)  # no outputs named: tritonclient asks for binary


def test_binary_response_is_the_json_header_then_little_endian_floats() -> None:
    output = output_tensor([served(0.5, 0.25, 0.25)], RequestedOutput(binary=True))
    body, headers = encode_infer_response("resnet50", "abcdef012345", "r1", output, binary=True)
    header = (
        b'{"model_name":"resnet50","model_version":"abcdef012345","id":"r1","outputs":[{"name":"probabilities",'
        b'"datatype":"FP32","shape":[1,3],"parameters":{"binary_data_size":12}}]}'
    )
    assert body == header + b"\x00\x00\x00?\x00\x00\x80>\x00\x00\x80>"
    assert headers == {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    result = triton_http.InferenceServerClient.parse_response_body(body, header_length=len(header))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), np.array([[0.5, 0.25, 0.25]], dtype=np.float32))


def test_json_response_carries_the_data_inline() -> None:
    output = output_tensor([served(0.1, 0.7, 0.2)], RequestedOutput(classification=2))
    body, headers = encode_infer_response("resnet50", "abcdef012345", "r2", output, binary=False)
    assert json.loads(body) == {
        "model_name": "resnet50",
        "model_version": "abcdef012345",
        "id": "r2",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "BYTES",
                "shape": [1, 2],
                "data": ["0.700000:1:coffee", "0.200000:2:rocket"],
            }
        ],
    }
    assert headers == {"Content-Type": "application/json"}
    binary, headers = encode_infer_response("resnet50", "abcdef012345", "r2", output, binary=True)
    result = triton_http.InferenceServerClient.parse_response_body(
        binary, header_length=int(headers["Inference-Header-Content-Length"])
    )
    assert result.as_numpy("probabilities").tolist() == [[b"0.700000:1:coffee", b"0.200000:2:rocket"]]


IMAGE = {"name": "image", "datatype": "BYTES", "shape": [1]}


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"not json", None, "the request's JSON cannot be read"),
        (b"\xff\xfe", None, "the request's JSON cannot be read"),
        (b"[1, 2]", None, "the request must be a JSON object, got list"),
        (b"{}", None, r"send exactly one input \(\"image\" or \"input\"\); the request has no inputs"),
        (json.dumps({"inputs": [IMAGE, IMAGE]}).encode(), None, "the request has 2 inputs"),
        (json.dumps({"inputs": ["image"]}).encode(), None, "an input must be a JSON object, got str"),
        (json.dumps({"inputs": [{"name": "image"}]}).encode(), None, 'needs a "name" and a "datatype"'),
        (json.dumps({"inputs": [{**IMAGE, "shape": "1"}]}).encode(), None, 'needs a "shape": a list of integers'),
        (json.dumps({"inputs": [{**IMAGE, "shape": [1.5]}]}).encode(), None, "a list of integers"),
        (json.dumps({"inputs": [IMAGE]}).encode(), None, 'neither "data" nor a "binary_data_size"'),
        (json.dumps({"inputs": [{**IMAGE, "data": ["%%%"]}]}).encode(), None, "not valid base64"),
        (json.dumps({"inputs": [{**IMAGE, "data": [7]}]}).encode(), None, "must be base64 strings"),
        (json.dumps({"inputs": [{**IMAGE, "data": ["YQ=="]}], "id": 5}).encode(), None, '"id" must be a string'),
        (b'{"inputs": []}abc', "twelve", "Inference-Header-Content-Length must be a byte count"),
        (b'{"inputs": []}abc', "5", "the request's JSON cannot be read"),
        (b"{}", "99", r"within the body's 2 bytes, got '99'"),
        (b"{}", "-1", "got '-1'"),
        (b"{}", "\xb2", r"got '\\xb2'"),  # a digit to str.isdigit, not to int()
        (b"{}", "9" * 5000, "got '9999"),  # past int()'s digit limit
        (b'{"inputs": ' + b"9" * 5000 + b"}", None, "the request's JSON cannot be read"),
        (b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", None, "nested too deeply"),
        (json.dumps({"inputs": [{**IMAGE, "data": [[["YQ=="]]]}]}).encode(), None, "nested deeper than its shape"),
        (b'{"inputs": [' + b"[]," * 1_000_000 + b"[]]}", None, "needs at most"),
    ],
)
def test_malformed_requests_are_a_clear_400(model: ModelShape, body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        decode_infer_request(body, length, model, 8)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("document", "blob", "message"),
    [
        (image_request(13), b"\x02\x00\x00\x00ab\x03\x00\x00\x00cdeXX", "2 bytes follow the last binary tensor"),
        (image_request(20), b"\x02\x00\x00\x00ab", "binary_data_size 20 is not within the 6 binary bytes"),
        (image_request(True), b"\x02\x00\x00\x00ab", "binary_data_size True is not within"),
        ({"inputs": [{**IMAGE, "data": ["YQ=="]}]}, b"trailing", "8 bytes follow the JSON, but no input declares"),
        (image_request(6), b"\x09\x00\x00\x00ab", "element 0 declares 9 bytes but 2 remain"),
        (image_request(6), b"\x02\x00\x00\x00ab", r"holds 1 elements but its shape \[2\] says 2"),
    ],
)
def test_bad_binary_framing_is_a_clear_400(
    model: ModelShape, document: dict[str, object], blob: bytes, message: str
) -> None:
    body, length = binary_body(document, blob)
    with pytest.raises(InvalidRequest, match=message):
        decode_infer_request(body, length, model, 8)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"name": "logits"}], "unknown output 'logits'"),
        ([{"name": "probabilities"}, {"name": "probabilities"}], "ask for it once or not at all"),
        ([{"name": "probabilities", "parameters": {"classification": -1}}], "must be a positive integer, got -1"),
        ([{"name": "probabilities", "parameters": {"classification": "5"}}], "must be a positive integer, got '5'"),
    ],
)
def test_bad_output_requests_are_a_clear_400(model: ModelShape, outputs: list[object], message: str) -> None:
    document = {"inputs": [{**IMAGE, "data": ["YQ=="]}], "outputs": outputs}
    with pytest.raises(InvalidRequest, match=message):
        decode_infer_request(json.dumps(document).encode(), None, model, 8)


def test_a_batch_over_the_limit_is_422_as_for_predict_batch(model: ModelShape) -> None:
    document = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": ["YQ=="] * 3}]}
    with pytest.raises(InvalidParameter, match="3 images sent; at most 2") as caught:
        decode_infer_request(json.dumps(document).encode(), None, model, max_batch_size=2)
    assert caught.value.status == 422
