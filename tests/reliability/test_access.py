"""Access: the API key over real HTTP, a constant-time comparison, a non-root container, and dependency
floors at or above every known fix."""

from __future__ import annotations

import ast
import inspect
from importlib.metadata import version
from pathlib import Path

from packaging.version import Version

from app.front import auth
from benchmarks.images import benchmark_jpegs
from tests.reliability.conftest import GuardedServer
from tests.reliability.support.access import (
    auth_cases,
    check_floors,
    compose_users,
    dependency_floors,
    final_stage_user,
    is_root,
    run_auth_cases,
)
from tests.reliability.support.rawhttp import RawRequest, exchange
from tests.reliability.support.suite import API_KEY, REPO


def test_predictions_need_the_key_and_health_and_metrics_stay_open(guarded_server: GuardedServer) -> None:
    cases = auth_cases(API_KEY, [("Content-Type", "image/jpeg")])
    results = run_auth_cases(guarded_server.url, cases, benchmark_jpegs()[0])
    assert [(case.name, status) for case, status in results if status != case.expect] == []
    assert {case.expect for case in cases} == {200, 401}


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(guarded_server: GuardedServer) -> None:
    body = b"\xff" * (8 << 20)
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    request = RawRequest(headers=[("Content-Type", "image/jpeg")], chunked=True, chunks=chunks)
    response = exchange(guarded_server.url, request)
    assert response.status == 401
    assert response.bytes_sent < len(body) // 2


def test_the_key_is_compared_in_constant_time() -> None:
    tree = ast.parse(inspect.getsource(auth.bearer_matches))
    calls = [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert "hmac.compare_digest" in calls
    equalities = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
    ]
    assert not any("token" in text or "secret" in text for text in equalities), equalities  # no early-exit ==
    assert equalities  # the scheme check is there, so the search above can see comparisons


def test_the_container_runs_as_a_non_root_user() -> None:
    user = final_stage_user(REPO / "Dockerfile")
    assert not is_root(user), user
    assert not any(is_root(u) for u in compose_users(REPO / "docker-compose.yml"))


def test_dependency_floors_are_at_or_above_every_known_fix() -> None:
    checks = check_floors(REPO / "pyproject.toml")
    assert {c.package for c in checks} >= {"torch", "pillow", "python-multipart", "starlette", "h11", "uvicorn"}
    assert {c.package: c.below for c in checks if c.below} == {}


def test_the_installed_packages_meet_the_floors() -> None:
    for package, floor in dependency_floors(Path(REPO / "pyproject.toml")).items():
        if floor is not None:
            assert Version(version(package)) >= Version(floor), package
