"""Resumable training state (``last.ckpt``): what it holds, how it is written, how a run resumes.

``last.ckpt`` holds only tensors and plain Python values, so ``torch.load(weights_only=True)``
reads it and loading never runs pickled code. It is written to a temporary file, synced and
renamed, so a crash or a preemption mid-write leaves the previous one intact.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import atomic_write
from training.console import log
from training.distributed import DistContext, on_main
from training.loop import Engine
from training.recipes import TrainConfig, config_differences

STATE_FORMAT = "resnet50-training-state"
STATE_VERSION = 1
LAST = "last.ckpt"
RESUME_HINT = "the state is in last.ckpt; continue with the same command plus --resume auto"


@dataclass
class RunState:
    """Where the run stands: the epoch in progress, steps done in it, and what came before."""

    epoch: int = 0  # the epoch to run next (0-based); ``step`` steps of it are done
    step: int = 0
    meter: dict[str, Any] | None = None  # the interrupted epoch's sums so far (all ranks)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    best_top1: float = float("-inf")
    best_epoch: int = 0

    def add_epoch(self, record: dict[str, Any], score: float) -> bool:
        """Close the epoch just validated; True if ``score`` (its top-1) is the best so far."""
        self.history.append(record)
        self.epoch, self.step, self.meter = record["epoch"], 0, None
        if score <= self.best_top1:
            return False
        self.best_top1, self.best_epoch = score, record["epoch"]
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**data)


def seed_everything(seed: int) -> None:
    """Seed every global RNG; the data order and augmentation derive their own seeds from it."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Every global RNG state (torch, CUDA, NumPy, Python) as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    keys = np.asarray(keys)
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the RNG states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (``model.files.atomic_write``: temp file, fsync, rename)."""
    atomic_write(path, lambda tmp: torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, tmp))


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a ``last.ckpt``; any problem is a one-line ``ValueError`` naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such training state to resume from") from None
    except Exception as exc:  # torch.load raises many types for damaged or foreign files
        raise ValueError(f"{path}: not a readable training state ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a training state written by training.train")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: training state version {state.get('version')!r}, this build reads {STATE_VERSION}")
    return state


def resume_path(resume: str | None, output_dir: Path) -> Path | None:
    """``auto`` means ``OUTPUT_DIR/last.ckpt`` if there is one (else a fresh start); a path must exist."""
    if resume is None:
        return None
    if resume == "auto":
        path = output_dir / LAST
        return path if path.exists() else None
    path = Path(resume)
    if not path.is_file():
        raise ValueError(f"--resume {resume}: no such file")
    return path


def training_state(engine: Engine, state: RunState, config: TrainConfig) -> dict[str, Any]:
    """Everything ``last.ckpt`` holds (rank 0's RNG states; the data randomness has its own seeds)."""
    return {
        **engine.state_dict(),
        "progress": state.to_dict(),
        "rng": capture_rng(),
        "config": config.to_dict(),
        "global_batch": config.global_batch,
    }


def save_interrupted(
    engine: Engine, state: RunState, meter: dict[str, Any], epoch: int, step: int, config: TrainConfig, ctx: DistContext
) -> None:
    """Record a stop part-way through ``epoch`` (``step`` steps done) in ``last.ckpt``."""
    state.epoch, state.step, state.meter = epoch, step, meter
    if ctx.is_main:
        save_training_state(Path(config.output_dir) / LAST, training_state(engine, state, config))


def restore_run(resume: str | None, engine: Engine, config: TrainConfig, ctx: DistContext) -> RunState:
    """Load ``--resume``'s state into ``engine`` and the RNGs; a fresh ``RunState`` when there is none.

    Rank 0 reads the file and sends it to the others, so the output folder need not be shared.
    """
    output_dir = Path(config.output_dir)
    saved = on_main(lambda: _read_resume(resume, output_dir), ctx)
    if saved is None:
        if resume == "auto":
            log(f"no {LAST} in {output_dir} yet: starting a fresh run", ctx.is_main)
        return RunState()
    try:
        engine.load_state_dict(saved)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ValueError(f"{resume}: does not fit this run ({' '.join(str(exc).split())[:200]})") from None
    restore_rng(saved["rng"])
    state = RunState.from_dict(saved["progress"])
    changed = config_differences(saved["config"], config)
    if changed:
        log(f"warning: settings differ from the saved run's: {', '.join(changed)}", ctx.is_main)
    if state.step and saved["global_batch"] != config.global_batch:
        log(f"warning: the global batch changed; epoch {state.epoch + 1} restarts from its first step", ctx.is_main)
        state.step, state.meter = 0, None
    return state


def _read_resume(resume: str | None, output_dir: Path) -> dict[str, Any] | None:
    path = resume_path(resume, output_dir)
    return None if path is None else load_training_state(path)
