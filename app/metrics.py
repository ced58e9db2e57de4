"""Prometheus metrics (DESIGN §5), each service instance with its own registry.

Units are seconds; latencies are histograms so they aggregate across replicas. With several worker
processes (``SERVE_WORKERS``, app/workers.py) ``PROMETHEUS_MULTIPROC_DIR`` is set: every worker writes
its values there and renders the sum over all, gauges by the mode given to each.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = tuple(float(1 << i) for i in range(9))  # 1, 2, 4, ..., 256
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's metrics; ``render`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests_total", "HTTP requests by route and status code", ["route", "code"], registry=registry
        )
        self.request_duration = Histogram(
            "inference_request_duration_seconds",
            "Time from request arrival to response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decode_duration = Histogram(
            "inference_decode_duration_seconds", "Image decode and resize", buckets=STEP_BUCKETS, registry=registry
        )
        self.queue_wait = Histogram(
            "inference_queue_wait_seconds",
            "Wait from queueing to the batch start",
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            "inference_batch_duration_seconds", "Model time of one batch", buckets=LATENCY_BUCKETS, registry=registry
        )
        self.batch_size = Histogram(
            "inference_batch_size", "Images per model batch", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Images waiting for the model", registry=registry, multiprocess_mode="livesum"
        )
        self.rejections = Counter(
            "inference_rejections_total", "Requests refused before the model, by reason", ["reason"], registry=registry
        )
        self.model_info = Gauge(
            "inference_model_info",
            "The served model (always 1)",
            ["name", "version", "arch", "device", "precision"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        # With several workers, the number that take predictions: a minimum would read 1 while a worker
        # that has not yet written its value is still starting.
        self.ready = Gauge(
            "inference_ready", "1 when the service takes predictions", registry=registry, multiprocess_mode="livesum"
        )
        self._gpu_memory: Gauge | None = None
        self._samplers: list[tuple[Gauge, Callable[[], float]]] = []

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        """Read the queue depth at scrape time, from the batcher itself."""
        self._track(self.queue_depth, depth)

    def track_gpu_memory(self, allocated: Callable[[], float], reserved: Callable[[], float]) -> None:
        """Expose the CUDA allocator's memory; registered only when serving on CUDA."""
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
        MultiProcessCollector(registry)
        return generate_latest(registry)
