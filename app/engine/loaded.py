"""One loaded model with the batcher that feeds it: the unit the host serves, and swaps on a reload.

Every image is prepared by, queued on and computed by the same ``LoadedModel``, so an answer always
names the model that computed it, and a request that began before a swap finishes on the model it
started with. A model leaves service only once no request holds it any more (``retire``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime

from app.capacity import Capacity
from app.engine.batcher import DynamicBatcher
from app.engine.classifier import Classifier, Item, Result
from app.engine.client import ModelInfo
from app.metrics import Metrics


class LoadedModel:
    """A warm ``Classifier`` behind its own ``DynamicBatcher``; counts the requests that hold it."""

    def __init__(self, classifier: Classifier, capacity: Capacity, *, max_batch_delay_s: float, metrics: Metrics):
        self.classifier = classifier
        self.info = describe(classifier, loaded_at=datetime.now(UTC).isoformat(timespec="seconds"))
        self.batcher: DynamicBatcher[Item, Result] = DynamicBatcher(
            self._run_batch, capacity=capacity, max_batch_delay_s=max_batch_delay_s
        )
        self._metrics = metrics
        self._users = 0
        self._unused = asyncio.Event()
        self._unused.set()

    def start(self) -> None:
        """Start taking batches (on the running event loop)."""
        self.batcher.start()

    @contextmanager
    def use(self) -> Iterator[LoadedModel]:
        """Hold this model for one request: ``retire`` waits until every holder has let go."""
        self._users += 1
        self._unused.clear()
        try:
            yield self
        finally:
            self._users -= 1
            if not self._users:
                self._unused.set()

    async def retire(self) -> None:
        """Once no request holds the model, finish its queued batches and release its model thread."""
        await self._unused.wait()
        await self.batcher.stop()

    def _run_batch(self, items: list[Item]) -> list[Result]:
        """Runs on the model thread: one forward pass, timed."""
        started = time.perf_counter()
        results = self.classifier.predict_batch(items)
        self._metrics.batch_duration.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(items))
        self._metrics.sample()  # queue depth and GPU memory, for the other workers' scrapes
        return results


def describe(classifier: Classifier, *, loaded_at: str) -> ModelInfo:
    """The plain description of a loaded classifier that answers and ``GET /model`` carry."""
    ckpt, backend = classifier.checkpoint, classifier.backend
    return ModelInfo(
        name=ckpt.arch,
        version=ckpt.version,
        arch=ckpt.arch,
        labels=tuple(ckpt.labels),
        crop_size=ckpt.preprocessing.crop_size,
        trained=ckpt.trained,
        source=ckpt.source,
        created_at=ckpt.created_at,
        device=backend.device,
        precision=backend.precision,
        backend=backend.name,
        loaded_at=loaded_at,
        preprocessing=asdict(ckpt.preprocessing),
        metrics=dict(ckpt.metrics),
    )
