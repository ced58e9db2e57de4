"""Validation, shared by the trainer's epochs and ``python -m training.evaluate``: exact top-1/top-5 and loss.

The images arrive as uint8 crops made by the service's own decoding and preprocessing (see
``training.data.EvalDataset``) and are normalised on the device, so the accuracy a run reports is the
accuracy the service serves.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from model import EvalPreset
from training.data import Batch, DataError
from training.distributed import DistContext, all_reduce_sum
from training.loop import Engine, autocast, topk_correct


@torch.inference_mode()
def evaluate(
    net: nn.Module,
    loader: Iterable[Batch],
    preset: EvalPreset,
    *,
    ctx: DistContext,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Exact top-1/top-5 (percent) and loss over every readable image, summed over all ranks."""
    net.eval()
    totals = torch.zeros(5, dtype=torch.float64, device=ctx.device)  # top-1, top-5, loss, images, skipped
    for batch in loader:
        totals[4] += batch.skipped
        if len(batch.targets) == 0:
            continue
        images = preset.normalize(batch.images.to(ctx.device, non_blocking=True))
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = batch.targets.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, amp_dtype):
            logits = net(images).float()
        totals[:2] += topk_correct(logits, targets)
        totals[2] += F.cross_entropy(logits, targets, reduction="sum")
        totals[3] += len(targets)
    top1, top5, loss, images_seen, skipped = all_reduce_sum(totals, ctx).tolist()
    if images_seen == 0:
        raise DataError("no readable validation image")
    n = int(images_seen)
    return {"top1": 100 * top1 / n, "top5": 100 * top5 / n, "loss": loss / n, "num_images": n, "skipped": int(skipped)}


def validate(
    engine: Engine, loader: Iterable[Batch], preset: EvalPreset, *, ctx: DistContext, channels_last: bool = False
) -> dict[str, float]:
    """The epoch's validation numbers: the network's (val_*) and, when there is one, the EMA's (ema_*)."""

    def score(net: nn.Module) -> dict[str, float]:
        return evaluate(net, loader, preset, ctx=ctx, amp_dtype=engine.amp_dtype, channels_last=channels_last)

    val = score(engine.net)
    record = {"val_images": val["num_images"], "val_skipped": val["skipped"]} | _prefixed("val", val)
    if engine.ema is not None:
        record |= _prefixed("ema", score(engine.ema.module))
    return record


def _prefixed(prefix: str, result: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": result[key] for key in ("top1", "top5", "loss")}
