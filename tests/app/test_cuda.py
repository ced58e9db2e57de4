"""The torch backend on CUDA: fp16 by default, GPU memory metrics, answers close to the CPU's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.conftest import MakeClient
from tests.conftest import encode, photo

pytestmark = [pytest.mark.anyio, pytest.mark.gpu]
PHOTOS = ("chelsea", "coffee", "astronaut")


async def serve_photos(
    make_client: MakeClient, checkpoint: Path, **settings: str
) -> tuple[dict[str, Any], list[float]]:
    """The /model metadata (plus the GPU memory gauges) and every class score for each photo."""
    async with make_client(model_path=checkpoint, **settings) as (client, _):
        scores = []
        for name in PHOTOS:
            data = encode(photo(name), "JPEG", quality=90)
            response = await client.post("/predict?top_k=10", content=data, headers={"content-type": "image/jpeg"})
            assert response.status_code == 200, response.text
            by_class = {p["class_id"]: p["score"] for p in response.json()["predictions"]}
            scores += [by_class[i] for i in range(10)]
        info = (await client.get("/model")).json()
        families = {f.name: f for f in text_string_to_metric_families((await client.get("/metrics")).text)}
    gauge = families.get("inference_gpu_memory_bytes")
    info["gpu_memory"] = {s.labels["state"]: s.value for s in gauge.samples} if gauge else {}
    return info, scores


async def test_cuda_serves_fp16_close_to_the_cpu(make_client: MakeClient, calibrated_checkpoint: Path) -> None:
    info, on_gpu = await serve_photos(make_client, calibrated_checkpoint, device="auto", backend="auto")
    assert (info["device"], info["precision"], info["backend"]) == ("cuda:0", "fp16", "torch")
    memory = info["gpu_memory"]
    assert memory["allocated"] > 0 and memory["reserved"] >= memory["allocated"]
    cpu_info, on_cpu = await serve_photos(make_client, calibrated_checkpoint, device="cpu", backend="torch")
    assert cpu_info["gpu_memory"] == {}
    # fp16 keeps ~3 significant digits through 50 layers: an fp16 forward of this model on the CPU,
    # checked by hand, landed at the old 1e-2 bound (docs/benchmarks.md).
    assert max(abs(g - c) for g, c in zip(on_gpu, on_cpu, strict=True)) < 3e-2  # fp16 against fp32


async def test_gpu_decoding_stays_close_to_pillow(make_client: MakeClient, calibrated_checkpoint: Path) -> None:
    # fp32 on both sides, so only the decoding differs: nvJPEG's IDCT and chroma upsampling and the
    # tensor resize land a few levels per pixel away from libjpeg and Pillow.
    _, nvjpeg = await serve_photos(make_client, calibrated_checkpoint, device="cuda", precision="fp32", decode="gpu")
    _, pillow = await serve_photos(make_client, calibrated_checkpoint, device="cuda", precision="fp32", decode="cpu")
    difference = max(abs(g - c) for g, c in zip(nvjpeg, pillow, strict=True))
    assert difference < 0.05, f"largest score difference {difference:.4f}"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
async def test_cuda_runs_bf16_and_fp32(make_client: MakeClient, calibrated_checkpoint: Path, precision: str) -> None:
    info, scores = await serve_photos(make_client, calibrated_checkpoint, device="cuda", precision=precision)
    assert (info["device"], info["precision"]) == ("cuda:0", precision)
    assert abs(sum(scores) - len(PHOTOS)) < 1e-2
