"""On a CUDA device: mixed precision, channels-last, torch.compile and pinned-memory loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model import load_checkpoint
from training.train import main

pytestmark = pytest.mark.gpu


def cuda_run(data: Path, out: Path, *flags: str) -> list[dict[str, float]]:
    argv = ["--data-dir", str(data), "--output-dir", str(out), "--device", "cuda", "--image-size", "64"]
    argv += ["--batch-size", "8", "--workers", "2", "--print-freq", "100", *flags]
    main(argv)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_bf16_channels_last_learns(image_folder: Path, tmp_path: Path) -> None:
    records = cuda_run(image_folder, tmp_path, "--amp", "bf16", "--channels-last", "--epochs", "3")
    assert max(r["val_top1"] for r in records) >= 60.0 and records[-1]["val_images"] == 15
    ckpt = load_checkpoint(tmp_path / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in ckpt.model.state_dict().values() if t.is_floating_point())


def test_fp16_steps_through_the_grad_scaler(image_folder: Path, tmp_path: Path) -> None:
    records = cuda_run(image_folder, tmp_path, "--amp", "fp16", "--epochs", "2")
    assert all(r["train_loss"] == r["train_loss"] for r in records)  # finite, not NaN
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["scaler"]["scale"] > 0 and state["rng"]["cuda"]


def test_compiled_model_trains_and_exports_clean_names(image_folder: Path, tmp_path: Path) -> None:
    records = cuda_run(image_folder, tmp_path, "--amp", "bf16", "--channels-last", "--compile", "--epochs", "2")
    assert len(records) == 2
    ckpt = load_checkpoint(tmp_path / "model.safetensors")  # no _orig_mod. prefixes, or this would fail
    assert ckpt.labels and ckpt.source == "training"
