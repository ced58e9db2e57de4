"""The engine in this process: ``EngineClient`` (app/engine/client.py) over a ``ModelHost`` and decode threads.

Decoding runs on a thread pool and the model on the batcher's thread, so the event loop only moves bytes and
futures; many requests decode while a batch runs. A request's images are all prepared by, queued on and
computed by the model serving when they arrive, which it holds until they are answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from app.capacity import Capacity
from app.config import Settings
from app.engine.backends import Runtime
from app.engine.batcher import BatcherClosed, DeadlineExceeded, Outcome, QueueFull
from app.engine.classifier import Item, Result
from app.engine.client import Answer, ModelInfo, ReloadOutcome
from app.engine.host import ModelHost
from app.engine.loaded import LoadedModel
from app.engine.preparing import decode_threads
from app.errors import InvalidParameter, NotReady, Overloaded, RequestTimeout, ServiceError
from app.metrics import Metrics


@dataclass(frozen=True)
class _Prepared:
    item: Item
    decode_s: float


class LocalEngine:
    """The engine client whose engine runs in this process (see the module's docstring)."""

    def __init__(self, settings: Settings, runtime: Runtime, capacity: Capacity, metrics: Metrics) -> None:
        self.metrics = metrics
        self.decode_threads = decode_threads(settings.decode_threads, runtime.device, settings.workers)
        self.host = ModelHost(settings, runtime, capacity, metrics, {"decode_threads": self.decode_threads})
        self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode")
        metrics.track_queue_depth(self.host.queue_depth)

    @property
    def model(self) -> ModelInfo | None:
        serving = self.host.serving
        return None if serving is None else serving.info

    @property
    def last_reload(self) -> ReloadOutcome | None:
        return self.host.last_reload

    @property
    def startup_error(self) -> Exception | None:
        return self.host.startup_error

    def ready(self) -> bool:
        return self.host.serving is not None and not self.host.stopping

    def not_ready_reason(self) -> str:
        return self.host.not_ready_reason()

    def on_readiness(self, listener: Callable[[bool], None]) -> None:
        self.host.on_change(lambda: listener(self.ready()))

    def start(self) -> None:
        """Begin loading the model (on the running loop); liveness answers meanwhile."""
        self.host.start()

    async def stop(self) -> None:
        """Finish what was queued, let every model go, stop the decode threads."""
        await self.host.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def wait_loaded(self) -> None:
        await self.host.wait_loaded()

    async def reload(self, requested: str | None) -> ReloadOutcome:
        return await self.host.reload(requested)

    async def classify(self, images: Sequence[bytes], deadline: float) -> list[Answer | ServiceError]:
        with self.host.holding() as model:
            prepared = await self._prepare_all(model, images, deadline)
            items = [p.item for p in prepared if isinstance(p, _Prepared)]
            outcomes = iter(await self._submit(model, items, deadline) if items else [])
            results: list[Answer | ServiceError] = []
            for entry in prepared:
                if isinstance(entry, ServiceError):
                    results.append(entry)
                    continue
                outcome = next(outcomes)
                if isinstance(outcome.value, ServiceError):  # found only when the GPU decoded the batch
                    results.append(outcome.value)
                    continue
                results.append(_answer(model, outcome, entry.decode_s))
            return results

    async def classify_tensors(self, batch: np.ndarray, deadline: float) -> list[Answer]:
        with self.host.holding() as model:
            crop = model.info.crop_size
            if batch.ndim != 4 or batch.shape[1:] != (3, crop, crop) or batch.dtype != np.float32:
                raise InvalidParameter(
                    f"expected float32 tensors of shape [N, 3, {crop}, {crop}], got {batch.dtype} {list(batch.shape)}"
                )
            tensors: list[Item] = list(torch.from_numpy(np.ascontiguousarray(batch)).unbind(0))
            outcomes = await self._submit(model, tensors, deadline)
            return [_answer(model, outcome, 0.0) for outcome in outcomes]

    async def _prepare_all(
        self, model: LoadedModel, images: Sequence[bytes], deadline: float
    ) -> list[_Prepared | ServiceError]:
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._pool, self._prepare, model, data) for data in images]
        try:
            async with asyncio.timeout(deadline - time.monotonic()):  # not wait_for: see DynamicBatcher.submit
                return await asyncio.gather(*jobs)
        except TimeoutError:
            raise RequestTimeout("the images were not decoded before the request's deadline") from None

    def _prepare(self, model: LoadedModel, data: bytes) -> _Prepared | ServiceError:
        """Runs on a decode thread."""
        started = time.perf_counter()
        try:
            item = model.classifier.prepare(data)
        except ServiceError as exc:  # this image's own problem: reported in its slot
            return exc
        elapsed = time.perf_counter() - started
        self.metrics.decode_duration.observe(elapsed)
        return _Prepared(item, elapsed)

    async def _submit(self, model: LoadedModel, items: list[Item], deadline: float) -> list[Outcome[Result]]:
        try:
            outcomes = await model.batcher.submit(items, deadline)
        except QueueFull as exc:
            raise Overloaded(f"too many requests queued ({exc}); retry shortly") from None
        except DeadlineExceeded as exc:
            raise RequestTimeout(str(exc)) from None
        except BatcherClosed:
            raise NotReady("the service is shutting down") from None
        for outcome in outcomes:
            self.metrics.queue_wait.observe(outcome.queue_s)
        return outcomes


def _answer(model: LoadedModel, outcome: Outcome[Result], decode_s: float) -> Answer:
    assert isinstance(outcome.value, torch.Tensor)
    probs = outcome.value.float().cpu().numpy()
    return Answer(probs, model.info, decode_s, outcome.queue_s, outcome.run_s, outcome.batch_size)
