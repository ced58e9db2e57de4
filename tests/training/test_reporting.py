"""Model-zoo numbers are counted from the network, and the report files are written whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from training.reporting import RESULTS_HEADER, count_gmacs, count_params, plot_curves, results_row, write_metrics


@pytest.mark.parametrize(("num_classes", "params"), [(5, 23.518), (1000, 25.557)])
def test_params_are_counted(num_classes: int, params: float) -> None:
    assert round(count_params(num_classes), 3) == params


def test_flops_are_macs_at_the_eval_crop() -> None:
    assert round(count_gmacs(1000, 224), 2) == 4.09  # torchvision's published figure
    assert count_gmacs(1000, 112) == pytest.approx(count_gmacs(1000, 224) / 4, rel=0.1)  # ~quadratic


def test_results_row_matches_the_header() -> None:
    row = results_row(model="ResNet-50", num_classes=1000, crop_size=224, top1=80.858, top5=95.434, config="v2")
    assert row == "| ResNet-50 | 25.557 | 4.09 | 80.86 | 95.43 | v2 |"
    assert row.count("|") == RESULTS_HEADER.splitlines()[0].count("|")


def test_metrics_file_is_one_json_object_per_epoch(tmp_path: Path) -> None:
    history = [{"epoch": 1, "val_top1": 50.0}, {"epoch": 2, "val_top1": 75.0}]
    write_metrics(tmp_path / "metrics.jsonl", history)
    write_metrics(tmp_path / "metrics.jsonl", history)  # rewritten, never appended twice
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == history
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temp files left


def test_curves_are_a_png(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.5 / e, "val_top1": 30.0 * e, "val_top5": 40.0 * e}
        for e in (1, 2, 3)
    ]
    plot_curves(tmp_path / "curves.png", history)
    with Image.open(tmp_path / "curves.png") as png:
        assert png.format == "PNG" and png.size == (1100, 400)
