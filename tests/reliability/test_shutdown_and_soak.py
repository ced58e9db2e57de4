"""Graceful shutdown under load and a short soak, each against its own real server. The capacity that
sizes their load is measured first, on the same server."""

from __future__ import annotations

import pytest

from benchmarks.images import benchmark_jpegs
from tests.reliability.support.overload import measure_capacity
from tests.reliability.support.shutdown import run_shutdown
from tests.reliability.support.soak import run_soak
from tests.reliability.support.suite import MAX_BATCH_SIZE, REQUEST_TIMEOUT_S, Workspace


@pytest.mark.slow
def test_sigterm_under_load_finishes_every_accepted_request_and_exits_0(workspace: Workspace) -> None:
    with workspace.start("shutdown") as server:
        capacity = measure_capacity(server.url, benchmark_jpegs(), 2 * MAX_BATCH_SIZE, duration_s=3.0)
        grace = REQUEST_TIMEOUT_S + 1
        result = run_shutdown(server, benchmark_jpegs(), rate=2 * capacity, before_s=3.0, after_s=3.0, grace_s=grace)
        tracebacks = server.tracebacks()
    assert result.unexpected == {}  # 200, 503 overloaded/not_ready, or the port closed after the drain
    assert result.answers["200 ok"] > 0 and result.answered_after_signal.get("503 not_ready", 0) > 0
    assert result.admitted_after_refusal == 0
    assert result.lost == [] and result.unanswered_but_logged == []
    assert result.exit_code == 0
    assert result.exit_s is not None and result.exit_s < grace
    assert tracebacks == []


@pytest.mark.slow
def test_a_soak_below_capacity_has_no_error_and_flat_memory_and_descriptors(workspace: Workspace) -> None:
    with workspace.start("soak") as server:
        capacity = measure_capacity(server.url, benchmark_jpegs(), 2 * MAX_BATCH_SIZE, duration_s=3.0)
        result = run_soak(server, benchmark_jpegs(), rate=0.7 * capacity, duration_s=40.0, warmup_s=10.0)
    assert result.answers == {"200 ok": result.answers.get("200 ok", 0)} and result.errors == 0
    assert result.lost == []
    assert abs(result.growth("rss_mib")) < 16
    assert result.growth("files") <= 0.5 and result.growth("threads") == 0
    assert result.idle_fds[1] <= result.idle_fds[0]
