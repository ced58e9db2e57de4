"""What a reload may read, and how its outcome is told: the pieces of a model update the host uses.

A reload asked for over the network names its file, and that name is not trusted: it must resolve, symbolic
links followed, to a file inside the model directory (``resolve_requested``); what is opened is then checked
before it is read (``model.load_checkpoint``: a regular file, of a bounded size).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path

import torch

from app.engine.client import ReloadOutcome
from app.errors import InvalidModel

log = logging.getLogger(__name__)


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


def log_outcome(outcome: ReloadOutcome, exc: BaseException | None = None) -> None:
    """One line per reload: ``reloaded A -> B in N ms``, or why it failed (at error)."""
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


def free_memory() -> None:
    """Give the old model's memory back now rather than at the next collection (on CUDA, to the device)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def ms_since(started: float) -> float:
    return round(1000 * (time.monotonic() - started), 1)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
