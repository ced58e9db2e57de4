"""The output folder: a new best model keeps the one it replaces, and model.safetensors is never missing."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import torch

from model import CHECKPOINT_FILENAME, PREVIOUS_CHECKPOINT_FILENAME, Preprocessing, build_model, load_checkpoint
from training.checkpointing import RunState
from training.distributed import DistContext
from training.loop import build_engine
from training.outputs import remove_unfinished_writes, save_epoch_outputs
from training.recipes import TrainConfig, resolve_config
from training.train import get_args_parser

LABELS = ["a", "b"]


def config_for(out: Path) -> TrainConfig:
    args = get_args_parser().parse_args(["--data-dir", str(out / "data"), "--output-dir", str(out), "--epochs", "3"])
    return resolve_config(args, world_size=1)


def epoch_record(epoch: int, top1: float) -> dict[str, float]:
    return {"epoch": epoch, "train_loss": 1.0, "val_top1": top1, "val_top5": 100.0, "val_loss": 1.0, "val_images": 4}


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors header's metadata; raises if the file is missing or half-written."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        metadata: dict[str, str] = json.loads(f.read(length))["__metadata__"]
    return metadata


def test_a_new_best_keeps_the_previous_one_and_the_served_file_is_never_missing(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    torch.manual_seed(0)
    engine = build_engine(build_model(len(LABELS)), config, steps_per_epoch=1, ctx=DistContext())
    state = RunState()
    served = tmp_path / CHECKPOINT_FILENAME
    seen: list[float] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def watch() -> None:  # what a service watching model.safetensors reads meanwhile
        while not stop.is_set():
            if not seen and not served.exists():
                continue
            try:
                seen.append(json.loads(read_metadata(served)["metrics"])["top1"])
            except Exception as exc:  # missing or half-written: the test fails below
                errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for epoch, top1 in ((1, 50.0), (2, 40.0), (3, 75.0)):  # epoch 2 is no improvement
            improved = state.add_epoch(epoch_record(epoch, top1), score=top1)
            with torch.no_grad():
                engine.net.fc.bias.fill_(epoch)  # each epoch's weights are told apart by the head's bias
            save_epoch_outputs(engine, LABELS, Preprocessing(), state, config, improved)
    finally:
        stop.set()
        watcher.join()
    current, previous = load_checkpoint(served), load_checkpoint(tmp_path / PREVIOUS_CHECKPOINT_FILENAME)
    assert (current.metrics["epoch"], previous.metrics["epoch"]) == (3, 1)
    assert current.model.fc.bias.tolist() == [3.0, 3.0] and previous.model.fc.bias.tolist() == [1.0, 1.0]
    assert previous.path.stat().st_mode & 0o777 == 0o644
    assert errors == [] and set(seen) == {50.0, 75.0}  # every read found a whole checkpoint, old or new


def test_unfinished_writes_of_every_output_are_removed(tmp_path: Path) -> None:
    names = [f".{name}.x1y2.tmp" for name in ("last.ckpt", CHECKPOINT_FILENAME, PREVIOUS_CHECKPOINT_FILENAME)]
    for name in [*names, "last.ckpt", ".keep.tmp"]:
        (tmp_path / name).write_bytes(b"")
    remove_unfinished_writes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.tmp", "last.ckpt"]
