"""The Open Inference Protocol's tensors for this model, whatever carries them (REST or gRPC).

This model takes exactly one input per request: ``image``, BYTES ``[N]`` of encoded image files, or
``input``, FP32 ``[N, 3, crop, crop]`` already preprocessed; it answers ``probabilities``, FP32
``[N, num_classes]``, or with the classification extension BYTES ``[N, k]`` of ``"score:class_id:label"``
(docs/design.md §8). Here live the checks and conversions both transports share; the REST and gRPC
codecs only unpack and pack their own framing around them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from app.errors import InvalidParameter, ServiceError

IMAGE_INPUT, TENSOR_INPUT, OUTPUT = "image", "input", "probabilities"
BYTES, FP32 = "BYTES", "FP32"
_LENGTH = struct.Struct("<I")  # the 4-byte little-endian length before each BYTES element
_CHUNK = 1 << 15  # values converted per call: about a millisecond under the interpreter lock


class InvalidRequest(ServiceError):
    """A request the protocol cannot read: bad framing, an unknown tensor, a wrong datatype or shape."""

    status, code = 400, "invalid_request"


class ModelNotFound(ServiceError):
    """A model name or version this server does not serve."""

    status, code = 404, "not_found"


class ServedModel(Protocol):
    """What the protocol needs to know of the serving model."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def crop_size(self) -> int: ...


class Answer(Protocol):
    """One image's answer (the engine client's ``Answer``)."""

    @property
    def probs(self) -> np.ndarray: ...
    def top_k(self, k: int) -> Sequence[Ranked]: ...


class Ranked(Protocol):
    @property
    def class_id(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class TensorHeader:
    """An input tensor's name, datatype and shape, as the request declares them."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def count(self) -> int:
        """How many elements the shape holds."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class RequestedOutput:
    """The one output, as probabilities (``classification`` 0) or as the top-``classification`` classes."""

    classification: int = 0
    binary: bool = False


@dataclass(frozen=True)
class InferRequest:
    """A decoded request: its id, its batch (encoded images, or a preprocessed float32 tensor), its output."""

    id: str
    batch: list[bytes] | np.ndarray
    output: RequestedOutput


@dataclass(frozen=True)
class OutputTensor:
    """An output tensor: FP32 values, or BYTES elements."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]

    def raw(self) -> bytes:
        """The protocol's raw form: little-endian FP32, or each BYTES element after its 4-byte length."""
        if isinstance(self.values, np.ndarray):
            return self.values.astype("<f4", copy=False).tobytes()
        return join_elements(self.values)

    def data(self) -> list[float] | list[str]:
        """The JSON form: the flattened elements, BYTES as text."""
        if isinstance(self.values, np.ndarray):
            values: list[float] = self.values.ravel().tolist()
            return values
        return [element.decode() for element in self.values]


def resolve_model(model: ServedModel, name: str, version: str) -> None:
    """Raise ``ModelNotFound`` unless ``name`` (and ``version``, when given) is the serving model's."""
    if name != model.name:
        raise ModelNotFound(f'unknown model "{name}": this server serves "{model.name}"')
    if version and version != model.version:
        raise ModelNotFound(f'model "{name}" has no version "{version}"; the version served is "{model.version}"')


def check_input(header: TensorHeader, model: ServedModel, max_batch_size: int) -> None:
    """Raise ``InvalidRequest`` for an unknown input, a wrong datatype or shape; ``InvalidParameter`` (422,
    as for ``/predict/batch``) for a batch over ``max_batch_size``."""
    crop = model.crop_size
    expected = {IMAGE_INPUT: (BYTES, "[N]", 1), TENSOR_INPUT: (FP32, f"[N, 3, {crop}, {crop}]", 4)}
    if header.name not in expected:
        raise InvalidRequest(
            f'unknown input "{header.name}": send one input, "{IMAGE_INPUT}" ({BYTES} [N], encoded image files) '
            f'or "{TENSOR_INPUT}" ({FP32} [N, 3, {crop}, {crop}], preprocessed)'
        )
    datatype, shape_text, rank = expected[header.name]
    if header.datatype != datatype:
        raise InvalidRequest(f'input "{header.name}" must be {datatype}, got {header.datatype or "no datatype"}')
    shape = header.shape
    if len(shape) != rank or shape[0] < 1 or (rank == 4 and shape[1:] != (3, crop, crop)):
        raise InvalidRequest(f'input "{header.name}" must have shape {shape_text} with N >= 1, got {list(shape)}')
    if shape[0] > max_batch_size:
        raise InvalidParameter(f"{shape[0]} images sent; at most {max_batch_size} per request (SERVE_MAX_BATCH_SIZE)")


def split_elements(header: TensorHeader, raw: bytes | memoryview) -> list[bytes]:
    """BYTES elements from their raw form (each after its 4-byte little-endian length), as many as the shape says.

    The count is checked as the elements are found, so the work is bounded by the shape the request declares
    (itself bounded by the batch size), not by what its bytes claim: 10 MiB of zeros are 2.6 million empty
    elements, and the answer comes at the second."""
    view = memoryview(raw)
    elements: list[bytes] = []
    offset = 0
    expected = header.count()
    while offset < len(view):
        if len(elements) == expected:
            raise InvalidRequest(
                f'input "{header.name}" holds more than the {expected} elements its shape {list(header.shape)} says'
            )
        if len(view) - offset < _LENGTH.size:
            stray = len(view) - offset
            raise InvalidRequest(f'input "{header.name}": {stray} stray bytes where a 4-byte length belongs')
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if size > len(view) - offset:
            raise InvalidRequest(
                f'input "{header.name}": element {len(elements)} declares {size} bytes but {len(view) - offset} remain'
            )
        elements.append(bytes(view[offset : offset + size]))
        offset += size
    return check_count(header, elements)


def check_count(header: TensorHeader, elements: list[bytes]) -> list[bytes]:
    """``elements``, if there are as many as the shape says."""
    if len(elements) != header.count():
        raise InvalidRequest(
            f'input "{header.name}" holds {len(elements)} elements but its shape {list(header.shape)} '
            f"says {header.count()}"
        )
    return elements


def join_elements(elements: Sequence[bytes]) -> bytes:
    """The raw form of BYTES elements: each after its 4-byte little-endian length."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def tensor_from_raw(header: TensorHeader, raw: bytes | memoryview) -> np.ndarray:
    """A float32 array of ``header.shape`` from little-endian FP32 bytes."""
    needed = header.count() * 4
    if len(raw) != needed:
        raise InvalidRequest(
            f'input "{header.name}" has {len(raw)} bytes of data; {FP32} {list(header.shape)} needs {needed}'
        )
    return _finite(header, np.frombuffer(raw, dtype="<f4").astype(np.float32))


def tensor_from_values(header: TensorHeader, values: Sequence[object]) -> np.ndarray:
    """A float32 array of ``header.shape`` from its flattened elements (numbers; anything else is refused).

    Converted a slice at a time: one conversion of a million values would hold the interpreter lock for
    tens of milliseconds, and every other request with it (this runs off the event loop, not off the lock)."""
    if len(values) != header.count():
        raise InvalidRequest(
            f'input "{header.name}" holds {len(values)} values but its shape {list(header.shape)} says {header.count()}'
        )
    try:
        chunks = [_numbers(values[i : i + _CHUNK]) for i in range(0, len(values), _CHUNK)]
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f'input "{header.name}" must hold numbers only') from None
    return _finite(header, np.concatenate(chunks) if chunks else np.zeros(0, np.float32))


def _numbers(values: Sequence[object]) -> np.ndarray:
    # numpy would read "1.5" and None (as NaN) too; only numbers (bool among them, as in JSON's own numbers) pass.
    if not all(isinstance(v, int | float) for v in values):
        raise TypeError("not a number")
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def _finite(header: TensorHeader, flat: np.ndarray) -> np.ndarray:
    # A NaN or infinity would come back as probabilities JSON cannot even carry.
    if not np.isfinite(flat).all():
        raise InvalidRequest(f'input "{header.name}" holds NaN or infinite values')
    return flat.reshape(header.shape)


def first_failure(results: Sequence[object]) -> ServiceError | None:
    """The first image's error, its message naming the image, or None when every image was served.

    The protocol has no per-element errors, so one bad image fails the request, with that image's status.
    """
    for index, result in enumerate(results):
        if isinstance(result, ServiceError):
            return type(result)(f"image {index}: {result.message}")
    return None


def output_tensor(answers: Sequence[Answer], output: RequestedOutput) -> OutputTensor:
    """The output of a served batch: probabilities ``[N, C]``, or the best ``k`` classes ``[N, k]``."""
    if not output.classification:
        probs = np.stack([answer.probs.astype(np.float32, copy=False) for answer in answers])
        return OutputTensor(OUTPUT, FP32, tuple(probs.shape), probs)
    rows = [answer.top_k(output.classification) for answer in answers]
    # Triton's classification format, score printed as C's %f: "0.812300:281:tabby".
    elements = [f"{p.score:f}:{p.class_id}:{p.label}".encode() for row in rows for p in row]
    return OutputTensor(OUTPUT, BYTES, (len(rows), len(rows[0])), elements)


def server_metadata(name: str, version: str) -> dict[str, object]:
    """The answer of ``GET /v2`` and ``ServerMetadata``."""
    return {"name": name, "version": version, "extensions": ["binary_tensor_data", "classification"]}


def model_metadata(model: ServedModel) -> dict[str, object]:
    """The answer of ``GET /v2/models/{name}`` and ``ModelMetadata``."""
    crop = model.crop_size
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "pytorch",
        "inputs": [
            {"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1]},
            {"name": TENSOR_INPUT, "datatype": FP32, "shape": [-1, 3, crop, crop]},
        ],
        "outputs": [{"name": OUTPUT, "datatype": FP32, "shape": [-1, model.num_classes]}],
    }
