"""A ``ModelInferRequest``'s structure walked before protobuf parses it, so that parsing costs what its bytes
weigh, not what they can be made to count.

protobuf builds every element of a repeated field, holding the interpreter lock: 10 MiB of empty
``bytes_contents`` are 5 million elements and about 150 ms of a stalled event loop, for a request whose
shape allows one image. This walk reads the wire format's field keys only (never the payloads), stops at
the first field past what a request to this model can hold, and counts packed numbers by their length.
So it takes at most a few hundred steps, and what it lets through parses in time proportional to its size.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.v2.tensors import InvalidRequest

# Field numbers (app/v2/proto/grpc_predict_v2.proto).
_INPUTS, _OUTPUTS, _RAW = 5, 6, 7
_CONTENTS = 5
_BYTES_CONTENTS = 8
_PACKED_SIZE = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 4, 7: 8}  # InferTensorContents: 0 = varints, else fixed width
_FIELDS_PER_MESSAGE = 1024  # far more than a request needs (parameters, shape given unpacked)
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_CONTINUATION_BYTES = bytes(range(0x80, 0x100))


def check_infer_message(data: bytes, max_images: int, max_values: int) -> None:
    """Raise ``InvalidRequest`` if ``data`` holds more than one input, output or raw content, more than
    ``max_images`` encoded images, more than ``max_values`` numbers, or a message of more than
    ``_FIELDS_PER_MESSAGE`` fields; or if it is not the protobuf wire format at all."""
    view = memoryview(data)
    counts = {_INPUTS: 0, _OUTPUTS: 0, _RAW: 0}
    for number, payload in _fields(view):
        if number in counts:
            counts[number] += 1
            if counts[number] > 1:
                raise InvalidRequest(_MORE_THAN_ONE[number])
            if number == _INPUTS and isinstance(payload, memoryview):
                _check_input(payload, max_images, max_values)


_MORE_THAN_ONE = {
    _INPUTS: 'send exactly one input ("image" or "input"); the request has more than one',
    _OUTPUTS: 'this model has one output, "probabilities"; ask for it once or not at all',
    _RAW: "raw_input_contents holds more than one entry; this model takes one input",
}


def _check_input(tensor: memoryview, max_images: int, max_values: int) -> None:
    for number, payload in _fields(tensor):
        if number == _CONTENTS and isinstance(payload, memoryview):
            _check_contents(payload, max_images, max_values)


def _check_contents(contents: memoryview, max_images: int, max_values: int) -> None:
    images = values = 0
    for number, payload in _fields(contents, limit=max_images + _FIELDS_PER_MESSAGE):
        if number == _BYTES_CONTENTS:
            images += 1
        elif number in _PACKED_SIZE:
            values += _numbers_in(number, payload)
        if images > max_images:
            raise InvalidRequest(f"the input's contents hold more than {max_images} images (SERVE_MAX_BATCH_SIZE)")
        if values > max_values:
            raise InvalidRequest(f"the input's contents hold more than the {max_values} values a request may send")


def _numbers_in(number: int, payload: memoryview | int) -> int:
    if not isinstance(payload, memoryview):  # one number, not packed
        return 1
    width = _PACKED_SIZE[number]
    if width:
        return len(payload) // width
    return len(bytes(payload).translate(None, _CONTINUATION_BYTES))  # a varint ends at each byte below 0x80


def _fields(view: memoryview, limit: int = _FIELDS_PER_MESSAGE) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, payload) of each field of one message: a length-delimited payload as a view, else an
    int standing for a number; at most ``limit`` of them."""
    offset, count = 0, 0
    while offset < len(view):
        count += 1
        if count > limit:
            raise InvalidRequest(f"a message of the request has more than {limit} fields")
        key, offset = _varint(view, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            _, offset = _varint(view, offset)
            yield number, 0
        elif wire_type in (_FIXED64, _FIXED32):
            offset += 8 if wire_type == _FIXED64 else 4
            yield number, 0
        elif wire_type == _LENGTH:
            size, offset = _varint(view, offset)
            if offset + size > len(view):
                raise InvalidRequest("the request is not a valid ModelInferRequest (a field runs past its end)")
            yield number, view[offset : offset + size]
            offset += size
        else:
            raise InvalidRequest(f"the request is not a valid ModelInferRequest (wire type {wire_type})")
    if offset > len(view):
        raise InvalidRequest("the request is not a valid ModelInferRequest (its last field is cut short)")


def _varint(view: memoryview, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(10):  # a varint is at most ten bytes
        if offset >= len(view):
            raise InvalidRequest("the request is not a valid ModelInferRequest (a number is cut short)")
        byte = view[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, offset
        shift += 7
    raise InvalidRequest("the request is not a valid ModelInferRequest (a number runs past ten bytes)")
