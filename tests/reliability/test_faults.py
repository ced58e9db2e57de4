"""Faults: broken weights are refused at start with one line and never unpickled; the serving path never
unpickles anything; a forward pass that raises fails only its own batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.images import benchmark_jpegs
from tests.conftest import MakeSettings
from tests.reliability.conftest import GuardedServer
from tests.reliability.support.faults import REPO, run_weight_faults
from tests.reliability.support.model_faults import run_forward_faults
from tests.reliability.support.pickle_guard import unpickling_calls
from tests.reliability.support.rawhttp import RawRequest, exchange
from tests.reliability.support.suite import AUTH, DEFAULT_WEIGHT_FAULTS, Workspace


@pytest.mark.slow
def test_broken_weights_stop_the_server_at_start_with_one_line(workspace: Workspace, tmp_path: Path) -> None:
    starts, marker_created = run_weight_faults(
        workspace.checkpoint, tmp_path, workspace.onnx_cache, DEFAULT_WEIGHT_FAULTS
    )
    assert [s.name for s in starts] == list(DEFAULT_WEIGHT_FAULTS)
    for start in starts:
        assert start.exit_code == 1, start
        assert len(start.error_lines) == 1 and start.names_the_file and not start.traceback, start
        assert start.unpickled == [], start
    assert not marker_created


def test_the_serving_path_never_unpickles(guarded_server: GuardedServer) -> None:
    jpeg = [("Content-Type", "image/jpeg"), *AUTH]
    for body in (benchmark_jpegs()[0], b"not an image", b"\x80\x02cbuiltins\nopen\n."):
        assert exchange(guarded_server.url, RawRequest(headers=jpeg, body=body)).status in (200, 400)
    assert unpickling_calls(guarded_server.report) == []


def test_the_guard_and_the_marker_catch_real_unpickling(tmp_path: Path) -> None:
    """The controls: under the guard, torch.load is recorded, and unpickling a planted pickle makes the marker."""
    script = textwrap.dedent(
        f"""
        import pickle, torch
        from pathlib import Path
        from tests.reliability.support.faults import Planted
        from tests.reliability.support.pickle_guard import install
        install(Path({str(tmp_path / "report.txt")!r}))
        torch.save({{"w": torch.ones(2)}}, {str(tmp_path / "w.pt")!r})
        torch.load({str(tmp_path / "w.pt")!r}, weights_only=True)
        pickle.loads(pickle.dumps(Planted(Path({str(tmp_path / "marker")!r}))))
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=120)
    calls = unpickling_calls(tmp_path / "report.txt")
    assert "torch.load" in calls and "pickle.loads" in calls
    assert any(call.startswith("pickle.find_class") and call.endswith(".open") for call in calls), calls
    assert (tmp_path / "marker").exists()


@pytest.mark.anyio
async def test_a_forward_pass_that_raises_fails_only_its_own_batch(make_settings: MakeSettings) -> None:
    settings = make_settings(decode_threads=2)
    result = await run_forward_faults(settings, benchmark_jpegs()[0], requests=48, concurrency=16, period=2)
    assert result.failed_batches > 0 and result.images_in_good_batches > 0
    assert result.matched  # 500 exactly for the failed batches' images, 200 for every other
    assert result.bare_500s
    assert result.logged_tracebacks == result.answered[500]
    assert result.next_status == 200
