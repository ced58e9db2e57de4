"""Shared fixtures: tiny checkpoints made here, real photographs from scikit-image."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from app.config import Settings
from model import Preprocessing, build_model, save_checkpoint

# Small crops keep a ResNet-50 forward pass cheap on a 2-core CPU; the network is the real one.
TINY_PREPROCESSING = Preprocessing(resize_size=72, crop_size=64)
TINY_LABELS = ["cat", "coffee", "rocket"]
MakeSettings = Callable[..., Settings]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 3-class ResNet-50 checkpoint with a 64-pixel eval crop."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    save_checkpoint(
        path,
        build_model(len(TINY_LABELS)).state_dict(),
        labels=TINY_LABELS,
        preprocessing=TINY_PREPROCESSING,
        trained=True,
        source="test",
        metrics={"top1": 33.3},
    )
    return path


def photo(name: str) -> Image.Image:
    """A real photograph shipped with scikit-image, as RGB."""
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    """Chelsea the cat (451x300), JPEG-encoded."""
    return encode(photo("chelsea"), quality=90)


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Several real photographs of different sizes and subjects."""
    return {name: photo(name) for name in ("chelsea", "coffee", "rocket", "astronaut", "immunohistochemistry")}


@pytest.fixture
def noise_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX cache for the whole run, so each checkpoint is exported once."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def make_settings(tiny_checkpoint: Path, onnx_cache: Path) -> MakeSettings:
    """Settings on the tiny checkpoint; keyword arguments override (torch backend unless asked)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model_path": tiny_checkpoint,
            "backend": "torch",
            "device": "cpu",
            "onnx_cache_dir": onnx_cache,
            "max_batch_delay_ms": 2,
            "decode_threads": 1,
            "grpc_port": 0,  # in-process apps share this process: no gRPC server unless a test asks for one
        }
        return Settings(**(values | overrides))

    return make
