"""Two real processes under torchrun (gloo on CPU): identical weights, every val image counted once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from model import load_checkpoint
from tests.training.conftest import FAST_FLAGS, ROOT, run_command
from training.evaluate import main as evaluate_main


@pytest.mark.slow
def test_two_process_ddp_run(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ddp"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(ROOT / "tests" / "training" / "ddp_worker.py"), str(out)]
    command += ["--data-dir", str(image_folder), "--output-dir", str(out), *FAST_FLAGS]
    command += ["--batch-size", "4", "--epochs", "2", "--workers", "1", "--seed", "3"]  # 2 x 4: 5 steps per epoch
    proc = run_command(command, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert (out / "rank0.sha256").read_text() == (out / "rank1.sha256").read_text()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        # 16 val files, one unreadable, on 2 ranks: 15 counted once each, nothing padded in
        assert record["val_images"] == 15 and record["val_skipped"] == 1
    assert proc.stdout.count("epoch 2: train loss") == 1  # only rank 0 reports
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch"] == 8
    assert config["lr"] == pytest.approx(0.1 * 8 / 256)

    # The exported weights, evaluated alone in one process, score exactly what the two ranks reported.
    model = str(out / "model.safetensors")
    assert evaluate_main(["--data-dir", str(image_folder / "val"), "--model", model, "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["top1"] == pytest.approx(load_checkpoint(out / "model.safetensors").metrics["top1"], abs=1e-3)
    assert result["num_images"] == 15
