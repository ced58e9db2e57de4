"""The running service: loading the model, readiness and draining, and the classify pipeline.

Decoding runs on a thread pool and the model on the batcher's thread, so the event loop only
moves bytes and futures; many requests decode while a batch runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

import torch

from app.backends import resolve_runtime
from app.batcher import BatcherClosed, DeadlineExceeded, DynamicBatcher, Outcome, QueueFull
from app.classifier import Classifier, Item, Prediction, Result, load_classifier
from app.config import ConfigError, Settings
from app.errors import NotReady, Overloaded, RequestTimeout, ServiceError
from app.metrics import Metrics
from model import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    item: Item
    decode_s: float


@dataclass(frozen=True)
class Served:
    """One image's answer and how long each step took (seconds)."""

    predictions: list[Prediction]
    decode_s: float
    queue_s: float
    run_s: float
    batch_size: int


class Service:
    """Owns the classifier, the batcher and the decode threads for one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.classifier: Classifier | None = None
        self.batcher: DynamicBatcher[Item, Result] | None = None
        self.startup_error: Exception | None = None
        self.draining = False
        self._decode_pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode")
        self._loading: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.metrics.track_queue_depth(lambda: self.batcher.depth if self.batcher else 0)

    @property
    def ready(self) -> bool:
        return self.batcher is not None and not self.draining

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Load in the background (so /health/live answers meanwhile); on exit, finish queued work."""
        self._loading = asyncio.create_task(self._load(), name="load-model")
        try:
            yield
        finally:
            self.draining = True
            self.metrics.ready.set(0)
            await asyncio.gather(self._loading, return_exceptions=True)
            if self.batcher is not None:
                await self.batcher.stop()
            self._decode_pool.shutdown(wait=False, cancel_futures=True)

    async def wait_loaded(self) -> None:
        """Return once loading has finished, whether it succeeded or not (see ``startup_error``)."""
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def _load(self) -> None:
        s = self.settings
        try:
            runtime = resolve_runtime(
                device=s.device,
                backend=s.backend,
                precision=s.precision,
                decode=s.decode,
                cuda_devices=torch.cuda.device_count(),
            )
            classifier = await asyncio.to_thread(
                load_classifier,
                s.model_path,
                runtime,
                max_batch_size=s.max_batch_size,
                max_image_pixels=s.max_image_pixels,
                threads=s.inference_threads,
                onnx_cache_dir=s.onnx_cache_dir,
                cuda_graphs=s.cuda_graphs,
            )
        except Exception as exc:
            self.startup_error = exc
            expected = isinstance(exc, CheckpointError | ConfigError)
            log.error(
                "the model could not be served (SERVE_MODEL_PATH=%s): %s", s.model_path, exc, exc_info=not expected
            )
            return
        self._go_live(classifier)

    def _go_live(self, classifier: Classifier) -> None:
        s = self.settings
        self.classifier = classifier
        self.batcher = DynamicBatcher(
            self._run_batch,
            max_batch_size=s.max_batch_size,
            max_batch_delay_s=s.max_batch_delay_ms / 1000,
            max_queue_size=s.max_queue_size,
            # On CUDA a second batch uploads while the first computes; CPU backends use every core already.
            max_in_flight=2 if classifier.backend.device.startswith("cuda") else 1,
        )
        self.batcher.start()
        info = classifier.describe()
        labels = {key: info[key] for key in ("name", "version", "arch", "device", "precision")}
        self.metrics.model_info.labels(**labels).set(1)
        if classifier.backend.device.startswith("cuda"):
            device = torch.device(classifier.backend.device)
            self.metrics.track_gpu_memory(
                lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device)
            )
        self.metrics.ready.set(0 if self.draining else 1)
        # "name" would collide with the LogRecord's own attribute (logging raises), so it goes as "model".
        fields = {"model" if key == "name" else key: value for key, value in labels.items()}
        log.info("ready", extra={**fields, "backend": info["backend"]})

    def not_ready_reason(self) -> str:
        if self.draining:
            return "the service is shutting down"
        if self.startup_error is not None:
            return "the model could not be loaded"
        return "the model is loading"

    @asynccontextmanager
    async def accepting(self) -> AsyncIterator[None]:
        """Admit one request (or refuse it with ``NotReady``); draining waits for admitted ones."""
        if not self.ready:
            raise self.reject(NotReady(self.not_ready_reason()))
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def begin_drain(self) -> None:
        """Turn not-ready at once: from now on new predict requests are refused with 503."""
        if not self.draining:
            log.info("draining: refusing new requests, finishing %d in flight", self._in_flight)
        self.draining = True
        self.metrics.ready.set(0)

    async def drain(self) -> None:
        """Turn not-ready, then return once every admitted request has been answered."""
        self.begin_drain()
        await self._idle.wait()

    def reject(self, error: ServiceError) -> ServiceError:
        """Count a request refused before the model, and hand the error back to raise."""
        self.metrics.rejections.labels(reason=error.code).inc()
        return error

    async def classify(self, images: Sequence[bytes], top_k: int, deadline: float) -> list[Served | ServiceError]:
        """One result per image, in order: its predictions, or the error that image alone caused."""
        assert self.classifier is not None
        prepared = await self._prepare_all(images, deadline)
        items = [p.item for p in prepared if isinstance(p, Prepared)]
        outcomes = iter(await self._submit(items, deadline) if items else [])
        results: list[Served | ServiceError] = []
        for item in prepared:
            if isinstance(item, ServiceError):
                results.append(item)
                continue
            outcome = next(outcomes)
            if isinstance(outcome.value, ServiceError):  # found only when the GPU decoded the batch
                results.append(outcome.value)
                continue
            predictions = self.classifier.top_k(outcome.value, top_k)
            results.append(Served(predictions, item.decode_s, outcome.queue_s, outcome.run_s, outcome.batch_size))
        return results

    async def _prepare_all(self, images: Sequence[bytes], deadline: float) -> list[Prepared | ServiceError]:
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._decode_pool, self._prepare, data) for data in images]
        try:
            async with asyncio.timeout(deadline - time.monotonic()):  # not wait_for: see DynamicBatcher.submit
                return await asyncio.gather(*jobs)
        except TimeoutError:
            raise self.reject(RequestTimeout("the images were not decoded before the request's deadline")) from None

    def _prepare(self, data: bytes) -> Prepared | ServiceError:
        assert self.classifier is not None
        started = time.perf_counter()
        try:
            item = self.classifier.prepare(data)
        except ServiceError as exc:  # this image's own problem: reported in its slot
            return exc
        elapsed = time.perf_counter() - started
        self.metrics.decode_duration.observe(elapsed)
        return Prepared(item, elapsed)

    async def _submit(self, items: list[Item], deadline: float) -> list[Outcome[Result]]:
        assert self.batcher is not None
        try:
            outcomes = await self.batcher.submit(items, deadline)
        except QueueFull as exc:
            raise self.reject(Overloaded(f"too many requests queued ({exc}); retry shortly")) from None
        except DeadlineExceeded as exc:
            raise self.reject(RequestTimeout(str(exc))) from None
        except BatcherClosed:
            raise self.reject(NotReady("the service is shutting down")) from None
        for outcome in outcomes:
            self.metrics.queue_wait.observe(outcome.queue_s)
        return outcomes

    def _run_batch(self, images: list[Item]) -> list[Result]:
        """Runs on the model thread: one forward pass, timed."""
        assert self.classifier is not None
        started = time.perf_counter()
        probs = self.classifier.predict_batch(images)
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(images))
        self.metrics.sample()  # queue depth and GPU memory, for the other workers' scrapes
        return probs
