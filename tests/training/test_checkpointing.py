"""last.ckpt: atomic, pickle-free, restores every RNG; SIGTERM becomes a stop request."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpointing import (
    RunState,
    capture_rng,
    load_training_state,
    restore_rng,
    resume_path,
    save_training_state,
)
from training.interrupt import StopRequest


def draw() -> tuple[float, float, float]:
    return torch.rand(1).item(), float(np.random.rand()), random.random()


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    saved = capture_rng()
    expected = draw()
    save_training_state(tmp_path / "last.ckpt", {"rng": saved, "progress": RunState(epoch=2).to_dict()})
    draw()
    state = load_training_state(tmp_path / "last.ckpt")  # torch.load(weights_only=True) inside
    restore_rng(state["rng"])
    assert draw() == expected
    assert RunState.from_dict(state["progress"]).epoch == 2


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_training_state(path, {"value": torch.ones(3)})
    save_training_state(path, {"value": torch.zeros(3)})
    assert torch.equal(load_training_state(path)["value"], torch.zeros(3))
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_unreadable_states_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such training state"):
        load_training_state(tmp_path / "missing.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable training state"):
        load_training_state(tmp_path / "garbage.ckpt")
    torch.save({"something": "else"}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=r"not a training state written by training\.train"):
        load_training_state(tmp_path / "foreign.ckpt")


def test_resume_path(tmp_path: Path) -> None:
    assert resume_path(None, tmp_path) is None
    assert resume_path("auto", tmp_path) is None  # nothing to resume: a fresh start
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert resume_path("auto", tmp_path) == tmp_path / "last.ckpt"
    with pytest.raises(ValueError, match=r"--resume nope\.ckpt: no such file"):
        resume_path("nope.ckpt", tmp_path)


def test_run_state_tracks_the_best_epoch() -> None:
    state = RunState()
    assert state.add_epoch({"epoch": 1}, score=40.0) is True
    assert state.add_epoch({"epoch": 2}, score=30.0) is False
    assert state.add_epoch({"epoch": 3}, score=40.0) is False  # ties keep the earlier epoch
    assert (state.best_epoch, state.best_top1, state.epoch, len(state.history)) == (1, 40.0, 3, 3)


def test_sigterm_sets_a_stop_request_and_handlers_are_restored() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_second_ctrl_c_interrupts_at_once() -> None:
    with StopRequest() as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
