"""The checkpoint format: one ``.safetensors`` file that the service can serve as is.

Tensors are the model's ``state_dict``; ``__metadata__`` carries everything needed to rebuild and
serve it (arch, labels, preprocessing, provenance). No pickle is involved, so loading an untrusted
file cannot execute code. The model's version is the first 12 hex digits of the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor, nn

from model.files import UnreadableFile, atomic_write, read_regular_file
from model.network import ARCH, build_model
from model.presets import Preprocessing

FORMAT_VERSION = "1"
# The file a training run hands to the service, and the one it keeps from before the last hand-off.
CHECKPOINT_FILENAME = "model.safetensors"
PREVIOUS_CHECKPOINT_FILENAME = "model.prev.safetensors"
# Far above a ResNet-50 checkpoint (about 100 MB in fp32): a bound on what a load reads, not a size policy.
MAX_CHECKPOINT_BYTES = 1 << 30
REQUIRED_KEYS = ("format_version", "arch", "num_classes", "labels", "preprocessing", "trained", "source", "created_at")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # added by DDP and torch.compile


class CheckpointError(ValueError):
    """A checkpoint file that cannot be served; the message is one line naming the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, validated checkpoint; ``model`` is built on CPU in eval mode."""

    path: Path
    version: str
    labels: list[str]
    preprocessing: Preprocessing
    trained: bool
    source: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    arch: str = ARCH
    model: nn.Module = field(default_factory=nn.Module, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def clean_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop DDP/compile prefixes and detach into contiguous CPU tensors that own their storage."""
    out = {}
    for key, tensor in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = tensor.detach().cpu().contiguous().clone()
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, Tensor],
    *,
    labels: list[str],
    preprocessing: Preprocessing,
    trained: bool,
    source: str,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically (``model.files.atomic_write``) and return its version."""
    tensors = clean_state_dict(state_dict)
    head = tensors.get("fc.weight")
    if head is None or head.shape[0] != len(labels):
        rows = None if head is None else head.shape[0]
        raise ValueError(f"the classifier has {rows} outputs but {len(labels)} labels were given")
    metadata = {
        "format_version": FORMAT_VERSION,
        "arch": ARCH,
        "num_classes": str(len(labels)),
        "labels": json.dumps(list(labels)),
        "preprocessing": preprocessing.to_json(),
        "trained": "true" if trained else "false",
        "source": source,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if metrics is not None:
        metadata["metrics"] = json.dumps(dict(metrics))
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=metadata))
    return file_version(Path(path).read_bytes())


def file_version(data: bytes) -> str:
    """The model version: the first 12 hex digits of the file's SHA-256."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_checkpoint(path: str | os.PathLike[str], *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> Checkpoint:
    """Read, validate and build a checkpoint; any problem raises a one-line ``CheckpointError``.

    Only a regular file of at most ``max_bytes`` is read (``model.files.read_regular_file``).
    """
    path = Path(path)
    try:
        data = read_regular_file(path, max_bytes)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except UnreadableFile as exc:
        raise CheckpointError(path, str(exc)) from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror}") from None
    metadata = _read_metadata(path, data)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error types for bad buffers
        raise CheckpointError(path, f"corrupt or truncated safetensors file ({_first_line(exc)})") from None
    labels, preprocessing = _validate_metadata(path, metadata, tensors)
    return Checkpoint(
        path=path,
        version=file_version(data),
        labels=labels,
        preprocessing=preprocessing,
        trained=metadata["trained"] == "true",
        source=metadata["source"],
        created_at=metadata["created_at"],
        metrics=_parse_json(path, metadata, "metrics", dict) if "metrics" in metadata else {},
        model=_build_loaded(path, tensors, len(labels)),
    )


def _read_metadata(path: Path, data: bytes) -> dict[str, str]:
    """Parse the safetensors header (8-byte little-endian length, then JSON) for ``__metadata__``."""
    # A safetensors header is JSON right after its 8-byte length, whose first byte may well be 0x80.
    if data[8:9] != b"{" and (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):
        raise CheckpointError(
            path, "is a pickled PyTorch file, not safetensors; convert it with `python -m model.convert`"
        )
    if len(data) < 8:
        raise CheckpointError(path, f"corrupt or truncated safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise CheckpointError(path, "corrupt or truncated safetensors file (header runs past the end)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "corrupt safetensors file (unreadable header)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "has no __metadata__; not a checkpoint of this project")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(path, f"metadata lacks {', '.join(missing)}")
    return metadata


def _validate_metadata(
    path: Path, metadata: dict[str, str], tensors: dict[str, Tensor]
) -> tuple[list[str], Preprocessing]:
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            path, f"unknown format_version {metadata['format_version']!r} (this build reads {FORMAT_VERSION!r})"
        )
    if metadata["arch"] != ARCH:
        raise CheckpointError(path, f"arch is {metadata['arch']!r}, expected {ARCH!r}")
    labels = _parse_json(path, metadata, "labels", list)
    try:
        num_classes = int(metadata["num_classes"])
    except ValueError:
        raise CheckpointError(path, f"num_classes {metadata['num_classes']!r} is not an integer") from None
    if num_classes != len(labels):
        raise CheckpointError(path, f"num_classes is {num_classes} but there are {len(labels)} labels")
    head = tensors.get("fc.weight")
    if head is None or head.shape[0] != num_classes:
        rows = "no fc.weight" if head is None else f"fc.weight has {head.shape[0]} rows"
        raise CheckpointError(path, f"num_classes is {num_classes} but {rows}")
    try:
        preprocessing = Preprocessing.from_dict(_parse_json(path, metadata, "preprocessing", dict))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"bad preprocessing: {_first_line(exc)}") from None
    return [str(label) for label in labels], preprocessing


def _parse_json(path: Path, metadata: dict[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError:
        raise CheckpointError(path, f"metadata {key} is not valid JSON") from None
    if not isinstance(value, kind):
        raise CheckpointError(path, f"metadata {key} must be a JSON {kind.__name__}")
    return value


def _build_loaded(path: Path, tensors: dict[str, Tensor], num_classes: int) -> nn.Module:
    net = build_model(num_classes)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(path, f"weights do not fit {ARCH}: {_first_line(exc)}") from None
    return net.eval()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]
