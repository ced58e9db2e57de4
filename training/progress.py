"""What people watch: a tqdm bar on a terminal, plain log lines in files and CI; rank 0 only."""

from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from training.console import log
from training.loop import EpochMeter
from training.recipes import TrainConfig


class Progress:
    """Per-step progress of one epoch; the loss is read from the device only when shown."""

    def __init__(self, *, enabled: bool, epoch: int, epochs: int, total: int, done: int, print_freq: int) -> None:
        self.enabled, self.epoch, self.epochs, self.total, self.print_freq = enabled, epoch, epochs, total, print_freq
        self.bar = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False)
        self.started = time.perf_counter()

    def update(self, step: int, meter: EpochMeter, lr: float) -> None:
        """Call after step number ``step`` (1-based) of the epoch."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        if step % self.print_freq and step != self.total:
            return
        loss = float(meter.last_loss) if meter.last_loss is not None else float("nan")
        rate = meter.timed_samples / max(time.perf_counter() - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}")
        else:
            log(
                f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.total} loss {loss:.4f} lr {lr:.4g} "
                f"{rate:.1f} img/s/rank data-wait {meter.data_wait:.1f}s"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_line(record: dict[str, float]) -> str:
    """The one line logged per finished epoch."""
    line = (
        f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val top-1 {record['val_top1']:.2f}% "
        f"top-5 {record['val_top5']:.2f}% ({record['val_images']} images)"
    )
    if "ema_top1" in record:
        line += f", EMA top-1 {record['ema_top1']:.2f}%"
    return line + f", {record['images_per_s']:.1f} img/s, data wait {record['data_wait_s']:.1f}s"


def describe_start(
    config: TrainConfig, num_classes: int, origin: str, device: torch.device, epoch: int, step: int
) -> str:
    """The lines that open a run's log: what is trained, on what, how, from where."""
    lines = [
        f"recipe {config.name}: {config.epochs} epochs, {config.world_size} process(es) x batch {config.batch_size}"
        f" = {config.global_batch}, lr {config.lr:.4g} ({config.base_lr:g} at batch {config.lr_ref_batch})",
        f"data {config.data_dir}: {num_classes} classes; train crop {config.train_crop}, "
        f"eval resize {config.val_resize} / crop {config.val_crop}; device {device}, amp {config.amp}",
        f"weights: {origin}",
    ]
    if epoch or step:
        lines.append(f"resuming at epoch {epoch + 1}, step {step}")
    return "\n".join(lines)
