"""tritonclient, as users run it, against the real server (``python -m app`` on loopback, REST and gRPC):
health, metadata, JPEGs with ``class_count`` against ``/predict``, FP32 tensors against torchvision's own
forward pass, batching across client threads, and a clean stop with the gRPC server up."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from torchvision import transforms as T

from app.v2.infer import server_version
from model import load_checkpoint
from model.checkpoint import file_version
from tests.app.conftest import RunningServer, free_port, start_server
from tests.conftest import encode, photo

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
CLIENTS = {"rest": triton_http, "grpc": triton_grpc}


@dataclass
class Servers:
    process: RunningServer
    grpc_target: str
    version: str

    def client(self, protocol: str) -> Any:
        if protocol == "rest":
            return triton_http.InferenceServerClient(self.process.url.removeprefix("http://"))
        return triton_grpc.InferenceServerClient(self.grpc_target)


@pytest.fixture(scope="module")
def servers(
    calibrated_checkpoint: Path, onnx_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """One server (default CPU backend) for the module; it must stop cleanly, gRPC server included."""
    grpc_port = free_port()
    env = {
        "SERVE_MODEL_PATH": str(calibrated_checkpoint),
        "SERVE_ONNX_CACHE_DIR": str(onnx_cache),
        "SERVE_GRPC_PORT": str(grpc_port),
        "SERVE_MAX_BATCH_DELAY_MS": "50",  # long enough for the threads' requests to meet in batches
    }
    running = start_server(env, tmp_path_factory.mktemp("v2") / "server.log")
    try:
        yield Servers(running, f"127.0.0.1:{grpc_port}", file_version(calibrated_checkpoint.read_bytes()))
    finally:
        running.terminate()
        code = running.process.wait(timeout=60)
    assert code == 0, running.log()


@pytest.mark.parametrize("protocol", CLIENTS)
def test_health_and_metadata(servers: Servers, protocol: str) -> None:
    client = servers.client(protocol)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet50") and client.is_model_ready("resnet50", servers.version)
    server = client.get_server_metadata(**({"as_json": True} if protocol == "grpc" else {}))
    assert server == {
        "name": "resnet50-serving",
        "version": server_version(),
        "extensions": ["binary_tensor_data", "classification"],
    }
    metadata = client.get_model_metadata("resnet50", servers.version)
    if protocol == "grpc":
        metadata = {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "platform": metadata.platform,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs],
        }
    assert metadata == {
        "name": "resnet50",
        "versions": [servers.version],
        "platform": "pytorch",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, 64, 64]},
        ],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }
    client.close()


@pytest.mark.parametrize("protocol", CLIENTS)
def test_jpegs_with_class_count_answer_what_predict_answers(servers: Servers, protocol: str) -> None:
    jpegs = [encode(photo(name), quality=90) for name in PHOTOS]
    module, client = CLIENTS[protocol], servers.client(protocol)
    image = module.InferInput("image", [len(jpegs)], "BYTES")
    image.set_data_from_numpy(np.array(jpegs, dtype=np.object_))
    result = client.infer(
        "resnet50", [image], outputs=[module.InferRequestedOutput("probabilities", class_count=5)], request_id="j-1"
    )
    client.close()
    response = result.get_response(as_json=True) if protocol == "grpc" else result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("j-1", "resnet50", servers.version)
    top5 = result.as_numpy("probabilities")
    assert top5.shape == (len(jpegs), 5)
    for row, jpeg in zip(top5, jpegs, strict=True):
        predicted = httpx.post(f"{servers.process.url}/predict", content=jpeg, headers={"content-type": "image/jpeg"})
        expected = predicted.json()["predictions"]
        answered = [element.decode().split(":", 2) for element in row]
        assert [(int(c), label) for _, c, label in answered] == [(p["class_id"], p["label"]) for p in expected]
        assert np.allclose([float(s) for s, _, _ in answered], [p["score"] for p in expected], atol=1e-5, rtol=0)
        assert max(p["score"] for p in expected) < 0.9, "a saturated softmax would make this comparison meaningless"


def torchvision_batch(checkpoint: Path) -> torch.Tensor:
    """The photos through torchvision's classic eval transform, as the checkpoint's preprocessing says."""
    p = load_checkpoint(checkpoint).preprocessing
    transform = T.Compose(
        [
            T.Resize(p.resize_size, interpolation=T.InterpolationMode(p.interpolation), antialias=True),
            T.CenterCrop(p.crop_size),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )
    images = [Image.open(io.BytesIO(encode(photo(name), quality=90))).convert("RGB") for name in PHOTOS]
    return torch.stack([transform(image) for image in images])


@pytest.mark.parametrize(("protocol", "binary"), [("rest", True), ("rest", False), ("grpc", True)])
def test_fp32_tensors_answer_torchvisions_own_forward(
    servers: Servers, calibrated_checkpoint: Path, protocol: str, binary: bool
) -> None:
    batch = torchvision_batch(calibrated_checkpoint)
    with torch.no_grad():
        expected = torch.softmax(load_checkpoint(calibrated_checkpoint).model(batch), dim=1).numpy()
    module, client = CLIENTS[protocol], servers.client(protocol)
    tensor = module.InferInput("input", list(batch.shape), "FP32")
    if protocol == "rest":
        tensor.set_data_from_numpy(batch.numpy(), binary_data=binary)
        outputs = [module.InferRequestedOutput("probabilities", binary_data=binary)]
    else:
        tensor.set_data_from_numpy(batch.numpy())
        outputs = [module.InferRequestedOutput("probabilities")]
    probabilities = client.infer("resnet50", [tensor], outputs=outputs).as_numpy("probabilities")
    client.close()
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(PHOTOS), 10)
    assert np.abs(probabilities - expected).max() < 1e-4


def batch_size_histogram(url: str) -> tuple[float, float]:
    """(batches, batches of one image) so far."""
    samples = {
        (s.name, s.labels.get("le")): s.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for s in family.samples
        if s.name.startswith("inference_batch_size")
    }
    return samples[("inference_batch_size_count", None)], samples[("inference_batch_size_bucket", "1.0")]


def test_requests_from_several_client_threads_are_batched(servers: Servers) -> None:
    jpeg = encode(photo("coffee"), quality=90)
    batches, singles = batch_size_histogram(servers.process.url)

    def classify(index: int) -> list[bytes]:
        protocol = "rest" if index % 2 else "grpc"
        module, client = CLIENTS[protocol], servers.client(protocol)
        answers = []
        for _ in range(3):
            image = module.InferInput("image", [1], "BYTES")
            image.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
            output = module.InferRequestedOutput("probabilities", class_count=1)
            answers.append(client.infer("resnet50", [image], outputs=[output]).as_numpy("probabilities")[0, 0])
        client.close()
        return answers

    with ThreadPoolExecutor(8) as pool:
        answers = [a for thread in pool.map(classify, range(8)) for a in thread]
    assert len(answers) == 24 and len(set(answers)) == 1  # the same image, the same answer, whatever the batch
    after_batches, after_singles = batch_size_histogram(servers.process.url)
    assert after_batches - batches < 24  # images met in batches
    assert (after_batches - batches) - (after_singles - singles) > 0  # some batch held more than one image


def requests_counted(url: str, route: str, code: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "inference_requests_total" and sample.labels == {"route": route, "code": code}:
                return sample.value
    return 0.0


def test_a_client_that_hangs_up_mid_upload_is_counted_499_not_500(servers: Servers) -> None:
    url = servers.process.url
    before = {code: requests_counted(url, "/v2/infer", code) for code in ("499", "500")}
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        head = "POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n"
        sock.sendall(head.encode() + b'{"inputs": [')
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while requests_counted(url, "/v2/infer", "499") == before["499"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests_counted(url, "/v2/infer", "499") == before["499"] + 1
    assert requests_counted(url, "/v2/infer", "500") == before["500"]
    assert "Traceback" not in servers.process.log()
