"""Fuzzing the Open Inference Protocol against a real server: Hypothesis builds infer requests of every shape
(JSON headers, the binary extension, shapes, datatypes, parameters, ids), over REST and over gRPC, then
mutates their bytes. Every one must be answered with a status below 500 (REST) or a status other than
INTERNAL and UNKNOWN (gRPC), while ``/health/live`` keeps answering, and the server must answer a known
request identically before and after.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from hypothesis import given, seed
from hypothesis import strategies as st

from app.v2.proto import grpc_predict_v2_pb2 as pb
from tests.reliability.support import specimens as sp
from tests.reliability.support.badinput import FuzzReport, check_exchange, fuzz_settings
from tests.reliability.support.doors import HealthWatch
from tests.reliability.support.fuzzing import Mutation, mutate, mutations
from tests.reliability.support.oip_probes import MODEL_INFER
from tests.reliability.support.rawhttp import RawRequest

_GRPC_BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
)
_JSON = st.recursive(
    _JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
_NAMES = st.one_of(st.sampled_from(["image", "input", "probabilities", ""]), st.text(max_size=12))
_DATATYPES = st.one_of(st.sampled_from(["BYTES", "FP32", "FP16", "INT64", "UINT8", ""]), st.text(max_size=8))
_DIM = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 8, 9, 224]), st.integers(-(2**63), 2**63 - 1))
_SHAPES = st.lists(_DIM, max_size=5)


def _images() -> st.SearchStrategy[bytes]:
    seeds = sorted(sp.seeds().values(), key=len)[:8]  # small real images: a valid request costs little
    return st.one_of(st.sampled_from(seeds), st.binary(max_size=64))


def _data(crop: int) -> st.SearchStrategy[Any]:
    image_strings = st.lists(_images().map(lambda b: base64.b64encode(b).decode()), max_size=3)
    numbers = st.lists(st.floats(-3, 3, width=32), max_size=16)
    whole_image = st.builds(lambda v: [v] * (3 * crop * crop), st.floats(-3, 3, width=32))  # the shape's count
    return st.one_of(image_strings, numbers, whole_image, st.lists(numbers, max_size=3), _JSON)


def _input_spec(crop: int) -> st.SearchStrategy[dict[str, Any]]:
    parameters = st.dictionaries(
        st.sampled_from(["binary_data_size", "classification", "binary_data", "x"]),
        st.one_of(st.integers(-5, 1 << 24), _JSON_LEAF),
        max_size=2,
    )
    return st.fixed_dictionaries(
        {"name": _NAMES, "datatype": _DATATYPES, "shape": st.one_of(_SHAPES, _JSON_LEAF)},
        optional={"data": _data(crop), "parameters": parameters},
    )


def _valid_input(crop: int) -> st.SearchStrategy[dict[str, Any]]:
    """An input the model serves: N real images as base64 strings, or one preprocessed image as numbers."""
    images = st.lists(_images().filter(lambda b: len(b) > 64), min_size=1, max_size=3)
    image_input = images.map(
        lambda items: {
            "name": "image",
            "datatype": "BYTES",
            "shape": [len(items)],
            "data": [base64.b64encode(b).decode() for b in items],
        }
    )
    tensor_input = st.floats(-3, 3, width=32).map(
        lambda v: {"name": "input", "datatype": "FP32", "shape": [1, 3, crop, crop], "data": [v] * (3 * crop * crop)}
    )
    return st.one_of(image_input, tensor_input)


def _document(crop: int) -> st.SearchStrategy[dict[str, Any]]:
    output = st.fixed_dictionaries(
        {"name": st.one_of(st.just("probabilities"), _NAMES)},
        optional={"parameters": st.dictionaries(st.sampled_from(["classification", "binary_data"]), _JSON_LEAF)},
    )
    return st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(_input_spec(crop), max_size=3), _JSON_LEAF, st.tuples(_valid_input(crop)))},
        optional={
            "id": st.one_of(st.text(max_size=40), _JSON_LEAF),
            "outputs": st.one_of(st.lists(output, max_size=2), _JSON_LEAF),
            "parameters": st.dictionaries(st.sampled_from(["binary_data_output", "x"]), _JSON_LEAF, max_size=2),
        },
    )


def rest_requests(crop: int, auth: Sequence[tuple[str, str]] = ()) -> st.SearchStrategy[RawRequest]:
    """Infer requests over REST: a JSON document, maybe binary tensor data after it, maybe mutated bytes."""
    path = st.sampled_from(
        ["/v2/models/resnet50/infer"] * 8 + ["/v2/models/x/infer", "/v2/models/resnet50/versions/0/infer"]
    )
    tail = st.one_of(st.just(b""), _images(), st.binary(max_size=256))
    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=8)
    length = st.one_of(st.just("exact"), st.none(), st.integers(-5, 1 << 40).map(str), header_text)
    content_type = st.sampled_from(["application/json", "application/octet-stream", "text/plain", ""])

    def build(
        doc: dict[str, Any], binary: bytes, header: str | None, kind: str, path: str, changes: list[Mutation]
    ) -> RawRequest:
        text = json.dumps(doc, allow_nan=True).encode()
        body = text + binary
        for change in changes:
            body = mutate(body, change)
        headers = [("Content-Type", kind)] if kind else []
        if header is not None:
            headers.append(("Inference-Header-Content-Length", str(len(text)) if header == "exact" else header))
        return RawRequest(target=path, headers=[*headers, *auth], body=body)

    return st.builds(build, _document(crop), tail, length, content_type, path, st.lists(mutations(), max_size=3))


def _grpc_inputs(crop: int) -> st.SearchStrategy[pb.ModelInferRequest.InferInputTensor]:
    contents = st.one_of(
        st.builds(lambda items: pb.InferTensorContents(bytes_contents=items), st.lists(_images(), max_size=3)),
        st.builds(lambda items: pb.InferTensorContents(fp32_contents=items), st.lists(st.floats(-3, 3), max_size=16)),
        st.builds(lambda v: pb.InferTensorContents(fp32_contents=[v] * (3 * crop * crop)), st.floats(-3, 3)),
        st.builds(lambda items: pb.InferTensorContents(int_contents=items), st.lists(st.integers(-9, 9), max_size=8)),
    )

    def tensor(
        name: str, datatype: str, dims: list[int], filled: pb.InferTensorContents | None
    ) -> pb.ModelInferRequest.InferInputTensor:
        spec = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=dims)
        if filled is not None:
            spec.contents.CopyFrom(filled)
        return spec

    valid = st.lists(_images().filter(lambda b: len(b) > 64), min_size=1, max_size=3).map(
        lambda items: pb.ModelInferRequest.InferInputTensor(
            name="image", datatype="BYTES", shape=[len(items)], contents=pb.InferTensorContents(bytes_contents=items)
        )
    )
    fuzzed = st.builds(tensor, _NAMES, _DATATYPES, st.lists(_DIM, max_size=5), st.one_of(st.none(), contents))
    return st.one_of(fuzzed, valid)


def grpc_messages(crop: int) -> st.SearchStrategy[bytes]:
    """Serialized ``ModelInferRequest``s of any shape, then maybe mutated."""
    parameter = st.one_of(
        st.builds(lambda v: pb.InferParameter(bool_param=v), st.booleans()),
        st.builds(lambda v: pb.InferParameter(int64_param=v), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: pb.InferParameter(string_param=v), st.text(max_size=8)),
    )

    def build(
        inputs: list[pb.ModelInferRequest.InferInputTensor],
        raw: list[bytes],
        request_id: str,
        outputs: list[str],
        k: pb.InferParameter | None,
        changes: list[Mutation],
    ) -> bytes:
        request = pb.ModelInferRequest(model_name="resnet50", id=request_id, inputs=inputs, raw_input_contents=raw)
        for name in outputs:
            output = request.outputs.add(name=name)
            if k is not None:
                output.parameters["classification"].CopyFrom(k)
        data = request.SerializeToString()
        for change in changes:
            data = mutate(data, change)
        return data

    return st.builds(
        build,
        st.lists(_grpc_inputs(crop), max_size=3),
        st.lists(st.one_of(_images(), st.binary(max_size=64)), max_size=2),
        st.text(max_size=40),
        st.lists(st.one_of(st.just("probabilities"), _NAMES), max_size=2),
        st.one_of(st.none(), parameter),
        st.lists(mutations(), max_size=3),
    )


@dataclass
class V2FuzzResult:
    rest: FuzzReport
    grpc: FuzzReport
    grpc_codes: dict[str, int] = field(default_factory=dict)
    health_worst_ms: float = 0.0
    health_samples: int = 0
    same_answer_after: bool = False
    ready_after: bool = False


def fuzz_rest(url: str, crop: int, examples: int, seed_value: int, auth: Sequence[tuple[str, str]]) -> FuzzReport:
    report = FuzzReport("Open Inference Protocol, REST")

    @seed(seed_value)
    @fuzz_settings(examples)
    @given(rest_requests(crop, auth))
    def case(request: RawRequest) -> None:
        started = time.perf_counter()
        report.record(check_exchange(url, request), started)

    try:
        case()
    except Exception as exc:  # the shrunk failure: recorded
        report.failure = f"{type(exc).__name__}: {exc}"
    return report


def fuzz_grpc(
    target: str, crop: int, examples: int, seed_value: int, metadata: Sequence[tuple[str, str]], codes: dict[str, int]
) -> FuzzReport:
    report = FuzzReport("Open Inference Protocol, gRPC")
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)

        @seed(seed_value)
        @fuzz_settings(examples)
        @given(grpc_messages(crop))
        def case(message: bytes) -> None:
            started = time.perf_counter()
            try:
                call(message, metadata=tuple(metadata), timeout=20)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
                assert code not in _GRPC_BAD, f"{code.name}: {error.details()}"
            codes[code.name] = codes.get(code.name, 0) + 1
            report.record(code.name, started)

        try:
            case()
        except Exception as exc:
            report.failure = f"{type(exc).__name__}: {exc}"
    return report


def known_answer(url: str, auth: Sequence[tuple[str, str]]) -> list[float]:
    """The probabilities of one real image, asked through the protocol."""
    image = base64.b64encode(sorted(sp.seeds().values(), key=len)[-1]).decode()
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [image]}]}
    response = httpx.post(f"{url}/v2/models/resnet50/infer", json=body, headers=dict(auth), timeout=60)
    response.raise_for_status()
    values: list[float] = response.json()["outputs"][0]["data"]
    return values


def run_v2_fuzzing(
    url: str,
    grpc_target: str,
    *,
    crop: int,
    examples: tuple[int, int],
    auth: Sequence[tuple[str, str]],
    seed_value: int = 0,
) -> V2FuzzResult:
    """REST then gRPC fuzzing under one health watch; the known answer before and after."""
    before = known_answer(url, auth)
    metadata = [(name.lower(), value) for name, value in auth]
    codes: dict[str, int] = {}
    with HealthWatch(url).running() as health:
        rest = fuzz_rest(url, crop, examples[0], seed_value, auth)
        grpc_report = fuzz_grpc(grpc_target, crop, examples[1], seed_value, metadata, codes)
    after = known_answer(url, auth)
    same = len(before) == len(after) and all(
        math.isclose(a, b, abs_tol=1e-6) for a, b in zip(before, after, strict=True)
    )
    ready = httpx.get(f"{url}/health/ready", timeout=10).status_code == 200
    return V2FuzzResult(rest, grpc_report, codes, health.worst_ms, health.samples, same, ready)
