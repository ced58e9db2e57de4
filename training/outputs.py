"""What a run leaves in its output folder, and the rule that it never overwrites another run.

model.safetensors (the best epoch, in the service's format), metrics.jsonl, curves.png,
results.md and config.json are for people and the service; last.ckpt is for --resume;
model.prev.safetensors is the best model before the latest one, kept for a rollback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model import (
    CHECKPOINT_FILENAME,
    PREVIOUS_CHECKPOINT_FILENAME,
    Preprocessing,
    keep_copy,
    leftover_temp_files,
    save_checkpoint,
)
from training.checkpointing import LAST, RunState, save_training_state, training_state
from training.distributed import DistContext, on_main
from training.loop import Engine
from training.recipes import TrainConfig
from training.reporting import write_reports


def check_output_dir(output_dir: Path, resume: str | None, ctx: DistContext) -> None:
    """Create the output folder; refuse to overwrite a run there unless resuming it."""

    def check() -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        if resume is None and (output_dir / LAST).exists():
            raise ValueError(
                f"{output_dir} already holds a run ({LAST}); add --resume auto to continue it "
                "or choose another --output-dir"
            )
        remove_unfinished_writes(output_dir)

    on_main(check, ctx)


def remove_unfinished_writes(output_dir: Path) -> None:
    """Delete the temporary files of checkpoint writes a killed run never finished (each up to a
    checkpoint's size; the finished files they would have replaced are intact)."""
    for name in (LAST, CHECKPOINT_FILENAME, PREVIOUS_CHECKPOINT_FILENAME):
        for partial in leftover_temp_files(output_dir / name):
            partial.unlink(missing_ok=True)


def save_epoch_outputs(
    engine: Engine,
    labels: list[str],
    preprocessing: Preprocessing,
    state: RunState,
    config: TrainConfig,
    improved: bool,
) -> None:
    """Rank 0, after each epoch: the model if it improved, the reports, then last.ckpt (which marks the epoch done)."""
    out = Path(config.output_dir)
    best = state.history[state.best_epoch - 1]
    if improved:
        weights = engine.net if engine.ema is None else engine.ema.module
        keep_previous_best(out)
        save_checkpoint(
            out / CHECKPOINT_FILENAME,
            weights.state_dict(),
            labels=labels,
            preprocessing=preprocessing,
            trained=True,
            source="training",
            metrics=export_metrics(best, state, config),
        )
    write_reports(out, state.history, best, config, len(labels))
    save_training_state(out / LAST, training_state(engine, state, config))


def keep_previous_best(output_dir: Path) -> None:
    """Before a new best model replaces ``model.safetensors``, keep the current one as ``model.prev.safetensors``.

    It is linked (or copied) to the new name rather than moved, and the new model is then renamed
    over ``model.safetensors``: a service watching that file never finds it missing or half-written,
    and a crash between the two steps leaves both names holding the same, complete model.
    """
    keep_copy(output_dir / CHECKPOINT_FILENAME, output_dir / PREVIOUS_CHECKPOINT_FILENAME)


def export_metrics(best: dict[str, Any], state: RunState, config: TrainConfig) -> dict[str, Any]:
    """What the exported checkpoint says about itself (the service shows it on ``GET /model``)."""
    prefix = "ema" if config.ema else "val"
    return {
        "top1": round(best[f"{prefix}_top1"], 4),
        "top5": round(best[f"{prefix}_top5"], 4),
        "epoch": state.best_epoch,
        "epochs": config.epochs,
        "dataset": Path(config.data_dir).resolve().name,
        "num_images": best["val_images"],
        "recipe": config.name,
        "ema": config.ema,
    }
