"""Process-group helpers: one process per device, set up from torchrun's environment.

NCCL carries the gradients on GPUs, gloo on CPUs. A second, gloo-backed group answers the small
"should we stop?" question every step on the host, so it never waits for the GPU stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    control_group: dist.ProcessGroup | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and progress."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; under torchrun each process takes ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available (use --device cpu)")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: cuda:{index} does not exist ({torch.cuda.device_count()} GPUs)")
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise ValueError(f"--device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return device


def setup_distributed(device_name: str) -> DistContext:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size == 1:
        return DistContext(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    control: dist.ProcessGroup | None = None
    if backend == "nccl":
        group = dist.new_group(backend="gloo")
        assert isinstance(group, dist.ProcessGroup)
        control = group
    return DistContext(dist.get_rank(), world_size, local_rank, device, control)


def teardown_distributed() -> None:
    """Leave the process group (no-op when running alone)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(net: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP syncs buffers at the start of each forward, but the last forward of an epoch leaves each
    rank with statistics of its own batch; validation must see the buffers that rank 0 exports.
    """
    if ctx.distributed:
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(values: Tensor, ctx: DistContext) -> Tensor:
    """Sum ``values`` over all ranks, in place; returns it for chaining."""
    if ctx.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if it is true on any; lets all ranks stop at the same step."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=ctx.control_group)
    return bool(value.item())


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (pickled between our own processes only)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """Run ``fn`` on rank 0 only (file reads on its disk) and hand every rank its result.

    A ``ValueError`` there is raised on every rank, so no rank waits forever for the others.
    """
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except ValueError as exc:
            error = str(exc)
    result, error = broadcast_object((result, error), ctx)
    if error is not None:
        raise ValueError(error)
    return result
