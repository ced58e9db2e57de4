"""Generated image folders and trained runs for the training tests (and for serving tests to reuse).

Every class is a colour with its own stripe pattern and noise, written as real JPEG/PNG files,
so a ResNet-50 separates them in a few epochs on a CPU.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import CHECKPOINT_FILENAME

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["amber", "blue", "green", "red", "violet"]
COLOURS = {"amber": (230, 160, 20), "blue": (30, 60, 220), "green": (30, 180, 60), "red": (210, 30, 30)}
COLOURS["violet"] = (150, 40, 200)
TRAIN_PER_CLASS = 8
VAL_PER_CLASS = 3  # 15 readable val images: not divisible by the 2 DDP ranks
IMAGE_SIZE = 40
# Small and fast, yet the real network, recipe machinery and loaders: 32 px eval crop.
FAST_FLAGS = ["--image-size", "32", "--batch-size", "8", "--print-freq", "2", "--device", "cpu"]


def class_image(name: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """A noisy image of ``name``'s colour with stripes at the class's own angle."""
    index = CLASSES.index(name)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = np.pi * index / len(CLASSES)
    stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 2.5) > 0)[..., None]
    colour = np.array(COLOURS[name], dtype=np.float64)
    pixels = np.where(stripes, colour, colour * 0.55) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_split(root: Path, per_class: int, rng: np.random.Generator, classes: list[str] = CLASSES) -> int:
    """``root/<class>/<n>.jpg|png`` for each class; returns the number of images written."""
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = "png" if i % 3 == 0 else "jpg"
            class_image(name, rng).save(folder / f"{i:03d}.{suffix}")
    return per_class * len(classes)


def make_image_folder(root: Path, seed: int = 0) -> Path:
    """``root/train`` and ``root/val``, each with one unreadable file among the images."""
    rng = np.random.default_rng(seed)
    write_split(root / "train", TRAIN_PER_CLASS, rng)
    write_split(root / "val", VAL_PER_CLASS, rng)
    (root / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "val" / "blue" / "truncated.png").write_bytes(_png_bytes(rng)[:60])
    return root


def _png_bytes(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    class_image("blue", rng).save(buf, format="PNG")
    return buf.getvalue()


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    """``python -m training.train`` with the fast flags."""
    return [
        sys.executable,
        "-m",
        "training.train",
        "--data-dir",
        str(data),
        "--output-dir",
        str(out),
        *FAST_FLAGS,
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    """Single-threaded math keeps runs reproducible and leaves the other core to the loaders."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_command(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in its own process group; on timeout the whole group (torchrun's ranks too) is killed."""
    proc = subprocess.Popen(
        command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(command)}\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_training(data: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run training to completion in a subprocess; fails the test with its output if it fails."""
    proc = run_command(train_command(data, out, *extra), timeout)
    assert proc.returncode == 0, f"training failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: its data folder, output folder and the command-line flags used."""

    data_dir: Path
    output_dir: Path
    flags: tuple[str, ...]
    stdout: str

    @property
    def checkpoint(self) -> Path:
        return self.output_dir / CHECKPOINT_FILENAME


RUN_FLAGS = ("--epochs", "3", "--workers", "2", "--seed", "7")


def train_tiny_run(data_dir: Path, output_dir: Path) -> TrainedRun:
    """Train :data:`RUN_FLAGS` (3 epochs from scratch) on a folder made by :func:`make_image_folder`."""
    proc = run_training(data_dir, output_dir, *RUN_FLAGS)
    return TrainedRun(data_dir, output_dir, RUN_FLAGS, proc.stdout)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-class generated dataset (train 40 + 1 unreadable, val 15 + 1 unreadable)."""
    return make_image_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A finished run on :func:`image_folder`; its ``model.safetensors`` is servable as is. Do not modify."""
    return train_tiny_run(image_folder, tmp_path_factory.mktemp("run"))
