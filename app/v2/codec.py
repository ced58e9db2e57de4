"""The Open Inference Protocol's REST bodies: a JSON request, optionally followed by binary tensor data.

With the binary tensor data extension the body is the JSON header (``Inference-Header-Content-Length``
bytes of it), then each binary input's bytes in the order of ``inputs``, each input saying how many in
its ``binary_data_size`` parameter. Without it the JSON carries the data: BYTES elements as base64
strings (encoded images are not text), FP32 as numbers. Pure translation: no I/O, no service.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from app.v2.jsonparse import parse_bounded
from app.v2.tensors import (
    BYTES,
    OUTPUT,
    InferRequest,
    InvalidRequest,
    OutputTensor,
    RequestedOutput,
    ServedModel,
    TensorHeader,
    check_count,
    check_input,
    split_elements,
    tensor_from_raw,
    tensor_from_values,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
_BYTE_COUNT = re.compile(r"[0-9]{1,15}")
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"


def decode_infer_request(
    body: bytes, header_length: str | None, model: ServedModel, max_batch_size: int
) -> InferRequest:
    """A REST infer body (and its ``Inference-Header-Content-Length``, if sent) -> ``InferRequest``."""
    split = _json_size(header_length, len(body))
    document = _object(parse_bounded(body[:split], _max_values(model, max_batch_size)), "the request")
    view = memoryview(body)[split:]
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        count = len(inputs) if isinstance(inputs, list) else "no"
        raise InvalidRequest(f'send exactly one input ("image" or "input"); the request has {count} inputs')
    spec = _object(inputs[0], "an input")
    header = _header(spec)
    check_input(header, model, max_batch_size)
    size = _parameters(spec).get("binary_data_size")
    if size is not None:
        if not _is_int(size) or not 0 <= size <= len(view):
            raise InvalidRequest(
                f'input "{header.name}": binary_data_size {size!r} is not within the {len(view)} binary bytes'
            )
        if size != len(view):
            raise InvalidRequest(f"{len(view) - size} bytes follow the last binary tensor")
        batch = _binary_batch(header, view)
    else:
        if len(view):
            raise InvalidRequest(f"{len(view)} bytes follow the JSON, but no input declares a binary_data_size")
        batch = _json_batch(header, spec.get("data"))
    return InferRequest(_request_id(document), batch, _requested_output(document))


def encode_infer_response(
    model_name: str, model_version: str, request_id: str, output: OutputTensor, binary: bool
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: the output as JSON ``data``, or as binary data after the JSON."""
    tensor: dict[str, Any] = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
    raw = output.raw() if binary else b""
    if binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = output.data()
    document = {"model_name": model_name, "model_version": model_version, "id": request_id, "outputs": [tensor]}
    header = json.dumps(document, separators=(",", ":")).encode()
    if not binary:
        return header, {"Content-Type": JSON_TYPE}
    return header + raw, {"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}


def _json_size(header_length: str | None, body_size: int) -> int:
    if header_length is None:
        return body_size
    # ASCII digits only and a bounded count of them: int() takes other scripts' digits and refuses 4,301.
    if not _BYTE_COUNT.fullmatch(header_length.strip()) or int(header_length) > body_size:
        shown = ascii(header_length[:40])
        raise InvalidRequest(f"{HEADER_LENGTH} must be a byte count within the body's {body_size} bytes, got {shown}")
    return int(header_length)


def _max_values(model: ServedModel, max_batch_size: int) -> int:
    """The most JSON values a request can need: a full batch of FP32 input written nested, and some to spare."""
    crop = model.crop_size
    return max_batch_size * (3 * crop * crop + 3 * crop + 4) + 4096


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _parameters(spec: Mapping[str, Any]) -> dict[str, Any]:
    return _object(spec.get("parameters") or {}, "parameters")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header(spec: Mapping[str, Any]) -> TensorHeader:
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidRequest('an input needs a "name" and a "datatype" (strings)')
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise InvalidRequest(f'input "{name}" needs a "shape": a list of integers')
    return TensorHeader(name, datatype, tuple(shape))


def _binary_batch(header: TensorHeader, raw: memoryview) -> list[bytes] | np.ndarray:
    if header.datatype == BYTES:
        return split_elements(header, raw)
    return tensor_from_raw(header, raw)


def _json_batch(header: TensorHeader, data: object) -> list[bytes] | np.ndarray:
    if data is None:
        raise InvalidRequest(f'input "{header.name}" has neither "data" nor a "binary_data_size" parameter')
    values = _flatten(header, data)
    if header.datatype != BYTES:
        return tensor_from_values(header, values)
    if not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f'input "{header.name}": BYTES elements in JSON must be base64 strings')
    try:
        return check_count(header, [base64.b64decode(v, validate=True) for v in values])
    except binascii.Error:
        raise InvalidRequest(f'input "{header.name}": an element is not valid base64') from None


def _flatten(header: TensorHeader, data: object) -> list[Any]:
    """The protocol allows ``data`` flat or nested as the shape; either way the elements are row-major.
    Nested deeper than the shape has axes is refused."""
    level = data if isinstance(data, list) else [data]
    for _ in header.shape:
        if not any(isinstance(item, list) for item in level):
            return level
        level = [value for item in level for value in (item if isinstance(item, list) else [item])]
    if any(isinstance(item, list) for item in level):
        raise InvalidRequest(f'input "{header.name}": "data" is nested deeper than its shape {list(header.shape)}')
    return level


def _request_id(document: Mapping[str, Any]) -> str:
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidRequest(f'"id" must be a string, got {type(request_id).__name__}')
    return request_id


def _requested_output(document: Mapping[str, Any]) -> RequestedOutput:
    """The requested output: its classification count and whether to send it as binary data."""
    binary_default = _parameters(document).get("binary_data_output", False)
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list) or len(outputs) > 1:
        raise InvalidRequest(f'this model has one output, "{OUTPUT}"; ask for it once or not at all')
    if not outputs:
        return RequestedOutput(binary=binary_default is True)
    spec = _object(outputs[0], "an output")
    if spec.get("name") != OUTPUT:
        raise InvalidRequest(f'unknown output {spec.get("name")!r}: this model has one output, "{OUTPUT}"')
    parameters = _parameters(spec)
    k = parameters.get("classification", 0)
    if not _is_int(k) or k < 0:
        raise InvalidRequest(f'output "{OUTPUT}": "classification" must be a positive integer, got {k!r}')
    return RequestedOutput(classification=k, binary=parameters.get("binary_data", binary_default) is True)
