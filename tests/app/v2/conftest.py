"""Fixtures for the Open Inference Protocol: a model description for the codecs, answers from the engine's
own ``Answer``, and the app in process with its gRPC server on a free loopback port, driven by real clients
(httpx for REST; tritonclient's gRPC client, or its stub for requests tritonclient would refuse to build)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_grpc_aio
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_pb_grpc

from app.config import Settings
from app.engine.client import Answer, ModelInfo
from app.v2.grpc_server import start_grpc_server
from tests.app.conftest import Running, serve_in_process

LABELS = ["cat", "coffee", "rocket"]
VERSION = "abcdef012345"


@dataclass(frozen=True)
class ModelShape:
    """What the codecs read of the serving model; a 4-pixel crop keeps tensors small enough to write out."""

    name: str = "resnet50"
    version: str = VERSION
    num_classes: int = 3
    crop_size: int = 4


@pytest.fixture
def model() -> ModelShape:
    return ModelShape()


MODEL = ModelInfo(
    name="resnet50",
    version=VERSION,
    arch="resnet50",
    labels=tuple(LABELS),
    crop_size=4,
    trained=True,
    source="test",
    created_at="2026-01-01T00:00:00+00:00",
    device="cpu",
    precision="fp32",
    backend="torch",
    loaded_at="2026-01-01T00:00:01+00:00",
)


def served(*probs: float) -> Answer:
    """One image's answer over ``LABELS``."""
    return Answer(np.array(probs, dtype=np.float32), MODEL, 0.001, 0.002, 0.003, 1)


def element(data: bytes) -> bytes:
    """One BYTES element in its raw form: 4-byte little-endian length, then the bytes."""
    return len(data).to_bytes(4, "little") + data


@dataclass(frozen=True)
class Tensor:
    """One input tensor in raw form, sent the same way over REST (binary extension) and gRPC (raw contents)."""

    raw: bytes
    name: str = "image"
    datatype: str = "BYTES"
    shape: tuple[int, ...] = (1,)

    def rest_body(self, **request: Any) -> tuple[bytes, dict[str, str]]:
        spec = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        document = {"inputs": [{**spec, "parameters": {"binary_data_size": len(self.raw)}}], **request}
        header = json.dumps(document).encode()
        return header + self.raw, {"Inference-Header-Content-Length": str(len(header))}

    def grpc_request(self, model: str = "resnet50", version: str = "") -> triton_pb.ModelInferRequest:
        request = triton_pb.ModelInferRequest(model_name=model, model_version=version)
        request.inputs.add(name=self.name, datatype=self.datatype, shape=self.shape)
        request.raw_input_contents.append(self.raw)
        return request


@dataclass
class V2App:
    """The app in process: REST through ``rest``, gRPC through ``triton`` (tritonclient) or ``stub``."""

    rest: httpx.AsyncClient
    triton: triton_grpc_aio.InferenceServerClient
    stub: triton_pb_grpc.GRPCInferenceServiceStub
    running: Running
    headers: dict[str, str]  # the API key header, when the service has one
    metadata: tuple[tuple[str, str], ...]

    async def rest_infer(
        self, tensor: Tensor, path: str = "/v2/models/resnet50/infer", **request: Any
    ) -> httpx.Response:
        body, headers = tensor.rest_body(**request)
        return await self.rest.post(path, content=body, headers=headers | self.headers)

    async def grpc_error(self, call: Any, request: Any) -> grpc.aio.AioRpcError:
        """The error a gRPC call ends with (it must end with one)."""
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(request, metadata=self.metadata)
        return caught.value


@asynccontextmanager
async def serve_v2(settings: Settings) -> AsyncIterator[V2App]:
    async with serve_in_process(settings) as (client, running):
        server = await start_grpc_server(running.door, settings, port=0)
        target = f"127.0.0.1:{server.port}"
        channel = grpc.aio.insecure_channel(target)
        triton = triton_grpc_aio.InferenceServerClient(target)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        try:
            yield V2App(client, triton, triton_pb_grpc.GRPCInferenceServiceStub(channel), running, headers, metadata)
        finally:
            await triton.close()
            await channel.close()
            await server.stop(None)


MakeV2 = Callable[..., AbstractAsyncContextManager[V2App]]


@pytest.fixture
def make_v2(make_settings: Callable[..., Settings]) -> MakeV2:
    """``async with make_v2(api_key=...) as v2``: the app on the tiny checkpoint with those settings; no gRPC
    port of its own (``grpc_port=0``), the test's gRPC server listens on a free one."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[V2App]:
        return serve_v2(make_settings(**({"grpc_port": 0} | overrides)))

    return make
