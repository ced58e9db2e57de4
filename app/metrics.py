"""Prometheus metrics (docs/design.md §5), one registry per app: the door, the edges and the engine record into it.

Units are seconds; latencies are histograms so they aggregate across replicas. With several worker
processes (``SERVE_WORKERS``, app/process/workers.py) ``PROMETHEUS_MULTIPROC_DIR`` is set: every worker writes
its values there and renders the sum over all, gauges by the mode given to each.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.capacity import MAX_BATCH_SIZE

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = tuple(float(1 << i) for i in range(MAX_BATCH_SIZE.bit_length()))  # 1, 2, 4, ..., 256
CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL_LABELS = ("name", "version", "arch", "device", "precision")  # of inference_model_info


class Metrics:
    """The service's metrics; ``render`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests_total", "HTTP requests by route and status code", ["route", "code"], registry=registry
        )
        self.request_duration = self._histogram(
            "inference_request_duration_seconds", "Time from request arrival to response", LATENCY_BUCKETS, ["route"]
        )
        self.decode_duration = self._histogram("inference_decode_duration_seconds", "Image decode and resize")
        self.queue_wait = self._histogram("inference_queue_wait_seconds", "Wait from queueing to the batch start")
        self.batch_duration = self._histogram(
            "inference_batch_duration_seconds", "Model time of one batch", LATENCY_BUCKETS
        )
        self.batch_size = self._histogram("inference_batch_size", "Images per model batch", BATCH_SIZE_BUCKETS)
        self.queue_depth = self._gauge("inference_queue_depth", "Images waiting for the model")
        # What tracks saturation per process (deploy/kubernetes/autoscaling scales on it): the queue stays at 0
        # below capacity, while images admitted and not yet answered rise with every step of load.
        self.images_in_flight = self._gauge(
            "inference_images_in_flight", "Images admitted and not yet answered: being decoded, queued or in the model"
        )
        self.rejections = Counter(
            "inference_rejections_total", "Requests refused before the model, by reason", ["reason"], registry=registry
        )
        self.model_info = Gauge(
            "inference_model_info",
            "The served model (always 1)",
            list(MODEL_LABELS),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "inference_model_reloads_total", "Model reloads, by result (ok, failed)", ["result"], registry=registry
        )
        # With several workers, the number that take predictions: a minimum would read 1 while a worker
        # that has not yet written its value is still starting.
        self.ready = self._gauge("inference_ready", "1 when the service takes predictions")
        self._gpu_memory: Gauge | None = None
        self._samplers: list[tuple[Gauge, Callable[[], float]]] = []

    def _gauge(self, name: str, documentation: str) -> Gauge:
        """A gauge summed over the live worker processes when there are several."""
        return Gauge(name, documentation, registry=self.registry, multiprocess_mode="livesum")

    def _histogram(
        self, name: str, documentation: str, buckets: Sequence[float] = STEP_BUCKETS, labels: Sequence[str] = ()
    ) -> Histogram:
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)

    def track_queue_depth(self, queue_depth: Callable[[], float]) -> None:
        """Read the queue depth at scrape time, from the engine itself."""
        self._track(self.queue_depth, queue_depth)

    def track_images_in_flight(self, images_in_flight: Callable[[], float]) -> None:
        """Read the images admitted and not yet answered at scrape time, from the door itself."""
        self._track(self.images_in_flight, images_in_flight)

    def show_model(self, labels: dict[str, str]) -> None:
        """``inference_model_info`` names this model."""
        self.model_info.labels(**labels).set(1)

    def hide_model(self, labels: dict[str, str]) -> None:
        """A model that no longer serves leaves ``inference_model_info``."""
        if self.shared:  # multiprocess values cannot be removed: a 0 is left out when rendering instead
            self.model_info.labels(**labels).set(0)
        else:
            self.model_info.remove(*(labels[name] for name in MODEL_LABELS))

    def track_gpu_memory(self, allocated: Callable[[], float], reserved: Callable[[], float]) -> None:
        """Expose the CUDA allocator's memory; registered only when serving on CUDA, once."""
        if self._gpu_memory is not None:
            return
        self._gpu_memory = Gauge(
            "inference_gpu_memory_bytes",
            "CUDA memory of the model's device",
            ["state"],
            registry=self.registry,
            multiprocess_mode="livesum",  # the workers' models share the one device
        )
        self._track(self._gpu_memory.labels(state="allocated"), allocated)
        self._track(self._gpu_memory.labels(state="reserved"), reserved)

    def _track(self, gauge: Gauge, read: Callable[[], float]) -> None:
        if self.shared:  # a function cannot be read from another process: ``sample`` writes its value
            self._samplers.append((gauge, read))
            gauge.set(read())
        else:
            gauge.set_function(read)

    def sample(self) -> None:
        """With several workers, write the tracked values (called after each batch and each scrape)."""
        for gauge, read in self._samplers:
            gauge.set(read())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker, with several)."""
        if not self.shared:
            return generate_latest(self.registry)
        self.sample()
        registry = CollectorRegistry()
        registry.register(_ServingModelsOnly(MultiProcessCollector(None)))
        return generate_latest(registry)


class _ServingModelsOnly(Collector):
    """Every worker's values, without the ``inference_model_info`` zeros of models no longer serving."""

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            if family.name == "inference_model_info":
                family.samples = [sample for sample in family.samples if sample.value != 0]
            yield family
