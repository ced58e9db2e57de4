"""python -m training.evaluate: the same numbers as training's validation, a table row, a JSON line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from model import load_checkpoint
from tests.training.conftest import TrainedRun, run_command
from training.evaluate import main


def test_json_last_line_matches_the_training_metrics(trained_run: TrainedRun) -> None:
    command = [sys.executable, "-m", "training.evaluate", "--data-dir", str(trained_run.data_dir / "val")]
    command += ["--model", str(trained_run.checkpoint), "--json", "--workers", "1", "--device", "cpu"]
    proc = run_command(command, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    metrics = load_checkpoint(trained_run.checkpoint).metrics
    assert result["num_images"] == 15 and result["skipped"] == 1 and result["decode"] == "reduced"
    assert result["top1"] == pytest.approx(metrics["top1"], abs=1e-3)
    assert result["top5"] == pytest.approx(metrics["top5"], abs=1e-3)
    assert "| Model | Params(M) | Flops(G) | Top-1 (%) | Top-5 (%) | Config |" in lines
    assert result["row"] in lines and result["row"].startswith("| ResNet-50 | 23.518 | 0.08 |")
    assert "skipped 1 unreadable file(s)" in proc.stdout


def test_a_subset_of_classes_is_scored_against_the_full_head(
    trained_run: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = tmp_path / "val"
    for name in ("green", "red"):
        shutil.copytree(trained_run.data_dir / "val" / name, subset / name)
    args = ["--data-dir", str(subset), "--model", str(trained_run.checkpoint), "--json", "--workers", "0"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_images"] == 6 and 0 <= result["top1"] <= result["top5"] <= 100
    assert main([*args, "--exact-decode"]) == 0  # 40-pixel images: nothing to reduce, the same numbers
    exact = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exact["decode"] == "exact" and (exact["top1"], exact["loss"]) == (result["top1"], result["loss"])


def test_unknown_classes_and_bad_models_are_one_line_errors(
    trained_run: TrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "val" / "zebra").mkdir(parents=True)
    shutil.copy(next((trained_run.data_dir / "val" / "red").glob("*.jpg")), tmp_path / "val" / "zebra" / "z.jpg")
    assert main(["--data-dir", str(tmp_path / "val"), "--model", str(trained_run.checkpoint)]) == 2
    assert "class folders the model does not know: zebra" in capsys.readouterr().err
    assert main(["--data-dir", str(trained_run.data_dir / "val"), "--model", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "none.safetensors: no such file" in err and len(err.strip().splitlines()) == 1
