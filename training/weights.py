"""Where a run's starting weights come from: ``--init scratch|imagenet|PATH``.

``imagenet`` needs torchvision's published ResNet-50 weights, which cannot be downloaded here;
they are looked for in ``--init-weights FILE`` (one of our checkpoints or torchvision's ``.pth``),
then in torchvision's own download cache, ``$TORCH_HOME/hub/checkpoints``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from model import Checkpoint, build_model, load_checkpoint
from model.convert import convert_torchvision
from model.network import replace_head

TORCHVISION_FILES = {"v2": "resnet50-11ad3fa6.pth", "v1": "resnet50-0676ba61.pth"}


def torchvision_cache() -> Path:
    """Where ``torchvision.models.resnet50(weights=...)`` keeps its downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_imagenet_weights(init_weights: str | None) -> Path:
    """The ImageNet weights file to start from, or a one-line error saying how to provide one."""
    if init_weights is not None:
        path = Path(init_weights)
        if not path.is_file():
            raise ValueError(f"--init-weights {init_weights}: no such file")
        return path
    for name in TORCHVISION_FILES.values():
        if (torchvision_cache() / name).is_file():
            return torchvision_cache() / name
    raise ValueError(
        "--init imagenet: no ImageNet weights found; pass --init-weights FILE with a checkpoint from "
        "`python -m model.fetch --out FILE` (online) or `python -m model.convert --from-torchvision "
        f"{TORCHVISION_FILES['v2']} --out FILE`, or put {TORCHVISION_FILES['v2']} in {torchvision_cache()}"
    )


def read_weights(path: Path) -> Checkpoint:
    """One of our ``.safetensors`` checkpoints, or a torchvision ``.pth`` converted on the fly."""
    if path.suffix == ".ckpt":
        raise ValueError(
            f"{path} is a training state: continue that run with --resume {path}, "
            "or fine-tune from its model.safetensors"
        )
    if path.suffix not in (".pth", ".pt"):
        return load_checkpoint(path)
    variant = "v1" if path.name == TORCHVISION_FILES["v1"] else "v2"
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / "converted.safetensors"
        try:
            convert_torchvision(path, converted, variant)
        except (OSError, RuntimeError) as exc:
            raise ValueError(
                f"{path}: not torchvision ResNet-50 weights ({' '.join(str(exc).split())[:200]})"
            ) from None
        return load_checkpoint(converted)


def zero_residual_branches(net: nn.Module) -> None:
    """Zero the last BatchNorm scale of every bottleneck, so each block starts as the identity.

    Goyal et al. (2017) and MMPretrain's ResNet do this: early steps from scratch are far more
    stable, which matters most for small batches.
    """
    for module in net.modules():
        if isinstance(module, Bottleneck):
            nn.init.zeros_(module.bn3.weight)


def initial_network(
    init: str, init_weights: str | None, labels: list[str], *, zero_init_residual: bool = False
) -> tuple[nn.Module, str]:
    """The network to train and a line saying where its weights came from.

    A checkpoint with a different class count gets a fresh head (fine-tuning); one with the same
    count keeps its head, in its own class order.
    """
    if init == "scratch":
        net = build_model(len(labels))
        if zero_init_residual:
            zero_residual_branches(net)
            return net, "random initialisation, residual branches zeroed"
        return net, "random initialisation"
    path = find_imagenet_weights(init_weights) if init == "imagenet" else Path(init)
    checkpoint = read_weights(path)
    net = checkpoint.model.train()
    if checkpoint.num_classes != len(labels):
        replace_head(net, len(labels))
        return net, f"{path} with a new {len(labels)}-class head (it had {checkpoint.num_classes})"
    note = "" if checkpoint.labels == labels else " (its labels differ from the folder names; head kept in order)"
    return net, f"{path}{note}"
