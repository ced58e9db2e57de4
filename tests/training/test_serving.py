"""A trained run's ``model.safetensors`` goes straight to the service: real server, real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from model import load_checkpoint
from tests.app.conftest import start_server
from tests.training.conftest import CLASSES, TrainedRun


def test_the_service_serves_a_trained_checkpoint_with_its_labels(trained_run: TrainedRun, tmp_path: Path) -> None:
    server = start_server(
        {"SERVE_MODEL_PATH": str(trained_run.checkpoint), "SERVE_BACKEND": "torch", "SERVE_DEVICE": "cpu"},
        tmp_path / "server.log",
    )
    try:
        info = httpx.get(f"{server.url}/model", timeout=10).json()
        assert (info["num_classes"], info["source"], info["trained"]) == (len(CLASSES), "training", True)
        assert info["preprocessing"]["crop_size"] == load_checkpoint(trained_run.checkpoint).preprocessing.crop_size
        images = sorted(p for p in (trained_run.data_dir / "val").glob("*/*") if p.suffix in (".jpg", ".png"))
        correct = 0
        for path in images:
            response = httpx.post(
                f"{server.url}/predict?top_k={len(CLASSES)}",
                content=path.read_bytes(),
                headers={"content-type": "image/png" if path.suffix == ".png" else "image/jpeg"},
                timeout=30,
            )
            if path.name == "truncated.png":  # the val split's unreadable file
                assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"
                continue
            assert response.status_code == 200, response.text
            predictions = response.json()["predictions"]
            assert sorted(p["label"] for p in predictions) == sorted(CLASSES)
            correct += predictions[0]["label"] == path.parent.name
        assert correct / (len(images) - 1) > 2 / len(CLASSES)  # clearly above chance (1/5)
    finally:
        server.terminate()
        assert server.process.wait(timeout=60) == 0
