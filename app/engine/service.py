"""The running service: loading the model, readiness and draining, and the door every request comes in by.

Decoding runs on a thread pool and the model on the batcher's thread, so the event loop only moves bytes
and futures; many requests decode while a batch runs. Nothing here knows a protocol: the HTTP API and
the Open Inference Protocol both come in through ``admit`` and classify through the ``Call`` it gives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import torch

from app.config import ConfigError, Settings
from app.engine.backends import Runtime, plan_runtime
from app.engine.call import Call
from app.engine.capacity import Admission, Capacity
from app.engine.classifier import Classifier, load_classifier
from app.engine.errors import InvalidModel, NotReady, Overloaded, ReloadInProgress, ServiceError
from app.engine.loaded import LoadedModel
from app.engine.metrics import Metrics
from app.engine.preparing import decode_threads
from app.engine.reload import ReloadOutcome, resolve_requested, swap_model
from app.engine.threads import on_daemon_thread
from app.engine.watch import file_identity, watch_file
from model import CheckpointError

log = logging.getLogger(__name__)


class Service:
    """Owns the serving model, the admission count and the decode threads for one app."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime if runtime is not None else plan_runtime(settings)
        # On CUDA a second batch uploads while the first computes; CPU backends use every core already.
        in_flight = 2 if self.runtime.device.startswith("cuda") else 1
        self.capacity = Capacity(settings.max_batch_size, settings.max_queue_size, batches_in_flight=in_flight)
        self.admission = Admission(self.capacity)
        self.metrics = Metrics()
        self.model: LoadedModel | None = None
        self.startup_error: Exception | None = None
        self.draining = False
        self.decode_threads = decode_threads(settings.decode_threads, self.runtime.device, settings.workers)
        self.decode_pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="decode")
        self._models: list[LoadedModel] = []  # the serving one, and any still finishing its requests
        self._loading: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._reloading: asyncio.Task[Any] | None = None
        self.last_reload: ReloadOutcome | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.metrics.track_load(self.queue_depth, lambda: self.admission.held)
        self.peers_ready: Callable[[], bool] = lambda: True
        self.readiness_listeners: list[Callable[[bool], None]] = []

    @property
    def ready(self) -> bool:
        """Whether this service takes requests: its model is loaded and warm and it is not draining."""
        return self.model is not None and not self.draining

    @property
    def ready_everywhere(self) -> bool:
        """What readiness probes answer: this service is ready, and so is every other process serving the same
        port (``peers_ready``; with ``SERVE_WORKERS`` > 1 the process wing sets it)."""
        return self.ready and self.peers_ready()

    def _set_ready(self, ready: bool) -> None:
        self.metrics.ready.set(int(ready))
        for listener in self.readiness_listeners:
            listener(ready)

    def queue_depth(self) -> int:
        """Images waiting for a model (not counting the batches that are running)."""
        return sum(model.batcher.depth for model in self._models)

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Load in the background (so liveness answers meanwhile); on exit, finish queued work."""
        self._loading = asyncio.create_task(self._load(), name="load-model")
        try:
            yield
        finally:
            self.draining = True
            self._set_ready(False)
            self._loading.cancel()  # a load still under way is of no use any more (and may never return)
            await asyncio.gather(self._loading, return_exceptions=True)
            if self._watching is not None:
                self._watching.cancel()
            await self._end_reload()
            async with self._reload_lock:
                for model in list(self._models):
                    await self.retire(model)
            self.decode_pool.shutdown(wait=False, cancel_futures=True)

    async def _end_reload(self) -> None:
        """Let a reload under way finish within the request timeout; past it, give up on it (its load thread
        cannot keep the process from exiting) and keep serving nothing new."""
        reloading = self._reloading
        if reloading is None:
            return
        done, _ = await asyncio.wait([reloading], timeout=self.settings.request_timeout_s)
        if not done:
            log.warning("stopping: the reload under way did not finish in time and is abandoned")
            reloading.cancel()
            await asyncio.gather(reloading, return_exceptions=True)

    async def wait_loaded(self) -> None:
        """Return once loading has finished, whether it succeeded or not (see ``startup_error``)."""
        if self._loading is not None:
            await asyncio.shield(self._loading)

    def load_options(self) -> dict[str, Any]:
        """The keyword arguments of ``load_classifier`` that come from the settings."""
        s = self.settings
        return {
            "max_batch_size": s.max_batch_size,
            "max_image_pixels": s.max_image_pixels,
            "threads": s.inference_threads,
            "onnx_cache_dir": s.onnx_cache_dir,
            "cuda_graphs": s.cuda_graphs,
            "reduced_decode": s.reduced_decode,
            "max_model_bytes": s.max_model_bytes,
        }

    async def _load(self) -> None:
        path = self.settings.model_path
        watched = file_identity(path)  # before reading it: a replacement while loading is seen as a change
        try:
            options = self.load_options()
            classifier = await on_daemon_thread("load", lambda: load_classifier(path, self.runtime, **options))
        except Exception as exc:
            self.startup_error = exc
            expected = isinstance(exc, CheckpointError | ConfigError)
            log.error("the model could not be served (SERVE_MODEL_PATH=%s): %s", path, exc, exc_info=not expected)
            return
        self.go_live(classifier)
        if self.settings.watch_model:
            self._watching = asyncio.create_task(watch_file(path, watched, self._reload_on_change), name="watch")

    def go_live(self, classifier: Classifier) -> LoadedModel:
        """Make ``classifier`` the serving model: new requests take it from now on."""
        model = LoadedModel(
            classifier, self.capacity, max_batch_delay_s=self.settings.max_batch_delay_ms / 1000, metrics=self.metrics
        )
        model.start()
        self._models.append(model)
        if self.model is not None:
            self.metrics.hide_model(self.model.metric_labels())
        self.model = model
        labels = model.metric_labels()
        self.metrics.show_model(labels)
        if classifier.backend.device.startswith("cuda"):
            device = torch.device(classifier.backend.device)
            self.metrics.track_gpu_memory(
                lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device)
            )
        self._set_ready(not self.draining)
        # "name" would collide with the LogRecord's own attribute (logging raises), so it goes as "model".
        fields = {"model" if key == "name" else key: value for key, value in labels.items()}
        log.info("ready", extra={**fields, "backend": classifier.backend.name, "decode_threads": self.decode_threads})
        return model

    async def retire(self, model: LoadedModel) -> None:
        """Once no request holds ``model`` any more, finish its batches and let it go."""
        await model.retire()
        self._models.remove(model)

    async def reload(self, requested: str | None = None) -> ReloadOutcome:
        """Replace the serving model without dropping a request: with the checkpoint at ``SERVE_MODEL_PATH``, or
        the file ``requested`` names inside the model directory (a name from the network: ``resolve_requested``).
        Raises ``ReloadInProgress`` during another reload, ``NotReady`` before the first model serves or while
        draining, ``InvalidModel`` (the old model still serving) for a path outside the directory or a model
        that fails."""
        if self._reload_lock.locked():
            raise ReloadInProgress("a reload is in progress; try again once it has finished")
        if not self.ready:
            raise NotReady(self.not_ready_reason())
        path = self.settings.model_path
        if requested is not None:
            path = resolve_requested(requested, self.settings.reload_dir)
        async with self._reload_lock:
            self._reloading = asyncio.current_task()
            try:
                return await swap_model(self, path)
            finally:
                self._reloading = None

    async def _reload_on_change(self) -> bool:
        """The watcher's reload; False when it must try again (another reload was running)."""
        try:
            await self.reload()
        except ReloadInProgress:
            return False
        except (InvalidModel, NotReady):
            pass  # recorded and logged by the reload; the next new file gets its own try
        return True

    def not_ready_reason(self) -> str:
        if self.draining:
            return "the service is shutting down"
        if self.startup_error is not None:
            return "the model could not be loaded"
        if self.ready:
            return "another worker process is still loading the model"
        return "the model is loading"

    @asynccontextmanager
    async def admit(self, deadline: float) -> AsyncIterator[Call]:
        """Admit one request, or refuse it at once: ``NotReady`` while loading or draining, ``Overloaded``
        when not even one more image would fit. Nothing of the request's body needs to be read yet;
        draining waits for every admitted request."""
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

    @contextmanager
    def serving_model(self) -> Iterator[LoadedModel]:
        """The model serving now, held until the block ends (a reload meanwhile does not take it away)."""
        model = self.model
        if model is None:
            raise self.reject(NotReady(self.not_ready_reason()))
        with model.use():
            yield model

    def begin_drain(self) -> None:
        """Turn not-ready at once: from now on new requests are refused with 503."""
        if not self.draining:
            log.info("draining: refusing new requests, finishing %d in flight", self._in_flight)
        self.draining = True
        self._set_ready(False)

    async def drain(self) -> None:
        """Turn not-ready, then return once every admitted request has been answered."""
        self.begin_drain()
        await self._idle.wait()

    def reject(self, error: ServiceError) -> ServiceError:
        """Count a request refused before the model, and hand the error back to raise."""
        self.metrics.rejections.labels(reason=error.code).inc()
        return error
