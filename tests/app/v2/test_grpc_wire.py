"""The walk that bounds a ``ModelInferRequest`` before protobuf parses it: real requests pass, messages
built to be expensive are refused in a few steps."""

from __future__ import annotations

import pytest

from app.v2.grpc_codec import parse_model_infer
from app.v2.grpc_wire import check_infer_message
from app.v2.proto import grpc_predict_v2_pb2 as pb
from app.v2.tensors import InvalidRequest
from tests.app.v2.conftest import ModelShape


def infer_request(**fields: object) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="resnet50", **fields)  # type: ignore[arg-type]


def test_what_clients_send_passes_and_parses_as_protobuf_would(model: ModelShape) -> None:
    request = infer_request()  # as tritonclient sends it: the data in raw_input_contents
    request.inputs.add(name="input", datatype="FP32", shape=[2, 3, 4, 4])
    request.raw_input_contents.append(b"\0" * (2 * 3 * 4 * 4 * 4))
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = 3
    request.parameters["sequence_id"].int64_param = 7
    typed = infer_request()
    typed.inputs.add(name="image", datatype="BYTES", shape=[3]).contents.bytes_contents.extend([b"a", b"", b"c"])
    packed = infer_request()
    packed.inputs.add(name="input", datatype="FP32", shape=[1, 3, 4, 4]).contents.fp32_contents.extend([0.5] * 48)
    for message in (request, typed, packed):
        data = message.SerializeToString()
        assert parse_model_infer(data, model, max_batch_size=8) == pb.ModelInferRequest.FromString(data)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda r: r.inputs.add().contents.bytes_contents.extend([b""] * 9), "more than 8 images"),
        (lambda r: r.inputs.add().contents.fp32_contents.extend([0.0] * (8 * 48 + 1)), "more than the 384 values"),
        (lambda r: r.inputs.add().contents.int_contents.extend([1] * (8 * 48 + 1)), "more than the 384 values"),
        (lambda r: [r.inputs.add(name="a"), r.inputs.add(name="b")], "exactly one input"),
        (lambda r: [r.outputs.add(), r.outputs.add()], "one output"),
        (lambda r: r.raw_input_contents.extend([b"", b""]), "more than one entry"),
    ],
)
def test_more_than_a_request_may_hold_is_refused(build: object, message: str) -> None:
    request = infer_request()
    build(request)  # type: ignore[operator]
    with pytest.raises(InvalidRequest, match=message):
        check_infer_message(request.SerializeToString(), max_images=8, max_values=8 * 48)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff" * 20, "runs past ten bytes"),
        (b"\x0a\x05ab", "runs past its end"),  # model_name says 5 bytes, 2 follow
        (b"\x0a", "cut short"),
        (b"\x0b", "wire type 3"),  # a group: not in proto3
        (b"\x78\x00" * 2000, "more than 1024 fields"),  # unknown varint fields, one after another
    ],
)
def test_what_is_not_the_wire_format_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_infer_message(data, max_images=8, max_values=384)


def test_millions_of_empty_elements_are_refused_after_a_few_steps(model: ModelShape) -> None:
    request = infer_request()
    request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.extend([b""] * 1_000_000)
    data = request.SerializeToString()
    with pytest.raises(InvalidRequest, match="more than 8 images"):
        parse_model_infer(data, model, max_batch_size=8)
