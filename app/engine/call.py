"""One admitted request, whatever protocol brought it: its deadline, its places, and its classification.

Every front door (the HTTP API, the Open Inference Protocol over REST and gRPC) does the same three
things through a ``Call``: read its input within the deadline, hold places for its images once they are
in, and classify them on the model that is serving when they arrive. Cancelling the awaiting task (the
client went away) drops its queued images before they reach the model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch

from app.engine.batcher import BatcherClosed, DeadlineExceeded, Outcome, QueueFull
from app.engine.classifier import Item, Result
from app.engine.errors import InvalidParameter, NotReady, Overloaded, RequestTimeout, ServiceError
from app.engine.loaded import LoadedModel, ModelRef, Served

if TYPE_CHECKING:
    from app.engine.service import Service

T = TypeVar("T")


@dataclass(frozen=True)
class _Prepared:
    item: Item
    decode_s: float


class Call:
    """Made by ``Service.admit``; valid until that block ends."""

    def __init__(self, service: Service, deadline: float) -> None:
        self.service = service
        self.deadline = deadline  # on the time.monotonic clock
        self.model: ModelRef | None = None  # the model that classified this call's images, once one has

    async def receive(self, reading: Awaitable[T]) -> T:
        """Await the request's input (e.g. its body), or refuse with ``RequestTimeout`` past the deadline."""
        try:
            async with asyncio.timeout(self.deadline - time.monotonic()):
                return await reading
        except TimeoutError:
            error = RequestTimeout("the request body did not arrive before the request's deadline")
            raise self.service.reject(error) from None

    async def classify_images(self, images: Sequence[bytes]) -> list[Served | ServiceError]:
        """Encoded image files -> one result each, in order: its answer, or the error that image alone caused."""
        self._check_count(len(images))
        with self.service.serving_model() as model, self._holding(len(images)):
            self.model = model.ref
            prepared = await self._prepare_all(model, images)
            items = [p.item for p in prepared if isinstance(p, _Prepared)]
            outcomes = iter(await self._submit(model, items) if items else [])
            results: list[Served | ServiceError] = []
            for entry in prepared:
                if isinstance(entry, ServiceError):
                    results.append(entry)
                    continue
                outcome = next(outcomes)
                if isinstance(outcome.value, ServiceError):  # found only when the GPU decoded the batch
                    results.append(outcome.value)
                    continue
                results.append(_served(model, outcome, entry.decode_s))
            return results

    async def classify_tensors(self, batch: torch.Tensor) -> list[Served]:
        """Images already resized, cropped and normalised as the model's preprocessing says: float32
        (N, 3, crop, crop) -> one answer each, in order."""
        with self.service.serving_model() as model:
            self.model = model.ref
            expected = (3, model.crop_size, model.crop_size)
            if batch.dim() != 4 or tuple(batch.shape[1:]) != expected or batch.dtype != torch.float32:
                shown = f"{str(batch.dtype).removeprefix('torch.')} {list(batch.shape)}"
                raise InvalidParameter(
                    f"expected float32 tensors of shape [N, 3, {model.crop_size}, {model.crop_size}], got {shown}"
                )
            self._check_count(batch.shape[0])
            with self._holding(batch.shape[0]):
                outcomes = await self._submit(model, list(batch.unbind(0)))
            return [_served(model, outcome, 0.0) for outcome in outcomes]

    def _check_count(self, count: int) -> None:
        limit = self.service.capacity.max_batch_size
        if count > limit:
            raise InvalidParameter(f"{count} images sent; at most {limit} per request (SERVE_MAX_BATCH_SIZE)")
        if count < 1:
            raise InvalidParameter("no image sent")

    @contextmanager
    def _holding(self, images: int) -> Iterator[None]:
        """Hold places for ``images`` images until they are answered, or refuse them as ``overloaded``."""
        admission = self.service.admission
        try:
            admission.acquire(images)
        except Overloaded as exc:
            raise self.service.reject(exc) from None
        try:
            yield
        finally:
            admission.release(images)

    async def _prepare_all(self, model: LoadedModel, images: Sequence[bytes]) -> list[_Prepared | ServiceError]:
        loop = asyncio.get_running_loop()
        pool = self.service.decode_pool
        jobs = [loop.run_in_executor(pool, self._prepare, model, data) for data in images]
        try:
            async with asyncio.timeout(self.deadline - time.monotonic()):  # not wait_for: see DynamicBatcher.submit
                return await asyncio.gather(*jobs)
        except TimeoutError:
            error = RequestTimeout("the images were not decoded before the request's deadline")
            raise self.service.reject(error) from None

    def _prepare(self, model: LoadedModel, data: bytes) -> _Prepared | ServiceError:
        """Runs on a decode thread."""
        started = time.perf_counter()
        try:
            item = model.classifier.prepare(data)
        except ServiceError as exc:  # this image's own problem: reported in its slot
            return exc
        elapsed = time.perf_counter() - started
        self.service.metrics.decode_duration.observe(elapsed)
        return _Prepared(item, elapsed)

    async def _submit(self, model: LoadedModel, items: list[Item]) -> list[Outcome[Result]]:
        reject = self.service.reject
        try:
            outcomes = await model.batcher.submit(items, self.deadline)
        except QueueFull as exc:
            raise reject(Overloaded(f"too many requests queued ({exc}); retry shortly")) from None
        except DeadlineExceeded as exc:
            raise reject(RequestTimeout(str(exc))) from None
        except BatcherClosed:
            raise reject(NotReady("the service is shutting down")) from None
        for outcome in outcomes:
            self.service.metrics.queue_wait.observe(outcome.queue_s)
        return outcomes


def _served(model: LoadedModel, outcome: Outcome[Result], decode_s: float) -> Served:
    assert isinstance(outcome.value, torch.Tensor)
    return model.served(outcome.value, decode_s, outcome.queue_s, outcome.run_s, outcome.batch_size)
