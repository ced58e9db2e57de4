"""Write checkpoints in this project's format from torchvision weights or a random init.

python -m model.convert --from-torchvision resnet50-11ad3fa6.pth --out weights/model.safetensors
python -m model.convert --random-init --out weights/random.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.models import ResNet50_Weights

from model.checkpoint import save_checkpoint
from model.labels import imagenet_labels
from model.network import build_model
from model.presets import Preprocessing

VARIANTS = {"v1": ResNet50_Weights.IMAGENET1K_V1, "v2": ResNet50_Weights.IMAGENET1K_V2}


def variant_preprocessing(variant: str) -> Preprocessing:
    """torchvision's published eval transform for a weights variant (v1: resize 256, v2: 232)."""
    transform = VARIANTS[variant].transforms()
    return Preprocessing(
        resize_size=transform.resize_size[0],
        crop_size=transform.crop_size[0],
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        interpolation=transform.interpolation.value,
    )


def convert_torchvision(pth: str | Path, out: str | Path, variant: str = "v2") -> str:
    """Convert a torchvision ResNet-50 ``.pth`` into a checkpoint; returns its version."""
    weights = VARIANTS[variant]
    # weights_only: the .pth is a pickle, so refuse anything but tensors.
    state_dict = torch.load(pth, map_location="cpu", weights_only=True)
    build_model(1000).load_state_dict(state_dict, strict=True)  # fail here, not in the service
    accuracy = weights.meta["_metrics"]["ImageNet-1K"]
    return save_checkpoint(
        out,
        state_dict,
        labels=imagenet_labels(),
        preprocessing=variant_preprocessing(variant),
        trained=True,
        source=f"torchvision:{weights.name}",
        metrics={"top1": accuracy["acc@1"], "top5": accuracy["acc@5"], "dataset": "ImageNet-1k"},
    )


def write_random_init(out: str | Path, num_classes: int = 1000, seed: int = 0) -> str:
    """An untrained model, for load tests; its answers are meaningless."""
    torch.manual_seed(seed)
    labels = imagenet_labels() if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]
    return save_checkpoint(
        out,
        build_model(num_classes).state_dict(),
        labels=labels,
        preprocessing=variant_preprocessing("v2"),
        trained=False,
        source="random-init",
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-torchvision", metavar="FILE.pth", help="torchvision ResNet-50 weights file")
    source.add_argument("--random-init", action="store_true", help="an untrained 1000-class model")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="v2", help="weights variant (default: v2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default: 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        if args.random_init:
            version = write_random_init(args.out, seed=args.seed)
        else:
            version = convert_torchvision(args.from_torchvision, args.out, args.variant)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (version {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
