"""The run's records for people: ``metrics.jsonl``, ``curves.png`` and the model-zoo ``results.md``.

Params and FLOPs are counted from the network itself, never typed in: parameters by summing
tensor sizes, multiply-accumulates by ``torch.utils.flop_counter`` at the eval crop (the
model-zoo "Flops(G)" is MACs, half of what the counter reports).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot's import
import matplotlib.pyplot as plt
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import atomic_write, build_model, write_text_atomic
from training.recipes import TrainConfig

RESULTS_HEADER = "| Model | Params(M) | Flops(G) | Top-1 (%) | Top-5 (%) | Config |\n|---|---|---|---|---|---|"


def count_params(num_classes: int) -> float:
    """Parameters of a ``num_classes``-way ResNet-50, in millions (1000 classes: 25.557)."""
    with torch.device("meta"):
        net = build_model(num_classes)
    return sum(p.numel() for p in net.parameters()) / 1e6


def count_gmacs(num_classes: int, crop_size: int) -> float:
    """Multiply-accumulates of one forward pass at ``crop_size``, in G (224: about 4.09)."""
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        net = build_model(num_classes).eval()
        image = torch.empty(1, 3, crop_size, crop_size)
    with FlopCounterMode(display=False) as counter:
        net(image)
    return counter.get_total_flops() / 2 / 1e9


def results_row(*, model: str, num_classes: int, crop_size: int, top1: float, top5: float, config: str) -> str:
    """One row of the model-zoo table, with params and FLOPs counted."""
    params, gmacs = count_params(num_classes), count_gmacs(num_classes, crop_size)
    return f"| {model} | {params:.3f} | {gmacs:.2f} | {top1:.2f} | {top5:.2f} | {config} |"


def write_results(path: Path, row: str, notes: Sequence[str]) -> None:
    """``results.md``: the table (header and one row) and a few lines on how it was measured."""
    text = "# Results\n\n" + RESULTS_HEADER + "\n" + row + "\n\n" + "".join(f"- {note}\n" for note in notes)
    write_text_atomic(path, text)


def write_reports(
    output_dir: Path, history: Sequence[dict[str, Any]], best: dict[str, Any], config: TrainConfig, num_classes: int
) -> None:
    """Rewrite ``metrics.jsonl``, ``curves.png`` and ``results.md`` from the run's history."""
    write_metrics(output_dir / "metrics.jsonl", history)
    plot_curves(output_dir / "curves.png", history)
    prefix = "ema" if config.ema else "val"
    row = results_row(
        model="ResNet-50",
        num_classes=num_classes,
        crop_size=config.val_crop,
        top1=best[f"{prefix}_top1"],
        top5=best[f"{prefix}_top5"],
        config=f"[{config.name}](config.json)",
    )
    notes = [
        f"Top-1/Top-5: best epoch {best['epoch']} of {config.epochs} on {Path(config.data_dir).name}/val "
        f"({best['val_images']} images), resize {config.val_resize} / centre crop {config.val_crop}"
        + (", EMA weights" if config.ema else ""),
        f"Params counted from the network; Flops(G) = multiply-accumulates at {config.val_crop} px "
        "(torch.utils.flop_counter total / 2)",
        "Weights: model.safetensors; curves: curves.png; per-epoch numbers: metrics.jsonl",
    ]
    write_results(output_dir / "results.md", row, notes)


def write_metrics(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON object per finished epoch (rewritten whole, so a resume never duplicates)."""
    write_text_atomic(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in history))


def plot_curves(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """``curves.png``: train/val loss and val top-1/top-5 per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        loss_ax.plot(epochs, [_finite(r.get(key)) for r in history], marker="o", label=label)
    for key, label in (("val_top1", "top-1"), ("val_top5", "top-5"), ("ema_top1", "EMA top-1")):
        if any(key in r for r in history):
            acc_ax.plot(epochs, [_finite(r.get(key)) for r in history], marker="o", label=label)
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="Validation accuracy", xlabel="epoch", ylabel="%", ylim=(0, 100))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else float("nan")
