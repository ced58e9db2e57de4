"""Optimizer, learning-rate schedule and weight EMA, built from a ``TrainConfig``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from training.recipes import TrainConfig

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def build_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; norm-layer parameters get their own weight decay when the recipe says so."""
    norm_params: list[nn.Parameter] = []
    other_params: list[nn.Parameter] = []
    for module in net.modules():
        target = norm_params if isinstance(module, _NORM_TYPES) else other_params
        target += [p for p in module.parameters(recurse=False) if p.requires_grad]
    norm_wd = config.weight_decay if config.norm_weight_decay is None else config.norm_weight_decay
    groups = [{"params": other_params, "weight_decay": config.weight_decay}]
    if norm_params:
        groups.append({"params": norm_params, "weight_decay": norm_wd})
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def lr_factor(step: int, *, steps_per_epoch: int, config: TrainConfig) -> float:
    """The lr multiplier after ``step`` optimizer steps: linear warmup, then step decay or cosine.

    The schedule is evaluated per step (not per epoch) so warmup ramps smoothly; step decay
    still changes only at epoch boundaries, exactly as the per-epoch ``StepLR`` of the recipes.
    """
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return config.warmup_factor + (1.0 - config.warmup_factor) * step / warmup_steps
    if config.lr_schedule == "step":
        return float(config.lr_gamma ** ((step // steps_per_epoch) // config.lr_step_epochs))
    total = config.epochs * steps_per_epoch - warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, config: TrainConfig) -> LambdaLR:
    """A per-step scheduler; its state is just the step count, so it resumes exactly."""

    def factor(step: int) -> float:
        return lr_factor(step, steps_per_epoch=steps_per_epoch, config=config)

    return LambdaLR(optimizer, factor)


def build_ema(net: nn.Module, config: TrainConfig) -> AveragedModel | None:
    """An exponential moving average of weights and buffers, updated every ``ema_steps`` steps.

    The decay is adjusted as torchvision's reference does so that the recipe's per-sample decay
    holds whatever the update interval, global batch and epoch count.
    """
    if not config.ema:
        return None
    adjust = config.global_batch * config.ema_steps / config.epochs
    alpha = min(1.0, (1.0 - config.ema_decay) * adjust)
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(1.0 - alpha), use_buffers=True)


def update_ema(ema: AveragedModel, net: nn.Module, *, step: int, epoch: int, config: TrainConfig) -> None:
    """Fold ``net`` into the EMA every ``ema_steps`` steps; during warmup the EMA just copies."""
    if step % config.ema_steps:
        return
    ema.update_parameters(net)
    if epoch < config.warmup_epochs:
        # Averaging the wild warmup weights would drag the EMA for thousands of steps; the
        # reference restarts it (n_averaged = 0 makes the next update a plain copy).
        ema.n_averaged.fill_(0)
