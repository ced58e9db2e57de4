"""The service's answers against torchvision's reference pipeline, and ONNX Runtime against torch."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from app.engine.backends.onnx_backend import OnnxBackend
from app.engine.backends.onnx_export import GRAPH_REVISION, cache_candidates, first_writable_dir
from app.engine.backends.torch_backend import TorchBackend
from model import Checkpoint, EvalPreset, load_checkpoint
from tests.app.conftest import MakeClient
from tests.conftest import encode, photo

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry")


def reference_probabilities(ckpt: Checkpoint, data: bytes) -> torch.Tensor:
    """torchvision's classic eval transform on the PIL image, then the fp32 model and a softmax."""
    p = ckpt.preprocessing
    transform = T.Compose(
        [
            T.Resize(p.resize_size, interpolation=T.InterpolationMode(p.interpolation), antialias=True),
            T.CenterCrop(p.crop_size),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )
    image = Image.open(io.BytesIO(data)).convert("RGB")
    with torch.no_grad():
        return torch.softmax(ckpt.model(transform(image).unsqueeze(0)), dim=1)[0]


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
async def test_answers_match_torchvisions_reference_pipeline(
    make_client: MakeClient, calibrated_checkpoint: Path, backend: str
) -> None:
    """With SERVE_REDUCED_DECODE=false the service is torchvision's reference pipeline."""
    reference = load_checkpoint(calibrated_checkpoint)
    settings = {"model_path": calibrated_checkpoint, "backend": backend, "reduced_decode": False}
    async with make_client(**settings) as (client, _):
        for name, data in parity_uploads().items():
            served = await served_probabilities(client, data)
            expected = reference_probabilities(reference, data)
            assert torch.allclose(served, expected, atol=1e-4, rtol=0), name
            assert served.max() < 0.9, "a saturated softmax would make this comparison meaningless"


def parity_uploads() -> dict[str, bytes]:
    uploads = {name: encode(photo(name), "JPEG", quality=90) for name in PHOTOS}
    uploads["coffee.png"] = encode(photo("coffee"), "PNG")
    return uploads


async def served_probabilities(client: httpx.AsyncClient, data: bytes) -> torch.Tensor:
    response = await client.post("/predict?top_k=10", content=data, headers={"content-type": "image/jpeg"})
    served = torch.zeros(10)
    for p in response.json()["predictions"]:
        served[p["class_id"]] = p["score"]
    return served


def photo_batch(preset: EvalPreset) -> torch.Tensor:
    return torch.stack([preset.to_uint8(photo(name)) for name in PHOTOS])


def test_onnxruntime_agrees_with_torch_on_real_photographs(calibrated_checkpoint: Path, onnx_cache: Path) -> None:
    reference = load_checkpoint(calibrated_checkpoint)
    preset = EvalPreset(reference.preprocessing)
    torch_backend = TorchBackend(reference.model, preset, device="cpu", precision="fp32", threads=0)
    onnx_backend = OnnxBackend(load_checkpoint(calibrated_checkpoint), preset, threads=0, cache_dir=onnx_cache)
    batch = photo_batch(preset)
    expected, served = torch_backend.infer(batch), onnx_backend.infer(batch)
    assert served.dtype == torch.float32 and served.shape == (len(PHOTOS), 10)
    assert torch.equal(served.topk(5).indices, expected.topk(5).indices)
    assert (served - expected).abs().max() < 1e-4
    single = onnx_backend.infer(batch[:1])  # the batch axis is dynamic
    assert (single - served[:1]).abs().max() < 1e-5


def test_the_export_is_cached_by_version_and_reused(
    calibrated_checkpoint: Path, onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = load_checkpoint(calibrated_checkpoint)
    preset = EvalPreset(checkpoint.preprocessing)
    first = OnnxBackend(checkpoint, preset, threads=1, cache_dir=onnx_cache)
    assert first.graph_path.parent == onnx_cache and checkpoint.version in first.graph_path.name
    stamp = first.graph_path.stat().st_mtime_ns

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds this version")

    monkeypatch.setattr("app.engine.backends.onnx_export.export_graph", no_export)
    again = OnnxBackend(checkpoint, preset, threads=1, cache_dir=onnx_cache)
    assert again.graph_path == first.graph_path and again.graph_path.stat().st_mtime_ns == stamp
    assert not [p for p in onnx_cache.iterdir() if p.suffix == ".tmp"]  # atomic writes leave no temp files


def test_a_damaged_cache_entry_is_exported_again(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    preset = EvalPreset(checkpoint.preprocessing)
    name = f"resnet50-{checkpoint.version}-r{GRAPH_REVISION}.onnx"
    (tmp_path / name).write_bytes(b"half a graph")
    backend = OnnxBackend(checkpoint, preset, threads=1, cache_dir=tmp_path)
    assert backend.infer(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 3)
    assert (tmp_path / name).stat().st_size > 1_000_000


def test_an_unwritable_cache_dir_falls_back(tiny_checkpoint: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    candidates = cache_candidates(tiny_checkpoint, blocked / "cache")
    assert candidates[0] == blocked / "cache"
    assert candidates[1] == tiny_checkpoint.resolve().parent / ".onnx-cache"
    assert first_writable_dir(candidates) == candidates[1]
    assert os.access(candidates[1], os.W_OK)
