"""The machinery of one optimizer step and of an epoch's bookkeeping.

Nothing here reads a value back from the device inside the step: loss sums stay on the device
and are read once per progress line, so the host can queue the next step while this one runs.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel

from training.distributed import DistContext, all_reduce_sum, broadcast_buffers
from training.optim import build_ema, build_optimizer, build_scheduler
from training.recipes import TrainConfig

AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for forward passes, or nothing when ``dtype`` is None (``--amp off``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Engine:
    """Everything with state that a step touches and ``last.ckpt`` keeps."""

    net: nn.Module  # the bare network: saved, exported, evaluated
    model: nn.Module  # what the training forward runs: ``net`` wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    criterion: nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def step(self, images: Tensor, targets: Tensor) -> Tensor:
        """One optimizer step; returns the detached loss (still on the device)."""
        if self.channels_last:  # here, not at the copy: mixup/cutmix return contiguous NCHW tensors
            images = images.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            loss: Tensor = self.criterion(self.model(images), targets)
        self.scaler.scale(loss).backward()  # the scaler is a no-op unless --amp fp16
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def sync_buffers(self, ctx: DistContext) -> None:
        """Rank 0's BatchNorm statistics everywhere (net and EMA), so every rank validates what rank 0 exports."""
        broadcast_buffers(self.net, ctx)
        if self.ema is not None:
            broadcast_buffers(self.ema.module, ctx)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])


def build_engine(net: nn.Module, config: TrainConfig, steps_per_epoch: int, ctx: DistContext) -> Engine:
    """Place ``net`` on the device and assemble its optimizer, schedule, scaler, EMA and wrappers."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    net = net.to(ctx.device).to(memory_format=memory_format).train()
    optimizer = build_optimizer(net, config)
    model: nn.Module = net
    if ctx.distributed:
        model = DistributedDataParallel(net, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
    if config.compile:
        # Compiling the DDP wrapper (not the bare net) lets Dynamo split graphs at bucket
        # boundaries so gradient all-reduce still overlaps the backward pass.
        model = torch.compile(model)  # type: ignore[assignment]
    return Engine(
        net=net,
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, steps_per_epoch, config),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16"),
        ema=build_ema(net, config),
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        device=ctx.device,
        amp_dtype=AMP_DTYPES[config.amp],
        channels_last=config.channels_last,
    )


class EpochMeter:
    """Loss, throughput and data-loading wait over one epoch (possibly resumed part-way)."""

    def __init__(self, device: torch.device, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.loss_sum = torch.tensor(saved.get("loss_sum", 0.0), dtype=torch.float64, device=device)
        self.samples = int(saved.get("samples", 0))
        self.skipped = int(saved.get("skipped", 0))
        self.last_loss: Tensor | None = None
        self.data_wait = 0.0
        self.timed_samples = 0
        self.started = time.perf_counter()

    def add(self, loss: Tensor, batch_size: int, skipped: int, data_wait: float) -> None:
        self.loss_sum += loss.double() * batch_size
        self.last_loss = loss
        self.samples += batch_size
        self.timed_samples += batch_size
        self.skipped += skipped
        self.data_wait += data_wait

    def reduced(self, ctx: DistContext) -> dict[str, Any]:
        """Sums over all ranks (a collective: every rank must call it); plain values, for ``last.ckpt``."""
        count = self.loss_sum.new_tensor
        totals = torch.stack([self.loss_sum, count(float(self.samples)), count(float(self.skipped))])
        loss_sum, samples, skipped = all_reduce_sum(totals, ctx).tolist()
        return {"loss_sum": loss_sum, "samples": int(samples), "skipped": int(skipped)}

    def summary(self, ctx: DistContext) -> dict[str, float]:
        """The epoch's line in ``metrics.jsonl``: mean loss, images/s over all ranks, data wait."""
        totals = self.reduced(ctx)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "train_loss": totals["loss_sum"] / max(totals["samples"], 1),
            "train_skipped": totals["skipped"],
            "images_per_s": self.timed_samples * ctx.world_size / elapsed,
            "data_wait_s": self.data_wait,
            "epoch_time_s": elapsed,
        }


def topk_correct(logits: Tensor, targets: Tensor, ks: tuple[int, ...] = (1, 5)) -> Tensor:
    """How many rows have their target among the top-k logits, for each k (k capped at the class count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == targets[:, None]
    return torch.stack([hits[:, :k].any(dim=1).sum() for k in ks])
