"""The real server (``python -m app``) over real HTTP on loopback: batching, graceful drain, start-up errors."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch

from tests.app.conftest import REPO, RunningServer

JPEG = {"content-type": "image/jpeg"}


async def gauge(client: httpx.AsyncClient, name: str) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


@pytest.mark.anyio
async def test_concurrent_requests_come_back_batched(
    server_factory: Callable[..., RunningServer], cat_jpeg: bytes
) -> None:
    server = server_factory(SERVE_MAX_BATCH_SIZE="8", SERVE_MAX_BATCH_DELAY_MS="300")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        responses = await asyncio.gather(*(client.post("/predict", content=cat_jpeg, headers=JPEG) for _ in range(6)))
        model = (await client.get("/model")).json()
    assert [r.status_code for r in responses] == [200] * 6
    sizes = Counter(r.json()["batch_size"] for r in responses)
    assert all(size > 1 for size in sizes), sizes
    assert all(count % size == 0 for size, count in sizes.items()), sizes  # whole batches only
    assert model["backend"] == ("torch" if torch.cuda.is_available() else "onnxruntime")  # auto


@pytest.mark.anyio
async def test_sigterm_drains_accepted_requests_refuses_new_ones_and_exits_0(
    server_factory: Callable[..., RunningServer], cat_jpeg: bytes
) -> None:
    # A long batch delay keeps the accepted requests in flight while the test sends the signal.
    server = server_factory(SERVE_MAX_BATCH_SIZE="16", SERVE_MAX_BATCH_DELAY_MS="2500")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        accepted = [asyncio.create_task(client.post("/predict", content=cat_jpeg, headers=JPEG)) for _ in range(3)]
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as probe:
            # Admitted and not yet answered: the three wait in the batch being collected.
            while await gauge(probe, "inference_images_in_flight") < 3:
                assert not any(t.done() for t in accepted), "answered before the signal: the window was too short"
                await asyncio.sleep(0.02)
            server.terminate()
            while (await probe.get("/health/ready")).status_code == 200:
                await asyncio.sleep(0.02)
            refused = await probe.post("/predict", content=cat_jpeg, headers=JPEG)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"
        assert refused.headers["retry-after"]
        done = await asyncio.gather(*accepted)
    assert [r.status_code for r in done] == [200, 200, 200]
    assert server.process.wait(timeout=60) == 0, server.log()
    assert "draining" in server.log()


def run_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")} | {"SERVE_GRPC_PORT": "0"} | env
    return subprocess.run(
        [sys.executable, "-m", "app"], cwd=REPO, env=environ, capture_output=True, text=True, timeout=120
    )


def test_an_invalid_setting_stops_start_up_naming_the_variable(tiny_checkpoint: Path) -> None:
    result = run_app({"SERVE_MODEL_PATH": str(tiny_checkpoint), "SERVE_MAX_BATCH_SIZE": "lots"})
    assert result.returncode == 2
    assert "SERVE_MAX_BATCH_SIZE='lots'" in result.stderr


def test_a_missing_model_stops_the_server_with_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    result = run_app({"SERVE_MODEL_PATH": str(missing), "SERVE_PORT": "0", "SERVE_LOG_FORMAT": "text"})
    assert result.returncode == 1
    assert f"{missing}: no such file" in result.stderr


def test_a_misspelt_setting_is_named_with_the_closest_real_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    result = run_app({"SERVE_MODEL_PATH": str(missing), "SERVE_PORT": "0", "SERVE_MAX_BATCH_SZIE": "4"})
    assert result.returncode == 1  # a warning, not an error: the missing model is what stops it
    warnings = [line for line in result.stderr.splitlines() if "SERVE_MAX_BATCH_SZIE" in line]
    assert len(warnings) == 1 and '"level": "warning"' in warnings[0], result.stderr
    assert "did you mean SERVE_MAX_BATCH_SIZE?" in warnings[0]


def test_the_request_head_stays_bounded_with_httptools_installed(server_factory: Callable[..., RunningServer]) -> None:
    """uvicorn would take httptools whenever it is installed, and with it no header limit holds: the server
    pins h11, whose limits docs/reliability.md measured."""
    assert importlib.util.find_spec("httptools") is not None, "the dev environment installs httptools for this test"
    server = server_factory(SERVE_BACKEND="torch", SERVE_DEVICE="cpu")
    host, port = server.url.removeprefix("http://").split(":")
    # 100 KB of a head that never ends: h11 refuses it once past its 16 KiB limit; httptools would wait for more.
    head = f"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: {'a' * 100_000}".encode()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
