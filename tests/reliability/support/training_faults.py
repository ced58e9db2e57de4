"""Training faults: SIGKILL in the middle of writing ``last.ckpt``, and SIGKILL in the middle of an epoch.

Either way the previous ``last.ckpt`` must stay loadable, and ``--resume auto`` must finish with exactly
the result of an uninterrupted run: the same metrics and bit-identical weights (CPU, one thread).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from PIL import Image

from training.checkpointing import LAST, load_training_state

REPO = Path(__file__).resolve().parents[3]
CLASSES = ("red", "green", "blue")
TIMING_KEYS = {"images_per_s", "data_wait_s", "epoch_time_s"}


def write_dataset(root: Path, train_per_class: int = 8, val_per_class: int = 3, seed: int = 0) -> Path:
    """Three noisy colour classes, real PNG files, small enough for a few seconds per epoch."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for index, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.normal(60, 25, (40, 40, 3))
                pixels[..., index] += 120
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


FLAGS = ["--batch-size", "8", "--image-size", "32", "--workers", "0", "--device", "cpu", "--seed", "7"]


def train_command(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "training.train", "--data-dir", str(data), "--output-dir", str(out)]
    return [*command, *FLAGS, "--print-freq", "1", "--epochs", str(epochs), *extra]


def _env() -> dict[str, str]:
    # One thread: bit-identical results across runs, and the other core left to the rest of the machine.
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_to_end(data: Path, out: Path, epochs: int, *extra: str) -> None:
    command = train_command(data, out, epochs, *extra)
    proc = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def kill_during_checkpoint_write(data: Path, out: Path, epochs: int, after_bytes: int, timeout_s: float = 300) -> int:
    """SIGKILL the run once ``after_bytes`` of a ``last.ckpt`` that replaces an earlier one are written.

    Returns how many bytes were written when the kill landed (0: the write was missed and the run was
    killed anyway). The temporary file is polled every millisecond.
    """
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(train_command(data, out, epochs), cwd=REPO, env=_env(), **quiet)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            written = _partial_size(out) if (out / LAST).exists() else 0
            if written > after_bytes:
                proc.send_signal(signal.SIGKILL)
                return written
            time.sleep(0.001)
        return 0
    finally:
        proc.kill()
        proc.wait()


def _partial_size(out: Path) -> int:
    sizes = []
    for partial in out.glob(f".{LAST}.*.tmp"):
        try:
            sizes.append(partial.stat().st_size)
        except FileNotFoundError:  # renamed into place meanwhile
            continue
    return max(sizes, default=0)


def kill_mid_epoch(data: Path, out: Path, epochs: int, epoch: int, step: int, timeout_s: float = 300) -> str:
    """SIGKILL the run when it reports ``step`` of ``epoch`` (1-based); returns the progress line seen."""
    command = train_command(data, out, epochs)
    proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    marker = f"epoch {epoch}/{epochs} step {step}/"
    try:
        assert proc.stdout is not None
        started = time.monotonic()
        for line in proc.stdout:
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                return line.strip()
            if time.monotonic() - started > timeout_s:
                break
        raise RuntimeError(f"the run never printed {marker!r}")
    finally:
        proc.kill()
        proc.wait()


def metrics_without_timing(out: Path) -> list[dict[str, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def same_result(out: Path, reference: Path) -> bool:
    """Same per-epoch metrics and bit-identical exported weights."""
    if metrics_without_timing(out) != metrics_without_timing(reference):
        return False
    ours, theirs = (safetensors.torch.load_file(p / "model.safetensors") for p in (out, reference))
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def leftover_temp_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".*.tmp"))


@dataclass(frozen=True)
class WriteKill:
    bytes_written_at_kill: int  # of the new last.ckpt's temporary file (a full one is ~190 MB)
    previous_state_epoch: int | None  # what ``last.ckpt`` recorded after the kill (None: unreadable)
    resumed_matches: bool
    temp_files_after_resume: list[str]


@dataclass
class TrainingFaultResult:
    write_kills: list[WriteKill]
    killed_at: str  # the last progress line before the mid-epoch kill
    resumed_after_epoch_kill_matches: bool


def state_epoch(out: Path) -> int | None:
    try:
        return int(load_training_state(out / LAST)["progress"]["epoch"])
    except (ValueError, KeyError):
        return None


def write_kill(data: Path, out: Path, reference: Path, epochs: int, after_bytes: int) -> WriteKill:
    written = kill_during_checkpoint_write(data, out, epochs, after_bytes)
    previous_epoch = state_epoch(out)
    run_to_end(data, out, epochs, "--resume", "auto")
    return WriteKill(written, previous_epoch, same_result(out, reference), leftover_temp_files(out))


def run_training_faults(workdir: Path, kill_points: Sequence[int], epochs: int = 2) -> TrainingFaultResult:
    """An uninterrupted reference run; a kill during the last checkpoint write at each of ``kill_points``
    bytes, and one mid-epoch, each followed by ``--resume auto`` and compared with the reference."""
    data = write_dataset(workdir / "data")
    reference = workdir / "reference"
    run_to_end(data, reference, epochs)
    kills = [write_kill(data, workdir / f"killed-at-{n}", reference, epochs, n) for n in kill_points]
    epoch_killed = workdir / "killed-mid-epoch"
    line = kill_mid_epoch(data, epoch_killed, epochs, epoch=epochs, step=2)
    run_to_end(data, epoch_killed, epochs, "--resume", "auto")
    return TrainingFaultResult(kills, line, same_result(epoch_killed, reference))
