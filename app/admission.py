"""Load shedding at the door: a request is refused before its body is read when the service already
holds as many images as its queue and batches can take.

The batcher bounds its own queue too, but only once images are decoded. Under overload that is too
late: the decode threads spend the CPU on images that are then refused, and each refusal waits behind
them. Counting images from admission to answer moves the refusal to the start of the request.
"""

from __future__ import annotations

from app.errors import Overloaded


class Admission:
    """Counts the images between admission and answer: being decoded, queued or in the model.

    A request is checked before its body is read and holds its places once the body is in, so a slow
    upload takes no place from others.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the admission limit must be at least 1, got {limit}")
        self.limit = limit
        self.held = 0

    @classmethod
    def for_queue(cls, max_queue_size: int, max_batch_size: int) -> Admission:
        """What the batcher holds when full: the queue, the batch being collected and the batch running."""
        return cls(max_queue_size + 2 * max_batch_size)

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
