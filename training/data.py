"""Image folders (``D/train/<class>/*``, ``D/val/<class>/*``): checked up front, read lazily.

Class names come from the folder names (sorted, as torchvision's ``ImageFolder`` orders them),
so the checkpoint's labels are exactly the folders. Files that cannot be decoded are skipped and
counted rather than crashing a run that may be days long: in training a neighbouring image
stands in (so every batch keeps its shape across DDP ranks), in evaluation the file is left out
(so every counted image is a real one).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS

from model import EvalPreset
from model.decoding import decode_for_eval
from model.images import upright_rgb

log = logging.getLogger(__name__)
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DataError(ValueError):
    """A dataset that cannot be trained on; the message says what to fix."""


@dataclass(frozen=True)
class Split:
    """One split's image files and their class ids."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]

    def __len__(self) -> int:
        return len(self.samples)


def scan_split(root: Path) -> Split:
    """List ``root/<class>/**/<image>``; an absent or empty split or class is an error."""
    if not root.is_dir():
        raise DataError(f"{root}: no such directory (expected {root}/<class>/<images>)")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<images>)")
    samples = []
    for class_id, name in enumerate(classes):
        files = _image_files(root / name)
        if not files:
            raise DataError(f"{root / name}: class {name!r} has no images ({', '.join(IMG_EXTENSIONS)})")
        samples += [(path, class_id) for path in files]
    return Split(root, classes, samples)


def _image_files(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMG_EXTENSIONS)
        ]
    return found


def scan_dataset(data_dir: Path) -> tuple[Split, Split]:
    """Both splits of ``data_dir``, with the same classes in the same order."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such data directory (expected {data_dir}/train and {data_dir}/val)")
    train, val = scan_split(data_dir / "train"), scan_split(data_dir / "val")
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataError(
            f"{data_dir}: train and val have different classes "
            f"(only in train: {_few(only_train)}; only in val: {_few(only_val)})"
        )
    return train, val


def scan_for_labels(root: Path, labels: Sequence[str]) -> Split:
    """A split whose folders are a subset of a model's ``labels``, with the model's class ids."""
    split = scan_split(root)
    unknown = sorted(set(split.classes) - set(labels))
    if unknown:
        raise DataError(f"{root}: class folders the model does not know: {_few(unknown)}")
    index = {label: i for i, label in enumerate(labels)}
    samples = [(path, index[split.classes[class_id]]) for path, class_id in split.samples]
    return Split(root, list(labels), samples)


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_rgb(path: str) -> Image.Image:
    """Decode the whole image as the service's exact path does (``model.images.upright_rgb``), for training."""
    with Image.open(path) as raw:
        raw.load()
        return upright_rgb(raw)


_warned: set[str] = set()


def _warn_once(path: str, exc: Exception) -> None:
    """Name each unreadable file once per process; the per-epoch counts go to metrics.jsonl."""
    if path not in _warned:
        _warned.add(path)
        log.warning("skipping unreadable %s (%s)", path, exc)


class Sample(NamedTuple):
    image: Tensor
    target: int
    skipped: int  # unreadable files passed over to produce this sample


class Batch(NamedTuple):
    images: Tensor
    targets: Tensor
    skipped: int


class TrainDataset(Dataset[Sample]):
    """Keys are ``(index, seed)``: the augmentation is a pure function of both.

    Seeding each sample makes a run independent of the worker count and lets a resumed run
    redo exactly the augmentations of an uninterrupted one.
    """

    def __init__(self, split: Split, transform: Callable[[Image.Image], Tensor]) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        for skipped in range(len(self.split)):
            path, target = self.split.samples[(index + skipped) % len(self.split)]
            try:
                img = read_rgb(path)
            except UNREADABLE as exc:
                _warn_once(path, exc)
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return Sample(self.transform(img), target, skipped)
        raise DataError(f"{self.split.root}: no readable image")


class EvalDataset(Dataset[Sample | None]):
    """Keys are indices; a sample is the uint8 crop the service makes of the file (``decode_for_eval``).

    ``reduced`` is the service's default decoding (a large JPEG decoded at a reduced DCT scale), so
    the accuracy measured is the accuracy served; ``reduced=False`` is the exact full-size path. An
    unreadable file yields ``None`` and is left out of the batch.
    """

    def __init__(self, split: Split, preset: EvalPreset, *, reduced: bool = True) -> None:
        self.split = split
        self.preset = preset
        self.reduced = reduced

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Sample | None:
        path, target = self.split.samples[index]
        try:
            with Image.open(path) as img:
                pixels = decode_for_eval(img, self.preset, reduced=self.reduced)
        except UNREADABLE as exc:
            _warn_once(path, exc)
            return None
        return Sample(pixels, target, 0)


def collate(samples: list[Sample | None]) -> Batch:
    """Stack the readable samples; count the unreadable ones."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept) + sum(s.skipped for s in kept)
    if not kept:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    return Batch(torch.stack([s.image for s in kept]), torch.tensor([s.target for s in kept]), skipped)


def make_loader(
    dataset: Dataset[Sample] | Dataset[Sample | None],
    sampler: Sampler[int] | Sampler[tuple[int, int]],
    *,
    batch_size: int,
    workers: int,
    pin_memory: bool,
) -> DataLoader[Any]:
    """A loader that keeps the accelerator fed: worker processes that outlive the epoch, prefetch, pinning."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        # The augmentation seeds come from the sampler; a private generator keeps the loader
        # from drawing worker seeds out of the global RNG.
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=_ignore_sigint,
    )


def _ignore_sigint(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group; workers must outlive it so the main process can save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
