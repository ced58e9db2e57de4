"""Train or fine-tune ResNet-50 on an image folder; the best epoch is exported for the service.

Data: D/train/<class>/* and D/val/<class>/* (ImageNet's layout; class names are the
folder names). Outputs in O: model.safetensors (best val top-1, served as is),
last.ckpt (resume state), metrics.jsonl, results.md, curves.png, config.json.

One GPU (or the CPU):
    python -m training.train --data-dir D --output-dir O --recipe resnet50_8xb32 --amp bf16 --channels-last

Eight GPUs on one machine (--batch-size is per GPU; the lr scales with the global batch):
    torchrun --nproc_per_node=8 -m training.train --data-dir D --output-dir O --recipe resnet50_v2 \\
        --amp bf16 --channels-last --compile

Two machines with eight GPUs each (the same command on both; HOST is the first machine's address):
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 --rdzv-id=r50 \\
        -m training.train --data-dir D --output-dir O --recipe resnet50_v2 --amp bf16 --channels-last

Fine-tune ImageNet weights (from `python -m model.fetch --out imagenet.safetensors`) on a small dataset:
    python -m training.train --data-dir D --output-dir O --recipe resnet50_1xb8_finetune \\
        --init-weights imagenet.safetensors

Resume after an interruption, a crash or a preemption: the same command plus --resume auto.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from torch import nn

from model import CheckpointError, EvalPreset, Preprocessing, TrainPreset
from training import checkpointing as ckpt
from training.console import log
from training.data import Batch, DataError, EvalDataset, TrainDataset, make_loader, scan_dataset
from training.distributed import DistContext, any_rank, setup_distributed, teardown_distributed
from training.interrupt import Interrupted, StopRequest
from training.loop import AMP_DTYPES, Engine, EpochMeter, build_engine
from training.optim import update_ema
from training.outputs import check_output_dir, save_epoch_outputs
from training.progress import Progress, describe_start, epoch_line
from training.recipes import TrainConfig, add_recipe_arguments, resolve_config, save_config
from training.samplers import BatchMixer, ShardSampler, TrainSampler
from training.validation import validate
from training.weights import initial_network


def get_args_parser() -> argparse.ArgumentParser:
    """The command line; flags left out take the recipe's value."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with train/<class>/* and val/<class>/*")
    p.add_argument("--output-dir", required=True, help="where model.safetensors, last.ckpt and reports go")
    add_recipe_arguments(p)
    p.add_argument("--init-weights", help="ImageNet weights for --init imagenet (default: torchvision's cache)")
    p.add_argument("--amp", choices=sorted(AMP_DTYPES), default="off", help="mixed precision (default: off)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (default: off)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: off)")
    p.add_argument(
        "--workers", type=int, help="loader processes per GPU (default: CPU cores / GPUs per node - 1, at most 8)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and augmentation (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue from last.ckpt (auto: OUTPUT_DIR's, if any)")
    p.add_argument("--print-freq", type=int, default=50, help="steps between progress lines (default: 50)")
    return p


@dataclass(frozen=True)
class Data:
    """The two splits, ready to iterate, and what the checkpoint needs to know about them."""

    classes: list[str]
    preprocessing: Preprocessing
    train_sampler: TrainSampler
    train_loader: Iterable[Batch]
    val_loader: Iterable[Batch]


def load_data(config: TrainConfig, ctx: DistContext) -> Data:
    """Scan the folders, build train augmentation and the service's eval preprocessing, and the loaders."""
    train_split, val_split = scan_dataset(Path(config.data_dir))
    preprocessing = Preprocessing(resize_size=config.val_resize, crop_size=config.val_crop)
    augment = TrainPreset(
        crop_size=config.train_crop, auto_augment=config.auto_augment or None, random_erase=config.random_erase
    )
    sampler = TrainSampler(
        len(train_split), batch_size=config.batch_size, rank=ctx.rank, world_size=ctx.world_size, seed=config.seed
    )
    loader = partial(
        make_loader, batch_size=config.batch_size, workers=config.workers, pin_memory=ctx.device.type == "cuda"
    )
    return Data(
        classes=train_split.classes,
        preprocessing=preprocessing,
        train_sampler=sampler,
        train_loader=loader(TrainDataset(train_split, augment), sampler),
        # uint8 crops, decoded as the service decodes by default, travel to the device (4x less to
        # copy than floats); normalisation happens there
        val_loader=loader(
            EvalDataset(val_split, EvalPreset(preprocessing)),
            ShardSampler(len(val_split), rank=ctx.rank, world_size=ctx.world_size),
        ),
    )


def train_one_epoch(
    engine: Engine,
    data: Data,
    mixer: BatchMixer,
    meter: EpochMeter,
    *,
    epoch: int,
    start_step: int,
    stop: StopRequest,
    config: TrainConfig,
    ctx: DistContext,
) -> int | None:
    """Train one epoch from start_step; returns the step it stopped at if a stop was requested."""
    engine.net.train()
    data.train_sampler.set_epoch(epoch, start_step)
    steps = data.train_sampler.steps_per_epoch
    progress = Progress(
        enabled=ctx.is_main,
        epoch=epoch,
        epochs=config.epochs,
        total=steps,
        done=start_step,
        print_freq=config.print_freq,
    )
    fetched = time.perf_counter()
    for step, batch in enumerate(data.train_loader, start=start_step + 1):
        wait = time.perf_counter() - fetched
        targets = batch.targets.to(ctx.device, non_blocking=True)
        images, targets = mixer(batch.images.to(ctx.device, non_blocking=True), targets, epoch, step)
        loss = engine.step(images, targets)
        if engine.ema is not None:
            update_ema(engine.ema, engine.net, step=step - 1, epoch=epoch, config=config)
        meter.add(loss, len(batch.targets), batch.skipped, wait)
        progress.update(step, meter, engine.lr)
        if any_rank(stop.requested, ctx):
            progress.close()
            return step
        fetched = time.perf_counter()
    progress.close()
    return None


def finish_epoch(
    epoch: int,
    engine: Engine,
    data: Data,
    meter: EpochMeter,
    state: ckpt.RunState,
    config: TrainConfig,
    ctx: DistContext,
) -> None:
    """Validate, record the epoch, export the model if it is the best so far, save last.ckpt."""
    record = {"epoch": epoch + 1, "lr": engine.lr, **meter.summary(ctx)}
    if not math.isfinite(record["train_loss"]):
        raise FloatingPointError(f"the training loss is {record['train_loss']} in epoch {epoch + 1}; lower --lr")
    engine.sync_buffers(ctx)
    record |= validate(
        engine, data.val_loader, EvalPreset(data.preprocessing), ctx=ctx, channels_last=config.channels_last
    )
    # The EMA's weights are the ones exported when there is an EMA, so they decide "best".
    improved = state.add_epoch(record, score=record["ema_top1" if engine.ema is not None else "val_top1"])
    if ctx.is_main:
        save_epoch_outputs(engine, data.classes, data.preprocessing, state, config, improved)
        log(epoch_line(record))


@dataclass(frozen=True)
class TrainResult:
    """What a finished run returns to a caller (scripts, tests)."""

    best_top1: float
    best_epoch: int
    output_dir: Path
    net: nn.Module  # the final (not necessarily best) weights of this rank


def run(config: TrainConfig, resume: str | None, ctx: DistContext) -> TrainResult:
    """Set up, then train epoch by epoch until done or asked to stop."""
    ckpt.seed_everything(config.seed)
    data = load_data(config, ctx)
    net, origin = initial_network(
        config.init, config.init_weights, data.classes, zero_init_residual=config.zero_init_residual
    )
    engine = build_engine(net, config, data.train_sampler.steps_per_epoch, ctx)
    state = ckpt.restore_run(resume, engine, config, ctx)
    if ctx.is_main:
        save_config(config, Path(config.output_dir))
        log(describe_start(config, len(data.classes), origin, ctx.device, state.epoch, state.step))
    mixer = BatchMixer(
        len(data.classes),
        mixup_alpha=config.mixup_alpha,
        cutmix_alpha=config.cutmix_alpha,
        seed=config.seed,
        rank=ctx.rank,
    )
    with StopRequest() as stop:
        for epoch in range(state.epoch, config.epochs):
            # the saved sums are all ranks' together: only rank 0 starts from them
            meter = EpochMeter(ctx.device, state.meter if ctx.is_main else None)
            step = train_one_epoch(
                engine, data, mixer, meter, epoch=epoch, start_step=state.step, stop=stop, config=config, ctx=ctx
            )
            if step is None:
                finish_epoch(epoch, engine, data, meter, state, config, ctx)
            else:
                ckpt.save_interrupted(engine, state, meter.reduced(ctx), epoch, step, config, ctx)
            # step is the same on every rank, so they all take part in any_rank or none does
            if step is not None or any_rank(stop.requested, ctx):
                where = f"epoch {state.epoch + 1}, step {state.step}"
                raise Interrupted(stop.signum or signal.SIGTERM, f"stopped at {where}; {ckpt.RESUME_HINT}")
    return TrainResult(state.best_top1, state.best_epoch, Path(config.output_dir), engine.net)


def main(argv: list[str] | None = None) -> TrainResult:
    """Parse argv, join the process group if started by torchrun, and train."""
    args = get_args_parser().parse_args(argv)
    ctx = setup_distributed(args.device)
    try:
        config = resolve_config(args, ctx.world_size)
        check_output_dir(Path(config.output_dir), args.resume, ctx)
        return run(config, args.resume, ctx)
    finally:
        teardown_distributed()


def cli(argv: list[str] | None = None) -> int:
    """python -m training.train: one line on stderr for a mistake in the input, no traceback."""
    try:
        main(argv)
    except Interrupted as exc:
        log(str(exc))
        return exc.exit_code
    except (DataError, CheckpointError, ValueError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
