"""Fixtures for the browser tests: Debian's Chromium driven by Playwright against a real server on loopback.

Every request a page makes is recorded; one to anything but the server under test is refused and fails the
test, and so does a Content-Security-Policy violation or an uncaught script error. Screenshots go to
``$TEST_ARTIFACTS_DIR/browser`` (default ``.artifacts/browser`` in the repository).

Without Chromium (or Playwright) the tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import torch

from model import build_model, save_checkpoint
from tests.app.conftest import RunningServer, start_server
from tests.conftest import TINY_PREPROCESSING

REPO = Path(__file__).resolve().parents[2]
# Real subjects of scikit-image's photos; ten classes so that a top-5 has five entries.
LABELS = ["cat", "coffee", "rocket", "astronaut", "cells", "camera", "coins", "horse", "moon", "text"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Names resolve to nothing but the loopback address: no page can reach another host even if it tried.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Records CSP violations in the page; an init script runs before the page's own scripts.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium (needs Debian's chromium and playwright)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine, fail in CI, where the browser tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (``CHROMIUM_PATH`` overrides); Playwright's own browser downloads are never used."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or ""
    if not path:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    return path


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where screenshots and request logs go: ``$TEST_ARTIFACTS_DIR/browser``."""
    root = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / ".artifacts")
    path = root / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def ten_class_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded ResNet-50 with ten classes and the 64-pixel test crop."""
    path = tmp_path_factory.mktemp("weights") / "ten-classes.safetensors"
    torch.manual_seed(0)
    state = build_model(len(LABELS)).state_dict()
    save_checkpoint(path, state, labels=LABELS, preprocessing=TINY_PREPROCESSING, trained=False, source="test")
    return path


@pytest.fixture(scope="session")
def make_server(
    ten_class_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningServer]]:
    """Start ``python -m app`` on the ten-class checkpoint (torch backend: no ONNX export to wait for)."""
    started: list[RunningServer] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def start(**env: str) -> RunningServer:
        base = {"SERVE_MODEL_PATH": str(ten_class_checkpoint), "SERVE_BACKEND": "torch", "SERVE_DEVICE": "cpu"}
        server = start_server(base | env, logs / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.terminate()
    for server in started:
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    """The server every browser test shares."""
    return make_server()


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """One headless Chromium for this folder's tests. Not for the session: Playwright's sync API keeps an
    event loop running in the main thread until it stops, and asyncio tests after it could not run theirs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Traffic:
    """Every request the pages of one test made, and what went wrong in them."""

    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def record(self, request: Any) -> None:
        self.requests.append(f"{request.method} {request.url}")

    def route(self, route: Any) -> None:
        """Let requests to the server through and refuse any other (it is reported by ``problems``)."""
        if _is_outside(route.request.url, self.origin):
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def problems(self, pages: list[Any]) -> list[str]:
        """Requests outside the server (sent, refused or blocked by the CSP), CSP violations and script
        errors, one line each."""
        urls = [line.split(" ", 1)[1] for line in self.requests]
        found = [f"request outside the service: {url}" for url in urls if _is_outside(url, self.origin)]
        found += [f"script error: {error}" for error in self.errors]
        for page in pages:
            if not page.is_closed():
                found += [f"CSP violation on {page.url}: {v}" for v in page.evaluate("window.__cspViolations || []")]
        return found


def _is_outside(url: str, origin: str) -> bool:
    """A network URL (not blob: or data:, which never leave the page) on another origin than ``origin``."""
    parts = urlsplit(url)
    return parts.scheme not in ("blob", "data") and f"{parts.scheme}://{parts.netloc}" != origin


@pytest.fixture
def new_page(
    browser: Any, server: RunningServer, request: pytest.FixtureRequest, artifacts_dir: Path
) -> Iterator[Callable[..., Any]]:
    """``new_page(base_url=..., width=..., height=...)``: a page in a fresh browser context whose traffic is
    checked when the test ends (requests outside ``base_url``, CSP violations, uncaught script errors)."""
    contexts: list[tuple[Any, Traffic, list[Any]]] = []

    def open_page(base_url: str = server.url, width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        traffic = Traffic(origin=base_url)
        context.route("**/*", traffic.route)
        context.on("request", traffic.record)
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        page.on("pageerror", lambda error: traffic.errors.append(str(error)))
        contexts.append((context, traffic, [page]))
        return page

    yield open_page
    log = artifacts_dir / f"{request.node.name}.requests.txt"
    problems: list[str] = []
    with log.open("w") as out:
        for context, traffic, pages in contexts:
            out.write("\n".join(traffic.requests) + "\n")
            problems += traffic.problems(pages)
            context.close()
    assert not problems, "\n".join(problems)
