"""Faults at start-up and in the model.

Weights that are missing, empty, truncated, corrupt, of the wrong architecture or a pickle in disguise:
``python -m app`` must refuse them with one error line and a non-zero exit, and never unpickle anything
(each pickle here would create a marker file if it were ever unpickled). A forward pass that raises must
fail only its own batch's requests.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
import torchvision

from tests.reliability.support.pickle_guard import unpickling_calls

REPO = Path(__file__).resolve().parents[3]


class Planted:
    """Unpickling this calls ``open(marker, "w")``: the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _wrong_arch_metadata(good: Path, out: Path) -> None:
    tensors = safetensors.torch.load_file(good)
    with safetensors.safe_open(good, "pt") as f:
        metadata = dict(f.metadata())
    safetensors.torch.save_file(tensors, out, metadata=metadata | {"arch": "resnet18"})


def _resnet18_tensors(good: Path, out: Path) -> None:
    with safetensors.safe_open(good, "pt") as f:
        metadata = dict(f.metadata())
    net = torchvision.models.resnet18(num_classes=int(metadata["num_classes"]))
    safetensors.torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out, metadata=metadata)


def bad_weights(good: Path, folder: Path, marker: Path) -> dict[str, Path]:
    """Every broken checkpoint, by name, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    files: dict[str, Callable[[Path], object]] = {
        "empty file": lambda p: p.write_bytes(b""),
        "truncated to half": lambda p: p.write_bytes(data[: len(data) // 2]),
        "truncated inside the header": lambda p: p.write_bytes(data[: 8 + header_len // 2]),
        "corrupt header": lambda p: p.write_bytes(data[:8] + b"\x00\xff" * 20 + data[48:]),
        "header length past the end": lambda p: p.write_bytes(struct.pack("<Q", 2**62) + data[8:]),
        "random bytes": lambda p: p.write_bytes(os.urandom(4096)),
        "wrong arch in the metadata": lambda p: _wrong_arch_metadata(good, p),
        "resnet18 tensors": lambda p: _resnet18_tensors(good, p),
        "torch.save zip renamed .safetensors": lambda p: torch.save({"model": Planted(marker)}, p),
        "raw pickle renamed .safetensors": lambda p: p.write_bytes(pickle.dumps(Planted(marker), protocol=2)),
        "a directory": lambda p: p.mkdir(),
    }
    paths = {"missing file": folder / "missing.safetensors"}
    for index, (name, write) in enumerate(files.items()):
        path = folder / f"bad{index}.safetensors"
        write(path)
        paths[name] = path
    return paths


@dataclass(frozen=True)
class StartFailure:
    name: str
    exit_code: int | None
    error_lines: list[str]  # log lines at level error or above
    traceback: bool
    names_the_file: bool
    elapsed_s: float
    unpickled: list[str]  # recorded by the pickle guard

    @property
    def refused_cleanly(self) -> bool:
        return bool(self.exit_code) and len(self.error_lines) == 1 and not self.traceback and self.names_the_file


def start_on(name: str, path: Path, report: Path, onnx_cache: Path, timeout_s: float = 120) -> StartFailure:
    """``python -m app`` (under the pickle guard) on ``path``: how it ends and what it says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")} | {
        "SERVE_MODEL_PATH": str(path),
        "SERVE_HOST": "127.0.0.1",
        "SERVE_PORT": "0",
        "SERVE_GRPC_PORT": "0",
        "SERVE_ONNX_CACHE_DIR": str(onnx_cache),
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "tests.reliability.support.pickle_guard", str(report)]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    errors = [r["message"] for r in records if r.get("level") in ("error", "critical")]
    return StartFailure(
        name=name,
        exit_code=proc.returncode,
        error_lines=errors,
        traceback="Traceback" in proc.stderr,
        names_the_file=any(str(path) in line for line in errors),
        elapsed_s=time.monotonic() - started,
        unpickled=unpickling_calls(report),
    )


def run_weight_faults(
    good: Path, folder: Path, onnx_cache: Path, names: Sequence[str] | None = None
) -> tuple[list[StartFailure], bool]:
    """Start the server on each broken checkpoint (``names``, or all), two at a time; also returns whether
    the pickle marker ever appeared."""
    marker = folder / "unpickled-marker"
    files = bad_weights(good, folder / "weights", marker)
    chosen = [(name, files[name]) for name in (names or files)]
    with ThreadPoolExecutor(2) as pool:  # each start is mostly importing torch: two overlap well on 2 cores
        jobs = [
            pool.submit(start_on, name, path, folder / f"guard{i}.txt", onnx_cache)
            for i, (name, path) in enumerate(chosen)
        ]
        results = [job.result() for job in jobs]
    return results, marker.exists()
