"""Measure a checkpoint's top-1/top-5 on a folder of labelled images, as the service would see them.

    python -m training.evaluate --data-dir D/val --model O/model.safetensors [--json]

The folder holds ``<class>/<images>``; its class names must be among the checkpoint's labels (a
subset is fine). Images are decoded as the service decodes them by default (large JPEGs at a reduced
DCT scale; ``--exact-decode`` for the full-size path, the service's ``SERVE_REDUCED_DECODE=false``)
and go through the checkpoint's own preprocessing (``EvalPreset``). With ``--json`` the last line
printed is one JSON object: ``top1``, ``top5`` (percent), ``num_images``, ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model import CheckpointError, EvalPreset, load_checkpoint
from training.data import DataError, EvalDataset, make_loader, scan_for_labels
from training.distributed import DistContext, resolve_device
from training.loop import AMP_DTYPES
from training.reporting import RESULTS_HEADER, results_row
from training.samplers import ShardSampler
from training.validation import evaluate


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m training.evaluate``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder of <class>/<images>, e.g. D/val")
    p.add_argument("--model", required=True, help="a .safetensors checkpoint (e.g. O/model.safetensors)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the results (default: off)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--workers", type=int, default=4, help="data-loading processes (default: 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="off", help="mixed precision (default: off)")
    p.add_argument(
        "--exact-decode",
        action="store_true",
        help="decode every image at full size, as SERVE_REDUCED_DECODE=false serves (default: off, reduced)",
    )
    return p


def run_evaluation(args: argparse.Namespace) -> dict[str, object]:
    """Evaluate ``args.model`` on ``args.data_dir``; the result includes the model-zoo table row."""
    checkpoint = load_checkpoint(args.model)
    split = scan_for_labels(Path(args.data_dir), checkpoint.labels)
    preset = EvalPreset(checkpoint.preprocessing)
    ctx = DistContext(device=resolve_device(args.device))
    loader = make_loader(
        EvalDataset(split, preset, reduced=not args.exact_decode),
        ShardSampler(len(split), rank=0, world_size=1),
        batch_size=args.batch_size,
        workers=args.workers,
        pin_memory=ctx.device.type == "cuda",
    )
    net = checkpoint.model.to(ctx.device)
    metrics = evaluate(net, loader, preset, ctx=ctx, amp_dtype=AMP_DTYPES[args.amp])
    row = results_row(
        model="ResNet-50",
        num_classes=checkpoint.num_classes,
        crop_size=checkpoint.preprocessing.crop_size,
        top1=metrics["top1"],
        top5=metrics["top5"],
        config=str(checkpoint.metrics.get("recipe", checkpoint.source)),
    )
    decode = "exact" if args.exact_decode else "reduced"
    return {**metrics, "model": str(args.model), "version": checkpoint.version, "decode": decode, "row": row}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        result = run_evaluation(args)
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['model']} (version {result['version']}) on {args.data_dir}: {result['num_images']} images")
    if result["skipped"]:
        print(f"skipped {result['skipped']} unreadable file(s)")
    print(f"top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}")
    print(RESULTS_HEADER)
    print(result["row"])
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
