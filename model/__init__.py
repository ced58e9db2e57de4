"""The shared ResNet-50: definition, labels, preprocessing presets and the checkpoint format.

Both ``training`` and ``app`` import from here; this package reads no settings and no
environment, it only takes plain arguments.
"""

from model.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from model.labels import imagenet_labels
from model.network import ARCH, build_model
from model.presets import EvalPreset, Preprocessing, TrainPreset

__all__ = [
    "ARCH",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "EvalPreset",
    "Preprocessing",
    "TrainPreset",
    "build_model",
    "imagenet_labels",
    "load_checkpoint",
    "save_checkpoint",
]
