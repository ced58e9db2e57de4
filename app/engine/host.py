"""The model host: loads the checkpoint, makes it serve, swaps it on a reload, retires what no longer serves,
and watches the file when asked. It knows nothing of requests, admission or draining (the door's job).

Loads run on a daemon thread (app/engine/threads.py) while the event loop answers probes. A reload loads,
validates and warms the new model beside the serving one (app/engine/reload.py says what it may read), then
swaps between batches: requests already holding the old model finish on it, and it is freed once the last of
them is answered, so at most two models are ever in memory. Anything that fails before the swap leaves the
old model serving and is reported in one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from app.capacity import Capacity
from app.config import ConfigError, Settings
from app.engine.backends import Runtime
from app.engine.classifier import Classifier, load_classifier
from app.engine.client import ModelInfo, ModelState, ReloadOutcome
from app.engine.loaded import LoadedModel
from app.engine.reload import free_memory, log_outcome, ms_since, one_line, resolve_requested
from app.engine.threads import on_daemon_thread
from app.engine.watch import file_identity, watch_file
from app.errors import InvalidModel, NotReady, ReloadInProgress
from app.metrics import Metrics
from model import CheckpointError

log = logging.getLogger(__name__)


class ModelHost:
    """Owns the serving model, the ones still finishing their requests, and every way of replacing it."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        capacity: Capacity,
        metrics: Metrics,
        log_fields: dict[str, object] | None = None,
    ) -> None:
        self.settings, self.runtime, self.capacity, self.metrics = settings, runtime, capacity, metrics
        self._log_fields = log_fields or {}  # added to the "ready" log line
        self.serving: LoadedModel | None = None
        self.startup_error: Exception | None = None
        self.last_reload: ReloadOutcome | None = None
        self.stopping = False
        self._models: list[LoadedModel] = []  # the serving one, and any still finishing its requests
        self._loading: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._reloading: asyncio.Task[Any] | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a model goes live, fails to load, or the host stops."""
        self._listeners.append(listener)

    def queue_depth(self) -> int:
        """Images waiting for a model (not counting the batches that are running)."""
        return sum(model.batcher.depth for model in self._models)

    def start(self) -> None:
        """Begin loading ``SERVE_MODEL_PATH`` in the background (on the running loop)."""
        self._loading = asyncio.create_task(self._load(), name="load-model")

    async def wait_loaded(self) -> None:
        """Return once loading has finished, whether it succeeded or not (see ``startup_error``)."""
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def stop(self) -> None:
        """Stop loading and watching, let a reload under way end, and retire every model once it is idle."""
        self.stopping = True
        self._changed()
        if self._loading is not None:
            self._loading.cancel()  # a load still under way is of no use any more (and may never return)
            await asyncio.gather(self._loading, return_exceptions=True)
        if self._watching is not None:
            self._watching.cancel()
        await self._end_reload()
        async with self._reload_lock:
            for model in list(self._models):
                await self._retire(model)

    @contextmanager
    def holding(self) -> Iterator[LoadedModel]:
        """The model serving now, held until the block ends (a reload meanwhile does not take it away)."""
        model = self.serving
        if model is None or self.stopping:
            raise NotReady(self.not_ready_reason())
        with model.use():
            yield model

    def not_ready_reason(self) -> str:
        if self.stopping:
            return "the service is shutting down"
        if self.startup_error is not None:
            return "the model could not be loaded"
        return "the model is loading"

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
            classifier = await self._load_classifier(path)
        except Exception as exc:
            self.startup_error = exc
            expected = isinstance(exc, CheckpointError | ConfigError)
            log.error("the model could not be served (SERVE_MODEL_PATH=%s): %s", path, exc, exc_info=not expected)
            self._changed()
            return
        self._go_live(classifier)
        if self.settings.watch_model:
            self._watching = asyncio.create_task(watch_file(path, watched, self._reload_on_change), name="watch")

    async def _load_classifier(self, path: Path) -> Classifier:
        options = self.load_options()
        return await on_daemon_thread("load", lambda: load_classifier(path, self.runtime, **options))

    def _go_live(self, classifier: Classifier) -> LoadedModel:
        """Make ``classifier`` the serving model: new requests take it from now on."""
        model = LoadedModel(
            classifier, self.capacity, max_batch_delay_s=self.settings.max_batch_delay_ms / 1000, metrics=self.metrics
        )
        model.start()
        self._models.append(model)
        if self.serving is not None:
            self.metrics.hide_model(self.serving.info.metric_labels())
        self.serving = model
        self.metrics.show_model(model.info.metric_labels())
        if model.info.device.startswith("cuda"):
            device = torch.device(model.info.device)
            self.metrics.track_gpu_memory(
                lambda: torch.cuda.memory_allocated(device), lambda: torch.cuda.memory_reserved(device)
            )
        self._changed()
        log.info("ready", extra={**_ready_fields(model.info), **self._log_fields})
        return model

    async def _retire(self, model: LoadedModel) -> None:
        await model.retire()
        self._models.remove(model)

    async def reload(self, requested: str | None = None) -> ReloadOutcome:
        """Replace the serving model without dropping a request (``EngineClient.reload``). Raises
        ``ReloadInProgress`` during another reload, ``NotReady`` before the first model serves or while
        stopping, ``InvalidModel`` (the old model still serving) for a path outside the model directory or a
        model that fails."""
        if self._reload_lock.locked():
            raise ReloadInProgress("a reload is in progress; try again once it has finished")
        if self.serving is None or self.stopping:
            raise NotReady(self.not_ready_reason())
        path = self.settings.model_path
        if requested is not None:
            path = resolve_requested(requested, self.settings.reload_dir)
        async with self._reload_lock:
            self._reloading = asyncio.current_task()
            try:
                return await self._swap(path)
            finally:
                self._reloading = None

    async def _swap(self, path: Path) -> ReloadOutcome:
        old = self.serving
        assert old is not None  # the host reloads only once it serves
        previous = ModelState.of(old.info)
        started, at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
        try:
            classifier = await self._load_classifier(path)
        except Exception as exc:  # a bad file, or a backend that cannot build or warm it up
            failed = ReloadOutcome("failed", str(path), at, ms_since(started), previous, previous, one_line(exc))
            self._record(failed, exc)
            raise InvalidModel(f"the model was not replaced: {failed.error}") from None
        new = self._go_live(classifier)
        outcome = ReloadOutcome("ok", str(path), at, ms_since(started), previous, ModelState.of(new.info))
        self._record(outcome)
        await self._retire(old)
        del old, classifier
        free_memory()
        return outcome

    def _record(self, outcome: ReloadOutcome, exc: BaseException | None = None) -> None:
        self.last_reload = outcome
        self.metrics.reloads.labels(result=outcome.result).inc()
        log_outcome(outcome, exc)

    async def _reload_on_change(self) -> bool:
        """The watcher's reload; False when it must try again (another reload was running)."""
        try:
            await self.reload()
        except ReloadInProgress:
            return False
        except (InvalidModel, NotReady):
            pass  # recorded and logged by the reload; the next new file gets its own try
        return True

    async def _end_reload(self) -> None:
        """Let a reload under way finish within the request timeout; past it, give up on it (its load thread
        cannot keep the process from exiting)."""
        reloading = self._reloading
        if reloading is None:
            return
        done, _ = await asyncio.wait([reloading], timeout=self.settings.request_timeout_s)
        if not done:
            log.warning("stopping: the reload under way did not finish in time and is abandoned")
            reloading.cancel()
            await asyncio.gather(reloading, return_exceptions=True)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


def _ready_fields(info: ModelInfo) -> dict[str, str]:
    # "name" would collide with the LogRecord's own attribute (logging raises), so it goes as "model".
    labels = info.metric_labels()
    return {"model" if key == "name" else key: value for key, value in labels.items()} | {"backend": info.backend}
