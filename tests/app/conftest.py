"""Fixtures for the service: settings on the tiny checkpoint, an in-process client that runs the
lifespan, and the real server (``python -m app``) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import torch

from app.config import Settings
from app.engine.backends import Backend
from app.engine.local import LocalEngine
from app.front.door import Door
from app.process.assemble import create_app
from model import EvalPreset, build_model, save_checkpoint
from tests.conftest import TINY_PREPROCESSING, photo

CALIBRATION_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "immunohistochemistry", "camera")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def calibrated_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-class checkpoint whose BatchNorm statistics come from real photos.

    A random init with identity BatchNorm saturates the softmax (one class at 1.0); calibrated
    statistics give spread-out probabilities, so parity checks on them mean something.
    """
    torch.manual_seed(0)
    net = build_model(10)
    preset = EvalPreset(TINY_PREPROCESSING)
    images = torch.stack([preset(photo(name)) for name in CALIBRATION_PHOTOS])
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration passes
            module.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(images)
        net(images.flip(3))
    path = tmp_path_factory.mktemp("weights") / "calibrated.safetensors"
    save_checkpoint(
        path,
        net.state_dict(),
        labels=[f"class_{i}" for i in range(10)],
        preprocessing=TINY_PREPROCESSING,
        trained=True,
        source="test",
    )
    return path


@dataclass(frozen=True)
class Running:
    """The parts of a running app that tests look into: its door, and its engine (this process's)."""

    door: Door
    engine: LocalEngine


class InProcess(NamedTuple):
    client: httpx.AsyncClient
    running: Running


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[InProcess]:
    """The app with its lifespan running and its model loaded, behind an httpx client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        running = Running(app.state.door, app.state.engine)
        await running.engine.wait_loaded()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield InProcess(client, running)


MakeClient = Callable[..., AbstractAsyncContextManager[InProcess]]


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> MakeClient:
    """``async with make_client(api_key=...) as (client, running)``: an app with those settings."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[InProcess]:
        return serve_in_process(make_settings(**overrides))

    return make


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app with default test settings."""
    async with serve_in_process(make_settings()) as running:
        yield running.client


class GatedBackend:
    """The real backend behind a gate: ``infer`` waits until the test opens it, and counts its calls.

    Lets a test hold the model busy (to fill the queue or outlive a deadline) while the real
    model still computes every answer; ``fail_next`` makes the next batch raise.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls: list[int] = []
        self.fail_next = False

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls.append(batch.shape[0])
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the gate")
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("secret internal detail")
        return self.inner.infer(batch)

    def warmup(self, max_batch_size: int) -> None:
        self.inner.warmup(max_batch_size)


def gate_model(running: Running, open_gate: bool = False) -> GatedBackend:
    """Put a ``GatedBackend`` in front of the serving model's backend."""
    serving = running.engine.host.serving
    assert serving is not None
    classifier = serving.classifier
    gated = GatedBackend(classifier.backend)
    if open_gate:
        gated.gate.set()
    classifier.backend = gated
    return gated


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A ``python -m app`` subprocess listening on ``url``."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)


def start_server(env: dict[str, str], log_path: Path, timeout_s: float = 120) -> RunningServer:
    """Start ``python -m app`` with ``env`` on a free port and wait until it reports ready."""
    port = free_port()
    # No gRPC server unless the test asks for one (on a port of its own): servers of one run would share 8001.
    environ = {**os.environ, "SERVE_GRPC_PORT": "0", **env, "SERVE_HOST": "127.0.0.1", "SERVE_PORT": str(port)}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=environ, stdout=log, stderr=log)
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server was not ready within {timeout_s}s:\n{server.log()}")


@pytest.fixture
def server_factory(tiny_checkpoint: Path, onnx_cache: Path, tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start real servers (``SERVE_*`` overrides as keywords); each is killed at the end if still up."""
    started: list[RunningServer] = []

    def start(**env: str) -> RunningServer:
        base = {"SERVE_MODEL_PATH": str(tiny_checkpoint), "SERVE_ONNX_CACHE_DIR": str(onnx_cache)}
        server = start_server(base | env, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(timeout=30)
