"""ONNX Runtime on the CPU, fp32: about 1.5x the throughput of eager PyTorch on a small AVX2 host."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnxruntime as ort
import torch

from app.engine.backends.onnx_export import INPUT_NAME, OUTPUT_NAME, cached_graph, export_graph
from model import Checkpoint, EvalPreset

log = logging.getLogger(__name__)


class OnnxBackend:
    """The checkpoint exported to ONNX (cached by version) and run by the CPU execution provider."""

    name = "onnxruntime"
    device = "cpu"
    precision = "fp32"

    def __init__(self, checkpoint: Checkpoint, preset: EvalPreset, *, threads: int, cache_dir: Path | None) -> None:
        self._crop = preset.preprocessing.crop_size
        self._preset = preset
        self._threads = threads or len(os.sched_getaffinity(0))
        path = cached_graph(checkpoint, preset, cache_dir)
        try:
            self._session = self._open(path)
        except Exception:  # ONNX Runtime raises its own types for a damaged file
            log.warning("cached ONNX graph unreadable; exporting it again", extra={"path": str(path)}, exc_info=True)
            export_graph(checkpoint.model, preset, path)
            self._session = self._open(path)
        self.graph_path = path

    def _open(self, path: Path) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning workers would steal the cores that decode images between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W), or float32 already normalised, on the CPU -> fp32 probabilities (N, C) on the CPU."""
        images = batch if batch.is_floating_point() else self._preset.normalize(batch)
        (probs,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: images.float().contiguous().numpy()})
        return torch.from_numpy(probs)

    def warmup(self, max_batch_size: int) -> None:
        """Run the smallest and largest batch once, so their memory plans exist before traffic."""
        for size in sorted({1, max_batch_size}):
            self.infer(torch.zeros(size, 3, self._crop, self._crop, dtype=torch.uint8))
