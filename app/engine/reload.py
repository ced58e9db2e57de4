"""Model updates without downtime: load the new checkpoint beside the serving one, then swap between batches.

The new model is read, validated (format, arch, labels, preprocessing: ``model.load_checkpoint``) and warmed
(its backend built and run: ONNX export or cache, CUDA graphs, forward passes) on a thread while the old one
keeps serving. Only then does it take new requests; requests already holding the old model finish on it,
and the old model is freed once the last of them is answered, so at most two models are ever in memory.
Anything that goes wrong before the swap leaves the old model serving and is reported in one line.

A reload asked for over the network names its file, and that name is not trusted: it must resolve, symbolic
links followed, to a file inside the model directory (``resolve_requested``); what is opened is then checked
before it is read (``model.load_checkpoint``: a regular file, of a bounded size).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from app.engine.classifier import load_classifier
from app.engine.errors import InvalidModel
from app.engine.loaded import LoadedModel
from app.engine.threads import on_daemon_thread

if TYPE_CHECKING:
    from app.engine.service import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelState:
    """Which model served: its name, version and when it started serving."""

    name: str
    version: str
    loaded_at: str

    @classmethod
    def of(cls, model: LoadedModel) -> ModelState:
        return cls(model.name, model.version, model.loaded_at.isoformat(timespec="seconds"))


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
        shown = dict(self.to_dict())
        name = shown.pop("path")
        shown["file"] = os.path.basename(name)
        if self.error is not None:
            shown["error"] = self.error.replace(name, shown["file"])
        return shown


def resolve_requested(requested: str, model_dir: Path) -> Path:
    """The file a reload request names (absolute, or relative to ``model_dir``), if it lies inside ``model_dir``
    once every symbolic link is followed; else ``InvalidModel``, saying nothing of what lies outside."""
    folder = Path(os.path.realpath(model_dir))
    try:
        target = Path(os.path.realpath(folder / requested))
    except (ValueError, OSError):  # a NUL byte, a name too long
        target = None
    if target is None or target == folder or not target.is_relative_to(folder):
        raise InvalidModel("the path must name a checkpoint file inside the model directory (SERVE_MODEL_DIR)")
    return target


async def swap_model(service: Service, path: Path) -> ReloadOutcome:
    """Load ``path`` beside the serving model and swap; raise ``InvalidModel`` (the old one still serving)."""
    old = service.model
    assert old is not None  # the service reloads only once it serves
    previous = ModelState.of(old)
    started, at = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    try:
        options = service.load_options()
        classifier = await on_daemon_thread("reload", lambda: load_classifier(path, service.runtime, **options))
    except Exception as exc:  # a bad file, or a backend that cannot build or warm it up
        failed = ReloadOutcome("failed", str(path), at, _ms_since(started), previous, previous, _one_line(exc))
        _record(service, failed, exc)
        raise InvalidModel(f"the model was not replaced: {failed.error}") from None
    new = service.go_live(classifier)
    outcome = ReloadOutcome("ok", str(path), at, _ms_since(started), previous, ModelState.of(new))
    _record(service, outcome)
    await service.retire(old)
    del old, classifier
    _free_memory()
    return outcome


def _record(service: Service, outcome: ReloadOutcome, exc: BaseException | None = None) -> None:
    service.last_reload = outcome
    service.metrics.reloads.labels(result=outcome.result).inc()
    if outcome.result == "ok":
        log.info(
            "reloaded %s -> %s in %.0f ms",
            outcome.previous.version,
            outcome.current.version,
            outcome.took_ms,
            extra={"path": outcome.path, "previous": outcome.previous.version, "current": outcome.current.version},
        )
    else:
        log.error(
            "reload of %s failed, still serving %s: %s",
            outcome.path,
            outcome.previous.version,
            outcome.error,
            exc_info=exc if not isinstance(exc, ValueError) else None,
        )


def _free_memory() -> None:
    """Give the old model's memory back now rather than at the next collection (on CUDA, to the device)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _ms_since(started: float) -> float:
    return round(1000 * (time.monotonic() - started), 1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
