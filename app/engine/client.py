"""The engine client seam: all that the edges (HTTP, the Open Inference Protocol over REST and gRPC, admin, the
door) know of the engine, as one small interface that carries plain data only.

Submit images (encoded files, or tensors a client already normalised) with a deadline and get back each one's
probabilities with the model that computed them (name, version, precision); cancel by cancelling the awaiting
task (queued images are dropped before they reach the model); reload; describe the serving model; readiness.
No torch tensor, no live model and no batcher crosses it, so the engine can run in this process
(``app/engine/local.py``) or in another one behind the same interface. Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from app.errors import ServiceError


@dataclass(frozen=True)
class ModelInfo:
    """A served model as the edges see it: what it is, what it computes with, since when it serves."""

    name: str
    version: str
    arch: str
    labels: tuple[str, ...]
    crop_size: int
    trained: bool
    source: str
    created_at: str
    device: str
    precision: str
    backend: str
    loaded_at: str
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def describe(self) -> dict[str, Any]:
        """The metadata ``GET /model`` answers (the labels left out: they are the classes' names)."""
        shown = {key: value for key, value in asdict(self).items() if key != "labels"}
        return {**shown, "num_classes": self.num_classes}

    def metric_labels(self) -> dict[str, str]:
        """The labels of ``inference_model_info`` for this model."""
        return {
            "name": self.name,
            "version": self.version,
            "arch": self.arch,
            "device": self.device,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class Prediction:
    """One ranked class with its softmax probability."""

    rank: int
    class_id: int
    label: str
    score: float


@dataclass(frozen=True)
class Answer:
    """One image's probabilities (float32, one per class), the model that computed them, and how long each step
    took (seconds)."""

    probs: np.ndarray
    model: ModelInfo
    decode_s: float
    queue_s: float
    run_s: float
    batch_size: int

    def top_k(self, k: int) -> list[Prediction]:
        """The ``k`` most probable classes, best first (ties: the lower class id first)."""
        k = min(k, self.probs.size)
        best = np.argpartition(-self.probs, k - 1)[:k]
        ranked = sorted(best.tolist(), key=lambda i: (-self.probs[i], i))
        return [Prediction(rank, i, self.model.labels[i], float(self.probs[i])) for rank, i in enumerate(ranked, 1)]


@dataclass(frozen=True)
class ModelState:
    """Which model served: its name, version and when it started serving."""

    name: str
    version: str
    loaded_at: str

    @classmethod
    def of(cls, model: ModelInfo) -> ModelState:
        return cls(model.name, model.version, model.loaded_at)


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did: ``result`` is ``ok`` or ``failed`` (then ``error`` says why, in one line)."""

    result: str
    path: str
    at: str
    took_ms: float
    previous: ModelState
    current: ModelState
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """What anyone may read (``GET /model``): the file's name, not where it lives."""
        shown = self.to_dict()
        name = shown.pop("path")
        shown["file"] = name.rsplit("/", 1)[-1]
        if self.error is not None:
            shown["error"] = self.error.replace(name, shown["file"])
        return shown


class EngineClient(Protocol):
    """The engine, as every edge uses it. ``classify`` and ``classify_tensors`` raise the engine's own refusals
    (``Overloaded``, ``RequestTimeout``, ``NotReady``) as ``ServiceError``s; an image's own problem (invalid,
    unsupported, too large) is answered in its slot."""

    @property
    def model(self) -> ModelInfo | None:
        """The model serving now; None until one is loaded."""
        ...

    @property
    def last_reload(self) -> ReloadOutcome | None: ...

    def ready(self) -> bool:
        """Whether the engine takes work: a model is loaded and warm, and it is not stopping."""
        ...

    def not_ready_reason(self) -> str:
        """Why it does not, in words for a 503."""
        ...

    def on_readiness(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener`` with ``ready()`` whenever it may have changed."""
        ...

    async def classify(self, images: Sequence[bytes], deadline: float) -> list[Answer | ServiceError]:
        """Encoded image files -> one result each, in order, all computed by one model; ``deadline`` on the
        ``time.monotonic`` clock."""
        ...

    async def classify_tensors(self, batch: np.ndarray, deadline: float) -> list[Answer]:
        """float32 (N, 3, crop, crop), normalised as the model's preprocessing says -> one answer each."""
        ...

    async def reload(self, requested: str | None) -> ReloadOutcome:
        """Serve ``SERVE_MODEL_PATH`` again, or the file ``requested`` names inside the model directory (a name
        from the network), without dropping a request."""
        ...
