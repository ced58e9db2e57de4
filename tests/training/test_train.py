"""End to end: a real run on generated images learns, writes every output, resumes exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image

from model import EvalPreset, Preprocessing, load_checkpoint
from tests.training.conftest import (
    CLASSES,
    ROOT,
    TrainedRun,
    run_training,
    subprocess_env,
    train_command,
)
from training.data import read_rgb
from training.train import cli, main

TIMING_KEYS = {"images_per_s", "data_wait_s", "epoch_time_s"}


def read_metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without_timing(records: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def test_run_learns_and_writes_every_output(trained_run: TrainedRun) -> None:
    out = trained_run.output_dir
    for name in ("model.safetensors", "last.ckpt", "metrics.jsonl", "results.md", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert max(r["val_top1"] for r in records) >= 60.0  # chance is 20%
    for record in records:
        assert record["val_images"] == 15 and record["val_skipped"] == 1  # every readable val image, once
        assert record["train_skipped"] == 1  # the broken train file, passed over once per epoch
        assert record["images_per_s"] > 0 and record["data_wait_s"] >= 0
    with Image.open(out / "curves.png") as png:
        assert png.format == "PNG" and png.size[0] > 500
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == pytest.approx(0.1 * 8 / 256) and config["val_crop"] == 32 and config["val_resize"] == 37
    assert "skipping unreadable" not in trained_run.stdout  # warnings go to stderr, progress to stdout
    assert "epoch 3: train loss" in trained_run.stdout


def test_checkpoint_is_the_best_epoch_in_the_service_format(trained_run: TrainedRun) -> None:
    records = read_metrics(trained_run.output_dir)
    best = max(records, key=lambda r: r["val_top1"])
    ckpt = load_checkpoint(trained_run.checkpoint)
    assert ckpt.labels == CLASSES
    assert ckpt.preprocessing == Preprocessing(resize_size=37, crop_size=32)
    assert ckpt.source == "training" and ckpt.trained is True
    assert ckpt.metrics["top1"] == pytest.approx(best["val_top1"])
    assert ckpt.metrics["top5"] == pytest.approx(best["val_top5"])
    assert ckpt.metrics["epoch"] == best["epoch"] and ckpt.metrics["epochs"] == 3
    assert ckpt.metrics["dataset"] == trained_run.data_dir.name and ckpt.metrics["num_images"] == 15


def test_validation_matches_what_the_service_would_predict(trained_run: TrainedRun) -> None:
    """Run the exported model the service's way (PIL -> EvalPreset -> model) over val: same top-1."""
    ckpt = load_checkpoint(trained_run.checkpoint)
    preset = EvalPreset(ckpt.preprocessing)
    correct = total = 0
    for class_id, name in enumerate(CLASSES):
        for path in sorted((trained_run.data_dir / "val" / name).iterdir()):
            try:
                image = preset(read_rgb(str(path)))
            except OSError:
                continue
            with torch.inference_mode():
                correct += int(ckpt.model(image[None]).argmax() == class_id)
            total += 1
    assert total == 15
    assert 100 * correct / total == pytest.approx(ckpt.metrics["top1"])


def test_results_table_has_counted_params_and_flops(trained_run: TrainedRun) -> None:
    lines = (trained_run.output_dir / "results.md").read_text().splitlines()
    header = lines.index("| Model | Params(M) | Flops(G) | Top-1 (%) | Top-5 (%) | Config |")
    cells = [c.strip() for c in lines[header + 2].strip("|").split("|")]
    top1 = load_checkpoint(trained_run.checkpoint).metrics["top1"]
    assert cells[:2] == ["ResNet-50", "23.518"]
    assert cells[2] == "0.08"  # ResNet-50 MACs at a 32 px crop: 4.09 x (32/224)^2, counted
    assert float(cells[3]) == pytest.approx(top1, abs=0.005)
    assert cells[5] == "[resnet50_8xb32](config.json)"


def test_last_ckpt_loads_without_pickle(trained_run: TrainedRun) -> None:
    state = torch.load(trained_run.output_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["progress"]["epoch"] == 3 and state["progress"]["step"] == 0
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert {"model", "optimizer", "scheduler", "scaler", "ema"} <= set(state)


def test_sigterm_saves_state_and_resume_matches_uninterrupted(trained_run: TrainedRun, tmp_path: Path) -> None:
    """Stop the same run with SIGTERM once epoch 1 is done, resume it (with another worker count)."""
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        train_command(trained_run.data_dir, out, *trained_run.flags),
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "--resume auto" in stdout

    state = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["progress"]["epoch"] >= 1 and len(state["progress"]["history"]) == state["progress"]["epoch"]

    flags = [f for f in trained_run.flags if f not in ("--workers", "2")]
    run_training(trained_run.data_dir, out, *flags, "--workers", "0", "--resume", "auto")
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(trained_run.output_dir))
    resumed = safetensors.torch.load_file(out / "model.safetensors")
    reference = safetensors.torch.load_file(trained_run.checkpoint)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_refuses_to_overwrite_a_run(trained_run: TrainedRun, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--data-dir", str(trained_run.data_dir), "--output-dir", str(trained_run.output_dir), "--device", "cpu"]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume auto" in err
    assert len(err.strip().splitlines()) == 1


def test_v2_recipe_with_every_augmentation_and_ema(image_folder: Path, tmp_path: Path) -> None:
    """resnet50_v2's machinery: TrivialAugment, erasing, mixup/cutmix, EMA (reset in warmup), cosine."""
    out = tmp_path / "v2"
    argv = ["--data-dir", str(image_folder), "--output-dir", str(out), "--recipe", "resnet50_v2"]
    argv += ["--epochs", "2", "--warmup-epochs", "1", "--batch-size", "8", "--image-size", "32", "--ema-steps", "2"]
    argv += ["--workers", "0", "--device", "cpu", "--channels-last", "--print-freq", "100"]
    result = main(argv)
    records = read_metrics(out)
    assert {"ema_top1", "ema_top5", "ema_loss"} <= set(records[-1])
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.metrics["ema"] is True and ckpt.metrics["recipe"] == "resnet50_v2"
    assert ckpt.metrics["top1"] == pytest.approx(result.best_top1, abs=1e-4)
    # FixRes: trained at 176/224 of the eval crop, evaluated after resizing to 232/224 of it
    assert ckpt.preprocessing == Preprocessing(resize_size=33, crop_size=32)
    config = json.loads((out / "config.json").read_text())
    assert config["train_crop"] == 25 and config["lr"] == pytest.approx(0.5 * 8 / 1024)
    assert records[0]["lr"] == pytest.approx(config["lr"])  # warmup ends exactly at the end of epoch 1
