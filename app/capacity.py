"""How many images the service holds at once, as one rule, and the door that enforces it.

``Capacity`` is the single place that says how the queue, the batch and the batches in flight add up;
the batcher bounds its waiting room with it and ``Admission`` bounds everything between the door and
the answer with it, so the two can never disagree.

Admission sheds load at the door: a request is refused before its body is read when the service already
holds as many images as its queue and batches can take. The batcher's own bound applies only once images
are decoded; under overload that is too late: the decode threads spend the CPU on images that are then
refused, and each refusal waits behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import Overloaded

MAX_BATCH_SIZE = 256  # the largest batch a backend is asked to run (and the batch-size histogram's top)


@dataclass(frozen=True)
class Capacity:
    """The queue, the batch and how many batches run at once (2 on CUDA: one uploads while one computes)."""

    max_batch_size: int
    max_queue_size: int
    batches_in_flight: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"max_batch_size must be 1 to {MAX_BATCH_SIZE}, got {self.max_batch_size}")
        if self.max_queue_size < self.max_batch_size:
            raise ValueError(
                f"max_queue_size {self.max_queue_size} is below max_batch_size {self.max_batch_size}: "
                "a full batch request could never be queued"
            )
        if self.batches_in_flight < 1:
            raise ValueError(f"batches_in_flight must be at least 1, got {self.batches_in_flight}")

    @property
    def waiting(self) -> int:
        """Images that may wait for the model: the queue and the batch being collected."""
        return self.max_queue_size + self.max_batch_size

    @property
    def held(self) -> int:
        """Images the service holds when full: those waiting and every batch in flight."""
        return self.waiting + self.batches_in_flight * self.max_batch_size


class Admission:
    """Counts the images between admission and answer: being decoded, queued or in the model.

    A request is checked before its body is read and holds its places once the body is in, so a slow
    upload takes no place from others.
    """

    def __init__(self, capacity: Capacity) -> None:
        self.limit = capacity.held
        self.held = 0

    def check(self, images: int) -> None:
        """Raise ``Overloaded`` if ``images`` more would not fit now (nothing is taken)."""
        if self.held + images > self.limit:
            raise Overloaded(f"{self.held} images are already in progress, at most {self.limit}; retry shortly")

    def acquire(self, images: int) -> None:
        """Take ``images`` places, or raise ``Overloaded`` at once if they do not fit."""
        self.check(images)
        self.held += images

    def release(self, images: int) -> None:
        """Give back places taken by ``acquire``."""
        self.held -= images
