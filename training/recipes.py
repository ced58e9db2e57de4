"""Named training recipes and the resolved configuration of one run.

A recipe is a set of defaults; any command-line flag that is given overrides it. The learning
rate is stated at the recipe's reference batch and scales linearly with the global batch
(world size x per-GPU batch), the "linear scaling rule" of Goyal et al. that both torchvision's
and MMPretrain's numbers assume.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from model import write_text_atomic


@dataclass(frozen=True)
class Recipe:
    """Every setting a recipe fixes; flags of the same name override them."""

    name: str
    summary: str
    epochs: int
    batch_size: int  # per GPU
    lr: float  # at lr_ref_batch
    lr_ref_batch: int
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    norm_weight_decay: float | None = None  # None: the same as weight_decay
    lr_schedule: str = "step"  # "step" or "cosine"
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.01  # the first warmup step runs at lr x this
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    auto_augment: str | None = None
    random_erase: float = 0.0
    train_crop: int = 224
    val_resize: int = 256
    val_crop: int = 224
    ema_steps: int = 0  # 0: no EMA
    ema_decay: float = 0.99998
    init: str = "scratch"
    zero_init_residual: bool = True  # from scratch: start every residual block as the identity


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="resnet50_8xb32",
            summary="classic ImageNet recipe (torchvision 76.13%, MMPretrain 76.55%): SGD, step decay, 90 epochs",
            epochs=90,
            batch_size=32,
            lr=0.1,
            lr_ref_batch=256,
        ),
        Recipe(
            name="resnet50_v2",
            summary="torchvision's 80.86% recipe: 600 epochs, cosine, mixup/cutmix, TrivialAugment, EMA, FixRes",
            epochs=600,
            batch_size=128,
            lr=0.5,
            lr_ref_batch=1024,
            weight_decay=2e-5,
            norm_weight_decay=0.0,
            lr_schedule="cosine",
            warmup_epochs=5,
            label_smoothing=0.1,
            mixup_alpha=0.2,
            cutmix_alpha=1.0,
            auto_augment="ta_wide",
            random_erase=0.1,
            train_crop=176,
            val_resize=232,
            ema_steps=32,
            zero_init_residual=False,  # torchvision's reference keeps the default init
        ),
        Recipe(
            name="resnet50_1xb8_finetune",
            summary="fine-tune ImageNet weights on a small dataset, one GPU x 8 (MMPretrain's CUB schedule)",
            epochs=100,
            batch_size=8,
            lr=0.01,
            lr_ref_batch=64,
            nesterov=True,
            weight_decay=5e-4,
            lr_schedule="cosine",
            warmup_epochs=5,
            init="imagenet",
        ),
    )
}
DEFAULT_RECIPE = "resnet50_8xb32"
SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """A recipe after flags and the world size are applied: everything this run does."""

    data_dir: str = ""
    output_dir: str = ""
    world_size: int = 1
    base_lr: float = 0.0  # the lr at lr_ref_batch, before scaling
    init_weights: str | None = None
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    workers: int = 8
    seed: int = 0
    device: str = "auto"
    print_freq: int = 50

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    @property
    def ema(self) -> bool:
        return self.ema_steps > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, as saved beside the outputs."""
        return asdict(self) | {"global_batch": self.global_batch}


# Every recipe field but name/summary has a flag of the same name: --lr-step-epochs sets lr_step_epochs.
_FLAGS: dict[str, tuple[type, str]] = {
    "epochs": (int, "epochs to train"),
    "batch_size": (int, "images per GPU (process) per step"),
    "lr": (float, "learning rate at --lr-ref-batch, scaled by global batch / --lr-ref-batch"),
    "lr_ref_batch": (int, "global batch at which --lr holds"),
    "momentum": (float, "SGD momentum"),
    "nesterov": (bool, "Nesterov momentum"),
    "weight_decay": (float, "weight decay"),
    "norm_weight_decay": (float, "weight decay of norm layers (None: --weight-decay)"),
    "lr_schedule": (str, f"after warmup: {' or '.join(SCHEDULES)}"),
    "lr_step_epochs": (int, "step schedule: decay every this many epochs"),
    "lr_gamma": (float, "step schedule: decay factor"),
    "warmup_epochs": (float, "linear warmup length in epochs (0: none)"),
    "warmup_factor": (float, "lr multiplier at the start of warmup"),
    "label_smoothing": (float, "label smoothing of the loss"),
    "mixup_alpha": (float, "mixup alpha (0: off)"),
    "cutmix_alpha": (float, "cutmix alpha (0: off)"),
    "auto_augment": (str, "ta_wide, ra, augmix, imagenet or none"),
    "random_erase": (float, "random erasing probability"),
    "train_crop": (int, "train RandomResizedCrop size"),
    "val_resize": (int, "eval resize of the short side (stored in the checkpoint)"),
    "val_crop": (int, "eval centre crop (stored in the checkpoint)"),
    "ema_steps": (int, "update a weight EMA every this many steps (0: no EMA)"),
    "ema_decay": (float, "EMA decay, adjusted for the update interval and batch as torchvision does"),
    "init": (str, "starting weights: scratch, imagenet, or PATH to one of our .safetensors checkpoints"),
    "zero_init_residual": (bool, "from scratch: zero each residual block's last BN scale"),
}


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per recipe setting, defaulting to ``None`` ("take the recipe's"); help lists each recipe's value."""
    group = parser.add_argument_group("recipe settings (a flag given overrides the --recipe's value)")
    group.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE, help=f"(default: {DEFAULT_RECIPE})")
    for name, (kind, text) in _FLAGS.items():
        defaults = "; ".join(f"{recipe.name}: {getattr(recipe, name)}" for recipe in RECIPES.values())
        options: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if kind is bool else {"type": kind}
        group.add_argument("--" + name.replace("_", "-"), dest=name, help=f"{text} (default: {defaults})", **options)
    group.add_argument("--image-size", type=int, help="eval crop; train crop and eval resize keep the recipe's ratios")


def resolve_config(args: argparse.Namespace, world_size: int) -> TrainConfig:
    """Apply ``args`` (``None`` means "not given") over the recipe; scale the lr to the global batch."""
    recipe = RECIPES[args.recipe]
    overrides = {f.name: getattr(args, f.name) for f in fields(Recipe) if getattr(args, f.name, None) is not None}
    overrides.update(_image_sizes(recipe, args))
    if overrides.get("auto_augment") == "none":
        overrides["auto_augment"] = None
    recipe = replace(recipe, **overrides)
    run_fields = {f.name for f in fields(TrainConfig)} - {f.name for f in fields(Recipe)}
    settings = {name: getattr(args, name) for name in run_fields if hasattr(args, name)}
    settings["world_size"] = world_size
    if settings.get("workers") is None:
        settings["workers"] = default_workers()
    config = TrainConfig(**asdict(recipe) | settings)
    config = replace(config, base_lr=recipe.lr, lr=recipe.lr * config.global_batch / recipe.lr_ref_batch)
    check_config(config)
    return config


def default_workers() -> int:
    """Loader processes per training process: this node's CPU cores shared among its processes, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1))


def _image_sizes(recipe: Recipe, args: argparse.Namespace) -> dict[str, int]:
    """``--image-size N`` sets the eval crop and keeps the recipe's train/eval size ratios."""
    sizes = {}
    if args.image_size is not None:
        scale = args.image_size / recipe.val_crop
        sizes = {
            "val_crop": args.image_size,
            "val_resize": round(recipe.val_resize * scale),
            "train_crop": round(recipe.train_crop * scale),
        }
    for name in ("train_crop", "val_resize", "val_crop"):
        if getattr(args, name, None) is not None:
            sizes[name] = getattr(args, name)
    return sizes


def check_config(config: TrainConfig) -> None:
    """Refuse settings that cannot run, with a message naming the flag."""
    problems = []
    if config.epochs < 1:
        problems.append(f"--epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {config.batch_size}")
    if config.lr <= 0:
        problems.append(f"--lr must be positive, got {config.lr}")
    if config.lr_schedule not in SCHEDULES:
        problems.append(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {config.lr_schedule!r}")
    if not 0 < config.val_crop <= config.val_resize:
        problems.append(f"need 0 < --val-crop ({config.val_crop}) <= --val-resize ({config.val_resize})")
    if config.train_crop < 1:
        problems.append(f"--train-crop must be at least 1, got {config.train_crop}")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs > 0:
        problems.append(f"--warmup-epochs ({config.warmup_epochs}) must be less than --epochs ({config.epochs})")
    if config.init_weights is not None and config.init != "imagenet":
        problems.append(f"--init-weights is only read with --init imagenet (this run's --init is {config.init})")
    if problems:
        raise ValueError("; ".join(problems))


def save_config(config: TrainConfig, output_dir: Path) -> Path:
    """Write the resolved configuration beside the outputs (``config.json``)."""
    path = output_dir / "config.json"
    write_text_atomic(path, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    """Settings that differ from a saved run's, ignoring those that cannot change the result."""
    ignore = {"workers", "print_freq", "device", "output_dir", "data_dir", "init_weights", "compile"}
    current = new.to_dict()
    return sorted(key for key in current if key not in ignore and key in old and old[key] != current[key])
