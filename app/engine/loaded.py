"""One loaded model with the batcher that feeds it: the unit the service serves, and swaps on a reload.

Every image is prepared by, queued on and computed by the same ``LoadedModel``, so an answer always
names the model that computed it, and a request that began before a swap finishes on the model it
started with. A model leaves service only once no request holds it any more (``retire``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import torch

from app.engine.batcher import DynamicBatcher
from app.engine.capacity import Capacity
from app.engine.classifier import Classifier, Item, Prediction, Result, top_k
from app.engine.metrics import Metrics


@dataclass(frozen=True)
class ModelRef:
    """Which model computed an answer: the checkpoint's arch and its 12-hex version."""

    name: str
    version: str


@dataclass(frozen=True)
class Served:
    """One image's probabilities, the model that computed them, and how long each step took (seconds)."""

    probs: torch.Tensor
    model: ModelRef
    labels: Sequence[str]
    decode_s: float
    queue_s: float
    run_s: float
    batch_size: int

    def top_k(self, k: int) -> list[Prediction]:
        """The ``k`` most probable classes, best first."""
        return top_k(self.probs, self.labels, k)


class LoadedModel:
    """A warm ``Classifier`` behind its own ``DynamicBatcher``; counts the requests that hold it."""

    def __init__(self, classifier: Classifier, capacity: Capacity, *, max_batch_delay_s: float, metrics: Metrics):
        self.classifier = classifier
        self.ref = ModelRef(classifier.checkpoint.arch, classifier.version)
        self.loaded_at = datetime.now(UTC)
        self.batcher: DynamicBatcher[Item, Result] = DynamicBatcher(
            self._run_batch, capacity=capacity, max_batch_delay_s=max_batch_delay_s
        )
        self._metrics = metrics
        self._users = 0
        self._unused = asyncio.Event()
        self._unused.set()

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def labels(self) -> list[str]:
        return self.classifier.checkpoint.labels

    @property
    def num_classes(self) -> int:
        return self.classifier.checkpoint.num_classes

    @property
    def crop_size(self) -> int:
        return self.classifier.checkpoint.preprocessing.crop_size

    def metric_labels(self) -> dict[str, str]:
        """The labels of ``inference_model_info`` for this model."""
        backend = self.classifier.backend
        return {
            "name": self.name,
            "version": self.version,
            "arch": self.name,
            "device": backend.device,
            "precision": backend.precision,
        }

    def describe(self) -> dict[str, Any]:
        """The model's metadata (``GET /model``), with when it started serving."""
        return {**self.classifier.describe(), "loaded_at": self.loaded_at.isoformat(timespec="seconds")}

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

    def served(self, probs: torch.Tensor, decode_s: float, queue_s: float, run_s: float, batch_size: int) -> Served:
        """An answer of this model."""
        return Served(probs, self.ref, self.labels, decode_s, queue_s, run_s, batch_size)

    def _run_batch(self, items: list[Item]) -> list[Result]:
        """Runs on the model thread: one forward pass, timed."""
        started = time.perf_counter()
        results = self.classifier.predict_batch(items)
        self._metrics.batch_duration.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(items))
        self._metrics.sample()  # queue depth and GPU memory, for the other workers' scrapes
        return results
