"""Recipes, flag overrides, lr scaling, and the optimizer/schedule/EMA they build."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from model import build_model
from training.optim import build_ema, build_optimizer, lr_factor
from training.recipes import RECIPES, TrainConfig, config_differences, resolve_config, save_config
from training.train import get_args_parser


def config_for(*flags: str, world_size: int = 1) -> TrainConfig:
    args = get_args_parser().parse_args(["--data-dir", "D", "--output-dir", "O", *flags])
    return resolve_config(args, world_size)


@pytest.mark.parametrize(
    ("recipe", "world_size", "lr"),
    [
        ("resnet50_8xb32", 8, 0.1),  # 8 x 32 = 256: the reference batch
        ("resnet50_8xb32", 1, 0.1 * 32 / 256),
        ("resnet50_v2", 8, 0.5),  # 8 x 128 = 1024
        ("resnet50_v2", 2, 0.5 * 256 / 1024),
        ("resnet50_1xb8_finetune", 1, 0.01 * 8 / 64),
    ],
)
def test_lr_scales_linearly_with_the_global_batch(recipe: str, world_size: int, lr: float) -> None:
    config = config_for("--recipe", recipe, world_size=world_size)
    assert config.lr == pytest.approx(lr)
    assert config.base_lr == RECIPES[recipe].lr


def test_recipes_hold_the_published_settings() -> None:
    classic = config_for("--recipe", "resnet50_8xb32")
    assert (classic.epochs, classic.lr_schedule, classic.lr_step_epochs, classic.weight_decay) == (90, "step", 30, 1e-4)
    v2 = config_for("--recipe", "resnet50_v2")
    assert (v2.epochs, v2.lr_schedule, v2.warmup_epochs, v2.weight_decay, v2.norm_weight_decay) == (
        600,
        "cosine",
        5,
        2e-5,
        0.0,
    )
    assert (v2.label_smoothing, v2.mixup_alpha, v2.cutmix_alpha, v2.auto_augment, v2.random_erase) == (
        0.1,
        0.2,
        1.0,
        "ta_wide",
        0.1,
    )
    assert (v2.ema_steps, v2.ema_decay, v2.train_crop, v2.val_resize, v2.val_crop) == (32, 0.99998, 176, 232, 224)
    finetune = config_for("--recipe", "resnet50_1xb8_finetune")
    assert (finetune.init, finetune.batch_size, finetune.global_batch) == ("imagenet", 8, 8)


def test_flags_override_the_recipe_and_image_size_keeps_its_ratios() -> None:
    config = config_for("--recipe", "resnet50_v2", "--epochs", "30", "--no-nesterov", "--auto-augment", "none")
    assert config.epochs == 30 and config.nesterov is False and config.auto_augment is None
    assert config.mixup_alpha == 0.2  # untouched
    sized = config_for("--recipe", "resnet50_v2", "--image-size", "112")
    assert (sized.train_crop, sized.val_resize, sized.val_crop) == (88, 116, 112)
    explicit = config_for("--image-size", "112", "--val-resize", "128")
    assert (explicit.train_crop, explicit.val_resize, explicit.val_crop) == (112, 128, 112)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--lr-schedule", "linear"], "--lr-schedule must be one of step, cosine"),
        (["--val-crop", "300"], r"need 0 < --val-crop \(300\) <= --val-resize \(256\)"),
        (["--recipe", "resnet50_v2", "--epochs", "5"], r"--warmup-epochs \(5\) must be less than --epochs \(5\)"),
        (["--init-weights", "w.safetensors"], "--init-weights is only read with --init imagenet"),
    ],
)
def test_impossible_settings_name_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config_for(*flags)


def test_resolved_config_is_saved_and_compared(tmp_path: Path) -> None:
    config = config_for("--epochs", "7")
    saved = json.loads(save_config(config, tmp_path).read_text())
    assert saved["epochs"] == 7 and saved["lr"] == config.lr and saved["global_batch"] == 32
    assert config_differences(saved, config) == []
    assert config_differences(saved, config_for("--epochs", "8", "--workers", "3")) == ["epochs"]


def test_step_schedule_decays_tenfold_every_30_epochs() -> None:
    config = config_for()
    factors = [lr_factor(epoch * 10, steps_per_epoch=10, config=config) for epoch in (0, 29, 30, 59, 60, 89)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_schedule_warms_up_linearly_then_anneals_to_zero() -> None:
    config = config_for("--recipe", "resnet50_v2", "--epochs", "10", "--warmup-epochs", "2")
    steps = 100
    assert lr_factor(0, steps_per_epoch=steps, config=config) == pytest.approx(0.01)
    assert lr_factor(100, steps_per_epoch=steps, config=config) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(200, steps_per_epoch=steps, config=config) == pytest.approx(1.0)
    assert lr_factor(600, steps_per_epoch=steps, config=config) == pytest.approx(0.5)
    assert lr_factor(1000, steps_per_epoch=steps, config=config) == pytest.approx(0.0, abs=1e-12)


def test_norm_layers_get_their_own_weight_decay() -> None:
    net = build_model(5)
    groups = build_optimizer(net, config_for("--recipe", "resnet50_v2")).param_groups
    norm = [g for g in groups if g["weight_decay"] == 0.0]
    assert len(norm) == 1 and len(norm[0]["params"]) == 2 * 53  # 53 BatchNorms, weight and bias each
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    classic = build_optimizer(net, config_for()).param_groups
    assert {g["weight_decay"] for g in classic} == {1e-4}


def test_ema_decay_is_adjusted_like_torchvision() -> None:
    config = config_for("--recipe", "resnet50_v2", world_size=8)
    ema = build_ema(torch.nn.Linear(2, 2), config)
    assert ema is not None
    alpha = (1 - 0.99998) * 1024 * 32 / 600
    source = torch.nn.Linear(2, 2)
    ema.update_parameters(source)  # first update copies
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    ema.update_parameters(source)
    assert torch.allclose(ema.module.weight, before + alpha * 1.0)
    assert build_ema(torch.nn.Linear(2, 2), config_for()) is None
    assert math.isclose(alpha, 0.0010922666, rel_tol=1e-6)
