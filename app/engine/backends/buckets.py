"""Fixed batch buckets: each batch is padded up to the next bucket so a small, fixed set of shapes
(one CUDA graph each) covers every batch size while padding wastes less than half of a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two up to ``max_batch_size``, which is always the last bucket: 1, 2, 4, …, max."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    buckets = []
    size = 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    buckets.append(max_batch_size)
    return buckets


def bucket_for(n: int, buckets: list[int]) -> int:
    """The smallest bucket that holds ``n`` items."""
    for size in buckets:
        if size >= n:
            return size
    raise ValueError(f"a batch of {n} exceeds the largest bucket {buckets[-1]}")


def pad_batch(batch: Tensor, size: int) -> Tensor:
    """``batch`` with zero rows appended up to ``size`` rows (the padding's outputs are discarded)."""
    n = batch.shape[0]
    if n == size:
        return batch
    padding = torch.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
    return torch.cat([batch, padding])
