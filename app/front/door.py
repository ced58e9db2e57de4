"""The door every request comes in by, whatever its protocol: admission, readiness and drain.

A request is admitted, or refused at once (``NotReady`` while loading or draining, ``Overloaded`` when not
even one more image would fit), before any of its body is read; it holds places for its images only once they
are in, so a slow upload takes none from others (app/capacity.py). Draining turns the door not-ready and
waits for every admitted request. Classification goes through the engine client seam (app/engine/client.py),
so the door neither knows nor holds a model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol, TypeVar

import numpy as np

from app.capacity import Admission, Capacity
from app.engine.client import Answer, EngineClient, ModelInfo
from app.errors import InvalidParameter, NotReady, Overloaded, RequestTimeout, ServiceError
from app.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
_REFUSALS = (NotReady, Overloaded, RequestTimeout)  # the engine's refusals, counted as rejections here


class Group(Protocol):
    """The other processes serving the same port (``SERVE_WORKERS``): readiness probes answer for all."""

    def all_ready(self) -> bool: ...
    def report(self, ready: bool) -> None: ...


class Door:
    """Admission, readiness and drain for one process, in front of an ``EngineClient``."""

    def __init__(self, engine: EngineClient, capacity: Capacity, metrics: Metrics, group: Group | None = None):
        self.engine, self.capacity, self.metrics, self.group = engine, capacity, metrics, group
        self.admission = Admission(capacity)
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.track_images_in_flight(lambda: self.admission.held)
        engine.on_readiness(lambda _: self._readiness_changed())

    @property
    def ready(self) -> bool:
        """Whether this process takes requests: its engine serves and it is not draining."""
        return self.engine.ready() and not self.draining

    @property
    def ready_everywhere(self) -> bool:
        """What readiness probes answer: this process is ready, and so is every other one of its group."""
        return self.ready and (self.group is None or self.group.all_ready())

    def serving_model(self) -> ModelInfo:
        """The model serving now, for answers that describe it; ``NotReady`` while there is none anywhere."""
        model = self.engine.model
        if model is None or not (self.group is None or self.group.all_ready()):  # every worker names one model
            raise NotReady(self.not_ready_reason())
        return model

    def not_ready_reason(self) -> str:
        if self.draining:
            return "the service is shutting down"
        if not self.engine.ready():
            return self.engine.not_ready_reason()
        return "another worker process is still loading the model"

    def _readiness_changed(self) -> None:
        ready = self.ready
        self.metrics.ready.set(int(ready))
        if self.group is not None:
            self.group.report(ready)

    @asynccontextmanager
    async def admit(self, deadline: float) -> AsyncIterator[Call]:
        """Admit one request, or refuse it at once (see the module's docstring); draining waits for it."""
        if not self.ready:
            raise self.reject(NotReady(self.not_ready_reason()))
        try:
            self.admission.check(1)
        except Overloaded as exc:
            raise self.reject(exc) from None
        self._in_flight += 1
        self._idle.clear()
        try:
            yield Call(self, deadline)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def begin_drain(self) -> None:
        """Turn not-ready at once: from now on new requests are refused with 503."""
        if not self.draining:
            log.info("draining: refusing new requests, finishing %d in flight", self._in_flight)
        self.draining = True
        self._readiness_changed()

    async def drain(self) -> None:
        """Turn not-ready, then return once every admitted request has been answered."""
        self.begin_drain()
        await self._idle.wait()

    def reject(self, error: ServiceError) -> ServiceError:
        """Count a request refused before the model, and hand the error back to raise."""
        self.metrics.rejections.labels(reason=error.code).inc()
        return error


class Call:
    """One admitted request (made by ``Door.admit``, valid until that block ends): its deadline, its places,
    its classification. Cancelling the awaiting task drops its queued images before they reach the model."""

    def __init__(self, door: Door, deadline: float) -> None:
        self.door = door
        self.deadline = deadline  # on the time.monotonic clock
        self.model: ModelInfo | None = None  # the model that classified this call's images, once one has

    async def receive(self, reading: Awaitable[T]) -> T:
        """Await the request's input (e.g. its body), or refuse with ``RequestTimeout`` past the deadline."""
        try:
            async with asyncio.timeout(self.deadline - time.monotonic()):
                return await reading
        except TimeoutError:
            error = RequestTimeout("the request body did not arrive before the request's deadline")
            raise self.door.reject(error) from None

    async def classify_images(self, images: Sequence[bytes]) -> list[Answer | ServiceError]:
        """Encoded image files -> one result each, in order: its answer, or the error that image alone caused."""
        with self._holding(len(images)):
            results = await self._refused_counted(self.door.engine.classify(images, self.deadline))
        self.model = next((r.model for r in results if isinstance(r, Answer)), None)
        return results

    async def classify_tensors(self, batch: np.ndarray) -> list[Answer]:
        """Images already resized, cropped and normalised as the model's preprocessing says: float32
        (N, 3, crop, crop) -> one answer each, in order."""
        with self._holding(batch.shape[0] if batch.ndim else 0):
            answers = await self._refused_counted(self.door.engine.classify_tensors(batch, self.deadline))
        self.model = answers[0].model if answers else None
        return answers

    async def _refused_counted(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except _REFUSALS as exc:
            raise self.door.reject(exc) from None

    @contextmanager
    def _holding(self, images: int) -> Iterator[None]:
        """Hold places for ``images`` images until they are answered, or refuse them as ``overloaded``."""
        limit = self.door.capacity.max_batch_size
        if images > limit:
            raise InvalidParameter(f"{images} images sent; at most {limit} per request (SERVE_MAX_BATCH_SIZE)")
        if images < 1:
            raise InvalidParameter("no image sent")
        admission = self.door.admission
        try:
            admission.acquire(images)
        except Overloaded as exc:
            raise self.door.reject(exc) from None
        try:
            yield
        finally:
            admission.release(images)
