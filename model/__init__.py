"""The shared ResNet-50: definition, labels, preprocessing presets and the checkpoint format.

Both ``training`` and ``app`` import from here; this package reads no settings and no
environment, it only takes plain arguments.
"""

from model.checkpoint import (
    CHECKPOINT_FILENAME,
    FORMAT_VERSION,
    PREVIOUS_CHECKPOINT_FILENAME,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from model.decoding import decode_for_eval
from model.files import atomic_write, keep_copy, leftover_temp_files, write_text_atomic
from model.labels import imagenet_labels
from model.network import ARCH, build_model
from model.presets import EvalPreset, Preprocessing, TrainPreset

__all__ = [
    "ARCH",
    "CHECKPOINT_FILENAME",
    "FORMAT_VERSION",
    "PREVIOUS_CHECKPOINT_FILENAME",
    "Checkpoint",
    "CheckpointError",
    "EvalPreset",
    "Preprocessing",
    "TrainPreset",
    "atomic_write",
    "build_model",
    "decode_for_eval",
    "imagenet_labels",
    "keep_copy",
    "leftover_temp_files",
    "load_checkpoint",
    "save_checkpoint",
    "write_text_atomic",
]
