"""The Open Inference Protocol's gRPC messages <-> this model's tensors (app/v2/tensors.py).

An input's data comes either in ``raw_input_contents`` (what tritonclient sends: one entry per input,
BYTES elements each after a 4-byte little-endian length, FP32 as little-endian floats) or in the input's
typed ``contents`` (``bytes_contents``, ``fp32_contents``), never both. Outputs always go back in
``raw_output_contents``, as Triton answers. Pure translation: no I/O, no service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from app.v2.grpc_wire import check_infer_message
from app.v2.proto import grpc_predict_v2_pb2 as pb
from app.v2.tensors import (
    BYTES,
    OUTPUT,
    InferRequest,
    InvalidRequest,
    OutputTensor,
    RequestedOutput,
    ServedModel,
    TensorHeader,
    check_input,
    split_elements,
    tensor_from_raw,
    tensor_from_values,
)

T = TypeVar("T")


def parse_model_infer(data: bytes, model: ServedModel, max_batch_size: int) -> pb.ModelInferRequest:
    """A serialized ``ModelInferRequest``, its structure bounded first (app/v2/grpc_wire.py), then parsed."""
    crop = model.crop_size
    check_infer_message(data, max_images=max_batch_size, max_values=max_batch_size * 3 * crop * crop)
    try:
        return pb.ModelInferRequest.FromString(data)
    except DecodeError:
        raise InvalidRequest("the request is not a valid ModelInferRequest") from None


def decode_model_infer(request: pb.ModelInferRequest, model: ServedModel, max_batch_size: int) -> InferRequest:
    """A ``ModelInferRequest`` -> ``InferRequest`` (model name and version are checked by the caller)."""
    if len(request.inputs) != 1:
        raise InvalidRequest(f'send exactly one input ("image" or "input"); the request has {len(request.inputs)}')
    spec = request.inputs[0]
    header = TensorHeader(spec.name, spec.datatype, tuple(spec.shape))
    check_input(header, model, max_batch_size)
    raw = request.raw_input_contents
    if raw:
        if len(raw) != 1 or spec.HasField("contents"):
            raise InvalidRequest(
                f"raw_input_contents holds {len(raw)} entries for 1 input; send the data there or in the "
                "input's contents, not both"
            )
        batch = split_elements(header, raw[0]) if header.datatype == BYTES else tensor_from_raw(header, raw[0])
    elif header.datatype == BYTES:  # the counts first: a list of millions of elements costs before it is checked
        batch = list(_counted(header, spec.contents.bytes_contents))
    else:
        batch = tensor_from_values(header, _counted(header, spec.contents.fp32_contents))
    return InferRequest(request.id, batch, _requested_output(request))


def encode_model_infer(
    model_name: str, model_version: str, request_id: str, output: OutputTensor
) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` carrying ``output`` in ``raw_output_contents``."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
    response.raw_output_contents.append(output.raw())
    return response


def model_metadata_response(metadata: dict[str, object]) -> pb.ModelMetadataResponse:
    """``ModelMetadataResponse`` from the dict REST answers (app/v2/tensors.py ``model_metadata``)."""
    return json_format.ParseDict(metadata, pb.ModelMetadataResponse())


def server_metadata_response(metadata: dict[str, object]) -> pb.ServerMetadataResponse:
    """``ServerMetadataResponse`` from the dict REST answers (app/v2/tensors.py ``server_metadata``)."""
    return json_format.ParseDict(metadata, pb.ServerMetadataResponse())


def _counted(header: TensorHeader, contents: Sequence[T]) -> Sequence[T]:
    """``contents``, once it holds as many elements as ``header``'s shape says (its length costs nothing)."""
    if len(contents) != header.count():
        raise InvalidRequest(
            f'input "{header.name}" holds {len(contents)} elements but its shape {list(header.shape)} says '
            f"{header.count()}"
        )
    return contents


def _requested_output(request: pb.ModelInferRequest) -> RequestedOutput:
    if len(request.outputs) > 1:
        raise InvalidRequest(f'this model has one output, "{OUTPUT}"; ask for it once or not at all')
    if not request.outputs:
        return RequestedOutput()
    spec = request.outputs[0]
    if spec.name != OUTPUT:
        raise InvalidRequest(f'unknown output "{spec.name}": this model has one output, "{OUTPUT}"')
    if "classification" not in spec.parameters:
        return RequestedOutput()
    parameter = spec.parameters["classification"]
    if parameter.WhichOneof("parameter_choice") != "int64_param" or parameter.int64_param < 0:
        raise InvalidRequest(f'output "{OUTPUT}": "classification" must be a positive int64_param')
    return RequestedOutput(classification=parameter.int64_param)
