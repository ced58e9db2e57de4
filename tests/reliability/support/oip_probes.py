"""The Open Inference Protocol tried as an attacker would, against a real server: malformed numbers and
bodies built to be expensive over REST and gRPC, request ids built to forge log lines, gRPC's call count.
The probes' common parts are in ``doors``."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import grpc

from app.v2.proto import grpc_predict_v2_pb2 as pb
from tests.reliability.support.doors import AUTH, GRPC_AUTH, JSON_TYPE, Headers, Probe, post, watched
from tests.reliability.support.service import Service

INFER = "/v2/models/resnet50/infer"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
TEN_MIB = 10 << 20


# --- the Open Inference Protocol over REST --------------------------------------------------------------------


def zeros_as_one_image() -> tuple[bytes, list[tuple[str, str]]]:
    """A BYTES input of shape [1] whose binary data is 10 MiB of zeros: 2.6 million empty elements."""
    size = TEN_MIB - 4096
    spec = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": size}}
    text = json.dumps({"inputs": [spec]}).encode()
    headers = [("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", str(len(text)))]
    return text + bytes(size), headers


def empty_lists_json() -> bytes:
    """10 MiB of ``[],``: about as many JSON values as its bytes can hold, each costly to build."""
    count = (TEN_MIB - 200) // 3
    return b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": [' + b"[]," * count + b"0]}]}"


def fp32_json(images: int, crop: int) -> bytes:
    """A real request: ``images`` preprocessed images as FP32 numbers in JSON (1.2 MB each at 224)."""
    values = [round(((i * 7919) % 1000) / 500 - 1, 6) for i in range(images * 3 * crop * crop)]
    spec = {"name": "input", "datatype": "FP32", "shape": [images, 3, crop, crop], "data": values}
    return json.dumps({"inputs": [spec]}).encode()


def rest_probes(server: Service, crop: int) -> list[Probe]:
    json_type = [*AUTH, JSON_TYPE]
    zeros, zeros_headers = zeros_as_one_image()
    small = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}]}).encode()
    length = "Inference-Header-Content-Length"
    cases: list[tuple[str, bytes, Headers]] = [
        ("BYTES [1] holding 10 MiB of zeros (binary extension)", zeros, [*AUTH, *zeros_headers]),
        ("10 MiB of [] in JSON", empty_lists_json(), json_type),
        (f"{length}: a Unicode digit (\\xb2)", small, [*json_type, (length, "\xb2")]),
        (f"{length}: 5,000 nines", small, [*json_type, (length, "9" * 5000)]),
        ('{"inputs": <a 5,000-digit integer>}', b'{"inputs": ' + b"9" * 5000 + b"}", json_type),
        ("JSON nested 100,000 deep", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", json_type),
        ("one image as FP32 JSON (a real request)", fp32_json(1, crop), json_type),
        ("eight images as FP32 JSON (a real request, 9.6 MB)", fp32_json(8, crop), json_type),
    ]
    return [watched(server, name, lambda b=body, h=head: post(server, INFER, h, b)) for name, body, head in cases]


# --- the Open Inference Protocol over gRPC --------------------------------------------------------------------


def grpc_infer(target: str, message: bytes, metadata: Headers, timeout_s: float = 60) -> tuple[str, str]:
    """One raw ``ModelInfer`` (``message`` already serialized): its status code's name and details."""
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)
        try:
            call(message, metadata=tuple(metadata), timeout=timeout_s)
        except grpc.RpcError as error:
            return error.code().name, error.details() or ""  # type: ignore[attr-defined]
    return "OK", ""


def zeros_message(request_id: str = "") -> bytes:
    request = pb.ModelInferRequest(model_name="resnet50", id=request_id)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(bytes(TEN_MIB - 4096))
    return request.SerializeToString()


def empty_elements_message() -> bytes:
    """About 5 million empty ``bytes_contents`` (each two bytes on the wire) for a shape of [1]."""
    request = pb.ModelInferRequest(model_name="resnet50")
    request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.extend(
        [b""] * ((TEN_MIB - 4096) // 2)
    )
    return request.SerializeToString()


def image_message(image: bytes, request_id: str) -> bytes:
    request = pb.ModelInferRequest(model_name="resnet50", id=request_id)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    return request.SerializeToString()


def grpc_probes(server: Service, target: str) -> list[Probe]:
    cases = [
        ("BYTES [1] holding 10 MiB of zeros (raw contents)", zeros_message(), GRPC_AUTH),
        ("5 million empty bytes_contents", empty_elements_message(), GRPC_AUTH),
        ("a wrong key, then a 10 MiB message", zeros_message(), [("authorization", "Bearer not-the-key")]),
        ("not a protobuf message", b"\xff" * 1000, GRPC_AUTH),
    ]
    return [watched(server, name, lambda m=m, h=h: grpc_infer(target, m, h)) for name, m, h in cases]


def wrong_key_flood(server: Service, target: str, calls: int = 50) -> Probe:
    """``calls`` concurrent 10 MiB calls with a wrong key: each refused from its metadata, nothing held."""
    message = zeros_message()
    rss = server.rss_mib()
    answers: list[tuple[str, str]] = []
    began = time.monotonic()
    threads = [
        threading.Thread(target=lambda: answers.append(grpc_infer(target, message, [("authorization", "Bearer x")])))
        for _ in range(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = sorted({code for code, _ in answers})
    return Probe(
        f"{calls} concurrent 10 MiB calls, wrong key",
        ",".join(codes),
        time.monotonic() - began,
        f"{len(answers)} answered",
        server.rss_mib() - rss,
    )


def held_calls(target: str, count: int) -> tuple[list[grpc.Future], threading.Event, grpc.Channel]:
    """``count`` ``ModelInfer`` calls that have started but whose message never comes (until the event is set)."""
    release = threading.Event()
    channel = grpc.insecure_channel(target)
    call = channel.stream_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)

    def nothing_yet() -> Iterator[bytes]:
        release.wait(60)
        return
        yield b""  # a generator that ends without a message

    futures = [call.future(nothing_yet(), metadata=tuple(GRPC_AUTH), timeout=60) for _ in range(count)]
    return futures, release, channel


def concurrency_cap(server: Service, target: str, cap: int) -> Probe:
    """``cap`` calls held open: one more is refused with RESOURCE_EXHAUSTED at once; released, calls go again."""
    futures, release, channel = held_calls(target, cap)
    try:
        time.sleep(1.0)  # every held call has started
        began = time.monotonic()
        code, details = grpc_infer(target, b"", GRPC_AUTH, timeout_s=10)
        seconds = time.monotonic() - began
    finally:
        release.set()
        for future in futures:
            with contextlib.suppress(grpc.RpcError, grpc.FutureTimeoutError):
                future.result(timeout=30)
        channel.close()
    after, _ = grpc_infer(target, b"", GRPC_AUTH, timeout_s=10)
    return Probe(
        f"call {cap + 1} while {cap} are open; then one more once they end", f"{code} then {after}", seconds, details
    )


def logged_ids(server: Service, target: str, image: bytes) -> list[dict[str, object]]:
    """Requests whose ids try to forge a log line and to fill the log; the access lines they got."""
    ids = {"newline": 'ok\n{"level": "error", "message": "forged"}', "five MB": "x" * (5 << 20)}
    for request_id in ids.values():
        grpc_infer(target, image_message(image, request_id), GRPC_AUTH)
    lines = [r for r in server.log_records() if r.get("route") == "grpc"]
    return lines[-len(ids) :]
