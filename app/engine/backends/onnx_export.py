"""Export a checkpoint to one ONNX graph (normalised images -> probabilities) and cache it on disk.

The graph holds the softmax too. Its input is the normalised float batch, so one graph serves both the
service's own decoded pixels (normalised by the eval preset, the reference's own code, just before the
run) and tensors that clients send already normalised. Graphs are keyed by the checkpoint's version, so
a restart reuses the export (seconds of work) and a new checkpoint never picks up a stale graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from model import Checkpoint, EvalPreset, atomic_write

log = logging.getLogger(__name__)

# Bump when the exported graph changes shape or meaning, so old cache entries are not reused.
GRAPH_REVISION = "2"
INPUT_NAME = "images"
OUTPUT_NAME = "probs"


class ServingGraph(nn.Module):
    """Normalised float32 (N, 3, H, W) -> softmax probabilities (N, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images), dim=1)


def cached_graph(checkpoint: Checkpoint, preset: EvalPreset, cache_dir: Path | None) -> Path:
    """The ONNX file for ``checkpoint``, exported now unless an earlier run left it in a cache dir."""
    name = f"{checkpoint.arch}-{checkpoint.version}-r{GRAPH_REVISION}.onnx"
    candidates = cache_candidates(checkpoint.path, cache_dir)
    for directory in candidates:
        if (directory / name).is_file():
            return directory / name
    target = first_writable_dir(candidates) / name
    log.info("exporting the model to ONNX (once per checkpoint version)", extra={"path": str(target)})
    export_graph(checkpoint.model, preset, target)
    return target


def cache_candidates(model_path: Path, configured: Path | None) -> list[Path]:
    """Where graphs may live, in order: the configured dir, beside the checkpoint, the user's cache, tmp."""
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet50-serving" / "onnx"
    found = [] if configured is None else [configured]
    found += [model_path.resolve().parent / ".onnx-cache", user_cache]
    return [*found, Path(tempfile.gettempdir()) / "resnet50-serving-onnx"]


def first_writable_dir(candidates: list[Path]) -> Path:
    """The first of ``candidates`` that exists or can be made, and can be written to."""
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    raise OSError(f"no writable ONNX cache directory among {', '.join(map(str, candidates))}")


def export_graph(model: nn.Module, preset: EvalPreset, target: Path) -> None:
    """Write the serving graph with a dynamic batch axis, atomically (``model.atomic_write``)."""
    crop = preset.preprocessing.crop_size
    example = torch.zeros(2, 3, crop, crop, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=4096)

    def write(path: str) -> None:
        torch.onnx.export(
            ServingGraph(model).eval(),
            (example,),
            path,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )

    atomic_write(target, write)
