"""Which images each rank sees, in which order, with which random draws.

Everything random about the data is derived from ``(seed, epoch, ...)`` and nothing else, so a
run resumed in the middle of an epoch replays the uninterrupted run exactly, whatever the number
of loader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler
from torchvision.transforms import v2


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (NumPy's SeedSequence hashing)."""
    state = np.random.SeedSequence([abs(p) for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class TrainSampler(Sampler[tuple[int, int]]):
    """Shuffles every epoch (the same permutation on every rank) and deals out whole global batches.

    Global step ``s`` takes permutation positions ``[s*W*B, (s+1)*W*B)``; rank ``r`` gets the
    ``r``-th block of ``B``. Every rank gets the same number of full batches (the tail that
    does not fill one global batch is dropped, as ``drop_last`` would), and resuming at step ``k``
    only means starting at position ``k*W*B``. Yields ``(index, augmentation seed)``.
    """

    def __init__(self, size: int, *, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.size, self.batch_size, self.rank, self.world_size, self.seed = size, batch_size, rank, world_size, seed
        self.steps_per_epoch = size // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the train split has {size} images, fewer than one global batch "
                f"({world_size} x {batch_size}); lower --batch-size"
            )
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation; ``start_step`` skips steps already done before a resume."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for step in range(self.start_step, self.steps_per_epoch):
            first = (step * self.world_size + self.rank) * self.batch_size
            for index in order[first : first + self.batch_size]:
                yield index, derive_seed(self.seed, self.epoch, index)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` gets indices ``r, r+W, ...``: no padding, so no image is counted twice."""

    def __init__(self, size: int, *, rank: int, world_size: int) -> None:
        self.indices = range(rank, size, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class BatchMixer:
    """Mixup / CutMix on a whole batch (one of them, chosen at random per batch, as torchvision does).

    Runs where the batch is (the accelerator); its random draws are seeded by
    ``(seed, rank, epoch, step)`` so that a resumed run mixes exactly as the uninterrupted one.
    """

    def __init__(self, num_classes: int, *, mixup_alpha: float, cutmix_alpha: float, seed: int, rank: int) -> None:
        choices: list[v2.Transform] = []
        if mixup_alpha > 0:
            choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.transform = v2.RandomChoice(choices) if choices else None
        self.seed, self.rank = seed, rank

    @property
    def enabled(self) -> bool:
        return self.transform is not None

    def __call__(self, images: Tensor, targets: Tensor, epoch: int, step: int) -> tuple[Tensor, Tensor]:
        """Mixed images and soft targets, or the batch unchanged when neither is enabled."""
        if self.transform is None:
            return images, targets
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.rank, epoch, step))
            mixed: tuple[Tensor, Tensor] = self.transform(images, targets)
        return mixed
