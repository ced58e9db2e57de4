"""Training faults: SIGKILL during a checkpoint write and SIGKILL mid-epoch, each resumed with
``--resume auto`` and compared with an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.support.training_faults import run_training_faults
from training.distributed import DistContext
from training.outputs import check_output_dir


@pytest.mark.slow
def test_sigkill_while_writing_or_mid_epoch_then_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    result = run_training_faults(tmp_path, kill_points=(32 << 20,), epochs=2)
    (kill,) = result.write_kills
    assert kill.bytes_written_at_kill > 32 << 20  # the kill landed inside the write
    assert kill.previous_state_epoch == 1  # the previous last.ckpt still loads
    assert kill.resumed_matches
    assert kill.temp_files_after_resume == []  # the killed write's temporary file was cleaned up
    assert "epoch 2/2 step 2/" in result.killed_at
    assert result.resumed_after_epoch_kill_matches


def test_a_resumed_run_removes_the_temporary_files_of_killed_writes(tmp_path: Path) -> None:
    leftovers = [tmp_path / ".last.ckpt.k1.tmp", tmp_path / ".model.safetensors.k2.tmp"]
    unrelated = tmp_path / ".notes.tmp"
    for path in [*leftovers, unrelated]:
        path.write_bytes(b"partial")
    (tmp_path / "last.ckpt").write_bytes(b"state")
    check_output_dir(tmp_path, "auto", DistContext())
    assert not any(p.exists() for p in leftovers)
    assert unrelated.exists() and (tmp_path / "last.ckpt").exists()
