"""gRPC messages of the Open Inference Protocol: raw and typed contents in, raw contents out, read back by
tritonclient's own message classes (which share this process: the generated code uses a private pool)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as triton_pb

from app.v2.grpc_codec import (
    decode_model_infer,
    encode_model_infer,
    model_metadata_response,
    server_metadata_response,
)
from app.v2.proto import grpc_predict_v2_pb2 as pb
from app.v2.tensors import InvalidRequest, RequestedOutput, model_metadata, output_tensor, server_metadata
from tests.app.v2.conftest import ModelShape, served


def infer_request(name: str = "image", datatype: str = "BYTES", shape: tuple[int, ...] = (2,)) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="resnet50", id="g-1")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    return request


def test_raw_bytes_input_as_tritonclient_sends_it(model: ModelShape) -> None:
    request = infer_request()
    request.raw_input_contents.append(b"\x02\x00\x00\x00ab\x03\x00\x00\x00cde")
    wanted = request.outputs.add(name="probabilities")
    wanted.parameters["classification"].int64_param = 5
    decoded = decode_model_infer(request, model, max_batch_size=8)
    assert (decoded.id, decoded.batch, decoded.output) == ("g-1", [b"ab", b"cde"], RequestedOutput(5))


def test_typed_contents_input(model: ModelShape) -> None:
    request = infer_request()
    request.inputs[0].contents.bytes_contents.extend([b"ab", b"cde"])
    assert decode_model_infer(request, model, 8).batch == [b"ab", b"cde"]
    values = [float(i) for i in range(3 * 4 * 4)]
    tensor = infer_request("input", "FP32", (1, 3, 4, 4))
    tensor.inputs[0].contents.fp32_contents.extend(values)
    raw = infer_request("input", "FP32", (1, 3, 4, 4))
    raw.raw_input_contents.append(struct.pack(f"<{len(values)}f", *values))
    from_contents, from_raw = decode_model_infer(tensor, model, 8).batch, decode_model_infer(raw, model, 8).batch
    assert isinstance(from_contents, np.ndarray) and isinstance(from_raw, np.ndarray)
    assert np.array_equal(from_contents, np.array(values, dtype=np.float32).reshape(1, 3, 4, 4))
    assert np.array_equal(from_raw, from_contents)


def test_tritonclients_messages_decode(model: ModelShape) -> None:
    theirs = triton_pb.ModelInferRequest(model_name="resnet50", id="t-1")
    theirs.inputs.add(name="image", datatype="BYTES", shape=[1])
    theirs.raw_input_contents.append(b"\x03\x00\x00\x00jpg")
    theirs.parameters["priority"].uint64_param = 3  # Triton's extra parameter kinds: kept as unknown fields
    decoded = decode_model_infer(pb.ModelInferRequest.FromString(theirs.SerializeToString()), model, 8)
    assert (decoded.id, decoded.batch) == ("t-1", [b"jpg"])


def test_outputs_go_back_raw_and_tritonclient_reads_them() -> None:
    probabilities = output_tensor([served(0.5, 0.25, 0.25)], RequestedOutput())
    response = encode_model_infer("resnet50", "abcdef012345", "g-1", probabilities)
    assert (response.model_name, response.model_version, response.id) == ("resnet50", "abcdef012345", "g-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("probabilities", "FP32", [1, 3])]
    assert list(response.raw_output_contents) == [b"\x00\x00\x00?\x00\x00\x80>\x00\x00\x80>"]
    result = InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))
    np.testing.assert_array_equal(result.as_numpy("probabilities"), np.array([[0.5, 0.25, 0.25]], dtype=np.float32))

    top = output_tensor([served(0.1, 0.7, 0.2)], RequestedOutput(classification=1))
    response = encode_model_infer("resnet50", "abcdef012345", "g-2", top)
    assert list(response.raw_output_contents) == [b"\x11\x00\x00\x000.700000:1:coffee"]
    result = InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))
    assert result.as_numpy("probabilities").tolist() == [[b"0.700000:1:coffee"]]


def test_metadata_messages_match_the_rest_answers(model: ModelShape) -> None:
    metadata = model_metadata_response(model_metadata(model))
    assert (metadata.name, list(metadata.versions), metadata.platform) == ("resnet50", ["abcdef012345"], "pytorch")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("image", "BYTES", [-1]),
        ("input", "FP32", [-1, 3, 4, 4]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("probabilities", "FP32", [-1, 3])]
    server = server_metadata_response(server_metadata("resnet50-serving", "0.1.0"))
    assert (server.name, server.version, list(server.extensions)) == (
        "resnet50-serving",
        "0.1.0",
        ["binary_tensor_data", "classification"],
    )


def _two_inputs() -> pb.ModelInferRequest:
    request = infer_request()
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 4, 4])
    return request


def _raw_and_contents() -> pb.ModelInferRequest:
    request = infer_request(shape=(1,))
    request.raw_input_contents.append(b"\x01\x00\x00\x00a")
    request.inputs[0].contents.bytes_contents.append(b"a")
    return request


def _two_raw_entries() -> pb.ModelInferRequest:
    request = infer_request(shape=(1,))
    request.raw_input_contents.extend([b"\x01\x00\x00\x00a", b"\x01\x00\x00\x00b"])
    return request


def _bad_framing() -> pb.ModelInferRequest:
    request = infer_request(shape=(1,))
    request.raw_input_contents.append(b"\x08\x00\x00\x00abc")
    return request


def _short_fp32() -> pb.ModelInferRequest:
    request = infer_request("input", "FP32", (1, 3, 4, 4))
    request.raw_input_contents.append(bytes(10))
    return request


def _count_mismatch() -> pb.ModelInferRequest:
    request = infer_request(shape=(2,))
    request.inputs[0].contents.bytes_contents.append(b"a")
    return request


def _output(name: str, classification: pb.InferParameter | None = None) -> pb.ModelInferRequest:
    request = infer_request(shape=(1,))
    request.inputs[0].contents.bytes_contents.append(b"a")
    wanted = request.outputs.add(name=name)
    if classification is not None:
        wanted.parameters["classification"].CopyFrom(classification)
    return request


@pytest.mark.parametrize(
    ("request_message", "message"),
    [
        (pb.ModelInferRequest(), "the request has 0"),
        (_two_inputs(), "the request has 2"),
        (infer_request("pixels"), 'unknown input "pixels"'),
        (infer_request("image", "UINT8"), 'input "image" must be BYTES, got UINT8'),
        (_raw_and_contents(), "not both"),
        (_two_raw_entries(), "raw_input_contents holds 2 entries for 1 input"),
        (_bad_framing(), "element 0 declares 8 bytes but 3 remain"),
        (_short_fp32(), "has 10 bytes of data"),
        (_count_mismatch(), r"holds 1 elements but its shape \[2\] says 2"),
        (_output("logits"), 'unknown output "logits"'),
        (_output("probabilities", pb.InferParameter(string_param="5")), "must be a positive int64_param"),
        (_output("probabilities", pb.InferParameter(int64_param=-2)), "must be a positive int64_param"),
    ],
)
def test_malformed_requests_are_invalid(model: ModelShape, request_message: pb.ModelInferRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        decode_model_infer(request_message, model, 8)
